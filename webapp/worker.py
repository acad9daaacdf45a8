"""The inference worker: one thread that batches the windows of every stream.

Connections only queue :class:`~ser_model.streaming.WindowJob` s; this thread
takes everything queued (waiting ``batch_wait_ms`` after the first job), runs
``Recognizer.predict_proba`` on up to ``batch_max`` speech windows at a time and
emits each smoothed result to its client. Silent windows skip the model. A
summary request waits behind that client's windows in the same queue, so
``summary`` always follows the last ``emotion``.

Pipelining: with a model in another process (``submit``), the next batch is sent
before the last one's results are answered, so the model does not sit idle while
this thread smooths and emits (Python work that waits for the web process's GIL).

Overload: when a stream has several windows waiting, older ones that waited
more than ``coalesce_s`` are skipped in favour of its newest (fresh results at
a lower rate rather than ever older ones), and nothing older than ``stale_s``
is analysed; the client hears ``server_busy`` (at most every few seconds).

Failure: the thread survives any exception. A batch that fails is retried one
window at a time, so only the streams whose own window fails hear
``analysis_failed``; nothing taken from the queue is dropped without a word.

Dispatch: the worker counts each session's items it holds (queued or in the model) and their
total (:attr:`load`), so the stream hub can send a stream's next windows to the least busy lane
whenever none of its own are held here (:meth:`holds`), keeping each stream's answers in order.

Measurement: the model time per window (batched, as served) and the lag from a window being
due to its result being sent are tracked as moving averages; the stream hub admits new streams
from them (:meth:`capacity`, :attr:`lag_s`). The model's CPU time is counted too (metrics): less
than its time when its process waited for a core.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import numpy as np

from .service import ServiceThread

log = logging.getLogger(__name__)

BUSY_WARNING_S = 5.0  # tell a client about skipped hops at most this often
SMOOTHING = 0.2  # weight of the newest batch in the moving averages
LAG_FORGET_S = 1.0  # with no batch for this long, the lag reads 0
Emit = Callable[[str, dict, str], None]  # (event, payload, sid)


class InferenceWorker:
    """Single consumer of a job queue shared by the streams of one lane."""

    def __init__(self, recognizer, emit: Emit, *, batch_max: int = 32, batch_wait_ms: float = 5,
                 queue_max: int = 512, coalesce_s: float = 0.5, stale_s: float = 2.0, metrics=None,
                 name: str = "ser-inference"):
        self.recognizer, self.emit, self.metrics, self.name = recognizer, emit, metrics, name
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_ms / 1000
        self.coalesce_s, self.stale_s = coalesce_s, stale_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_max)
        self._service = ServiceThread(self._run, name)
        self._warned: dict[str, float] = {}  # sid -> when it was last told about skipped hops
        self._held: dict[int, int] = {}  # id(session) -> its items queued or in the model, not yet answered
        self._held_lock = threading.Lock()
        self.load = 0  # all such items: what a window queued now would wait behind
        self.stats = {"answered": 0, "windows": 0, "batches": 0, "dropped": 0, "errors": 0, "failed_windows": 0}
        self.window_cost_s: float | None = None  # model time per window, batched, moving average
        self._lag_s, self._last_batch = 0.0, 0.0

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self):
        """Start the thread once, or again if it died (safe to call from any connection)."""
        self._service.start()

    def stop(self, timeout: float = 2.0):
        self._service.stop(timeout)

    @property
    def alive(self) -> bool:
        return self._service.alive

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def holds(self, session) -> bool:
        """Whether any window or the summary of ``session`` is here, queued or in the model."""
        return id(session) in self._held

    def _hold(self, session, n: int = 1):
        """Count ``n`` more items of ``session`` held here (negative: fewer)."""
        with self._held_lock:
            left = self._held.get(id(session), 0) + n
            if left > 0:
                self._held[id(session)] = left
            else:
                self._held.pop(id(session), None)
            self.load = max(0, self.load + n)

    def _settle(self, items: list):
        """These items were answered, failed or dropped: they no longer hold their sessions here."""
        for item in items:
            self._hold(item[2], -1)

    # ---- measurement --------------------------------------------------------------------------
    def calibrate(self, windows: list[np.ndarray], repeats: int = 3):
        """Measure the model time per window on a batch like those served (before any stream)."""
        best = min(self._timed(windows) for _ in range(repeats))
        self.window_cost_s = best / len(windows)
        if self.metrics:
            self.metrics.window_cost.set(self.window_cost_s)

    def capacity(self, utilisation: float, windows_per_s: float) -> int:
        """Streams whose every window holds speech that keep the model ``utilisation`` busy."""
        if not self.window_cost_s:
            return 0
        return int(utilisation / (self.window_cost_s * windows_per_s))

    @property
    def lag_s(self) -> float:
        """Recent lag from a window being due to its result (0 when nothing was analysed lately)."""
        return self._lag_s if time.monotonic() - self._last_batch < LAG_FORGET_S else 0.0

    # ---- producers ----------------------------------------------------------------------------
    def submit(self, sid: str, session, jobs) -> bool:
        """Queue a stream's windows; False when the queue is full (the caller reports server_busy)."""
        self.start()
        now = time.monotonic()
        try:
            for job in jobs:
                self._hold(session)  # before the put: the thread may answer it at once
                self._queue.put_nowait(("window", sid, session, job, now))
        except queue.Full:
            self._hold(session, -1)  # the window that did not fit
            return False
        return True

    def finish(self, sid: str, session):
        """Emit ``summary`` to ``sid`` once the windows queued before it are done."""
        self.start()
        self._hold(session)
        self._queue.put(("summary", sid, session, None, time.monotonic()))

    # ---- the thread ---------------------------------------------------------------------------
    def _run(self):
        landing = None  # the batch the model is working on: (items, speech windows, handle)
        backlog: list = []  # kept items beyond batch_max, launched next
        while not self._service.stopping.is_set():
            try:
                if landing is None:
                    backlog = self._keep(backlog + self._collect(wait=not backlog))
                    if not backlog:
                        continue
                    landing, backlog = self._launch(backlog[:self.batch_max]), backlog[self.batch_max:]
                probs = self._results(*landing[1:])  # wait for the model
                # What came meanwhile goes to the model before this thread smooths and emits the
                # answers, so a model in another process works while this one answers.
                backlog = self._keep(backlog + self._drain())
                done, landing = landing, self._launch(backlog[:self.batch_max]) if backlog else None
                backlog = backlog[self.batch_max:]
                self._answer_all(done[0], probs)
            except Exception:  # noqa: BLE001 - a bug here must not end the service
                self.stats["errors"] += 1
                log.exception("inference worker step failed")
                lost = backlog + (landing[0] if landing is not None else [])
                self._fail(lost, "internal")
                self._settle(lost)
                landing, backlog = None, []

    def _collect(self, wait: bool = True) -> list:
        """Everything queued, waiting ``batch_wait_s`` after the first job for others to join
        (without ``wait``: only what is there now)."""
        if not wait:
            return self._drain()
        try:
            items = [self._queue.get(timeout=0.5)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_wait_s
        while (remaining := deadline - time.monotonic()) > 0 and len(items) < self.batch_max:
            try:
                items.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return items + self._drain()

    def _drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _keep(self, items: list) -> list:
        """Drop windows nobody wants any more (closed, stale, or superseded while the server lags)."""
        now = time.monotonic()
        newest = {}
        for i, (kind, _, session, _, _) in enumerate(items):
            if kind == "window":
                newest[id(session)] = i
        kept, dropped = [], []
        for i, item in enumerate(items):
            kind, sid, session, _, queued = item
            if kind == "window":
                late = now - queued
                if session.closed:
                    dropped.append(item)
                    continue
                if late > self.stale_s or (late > self.coalesce_s and newest[id(session)] != i):
                    self._skipped(sid, now)
                    dropped.append(item)
                    continue
            kept.append(item)
        self._settle(dropped)
        return kept

    def _skipped(self, sid: str, now: float):
        self.stats["dropped"] += 1
        if self.metrics:
            self.metrics.hops_skipped.inc()
        if now - self._warned.get(sid, -BUSY_WARNING_S) >= BUSY_WARNING_S:
            if len(self._warned) > 10_000:  # sids of streams that vanished without stop
                self._warned.clear()
            self._warned[sid] = now
            self.emit("error", {"code": "server_busy", "message": "the server is overloaded; some hops were skipped"},
                      sid)

    def _launch(self, items: list) -> tuple:
        """Start the model on the speech windows of ``items`` (silence needs no model)."""
        speech = [item for item in items if item[0] == "window" and item[3].speech]
        handle = None
        if speech:
            try:
                handle = self._send([item[3] for item in speech])
            except Exception:  # noqa: BLE001 - retried window by window when landed
                log.exception("could not start inference on %d windows", len(speech))
        return items, speech, handle

    def _answer_all(self, items: list, probs: dict[int, tuple]):
        for item in items:
            try:
                self._answer(item, probs)
            except Exception:  # noqa: BLE001 - a bug for one stream: tell it, serve the others
                self.stats["errors"] += 1
                log.exception("could not answer a window")
                self._fail([item], "internal")
            finally:
                self._settle([item])

    def _answer(self, item: tuple, probs: dict[int, tuple]):
        kind, sid, session, job, queued = item
        if kind == "summary":
            self._warned.pop(sid, None)
            self.emit("summary", session.summary(), sid)
            return
        p, stats = probs.get(id(item), (None, None))
        if job.speech and p is None:  # its analysis failed: tell that client, nobody else
            self._fail([item], "analysis_failed")
            return
        event = session.apply(job, p, stats)
        if not session.closed:
            self.emit("emotion", event, sid)
            self.stats["answered"] += 1
            self._observe_lag(time.monotonic() - queued)

    def _results(self, speech: list, handle) -> dict[int, tuple]:
        """(probabilities, statistics or None) by item id: the batch's, or window by window if the
        batch failed."""
        if not speech:
            return {}
        try:
            if handle is None:
                raise RuntimeError("the batch was not started")
            probs, stats, seconds, cpu_seconds = handle()
            self._observe_batch(seconds, len(speech), cpu_seconds)
            return {id(item): (p, None if stats is None else stats[i]) for i, (item, p) in enumerate(zip(speech, probs))}
        except Exception:  # noqa: BLE001 - find the window(s) at fault, serve the others
            log.exception("inference batch of %d windows failed; retrying one by one", len(speech))
        out = {}
        for item in speech:
            try:
                probs, stats, *_ = self._send([item[3]])()
                out[id(item)] = (probs[0], None if stats is None else stats[0])
            except Exception:  # noqa: BLE001
                pass
        return out

    def _send(self, jobs: list):
        """Start the model on these windows; the returned call waits for (probabilities,
        statistics or None, model seconds, CPU seconds of the model's process or thread). A
        predictor with ``submit`` (a model process) computes meanwhile, while this thread answers
        the previous batch; any other computes when called. Voice profiles, session centres and
        shares are passed only when a window has one, so predictors that cannot adapt keep the
        one-argument call."""
        windows = [j.audio for j in jobs]
        profiles, centres = [j.profile for j in jobs], [j.centre for j in jobs]
        shares = [j.session_share if j.centre is not None and j.session_share < 1 else None for j in jobs]  # hand-over
        kwargs = {k: v for k, v in (("profiles", profiles), ("centres", centres), ("shares", shares))
                  if any(x is not None for x in v)}
        submit = getattr(self.recognizer, "submit", None)
        if submit is not None:
            return submit(windows, **kwargs)
        analyse = getattr(self.recognizer, "analyse", None)

        def compute():
            start, cpu = time.perf_counter(), time.thread_time()
            if analyse is not None:
                probs, stats = analyse(windows, **kwargs)
            else:
                probs, stats = self.recognizer.predict_proba(windows, **kwargs), None
            return probs, stats, time.perf_counter() - start, time.thread_time() - cpu
        return compute

    def _fail(self, items: list, code: str):
        """Tell each client whose window or summary could not be served."""
        for kind, sid, session, job, _ in items:
            if session.closed and kind == "window":
                continue
            self.stats["failed_windows"] += kind == "window"
            if self.metrics and kind == "window":
                self.metrics.window_errors.inc()
            where = f" ({job.t0:.1f}-{job.t1:.1f} s)" if job is not None else ""
            try:
                self.emit("error", {"code": code, "message": f"the server could not analyse some audio{where}"}, sid)
            except Exception:  # noqa: BLE001 - the client may be gone
                log.exception("could not tell %s about a failure", sid)

    def _timed(self, windows: list[np.ndarray]) -> float:
        start = time.perf_counter()
        self.recognizer.predict_proba(windows)
        return time.perf_counter() - start

    def _observe_batch(self, seconds: float, n: int, cpu_seconds: float):
        self.stats["windows"] += n
        self.stats["batches"] += 1
        per_window = seconds / n
        self.window_cost_s = per_window if self.window_cost_s is None \
            else (1 - SMOOTHING) * self.window_cost_s + SMOOTHING * per_window
        if self.metrics:
            self.metrics.windows.inc(n)
            self.metrics.inference_batch.observe(seconds)
            self.metrics.inference_cpu.inc(cpu_seconds)
            self.metrics.window_cost.set(self.window_cost_s)

    def _observe_lag(self, lag: float):
        now = time.monotonic()
        recent = now - self._last_batch < LAG_FORGET_S
        self._lag_s = (1 - SMOOTHING) * self._lag_s + SMOOTHING * lag if recent else lag
        self._last_batch = now
        if self.metrics:
            self.metrics.inference_lag.observe(lag)
