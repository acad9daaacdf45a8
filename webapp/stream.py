"""Socket.IO namespace ``/stream``: per-connection sessions, audio in, emotions out.

Handlers stay small and never run a model: ``audio`` gives the frame to the
connection's :class:`~ser_model.streaming.StreamSession` (checks and resampling)
and leaves the stream to the :class:`VadBatcher`, which judges every stream's new
audio in one pass of the VAD and queues the windows that became due on the
stream's :class:`InferenceWorker` (its lane).
Bad input answers that client with ``error`` {code, message}; nobody else notices.

Admission: a stream starts only while the inference can serve it (from the
measured model time per window and the current lag), the client address holds
fewer than ``STREAMS_PER_CLIENT`` streams, and ``MAX_STREAMS`` is not reached.
A started stream that sends no audio for ``IDLE_STREAM_S`` is closed with
``idle_timeout``; a vanished client is dropped by Engine.IO's ping timeout.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from flask import current_app, request
from flask_socketio import emit

from ser_model.inference import HOP_S
from ser_model.streaming import MAX_UNJUDGED_S, StreamError, StreamSession

from . import memory
from .extensions import socketio
from .limits import PerClient, RateLimit
from .vad_batch import VadBatcher
from .worker import InferenceWorker

NAMESPACE = "/stream"
REAP_EVERY_S = 1.0
TRIM_EVERY_TICKS = 30  # give freed memory back to the system every 30 s (see webapp/memory.py)
RECALIBRATE_EVERY_TICKS = 5  # measure a lane that could not be measured yet
MIN_CALIBRATE_S, MAX_CALIBRATE_S = 2.0, 10.0  # speech collected for a voice profile (start's calibrate_s)
LANE_DISPATCHES = ("window", "stream")  # config LANE_DISPATCH: see StreamHub
NOT_STARTED_EVERY_S = 2.0  # tell a client that sends audio without a stream at most this often
log = logging.getLogger("ser.stream")


@dataclass
class Stream:
    """One started stream: its session, owner address, rate limit and bookkeeping."""

    session: StreamSession
    client: str
    limit: RateLimit
    lane: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.monotonic)
    last_audio: float = field(default_factory=time.monotonic)


CPU_BATCH_MAX = 4  # windows per model call on CPU: served batches of up to 4 kept 56 streams where 32 lost them
GPU_BATCH_MAX = 32


def lane_batch_max(config) -> int:
    """``BATCH_MAX``, "auto" resolved by ``INFERENCE_DEVICE``: on CPU a lane's model shares caches with the
    web process and the other lanes, and a bigger batch costs more per window, so a lane that falls
    behind would fall further (docs/benchmarks.md); a GPU wants big batches."""
    value = config["BATCH_MAX"]
    if value in ("auto", None, 0):
        return GPU_BATCH_MAX if str(config["INFERENCE_DEVICE"]).startswith("cuda") else CPU_BATCH_MAX
    return int(value)


class StreamHub:
    """Started streams of one app, by Socket.IO sid, and the inference lanes they share.

    ``predictors`` (default: the recognizer itself, one lane) each get an InferenceWorker; a new
    stream goes to the lane with the fewest streams. With ``LANE_DISPATCH`` "window" its windows
    then go to whichever lane has the least waiting, but only when none of its own wait anywhere,
    so each stream's windows are still analysed, smoothed and emitted in order; with "stream" it
    stays on its first lane.
    """

    def __init__(self, recognizer, config, metrics=None, predictors: list | None = None):
        self.recognizer, self.config, self.metrics = recognizer, config, metrics
        if config["LANE_DISPATCH"] not in LANE_DISPATCHES:
            raise ValueError(f"LANE_DISPATCH must be one of {LANE_DISPATCHES}, got {config['LANE_DISPATCH']!r}")
        self.predictors = predictors if predictors is not None else [recognizer]
        self.workers = [InferenceWorker(
            p, _emit_to, batch_max=lane_batch_max(config), batch_wait_ms=config["BATCH_WAIT_MS"],
            queue_max=config["QUEUE_MAX"], coalesce_s=config["COALESCE_S"], stale_s=config["STALE_S"],
            metrics=metrics, name=f"ser-inference-{i}") for i, p in enumerate(self.predictors)]
        self._lane_load = [0] * len(self.workers)
        self.vad = VadBatcher(self._deliver, config["VAD_BATCH_MS"], metrics)
        self._calibration = None  # the windows lanes are measured with
        self._streams: dict[str, Stream] = {}
        self._clients = PerClient(config["STREAMS_PER_CLIENT"])
        self._not_started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._stopping = threading.Event()
        if metrics:
            metrics.streams_active.set_function(lambda: self.active)
            metrics.stream_capacity.set_function(self.capacity)

    @property
    def active(self) -> int:
        return len(self._streams)

    @property
    def worker(self) -> InferenceWorker:
        """The first lane (the only one in a one-lane setup)."""
        return self.workers[0]

    @property
    def alive(self) -> bool:
        return all(w.alive for w in self.workers) and self.vad.alive

    @property
    def lag_s(self) -> float:
        return max(w.lag_s for w in self.workers)

    @property
    def pending(self) -> int:
        return sum(w.pending for w in self.workers)

    @property
    def window_cost_s(self) -> float | None:
        """Mean measured model time per window over the lanes (None before any measurement)."""
        costs = [w.window_cost_s for w in self.workers if w.window_cost_s]
        return sum(costs) / len(costs) if costs else None

    def capacity(self) -> int:
        """Streams admitted at most now: the lanes' measured inference capacity, within MAX_STREAMS."""
        measured = sum(w.capacity(self.config["ADMIT_UTILISATION"], 1 / HOP_S) for w in self.workers)
        return min(int(self.config["MAX_STREAMS"]), measured)

    def calibrate(self, windows):
        """Measure each lane's model time per window (in parallel: lanes are separate cores). A lane
        whose model cannot answer yet (an inference tier still starting) admits nothing; the reaper
        measures it again every few seconds."""
        self._calibration = windows
        threads = [threading.Thread(target=self._calibrate_lane, args=(w,)) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _calibrate_lane(self, worker: InferenceWorker):
        try:
            worker.calibrate(self._calibration)
        except Exception as exc:  # noqa: BLE001 - measured again later
            log.warning("inference lane %s not ready: %s", worker.name, exc)

    def start_background(self):
        """Start the inference threads, the VAD batcher and the idle-stream reaper (once)."""
        for w in self.workers:
            w.start()
        self.vad.start()
        with self._lock:
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap_forever, name="ser-reaper", daemon=True)
                self._reaper.start()

    def stop_background(self):
        self._stopping.set()
        self.vad.stop()
        for w in self.workers:
            w.stop()
        for p in self.predictors:
            if hasattr(p, "close"):
                p.close()

    # ---- events -------------------------------------------------------------------------------
    def start(self, sid: str, data, client: str) -> str:
        """Open (or restart) the stream of ``sid``; returns the session id."""
        if self.recognizer is None:
            raise StreamError("no_model", "no emotion model is loaded on the server")
        rate = data.get("sample_rate") if isinstance(data, dict) else None
        calibrate_s = data.get("calibrate_s") if isinstance(data, dict) else None
        if calibrate_s is not None:
            if isinstance(calibrate_s, bool) or not isinstance(calibrate_s, (int, float)) \
                    or not MIN_CALIBRATE_S <= calibrate_s <= MAX_CALIBRATE_S:
                raise StreamError("bad_start", f"calibrate_s must be {MIN_CALIBRATE_S:g} to {MAX_CALIBRATE_S:g} seconds")
            if not getattr(self.recognizer, "adapts", False):
                raise StreamError("no_adaptation", "this model cannot adapt to a voice; start without calibrate_s")
        threshold = getattr(self.recognizer, "uncertain_threshold", lambda adapted=False, session=False: None)
        try:
            session = StreamSession(rate, max_duration_s=self.config["MAX_STREAM_S"],
                                    uncertain_below=threshold(False), uncertain_below_adapted=threshold(True),
                                    uncertain_below_session=threshold(False, True), calibrate_s=calibrate_s,
                                    max_unjudged_s=self.config["STREAM_BURST_S"] + MAX_UNJUDGED_S)
        except ValueError as exc:
            raise StreamError("bad_start", f"start needs {{'sample_rate': int}}: {exc}") from None
        self.start_background()
        with self._lock:
            old = self._streams.pop(sid, None)
            if old:
                self._release(old)
            try:
                self._admit(client)
            except StreamError as exc:
                if old:  # a refused restart ends the old stream too
                    old.session.close()
                    self._closed(old, "refused_restart")
                if self.metrics:
                    self.metrics.streams_refused.labels(exc.code).inc()
                raise
            lane = min(range(len(self.workers)), key=lambda i: self._lane_load[i])
            self._lane_load[lane] += 1
            stream = self._streams[sid] = Stream(session, client, RateLimit(self.config["STREAM_BURST_S"],
                                                                            self.config["STREAM_RATE"]), lane)
        if old:
            old.session.close()
            self._closed(old, "restarted")
        self._not_started.pop(sid, None)
        if self.metrics:
            self.metrics.streams_started.inc()
        log.info("stream started", extra={"event": "stream_start", "stream": stream.id, "sample_rate": rate,
                                          "active": self.active})
        return stream.id

    def _admit(self, client: str):
        """Raise StreamError unless one more stream can be served well (call with the lock held)."""
        if self.active >= self.capacity():
            raise StreamError("server_busy", "the server is at capacity; try again in a minute")
        if self.lag_s > self.config["ADMIT_MAX_LAG_S"]:
            raise StreamError("server_busy", "the server is lagging; try again in a minute")
        if not self._clients.acquire(client):
            raise StreamError("too_many_streams", f"at most {self.config['STREAMS_PER_CLIENT']} live streams "
                                                  "per client; stop another one first")

    def audio(self, sid: str, payload):
        stream = self._streams.get(sid)
        if stream is None:
            now = time.monotonic()
            if now - self._not_started.get(sid, -NOT_STARTED_EVERY_S) < NOT_STARTED_EVERY_S:
                return  # already told: do not answer every frame of a client that keeps sending
            self._not_started[sid] = now
            raise StreamError("not_started", "send start with the sample rate before audio")
        session = stream.session
        stream.last_audio = time.monotonic()
        if isinstance(payload, (bytes, bytearray)) and len(payload) <= session.max_frame_bytes \
                and not stream.limit.allow(len(payload) / 2 / session.sample_rate):
            raise StreamError("too_fast", "audio arrives faster than real time; frame dropped")
        session.receive(payload)
        self.vad.add(sid, stream)

    def _deliver(self, sid: str, stream: Stream, jobs: list, stopping: bool, failed: bool):
        """The VAD batcher's answer for one stream: queue its due windows on its lane; after its
        stop, the summary behind them; once its calibration speech is in, its voice profile."""
        speech = stream.session.take_calibration()
        if speech is not None:  # a few windows of the model: not in the VAD's thread
            threading.Thread(target=self._calibrate, args=(sid, stream.session, speech), name="ser-calibrate",
                             daemon=True).start()
        lane = self._lane_for(sid, stream) if jobs or stopping else None  # most rounds bring a stream neither
        if failed:
            _emit_to("error", {"code": "analysis_failed", "message": "the server could not analyse some audio"}, sid)
        elif jobs and not lane.submit(sid, stream.session, jobs) and not stopping:
            _emit_to("error", {"code": "server_busy", "message": "the server is overloaded; some audio was not analysed"},
                     sid)
        if stopping:
            lane.finish(sid, stream.session)

    def _lane_for(self, sid: str, stream: Stream) -> InferenceWorker:
        """The lane for a stream's next windows: its own while any of its windows wait there (its
        answers keep their order), else the one with the least waiting, its own on a tie. A lane
        slowed by a busy core then gets fewer windows, and streams that stop leave no lane idle."""
        home = self.workers[stream.lane]
        if len(self.workers) == 1 or self.config["LANE_DISPATCH"] != "window" or home.holds(stream.session):
            return home
        best = min(range(len(self.workers)), key=lambda i: (self.workers[i].load, i != stream.lane))
        if best != stream.lane:
            with self._lock:
                if self._streams.get(sid) is stream:  # still started: its slot moves too (else it was given back)
                    self._lane_load[stream.lane] -= 1
                    self._lane_load[best] += 1
                stream.lane = best
        return self.workers[best]

    def _calibrate(self, sid: str, session, speech):
        """Make the stream's voice profile from its first seconds of speech (a few windows of the
        model, once per stream) and say so with ``calibrated``."""
        from ser_model.inference import ProfileError

        try:
            session.set_profile(self.recognizer.voice_profile(speech))
            _emit_to("calibrated", {"ok": True, "speech_s": round(len(speech) / 16000, 2)}, sid)
        except ProfileError as exc:
            session.set_profile(None)
            _emit_to("calibrated", {"ok": False, "error": str(exc)}, sid)

    def stop(self, sid: str):
        """Analyse what is left, then ``summary`` (from the worker, after the last ``emotion``)."""
        stream = self._remove(sid)
        if stream is None:
            raise StreamError("not_started", "stop without start")
        self.vad.add(sid, stream, stopping=True)
        self._closed(stream, "stopped")

    def drop(self, sid: str, how: str = "disconnected"):
        self._not_started.pop(sid, None)
        stream = self._remove(sid)
        if stream:
            stream.session.close()
            self._closed(stream, how)

    # ---- internals ----------------------------------------------------------------------------
    def _remove(self, sid: str) -> Stream | None:
        with self._lock:
            stream = self._streams.pop(sid, None)
            if stream:
                self._release(stream)
        return stream

    def _release(self, stream: Stream):
        """Give back the stream's per-client and lane slots (call with the lock held)."""
        self._clients.release(stream.client)
        self._lane_load[stream.lane] -= 1

    def _closed(self, stream: Stream, how: str):
        if self.metrics:
            self.metrics.streams_closed.labels(how).inc()
        log.info("stream ended", extra={"event": "stream_end", "stream": stream.id, "how": how,
                                        "audio_s": round(stream.session.duration, 2),
                                        "wall_s": round(time.monotonic() - stream.started, 2)})

    def reap(self, now: float | None = None) -> list[str]:
        """Close started streams that sent no audio for IDLE_STREAM_S; returns their sids."""
        now = time.monotonic() if now is None else now
        idle_s = float(self.config["IDLE_STREAM_S"])
        idle = [sid for sid, s in list(self._streams.items()) if now - s.last_audio > idle_s]
        for sid in idle:
            self.drop(sid, "idle")
            _emit_to("error", {"code": "idle_timeout",
                               "message": f"no audio for {idle_s:g} s: the stream was closed; send start again"}, sid)
        if len(self._not_started) > 10_000:
            self._not_started.clear()
        return idle

    def _reap_forever(self):
        ticks = 0
        while not self._stopping.wait(REAP_EVERY_S):
            ticks += 1
            try:
                if ticks % TRIM_EVERY_TICKS == 0:
                    memory.trim()
                if ticks % RECALIBRATE_EVERY_TICKS == 0 and self._calibration is not None:
                    for w in self.workers:
                        if w.window_cost_s is None:
                            self._calibrate_lane(w)
                self.reap()
                for w in self.workers:
                    w.start()  # revive an inference thread if anything killed it
                self.vad.start()
            except Exception:  # noqa: BLE001 - keep reaping
                log.exception("reaper step failed")


