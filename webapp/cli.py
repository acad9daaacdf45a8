"""Serve the web app: ``ser-webapp`` / ``python run.py [--host 127.0.0.1] [--port 5000] [--https]``.

This is the demo server (Werkzeug, threaded, bounded: see webapp/server.py). For production use
gunicorn under a supervisor, see docs/webapp.md and deploy/.
"""
from __future__ import annotations

import argparse

from . import create_app, logs
from .config import ROOT
from .server import make_server
from .share import certificate_names, share_urls


def main(argv=None):
    """Parse the options, build the app, print the links to send, serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Speech emotion recognition web app")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all, to share the demo)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--https", action="store_true",
                        help="serve TLS with a self-signed certificate from certs/ covering localhost, the host "
                             "name and every network address (made on first use); browsers give other devices "
                             "the microphone only over https")
    parser.add_argument("--cert-dir", default=str(ROOT / "certs"), help="where --https keeps its certificate")
    parser.add_argument("--public-url", help="the address people reach this server by (a reverse proxy or host "
                                             "name), shown in the page's Share panel")
    parser.add_argument("--weights", help="weights folder or checkpoint (default: weights/)")
    args = parser.parse_args(argv)

    logs.configure()
    urls = share_urls(args.host, args.port, args.https, args.public_url)
    config = {"SHARE_URLS": urls, "PUBLIC_URL": args.public_url, "HTTPS": args.https}
    if args.weights:
        config["WEIGHTS"] = args.weights
    app = create_app(config)
    if app.extensions["ser_model"]["recognizer"] is None:
        print(f"WARNING: {app.extensions['ser_model']['error']} -- the page loads, predictions fail.")
    ssl_context = None
    if args.https:
        from webapp.tls import self_signed_cert

        ssl_context = tuple(str(p) for p in self_signed_cert(args.cert_dir, certificate_names(args.host)))
    server = make_server(app, args.host, args.port, ssl_context)
    print(f"Serving on {urls[0]}" + (f"  (share: {', '.join(urls[1:-1])})" if len(urls) > 2 else ""), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

