"""Per-client and per-server limits: who may start what, and who waits.

``PerClient`` counts things a client address holds (live streams, uploads in
flight) against a limit. ``UploadGate`` lets ``concurrency`` uploads run, at most
``queue`` more wait (each at most ``wait_s``), and refuses the rest at once, so
a burst of uploads can neither pile up threads nor hold every slot for long.
The client address is ``request.remote_addr``: behind ``TRUSTED_PROXIES``
reverse proxies, werkzeug's ProxyFix has already replaced it with the address
the nearest trusted proxy appended to ``X-Forwarded-For``. ``harden_websockets``
caps a WebSocket's message size and its client's message rate, and declines compression.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from urllib.parse import parse_qs

log = logging.getLogger("ser.limits")


class LimitExceeded(Exception):
    """Refused: ``status`` (429 or 503), a message, and seconds after which a retry may succeed."""

    def __init__(self, status: int, message: str, retry_after_s: float):
        super().__init__(message)
        self.status, self.retry_after_s = status, max(1, math.ceil(retry_after_s))


class RateLimit:
    """Token bucket: ``burst`` units at once, refilled at ``rate`` units a second (seconds of audio
    for a live stream, messages for a WebSocket connection)."""

    def __init__(self, burst: float, rate: float, clock=time.monotonic):
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens, self.last = burst, clock()

    def allow(self, amount: float = 1.0) -> bool:
        self._refill()
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True

    def wait_s(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` would be allowed (0: now)."""
        self._refill()
        return max(0.0, (amount - self.tokens) / self.rate)

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now


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


class PerClientRate:
    """One :class:`RateLimit` per client, shared by everything the client holds open (its
    WebSocket connections), so that reconnecting does not refill it. A client's bucket is kept while
    it holds something and until it has refilled, when a new one would be the same."""

    SWEEP_EVERY_S = 1.0

    def __init__(self, burst: float, rate: float, clock=time.monotonic):
        self.burst, self.rate, self.clock = float(burst), float(rate), clock
        self._held: dict[str, list] = {}  # client -> [RateLimit, how many things hold it]
        self._lock = threading.Lock()
        self._swept = clock()

    def acquire(self, client: str):
        with self._lock:
            self._sweep()
            entry = self._held.setdefault(client, [RateLimit(self.burst, self.rate, self.clock), 0])
            entry[1] += 1

    def release(self, client: str):
        with self._lock:
            entry = self._held.get(client)
            if entry is not None:
                entry[1] -= 1

    def allow(self, client: str, amount: float = 1.0) -> bool:
        with self._lock:
            entry = self._held.get(client)
            return entry is None or entry[0].allow(amount)

    def wait_s(self, client: str, amount: float = 1.0) -> float:
        with self._lock:
            entry = self._held.get(client)
            return 0.0 if entry is None else entry[0].wait_s(amount)

    MIN_WAIT_S = 0.02  # wake at most 50 times a second: then let the tokens gathered meanwhile through

    def take(self, client: str, amount: float = 1.0, wanted=lambda: True) -> bool:
        """Take ``amount`` from ``client``'s bucket, sleeping while it is short; False, with nothing
        taken, if ``wanted()`` turns false first (checked after each sleep)."""
        while not self.allow(client, amount):
            time.sleep(min(1.0, max(self.MIN_WAIT_S, self.wait_s(client, amount))))
            if not wanted():
                return False
        return True

    def __len__(self) -> int:
        return len(self._held)

    def _sweep(self):
        now = self.clock()
        if now - self._swept < self.SWEEP_EVERY_S:
            return
        self._swept = now
        for client, (limit, holders) in list(self._held.items()):
            if holders <= 0 and limit.tokens + (now - limit.last) * limit.rate >= limit.burst:
                del self._held[client]


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