def init_app(app, recognizer, metrics=None, predictors=None):
    """The app's stream hub; call after ``socketio.init_app`` (``audio`` is bound to its server)."""
    hub = app.extensions["ser_stream"] = StreamHub(recognizer, app.config, metrics, predictors)

    def on_audio(sid, *args):
        """A PCM frame, four a second per stream: handled without Flask's request context, which
        the other events get (building it was a tenth of the web process's work per stream)."""
        try:
            hub.audio(sid, args[0] if args else None)
        except StreamError as exc:
            _emit_to("error", {"code": exc.code, "message": str(exc)}, sid)
        except Exception:  # noqa: BLE001 - a bug: tell that client, keep serving everyone
            log.exception("audio handler failed")
            _emit_to("error", {"code": "internal", "message": "internal server error"}, sid)

    socketio.server.on("audio", on_audio, namespace=NAMESPACE)
    return hub


def _hub() -> StreamHub:
    return current_app.extensions["ser_stream"]


def _emit_to(event: str, payload: dict, sid: str):
    """To a client of this process: straight to its socket, not through the message queue."""
    socketio.emit(event, payload, to=sid, namespace=NAMESPACE, ignore_queue=True)


def _error(exc: StreamError):
    emit("error", {"code": exc.code, "message": str(exc)})


@socketio.on("start", namespace=NAMESPACE)
def on_start(data=None):
    """Ack {ok, session} or {ok: false, error} (also sent as an ``error`` event)."""
    try:
        return {"ok": True, "session": _hub().start(request.sid, data, request.remote_addr or "?")}
    except StreamError as exc:
        _error(exc)
        return {"ok": False, "error": str(exc), "code": exc.code}


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
