"""Start the web app: ``python run.py [--host 127.0.0.1] [--port 5000] [--https] [--weights weights]``.

This is the demo server (Werkzeug, threaded, bounded: see webapp/server.py). For production use
gunicorn under a supervisor, see docs/webapp.md and deploy/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from webapp import create_app, logs
from webapp.server import make_server

ROOT = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description="Speech emotion recognition web app")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--https", action="store_true",
                        help="serve TLS with a self-signed certificate from certs/ (created on first use)")
    parser.add_argument("--cert-dir", default=str(ROOT / "certs"), help="where --https keeps its certificate")
    parser.add_argument("--weights", help="weights folder or checkpoint (default: weights/)")
    args = parser.parse_args(argv)

    logs.configure()
    app = create_app({"WEIGHTS": args.weights} if args.weights else None)
    if app.extensions["ser_model"]["recognizer"] is None:
        print(f"WARNING: {app.extensions['ser_model']['error']} -- the page loads, predictions fail.")
    ssl_context = None
    if args.https:
        from webapp.tls import self_signed_cert

        import socket

        wildcard = args.host in ("0.0.0.0", "::")
        hosts = list(dict.fromkeys(["localhost" if wildcard else args.host, "localhost", "127.0.0.1"]
                                   + ([socket.gethostname()] if wildcard else [])))
        ssl_context = tuple(str(p) for p in self_signed_cert(args.cert_dir, hosts))
    server = make_server(app, args.host, args.port, ssl_context)
    scheme = "https" if args.https else "http"
    print(f"Serving on {scheme}://{args.host}:{server.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
