"""A light load generator: many live-stream clients driven by one thread.

The benchmarks' clients run on the machine they measure, so every CPU cycle a client spends is
taken from the server. :class:`~harness.LiveClient` (python-socketio, about three threads per
client) spends about 0.2 % of a core per stream here; :class:`ClientGroup` drives all of its
:class:`LeanClient` s from one thread over plain WebSockets (websocket-client), speaking the same
Socket.IO protocol as the page (Engine.IO 4: open, namespace connect, ``start`` with an
acknowledgement, ``audio`` as a binary attachment, ``stop``; pings answered), and records the same
things as ``LiveClient`` (:class:`~harness.StreamRecord`), so results read the same way.

    group = ClientGroup([LeanClient(url, pcm, delay_s=0.1) for pcm in signals])
    group.start(); group.join()
"""
from __future__ import annotations

import heapq
import itertools
import json
import selectors
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from harness import FRAME_MS, NS, SUMMARY_TIMEOUT_S, StreamRecord

CONNECT_TIMEOUT_S = 30
_EVENT = f"42{NS},"  # Engine.IO message (4) + Socket.IO event (2), this namespace
_ACK = f"43{NS},"
_CONNECTED = f"40{NS},"
AUDIO_EVENT = "451-" + NS + ',["audio",{"_placeholder":true,"num":0}]'  # binary event, one attachment


def websocket_url(url: str) -> str:
    """``http://host:port/?c=x`` -> ``ws://host:port/socket.io/?c=x&EIO=4&transport=websocket``."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = (parts.query + "&" if parts.query else "") + "EIO=4&transport=websocket"
    return f"{scheme}://{parts.netloc}/socket.io/?{query}"


class LeanClient(StreamRecord):
    """One stream's audio, timing and results; :class:`ClientGroup` does the talking."""

    def __init__(self, url: str, pcm: np.ndarray, rate: int = 16000, frame_s: float = FRAME_MS / 1000,
                 loop: bool = False, delay_s: float = 0.0, ca_file: str | None = None):
        super().__init__(frame_s)
        self.url, self.pcm, self.rate, self.loop, self.delay_s = url, pcm, rate, loop, delay_s
        self.ca_file = ca_file  # an https url: the certificate to trust (None: the system's)
        self.frame = int(rate * frame_s)
        self.ws = self.sock = None
        self.t0: float | None = None  # when streaming began (the start acknowledgement)
        self.stop_at: float | None = None
        self.closed = False

    def next_frame(self) -> bytes | None:
        """The next frame's bytes, or None at the end of the audio (or after ``finish``)."""
        k, n = len(self.sent_at), len(self.pcm)
        i = (k * self.frame) % n if self.loop else k * self.frame
        if self._finish.is_set() or i >= n:
            return None
        return self.pcm[i:i + self.frame].tobytes()


class ClientGroup(threading.Thread):
    """Runs every client's session in one thread: connect at its delay, stream in real time, stop,
    wait for the summary. Failures are recorded per client (``failure``), never raised."""

    def __init__(self, clients: list[LeanClient]):
        super().__init__(daemon=True)
        self.clients = clients
        self._timers: list = []  # (when, seq, action, client)
        self._seq = itertools.count()
        self._sel = selectors.DefaultSelector()

    def finish(self):
        for c in self.clients:
            c.finish()

    def _at(self, when: float, action, client: LeanClient):
        heapq.heappush(self._timers, (when, next(self._seq), action, client))

    def run(self):
        origin = time.monotonic()
        for c in self.clients:
            self._at(origin + c.delay_s, self._connect, c)
        while self._timers or self._sel.get_map():
            while self._timers and self._timers[0][3].closed:  # a finished client's timeouts
                heapq.heappop(self._timers)
            timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else 1.0
            for key, _ in self._sel.select(min(timeout, 1.0)):
                self._read(key.data)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, action, client = heapq.heappop(self._timers)
                if not client.closed:
                    action(client)

    # ---- the protocol ------------------------------------------------------------------------------
    def _connect(self, c: LeanClient):
        import websocket

        try:
            c.ws = websocket.create_connection(websocket_url(c.url), timeout=CONNECT_TIMEOUT_S,
                                               enable_multithread=False,
                                               sslopt={"ca_certs": c.ca_file} if c.ca_file else None)
        except Exception as exc:  # a refused connection is a result, not a crash
            c.failure, c.closed = repr(exc), True
            return
        c.sock = c.ws.sock
        self._sel.register(c.sock, selectors.EVENT_READ, c)
        self._at(time.monotonic() + CONNECT_TIMEOUT_S, self._give_up, c)

    def _give_up(self, c: LeanClient):
        if c.ack is None:
            c.failure = c.failure or "no start acknowledgement"
            self._close(c)

    def _read(self, c: LeanClient):
        import websocket

        try:
            opcode, data = c.ws.recv_data()
        except (websocket.WebSocketException, OSError) as exc:
            if not c.stop_at:
                c.failure = c.failure or repr(exc)
            self._close(c)
            return
        if opcode != websocket.ABNF.OPCODE_TEXT:
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._close(c)
            return
        text = data.decode()
        now = time.monotonic()
        if text == "2":  # Engine.IO ping
            c.ws.send("3")
        elif text.startswith(_EVENT):
            name, *args = json.loads(text[len(_EVENT):])
            payload = args[0] if args else None
            if name == "emotion":
                c.events.append((now, payload))
            elif name == "error":
                c.errors.append(payload)
            elif name == "summary":
                if c.stop_at:
                    c.summary_latency = now - c.stop_at
                self._close(c)
        elif text.startswith(_ACK):  # the start acknowledgement: ack id 1
            c.ack = json.loads(text[len(_ACK) + 1:])[0]
            if not c.ack.get("ok"):
                self._close(c)
                return
            c.t0 = now
            self._send_frame(c)
        elif text.startswith("0{"):  # Engine.IO open: join the namespace
            c.ws.send("40" + NS + ",")
        elif text.startswith(_CONNECTED):
            c.ws.send(_EVENT + "1" + json.dumps(["start", {"sample_rate": c.rate}]))  # ack id 1

    def _send_frame(self, c: LeanClient):
        frame = c.next_frame()
        try:
            if frame is None:
                c.stop_at = time.monotonic()
                c.ws.send(_EVENT + '["stop"]')
                self._at(c.stop_at + SUMMARY_TIMEOUT_S, self._close, c)
                return
            c.ws.send(AUDIO_EVENT)
            c.ws.send_binary(frame)
        except Exception as exc:  # noqa: BLE001 - the server went away: recorded
            c.failure = c.failure or repr(exc)
            self._close(c)
            return
        c.sent_at.append(time.monotonic())
        self._at(c.t0 + len(c.sent_at) * c.frame_s, self._send_frame, c)

    def _close(self, c: LeanClient):
        if c.closed:
            return
        c.closed = True
        if c.sock is not None:
            try:
                self._sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            try:  # say goodbye without waiting for the server's answer (clients close one by one)
                c.ws.send_close()
            except Exception:  # noqa: BLE001 - the socket is already dead
                pass
            c.ws.shutdown()


