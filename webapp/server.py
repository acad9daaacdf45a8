"""The server behind ``python run.py``: Werkzeug's threaded WSGI server, bounded.

- a connection that sends nothing for ``REQUEST_TIMEOUT_S`` is closed (a slow or stalled
  client cannot pin a thread; live streams are pinged every few seconds, so they never idle);
- at most ``MAX_CONNECTIONS`` connections (one thread each) are open; more are closed at once;
- a peer address opening connections faster than ``CONNECTIONS_PER_S`` (``CONNECTION_BURST`` at
  once) has the extra ones closed at once, before any HTTP is read (a client that reconnects as
  soon as it is closed for flooding would otherwise cost a WebSocket handshake each time);
- the ``Server`` header names no software version;
- request lines are not logged here (they would carry addresses): the app logs each request;
- a connection that became a WebSocket is closed when the WebSocket ends: what the client still
  sends then is WebSocket frames, which Werkzeug's keep-alive loop would read as the next HTTP
  request (a 400 answered into the socket and an error logged for every disconnect).
"""
from __future__ import annotations

import threading

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .limits import PerClientRate

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
    """A threaded server that refuses connections beyond ``max_connections``, and (``new_connections``)
    those of a peer address that opens them faster than its rate allows."""

    def __init__(self, *args, max_connections: int = 512, new_connections: PerClientRate | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections, self.open_connections = max_connections, 0
        self.new_connections = new_connections
        self._count_lock = threading.Lock()
        self._server_version = SERVER_NAME  # also SERVER_SOFTWARE in the WSGI environ

    def process_request(self, request, client_address):
        peer = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
        with self._count_lock:
            full = self.open_connections >= self.max_connections
            if not full:
                self.open_connections += 1
        if not full and self.new_connections is not None:
            self.new_connections.acquire(peer)
            if not self.new_connections.allow(peer):
                self._release(peer)
                full = True
        if full:
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # noqa: BLE001 - no thread started: give the slot back
            self._release(peer)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]) if isinstance(client_address, tuple) else str(client_address))

    def _release(self, peer: str):
        with self._count_lock:
            self.open_connections -= 1
        if self.new_connections is not None:
            self.new_connections.release(peer)


def make_server(app, host: str, port: int, ssl_context=None) -> BoundedServer:
    """A bounded server for ``app`` (limits from its config), not yet serving. The rate of new
    connections is limited per peer address only when no proxy is trusted (``TRUSTED_PROXIES`` 0):
    behind one, every connection comes from the proxy, which limits clients itself."""
    c = app.config
    handler = type("Handler", (QuietHandler,), {"timeout": float(c["REQUEST_TIMEOUT_S"])})
    per_peer = None if int(c["TRUSTED_PROXIES"]) else PerClientRate(c["CONNECTION_BURST"], c["CONNECTIONS_PER_S"])
    return BoundedServer(host, port, app, handler, ssl_context=ssl_context,
                         max_connections=int(c["MAX_CONNECTIONS"]), new_connections=per_peer)