class _Inbox(list):
    """simple-websocket's queue of a connection's received messages, which makes its reader wait
    (reading nothing more from the socket) while its client's messages come faster than ``rates``
    allows: a flooding client is slowed to the rate by TCP's own flow control, and gains nothing
    by reconnecting. Engine.IO's pings go unanswered meanwhile, so a client that keeps flooding
    is dropped by the ping timeout."""

    def __init__(self, websocket, rates: PerClientRate, client: str):
        super().__init__()
        self.websocket, self.rates, self.client, self.throttled = websocket, rates, client, False

    def append(self, message):
        if not self.rates.allow(self.client):
            if not self.throttled:
                self.throttled = True
                log.warning("a client sends more than %g WebSocket messages a second: its reading slowed",
                            self.rates.rate, extra={"event": "ws_message_flood"})
            if not self.rates.take(self.client, wanted=lambda: self.websocket.connected):
                return
        super().append(message)


def _charge_reads(websocket, rates: PerClientRate | None) -> str | None:
    """Make ``websocket``'s received messages draw on its client's budget in ``rates`` (its inbox
    then waits while the budget is spent); returns the client, to ``release`` when the connection
    ends (None: no budget)."""
    if websocket is None or rates is None:
        return None
    client = str(getattr(websocket, "environ", {}).get("REMOTE_ADDR"))
    rates.acquire(client)
    websocket.input_buffer = _Inbox(websocket, rates, client)
    return client


class _WebSocketReader(threading.Thread):
    """simple-websocket's per-connection reader thread, which marks the connection closed and wakes
    its receiver when it ends, and (``rates``) bounds the rate of the messages its client sends.
    simple-websocket 1.1.0 wakes the receiver before marking the connection closed when it refuses
    an oversized message, so the receiver could go back to waiting for good, holding its
    connection and thread (seen in 6 of 16 refusals)."""

    def __init__(self, *args, target=None, rates: PerClientRate | None = None, **kwargs):
        super().__init__(*args, target=target, **kwargs)
        self._websocket = getattr(target, "__self__", None)
        self._rates, self._client = rates, _charge_reads(self._websocket, rates)

    def run(self):
        try:
            super().run()
        finally:
            if self._websocket is not None:
                self._websocket.connected = False
                self._websocket.event.set()
            if self._client is not None:
                self._rates.release(self._client)


class _InlineReader:
    """simple-websocket's ``thread_class`` that starts no thread: the connection's own request
    thread, which Engine.IO parks in ``receive`` between messages anyway, reads the socket itself.

    simple-websocket reads each connection in a thread of its own and hands every message to the
    receiver through an Event: two thread wake-ups per message where one does. That costs 44-68 us
    of CPU more per message on a 2-core machine (``python bench/handoff_bench.py``), and a live
    stream sends 8 messages a second (each frame is a Socket.IO placeholder and its attachment). The reading is the same code (simple-websocket's ``_handle_events``: message size
    limit, pings, close), ``rates`` bound it as for the thread, and ``finish`` (when the request
    ends) releases the client's slot and closes the socket, as the thread did when it ended."""

    name = "simple_websocket.Base._thread (inline)"  # simple-websocket renames its thread

    def __init__(self, *args, target=None, rates: PerClientRate | None = None, **kwargs):
        self._websocket = target.__self__
        self._rates, self._client, self._finished = rates, _charge_reads(self._websocket, rates), False
        self._websocket.receive = self.receive  # in place of waiting for the thread

    def start(self):
        """simple-websocket starts its reader here: there is none."""

    def receive(self, timeout=None):
        """The next message (bytes or str), read from the socket while none is waiting; raises
        ``ConnectionClosed`` once the connection is closed and nothing is left."""
        from simple_websocket import ConnectionClosed

        ws = self._websocket
        if timeout is not None:  # Engine.IO never asks; the socket's own timeout still applies
            raise ValueError("an inline WebSocket reader waits without a timeout")
        while ws.connected and not ws.input_buffer:
            try:
                data = ws.sock.recv(ws.receive_bytes)
                if not data:
                    raise OSError("closed by the client")
                ws.ws.receive_data(data)
                ws.connected = ws._handle_events() and ws.connected
            except Exception:  # noqa: BLE001 - as the reader thread: any failure ends the connection
                ws.connected = False
        if ws.input_buffer:
            return ws.input_buffer.pop(0)
        self.finish()
        raise ConnectionClosed(ws.close_reason, ws.close_message)

    def finish(self):
        """The connection is over: release its client's slot and close its socket (once)."""
        if self._finished:
            return
        self._finished = True
        self._websocket.connected = False
        if self._client is not None:
            self._rates.release(self._client)
        try:
            self._websocket.sock.close()
        except OSError:
            pass