def flood(port: int, seconds: float, rate: float, payload: int, source: str = "127.0.0.1") -> dict:
    """A hostile client on 127.0.0.1:``port``, from address ``source``, offering permessage-deflate:
    join /stream, start, then send audio messages of ``payload`` zero bytes, at most ``rate`` bytes a
    second on the wire, for ``seconds`` or until the server closes it; pings answered. Returns what
    it managed (``closed_by_server``: the close code, or None)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Message, Ping, RejectConnection,
                                Request, TextMessage)
    from wsproto.extensions import PerMessageDeflate

    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target="/socket.io/?EIO=4&transport=websocket",
                                 extensions=[PerMessageDeflate()])))
    compressed, texts, closed, code = None, [], False, None

    def pump(block: bool):
        nonlocal compressed, closed, code
        sock.setblocking(block)
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not data:
            closed = True
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                compressed = bool(event.extensions)
            elif isinstance(event, RejectConnection):
                raise RuntimeError("the server refused the WebSocket")
            elif isinstance(event, Ping):
                sock.sendall(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                closed, code = True, event.code
            elif isinstance(event, Message) and isinstance(event.data, str):
                texts.append(event.data)
                if event.data == "2":  # Engine.IO ping
                    sock.sendall(ws.send(TextMessage("3")))

    def wait_for(prefix: str) -> bool:
        while not closed and not any(t.startswith(prefix) for t in texts):
            pump(True)
        return not closed

    zeros, sent, messages = bytes(payload), 0, 0
    t0 = time.monotonic()
    if wait_for("0{"):
        sock.sendall(ws.send(TextMessage("40" + NS + ",")))
    if wait_for("40" + NS):
        sock.sendall(ws.send(TextMessage("42" + NS + ",1" + json.dumps(["start", {"sample_rate": 16000}]))))
    wait_for("43" + NS)
    while time.monotonic() - t0 < seconds and not closed:
        wire = ws.send(TextMessage(AUDIO_EVENT)) + ws.send(BytesMessage(zeros))
        sock.setblocking(True)
        try:
            sock.sendall(wire)
        except OSError:  # closed by the server
            closed = True
            break
        sent, messages = sent + len(wire), messages + 1
        pump(False)
        time.sleep(max(0.0, min(t0 + seconds, t0 + sent / rate) - time.monotonic()))
    sock.close()
    return {"compressed": compressed, "seconds": round(time.monotonic() - t0, 2), "messages": messages,
            "wire_bytes": sent, "errors_answered": sum(t.startswith(_EVENT + '["error"') for t in texts),
            "closed_by_server": code}


CLIENT_KINDS = ("lean", "socketio")


def make_client(kind: str, url: str, pcm: np.ndarray, **kwargs) -> StreamRecord:
    """A ``lean`` client (:class:`LeanClient`, driven by a :class:`ClientGroup`) or a ``socketio``
    one (:class:`~harness.LiveClient`, python-socketio in threads of its own)."""
    from harness import LiveClient

    if kind not in CLIENT_KINDS:
        raise ValueError(f"client kind must be one of {CLIENT_KINDS}")
    return LeanClient(url, pcm, **kwargs) if kind == "lean" else LiveClient(url, pcm, **kwargs)


def start_clients(clients: list[StreamRecord]) -> list[threading.Thread]:
    """Start ``clients`` (the lean ones together in one :class:`ClientGroup`); returns the threads
    to join."""
    lean = [c for c in clients if isinstance(c, LeanClient)]
    threads = [c for c in clients if not isinstance(c, LeanClient)]
    if lean:
        threads.append(ClientGroup(lean))
    for t in threads:
        t.start()
    return threads
