"""Socket.IO namespace ``/stream``: per-connection sessions, audio in, emotions out.

Handlers stay small and never run the model: ``audio`` feeds the connection's
:class:`~ser_model.streaming.StreamSession` (resampling + VAD, a few ms) and
queues the windows that became due on the shared :class:`InferenceWorker`.
Bad input answers that client with ``error`` {code, message}; nobody else notices.
"""
from __future__ import annotations

import threading
import time
import uuid

from flask import current_app, request
from flask_socketio import emit

from ser_model.streaming import StreamError, StreamSession

from .extensions import socketio
from .worker import InferenceWorker

NAMESPACE = "/stream"


class RateLimit:
    """Token bucket over seconds of audio: ``burst_s`` ahead of real time, refilled at ``rate`` x."""

    def __init__(self, burst_s: float, rate: float, clock=time.monotonic):
        self.burst_s, self.rate, self.clock = burst_s, rate, clock
        self.tokens, self.last = burst_s, clock()

    def allow(self, seconds: float) -> bool:
        now = self.clock()
        self.tokens = min(self.burst_s, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if seconds > self.tokens:
            return False
        self.tokens -= seconds
        return True


class StreamHub:
    """Started streams of one app, by Socket.IO sid, and the inference worker they share."""

    def __init__(self, recognizer, config):
        self.recognizer, self.config = recognizer, config
        self.worker = InferenceWorker(
            recognizer, _emit_to, batch_max=config["BATCH_MAX"], batch_wait_ms=config["BATCH_WAIT_MS"],
            queue_max=config["QUEUE_MAX"], coalesce_s=config["COALESCE_S"], stale_s=config["STALE_S"])
        self._streams: dict[str, tuple[StreamSession, RateLimit]] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return len(self._streams)

    def start(self, sid: str, data) -> str:
        """Open (or restart) the stream of ``sid``; returns the session id."""
        if self.recognizer is None:
            raise StreamError("no_model", "no emotion model is loaded on the server")
        rate = data.get("sample_rate") if isinstance(data, dict) else None
        try:
            session = StreamSession(rate, max_duration_s=self.config["MAX_STREAM_S"])
        except ValueError as exc:
            raise StreamError("bad_start", f"start needs {{'sample_rate': int}}: {exc}") from None
        limit = RateLimit(self.config["STREAM_BURST_S"], self.config["STREAM_RATE"])
        with self._lock:
            if sid not in self._streams and len(self._streams) >= self.config["MAX_STREAMS"]:
                raise StreamError("server_busy", "too many live streams; try again later")
            old = self._streams.get(sid)
            self._streams[sid] = (session, limit)
        if old:
            old[0].close()
        self.worker.start()
        return uuid.uuid4().hex[:12]

    def audio(self, sid: str, payload):
        entry = self._streams.get(sid)
        if entry is None:
            raise StreamError("not_started", "send start with the sample rate before audio")
        session, limit = entry
        if isinstance(payload, (bytes, bytearray)) and len(payload) <= session.max_frame_bytes \
                and not limit.allow(len(payload) / 2 / session.sample_rate):
            raise StreamError("too_fast", "audio arrives faster than real time; frame dropped")
        jobs = session.feed(payload)
        if jobs and not self.worker.submit(sid, session, jobs):
            raise StreamError("server_busy", "the server is overloaded; some audio was not analysed")

    def stop(self, sid: str):
        """Analyse what is left, then ``summary`` (from the worker, after the last ``emotion``)."""
        with self._lock:
            entry = self._streams.pop(sid, None)
        if entry is None:
            raise StreamError("not_started", "stop without start")
        session = entry[0]
        self.worker.submit(sid, session, session.flush())
        self.worker.finish(sid, session)

    def drop(self, sid: str):
        with self._lock:
            entry = self._streams.pop(sid, None)
        if entry:
            entry[0].close()


def init_app(app, recognizer):
    app.extensions["ser_stream"] = StreamHub(recognizer, app.config)


def _hub() -> StreamHub:
    return current_app.extensions["ser_stream"]


def _emit_to(event: str, payload: dict, sid: str):
    socketio.emit(event, payload, to=sid, namespace=NAMESPACE)


def _error(exc: StreamError):
    emit("error", {"code": exc.code, "message": str(exc)})


@socketio.on("start", namespace=NAMESPACE)
def on_start(data=None):
    """Ack {ok, session} or {ok: false, error} (also sent as an ``error`` event)."""
    try:
        return {"ok": True, "session": _hub().start(request.sid, data)}
    except StreamError as exc:
        _error(exc)
        return {"ok": False, "error": str(exc), "code": exc.code}


@socketio.on("audio", namespace=NAMESPACE)
def on_audio(payload=None):
    try:
        _hub().audio(request.sid, payload)
    except StreamError as exc:
        _error(exc)


@socketio.on("stop", namespace=NAMESPACE)
def on_stop(data=None):
    try:
        _hub().stop(request.sid)
    except StreamError as exc:
        _error(exc)


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    _hub().drop(request.sid)


@socketio.on_error(NAMESPACE)
def on_unexpected(exc):
    """A bug in a handler: tell that client, keep serving everyone."""
    current_app.logger.exception("stream handler failed")
    emit("error", {"code": "internal", "message": "internal server error"})
