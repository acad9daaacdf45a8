"""The server behind ``python run.py``: Werkzeug's threaded WSGI server, bounded.

- a connection that sends nothing for ``REQUEST_TIMEOUT_S`` is closed (a slow or stalled
  client cannot pin a thread; live streams are pinged every few seconds, so they never idle);
- at most ``MAX_CONNECTIONS`` connections (one thread each) are open; more are closed at once;
- the ``Server`` header names no software version;
- request lines are not logged here (they would carry addresses): the app logs each request;
- a connection that became a WebSocket is closed when the WebSocket ends: what the client still
  sends then is WebSocket frames, which Werkzeug's keep-alive loop would read as the next HTTP
  request (a 400 answered into the socket and an error logged for every disconnect).
"""
from __future__ import annotations

import threading

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

SERVER_NAME = "ser-webapp"


class QuietHandler(WSGIRequestHandler):
    """No version in ``Server``, a read timeout, and no per-request log line."""

    timeout = 30  # replaced per server by serve()

    def version_string(self) -> str:
        return SERVER_NAME

    def log_request(self, code="-", size="-"):
        pass

    def run_wsgi(self):
        try:
            super().run_wsgi()
        finally:
            if self.headers.get("Upgrade", "").lower() == "websocket":
                self.close_connection = True  # the WebSocket had the socket: nothing after it is HTTP


class BoundedServer(ThreadedWSGIServer):
    """A threaded server that refuses connections beyond ``max_connections``."""

    def __init__(self, *args, max_connections: int = 512, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections, self.open_connections = max_connections, 0
        self._count_lock = threading.Lock()
        self._server_version = SERVER_NAME  # also SERVER_SOFTWARE in the WSGI environ

    def process_request(self, request, client_address):
        with self._count_lock:
            full = self.open_connections >= self.max_connections
            if not full:
                self.open_connections += 1
        if full:
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # noqa: BLE001 - no thread started: give the slot back
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self):
        with self._count_lock:
            self.open_connections -= 1


def make_server(app, host: str, port: int, ssl_context=None) -> BoundedServer:
    """A bounded server for ``app`` (limits from its config), not yet serving."""
    handler = type("Handler", (QuietHandler,), {"timeout": float(app.config["REQUEST_TIMEOUT_S"])})
    return BoundedServer(host, port, app, handler, ssl_context=ssl_context,
                         max_connections=int(app.config["MAX_CONNECTIONS"]))
