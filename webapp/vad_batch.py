"""The VAD batcher: one thread judges every live stream's new audio in one pass of the VAD.

Silero VAD was half of the web process's work per stream (a 32 ms chunk costs about 0.1 ms as
its own call; docs/benchmarks.md). A connection therefore only checks and resamples its frame
(``StreamSession.receive``) and leaves the stream here; every ``tick_ms`` this thread judges the
new audio of all streams that sent some in one pass (``ser_model.streaming.advance``: every chunk
of every stream through Silero's convolutions at once, its LSTM chunk position by chunk position)
and hands each stream's due windows to ``deliver``. A frame waits at most one tick; a stream's
windows, and its ``stop``, keep their order.

With ``tick_ms`` 0 there is no thread: each stream is judged alone in the caller's thread.
Failure: the thread survives any exception; the streams of a round that fails are told
(``deliver`` with ``failed``, at most every ``NOTICE_EVERY_S`` per stream), and their later audio
is judged as usual.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ser_model.streaming import advance

from .service import ServiceThread

log = logging.getLogger(__name__)
NOTICE_EVERY_S = 5.0  # tell a stream about failed rounds at most this often

# deliver(sid, stream, jobs, stopping, failed): the windows of a stream that became due, after its
# stop (``stopping``: no more will come), or nothing and ``failed`` when its audio could not be judged.
Deliver = Callable[[str, object, list, bool, bool], None]


class VadBatcher:
    """Streams with unjudged audio, by stream id, and the thread that judges them together."""

    def __init__(self, deliver: Deliver, tick_ms: float = 40, metrics=None, name: str = "ser-vad"):
        self.deliver, self.tick_s, self.metrics, self.name = deliver, max(0.0, float(tick_ms)) / 1000, metrics, name
        self._pending: dict[str, tuple] = {}  # stream id -> (sid, stream, stopping); one entry per stream
        self._wake = threading.Condition()
        self._service = ServiceThread(self._run, name) if self.tick_s else None  # no tick: no thread
        self.stats = {"rounds": 0, "streams": 0, "errors": 0}
        self._told: dict[str, float] = {}  # stream id -> when it was last told about a failed round

    def add(self, sid: str, stream, stopping: bool = False):
        """Judge this stream's new audio soon; ``stopping``: then flush it (its last windows)."""
        if not self.tick_s:
            self._judge([(sid, stream, stopping)])
            return
        self.start()
        with self._wake:
            queued = self._pending.get(stream.id)
            self._pending[stream.id] = (sid, stream, stopping or (queued is not None and queued[2]))
            self._wake.notify()

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self):
        """Start the thread once, or again if it died (a no-op without a tick)."""
        if self._service is not None:
            self._service.start()

    def stop(self, timeout: float = 2.0):
        if self._service is not None:
            self._service.stopping.set()
            with self._wake:
                self._wake.notify()
            self._service.stop(timeout)

    @property
    def alive(self) -> bool:
        return self._service is None or self._service.alive

    # ---- the thread ---------------------------------------------------------------------------
    def _run(self):
        while not self._service.stopping.is_set():
            with self._wake:
                if not self._pending:
                    self._wake.wait(0.5)
                    continue
            time.sleep(self.tick_s)  # let the other streams' frames of this tick join
            with self._wake:
                batch, self._pending = list(self._pending.values()), {}
            self._judge(batch)

    def _judge(self, batch: list[tuple]):
        """One round: judge the streams together and deliver each one's windows."""
        batch = [item for item in batch if not item[1].session.closed]
        if not batch:
            return
        start = time.perf_counter()
        try:
            windows = advance([stream.session for _, stream, _ in batch])
            windows = [jobs + stream.session.flush() if stopping else jobs  # stopped: the resampler's
                       for (_, stream, stopping), jobs in zip(batch, windows)]  # tail, a last window
            failed = False
        except Exception:  # noqa: BLE001 - a bug here must not end the service
            self.stats["errors"] += 1
            log.exception("judging %d streams failed", len(batch))
            windows, failed = [[] for _ in batch], True
        self.stats["rounds"] += 1
        self.stats["streams"] += len(batch)
        if self.metrics:
            self.metrics.vad_round.observe(time.perf_counter() - start)
            self.metrics.vad_streams.inc(len(batch))
        now = time.monotonic()
        if len(self._told) > 10_000:  # streams long gone
            self._told.clear()
        for (sid, stream, stopping), jobs in zip(batch, windows):
            tell = failed and now - self._told.get(stream.id, -NOTICE_EVERY_S) >= NOTICE_EVERY_S
            if tell:
                self._told[stream.id] = now
            if failed and not tell and not stopping:
                continue
            try:
                self.deliver(sid, stream, jobs, stopping, tell)
            except Exception:  # noqa: BLE001 - one stream's delivery must not cost the others theirs
                log.exception("could not deliver the windows of %s", sid)