def reader_class(sock, inline: bool) -> type:
    """The reader for a WebSocket connection on ``sock``: its request thread (``inline``), except on
    TLS. There a thread of its own reads: OpenSSL forbids using one connection from two threads at
    once, and with the request thread reading while Engine.IO's writer thread wrote, 3-4 of 10 runs
    of ``run.py --https`` on a loaded 2-core machine lost a connection right after it opened (0 of
    6 with the thread; tests/test_server.py::test_run_py_https). The thread reads the same way
    (the OpenSSL rule is not met there either); it is what TLS connections were always read by."""
    import ssl

    return _InlineReader if inline and not isinstance(sock, ssl.SSLSocket) else _WebSocketReader


def harden_websockets(eio, config) -> None:
    """Wrap the WebSocket transport of Engine.IO server ``eio`` so that, with the settings in
    ``config``, a connection

    - is closed (code 1009) as soon as one message passes ``eio.max_http_buffer_size`` bytes, its
      reader asking the socket for ``WS_RECEIVE_BYTES`` at a time;
    - is read no faster than its client (address) may send, over all its connections:
      ``WS_MESSAGE_BURST`` messages at once, ``WS_MESSAGES_PER_S`` a second;
    - is not compressed unless ``WS_COMPRESSION``;
    - is read by its own request thread (``WS_READ_INLINE``, :class:`_InlineReader`), not by a
      thread of its own that wakes the request thread for every message, unless it is TLS
      (:func:`reader_class`);

    and charges each long-polling POST and new session to the same budget (``_polling_within``).

    Engine.IO checks a message's size only once simple-websocket has assembled the whole message,
    and simple-websocket assembles without a limit: one 48 MB message raised the server's peak
    memory by 105 MB before it was refused. simple-websocket's own ``max_message_size`` stops it
    while it arrives; Engine.IO has no public option that reaches it, so its WebSocket class is
    wrapped.

    Every message costs the web process about 50 us to read and dispatch, whatever it holds: one
    client sending tiny audio frames as fast as it could (11,000 messages a second) took half a
    core. Closing such a connection (1008) did not help: the client reconnected at once, up to 100
    times a second, and the handshakes cost as much; so its reading is slowed instead
    (``bench/flood_bench.py``, docs/webapp.md). The page sends 8 messages a second (250 ms frames,
    each a placeholder and its bytes); the defaults allow a client 4 streams of 20 ms frames at the
    1.5 x real time the audio limit allows.

    Compression is declined because every browser offers it and, accepted, it makes a client's bytes
    cost the server about a hundred times more to read (a kilobyte of deflated zeros is a megabyte
    to inflate and parse: one client sending 1 Mbit/s took 36 % of a core instead of 0.6 %) and
    holds about 240 KiB of zlib state per connection for its life, to save a third of a stream's
    32 KB/s (``bench/deflate_bench.py``, docs/webapp.md). Without the client's
    ``Sec-WebSocket-Extensions`` header, simple-websocket's handshake has no offer to accept.
    """
    import functools

    websocket = eio._async.get("websocket")
    if websocket is None or getattr(websocket, "hardened", False):
        return
    rates = PerClientRate(config["WS_MESSAGE_BURST"], config["WS_MESSAGES_PER_S"])

    def reader(*args, target=None, **kwargs):
        sock = getattr(getattr(target, "__self__", None), "sock", None)
        return reader_class(sock, config["WS_READ_INLINE"])(*args, target=target, rates=rates, **kwargs)

    bounded = functools.partial(websocket, max_message_size=int(eio.max_http_buffer_size),
                                receive_bytes=int(config["WS_RECEIVE_BYTES"]), thread_class=reader)

    def make(handler, server):
        ws = bounded(handler, server)

        def accept(environ, start_response):
            if not config["WS_COMPRESSION"]:
                environ = {k: v for k, v in environ.items() if k != "HTTP_SEC_WEBSOCKET_EXTENSIONS"}
            try:
                return ws(environ, start_response)
            finally:  # however Engine.IO's handler ended: an inline reader's connection is over
                thread = getattr(getattr(ws, "ws", None), "thread", None)
                if isinstance(thread, _InlineReader):
                    thread.finish()
        return accept

    make.hardened = True
    eio._async = {**eio._async, "websocket": make}
    eio.handle_request = _polling_within(eio.handle_request, rates)


