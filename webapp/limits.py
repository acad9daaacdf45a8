"""Per-client and per-server limits: who may start what, and who waits.

``PerClient`` counts things a client address holds (live streams, uploads in
flight) against a limit. ``UploadGate`` lets ``concurrency`` uploads run, at most
``queue`` more wait (each at most ``wait_s``), and refuses the rest at once, so
a burst of uploads can neither pile up threads nor hold every slot for long.
The client address is ``request.remote_addr``: behind ``TRUSTED_PROXIES``
reverse proxies, werkzeug's ProxyFix has already replaced it with the address
the nearest trusted proxy appended to ``X-Forwarded-For``. ``bound_websocket_messages``
caps one WebSocket message while it arrives and declines compression.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time


class LimitExceeded(Exception):
    """Refused: ``status`` (429 or 503), a message, and seconds after which a retry may succeed."""

    def __init__(self, status: int, message: str, retry_after_s: float):
        super().__init__(message)
        self.status, self.retry_after_s = status, max(1, math.ceil(retry_after_s))


class PerClient:
    """How many of something each client holds, at most ``limit`` each."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> bool:
        with self._lock:
            if self._held.get(client, 0) >= self.limit:
                return False
            self._held[client] = self._held.get(client, 0) + 1
            return True

    def release(self, client: str):
        with self._lock:
            left = self._held.get(client, 0) - 1
            if left > 0:
                self._held[client] = left
            else:
                self._held.pop(client, None)

    def count(self, client: str) -> int:
        return self._held.get(client, 0)


class UploadGate:
    """Bounded concurrency, a bounded waiting line and a per-client limit for uploads."""

    def __init__(self, concurrency: int, queue: int, wait_s: float, per_client: int):
        self._slots = threading.Semaphore(int(concurrency))
        self.concurrency, self.queue, self.wait_s = int(concurrency), int(queue), float(wait_s)
        self._clients = PerClient(per_client)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self._recent_s = 1.0  # moving average of how long an upload holds a slot

    @contextlib.contextmanager
    def slot(self, client: str):
        """Hold one upload slot for ``client``; raises LimitExceeded (429 or 503) instead of waiting long."""
        if not self._clients.acquire(client):
            raise LimitExceeded(429, "you already have an upload being analysed; wait for its result",
                                self._recent_s)
        try:
            with self._lock:
                if self.waiting >= self.queue and self.running >= self.concurrency:
                    raise LimitExceeded(503, "the server is busy with other uploads; try again shortly",
                                        self._recent_s * (self.waiting + 1) / self.concurrency)
                self.waiting += 1
            try:
                got = self._slots.acquire(timeout=self.wait_s)
            finally:
                with self._lock:
                    self.waiting -= 1
            if not got:
                raise LimitExceeded(503, "the server is busy with other uploads; try again shortly",
                                    self._recent_s * (self.waiting + 1) / self.concurrency)
            with self._lock:
                self.running += 1
            started = time.monotonic()
            try:
                yield
            finally:
                with self._lock:
                    self.running -= 1
                    self._recent_s = 0.8 * self._recent_s + 0.2 * (time.monotonic() - started)
                self._slots.release()
        finally:
            self._clients.release(client)


class _WebSocketReader(threading.Thread):
    """simple-websocket's per-connection reader thread, which marks the connection closed and wakes
    its receiver when it ends. simple-websocket 1.1.0 wakes the receiver before marking the
    connection closed when it refuses an oversized message, so the receiver could go back to
    waiting for good, holding its connection and thread (seen in 6 of 16 refusals)."""

    def __init__(self, *args, target=None, **kwargs):
        super().__init__(*args, target=target, **kwargs)
        self._websocket = getattr(target, "__self__", None)

    def run(self):
        try:
            super().run()
        finally:
            if self._websocket is not None:
                self._websocket.connected = False
                self._websocket.event.set()


def bound_websocket_messages(eio, receive_bytes: int = 4096, compression: bool = False) -> None:
    """Make the WebSocket transport of Engine.IO server ``eio`` close a connection (code 1009) as
    soon as one message passes ``eio.max_http_buffer_size`` bytes; its reader asks the socket for
    ``receive_bytes`` at a time. Unless ``compression``, decline the client's offer of
    permessage-deflate, which simple-websocket would always accept.

    Engine.IO checks that size only once simple-websocket has assembled the whole message, and
    simple-websocket assembles without a limit: one 48 MB message raised the server's peak memory
    by 105 MB before it was refused. simple-websocket's own ``max_message_size`` stops it while it
    arrives; Engine.IO has no public option that reaches it, so its WebSocket class is wrapped.

    Compression is declined because every browser offers it and, accepted, it makes a client's bytes
    cost the server about a hundred times more to read (a kilobyte of deflated zeros is a megabyte
    to inflate and parse: one client sending 1 Mbit/s took 36 % of a core instead of 0.6 %) and
    holds about 240 KiB of zlib state per connection for its life, to save a third of a stream's
    32 KB/s (``bench/deflate_bench.py``, docs/webapp.md). Without the client's
    ``Sec-WebSocket-Extensions`` header, simple-websocket's handshake has no offer to accept.
    """
    import functools

    websocket = eio._async.get("websocket")
    if websocket is None or getattr(websocket, "bounded", False):
        return
    bounded = functools.partial(websocket, max_message_size=int(eio.max_http_buffer_size),
                                receive_bytes=int(receive_bytes), thread_class=_WebSocketReader)

    def make(handler, server):
        ws = bounded(handler, server)
        if compression:
            return ws

        def accept(environ, start_response):
            return ws({k: v for k, v in environ.items() if k != "HTTP_SEC_WEBSOCKET_EXTENSIONS"}, start_response)
        return accept

    make.bounded = True
    eio._async = {**eio._async, "websocket": make}
