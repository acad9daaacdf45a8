"""The inference worker: one thread that batches the windows of every stream.

Connections only queue :class:`~ser_model.streaming.WindowJob` s; this thread
takes everything queued (waiting ``batch_wait_ms`` after the first job), runs
``Recognizer.predict_proba`` on up to ``batch_max`` speech windows at a time and
emits each smoothed result to its client. Silent windows skip the model. A
summary request waits behind that client's windows in the same queue, so
``summary`` always follows the last ``emotion``.

Overload: when a stream has several windows waiting, older ones that waited
more than ``coalesce_s`` are skipped in favour of its newest (fresh results at
a lower rate rather than ever older ones), and nothing older than ``stale_s``
is analysed; the client hears ``server_busy`` (at most every few seconds).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

BUSY_WARNING_S = 5.0  # tell a client about skipped hops at most this often
Emit = Callable[[str, dict, str], None]  # (event, payload, sid)


class InferenceWorker:
    """Single consumer of a job queue shared by all streams."""

    def __init__(self, recognizer, emit: Emit, *, batch_max: int = 32, batch_wait_ms: float = 5,
                 queue_max: int = 512, coalesce_s: float = 0.5, stale_s: float = 2.0):
        self.recognizer, self.emit = recognizer, emit
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_ms / 1000
        self.coalesce_s, self.stale_s = coalesce_s, stale_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_max)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._warned: dict[str, float] = {}  # sid -> when it was last told about skipped hops
        self.stats = {"windows": 0, "batches": 0, "dropped": 0, "errors": 0}

    def start(self):
        """Start the thread once (safe to call from any connection)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="ser-inference", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 2.0):
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, sid: str, session, jobs) -> bool:
        """Queue a stream's windows; False when the queue is full (the caller reports server_busy)."""
        self.start()
        now = time.monotonic()
        try:
            for job in jobs:
                self._queue.put_nowait(("window", sid, session, job, now))
        except queue.Full:
            return False
        return True

    def finish(self, sid: str, session):
        """Emit ``summary`` to ``sid`` once the windows queued before it are done."""
        self.start()
        self._queue.put(("summary", sid, session, None, time.monotonic()))

    def _run(self):
        while not self._stopping.is_set():
            items = self._keep(self._collect())
            for start in range(0, len(items), self.batch_max):
                chunk = items[start:start + self.batch_max]
                try:
                    self._process(chunk)
                except Exception:  # one bad batch must not stop the service
                    self.stats["errors"] += 1
                    log.exception("inference batch failed")
                    for sid in {item[1] for item in chunk}:
                        self.emit("error", {"code": "internal", "message": "analysis failed for some audio"}, sid)

    def _collect(self) -> list:
        """Everything queued, waiting ``batch_wait_s`` after the first job for others to join."""
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
        kept = []
        for i, item in enumerate(items):
            kind, sid, session, _, queued = item
            if kind == "window":
                late = now - queued
                if session.closed:
                    continue
                if late > self.stale_s or (late > self.coalesce_s and newest[id(session)] != i):
                    self._skipped(sid, now)
                    continue
            kept.append(item)
        return kept

    def _skipped(self, sid: str, now: float):
        self.stats["dropped"] += 1
        if now - self._warned.get(sid, -BUSY_WARNING_S) >= BUSY_WARNING_S:
            if len(self._warned) > 10_000:  # sids of streams that vanished without stop
                self._warned.clear()
            self._warned[sid] = now
            self.emit("error", {"code": "server_busy", "message": "the server is overloaded; some hops were skipped"},
                      sid)

    def _process(self, items: list):
        speech = [item for item in items if item[0] == "window" and item[3].speech]  # silence needs no model
        probs = self.recognizer.predict_proba([item[3].audio for item in speech]) if speech else []
        self.stats["windows"] += len(speech)
        self.stats["batches"] += 1 if speech else 0
        by_item = {id(item): p for item, p in zip(speech, probs)}
        for item in items:
            kind, sid, session, job, _ = item
            if kind == "window":
                event = session.apply(job, by_item.get(id(item)))
                if not session.closed:
                    self.emit("emotion", event, sid)
            else:
                self._warned.pop(sid, None)
                self.emit("summary", session.summary(), sid)