POLLING_CHARGE = 16  # messages charged per long-polling POST or new session: Engine.IO decodes at most 16 a POST


def _polling_within(handle_request, rates: PerClientRate):
    """Engine.IO's ``handle_request``, charging each long-polling POST (up to 16 packets) and each
    new session to its client's message budget, waiting while it is spent, as a WebSocket's reader
    does; and answering 400, not 500, for a POST that races its session's end (python-engineio
    4.15 raises KeyError there)."""

    charge = min(POLLING_CHARGE, rates.burst)

    def handle(environ, start_response):
        # as Engine.IO reads them: a POST is polling whatever its transport says, no sid is a new session
        if environ.get("REQUEST_METHOD") == "POST" or not parse_qs(environ.get("QUERY_STRING", "")).get("sid"):
            client = str(environ.get("REMOTE_ADDR"))
            rates.acquire(client)
            try:
                rates.take(client, charge)
            finally:
                rates.release(client)
        try:
            return handle_request(environ, start_response)
        except KeyError as exc:
            if "disconnected" not in str(exc):
                raise
            start_response("400 BAD REQUEST", [("Content-Type", "text/plain")])
            return [b"Session is disconnected"]

    return handle


def bound_binary_packets(sio, most: int = 1) -> None:
    """Make Socket.IO server ``sio`` refuse a binary event or acknowledgement that declares more than
    ``most`` attachments: the client is told (``error`` ``too_many_attachments``) and the attachments
    that follow are dropped unread.

    python-socketio holds every attachment a packet declares (up to ten digits of them) until the
    last arrives: one connection declaring 200 and sending 200 messages of 0.9 MB raised the
    server's memory by 172 MB, and the message budget would let a client add hundreds of megabytes
    a second. The contract's one binary event, ``audio``, has one attachment.
    """
    eio = sio.eio
    handle_message, handle_disconnect = eio.handlers["message"], eio.handlers["disconnect"]
    refused: set[str] = set()  # Engine.IO sessions whose attachments are being dropped

    def message(eio_sid, data):
        if not isinstance(data, str):
            if eio_sid in refused:
                return None
        elif data[:1] in ("5", "6"):  # Socket.IO BINARY_EVENT, BINARY_ACK: "5<count>-/ns,..."
            dash = data.find("-")
            count = data[1:dash] if dash > 1 else ""
            if count.isdigit() and int(count) > most:
                refused.add(eio_sid)
                namespace = data[dash + 1:data.find(",", dash)] if data[dash + 1:dash + 2] == "/" else "/"
                log.warning("a client declared %s attachments in one packet: refused", count[:12],
                            extra={"event": "too_many_attachments"})
                sid = sio.manager.sid_from_eio_sid(eio_sid, namespace)
                if sid is not None:
                    sio.emit("error", {"code": "too_many_attachments",
                                       "message": f"a packet may carry at most {most} binary attachment(s)"},
                             to=sid, namespace=namespace)
                return None
            refused.discard(eio_sid)
        return handle_message(eio_sid, data)

    def disconnect(eio_sid, *args):
        refused.discard(eio_sid)
        return handle_disconnect(eio_sid, *args)

    eio.on("message", message)
    eio.on("disconnect", disconnect)

