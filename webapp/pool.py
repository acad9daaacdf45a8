"""Where the model runs for live streams: predictors, one per inference lane.

A lane is an :class:`~webapp.worker.InferenceWorker` (a thread and its queue) plus a predictor
with ``predict_proba(windows) -> (N, 7)``. The stream hub gives each new stream to the least
loaded lane, so ``INFERENCE_WORKERS`` lanes use that many cores. A predictor is either

- :class:`ProcessPredictor`: the model in a child process of its own (one torch thread, or a
  GPU with ``device="cuda"``), fed windows over a pipe; the web process keeps the sockets and
  the cheap per-connection state (resampling, VAD). The default: processes share no GIL.
- the in-process ``Recognizer`` itself (``INFERENCE_MODE="thread"``): lanes are threads; what
  tests and one-lane setups use.

A child that dies is started again on the next call; the call that found it dead raises
:class:`PredictorError`, so only the windows in hand fail (their streams hear ``analysis_failed``).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300  # importing torch and loading the model on a busy machine
CALL_TIMEOUT_S = 30  # one batch; a child silent this long is restarted


class PredictorError(RuntimeError):
    """The predictor's process died or stopped answering; it is being restarted."""


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ProcessPredictor:
    """``predict_proba`` in a child process that loads the model from ``weights``."""

    def __init__(self, weights: str, device: str = "cpu", threads: int = 1, name: str = "lane",
                 precision: str = "auto"):
        self.weights, self.device, self.threads, self.name = str(weights), device, threads, name
        self.precision_asked = precision
        self._ctx = mp.get_context("spawn")  # never fork a process that holds torch's thread pools
        self._lock = threading.Lock()
        self._proc = self._conn = None
        self._sent = self._received = 0  # requests of the current child, numbered in order
        self._answers: dict[int, tuple] = {}  # answers read while waiting for a later one
        self.restarts = 0
        self.meta: dict = {}
        self._start()

    def _start(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.weights, self.device, self.threads,
                                                      self.precision_asked),
                                 name=f"ser-{self.name}", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            proc.kill()
            raise PredictorError(f"{self.name}: the model process did not start in {START_TIMEOUT_S} s")
        kind, payload = parent.recv()
        if kind != "ready":
            proc.join(5)
            raise PredictorError(f"{self.name}: the model process failed to start: {payload}")
        self._proc, self._conn, self.meta = proc, parent, payload

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def precision(self) -> str | None:
        """What the child's model computes in (``Recognizer.precision``)."""
        return self.meta.get("precision")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def predict_proba(self, windows: list[np.ndarray], profiles: list | None = None) -> np.ndarray:
        return self.submit(windows, profiles)()[0]

    def submit(self, windows: list[np.ndarray], profiles: list | None = None, centres: list | None = None,
               shares: list | None = None):
        """Send a batch and return at once; calling the result waits for (probabilities,
        statistics or None, the child's model seconds, its CPU seconds): ``Recognizer.analyse`` in
        the child. The child works while the caller answers an earlier batch, and answers in the
        order asked."""
        with self._lock:
            if not self.alive:
                self._restart("found dead")
            try:
                self._conn.send(("predict", ([np.ascontiguousarray(w, dtype=np.float32) for w in windows],
                                             profiles, centres, shares)))
            except (OSError, ValueError) as exc:
                self._restart(repr(exc))
                raise PredictorError(f"{self.name}: the model process was lost ({exc}); restarted") from None
            self._sent += 1
            ticket, restarts = self._sent, self.restarts
        return lambda: self._answer(ticket, restarts)

    def _answer(self, ticket: int, restarts: int) -> tuple:
        with self._lock:
            if restarts != self.restarts:
                raise PredictorError(f"{self.name}: the model process was restarted before it answered")
            try:
                while ticket not in self._answers:
                    if not self._conn.poll(CALL_TIMEOUT_S):
                        raise TimeoutError(f"no answer in {CALL_TIMEOUT_S} s")
                    self._received += 1
                    self._answers[self._received] = self._conn.recv()
            except (EOFError, OSError, TimeoutError) as exc:
                self._restart(repr(exc))
                raise PredictorError(f"{self.name}: the model process was lost ({exc}); restarted") from None
            kind, payload = self._answers.pop(ticket)
        if kind != "ok":
            raise RuntimeError(f"{self.name}: {payload}")
        return payload

    def _restart(self, why: str):
        log.error("%s: restarting the model process (%s)", self.name, why)
        self._stop()
        self.restarts += 1
        self._start()

    def _stop(self):
        self._sent = self._received = 0
        self._answers.clear()
        if self._proc is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._proc.kill()
            self._proc.join(5)
        self._proc = self._conn = None

    def close(self):
        with self._lock:
            self._stop()


def _serve(conn, weights: str, device: str, threads: int, precision: str = "auto"):
    """The child: load the model, then answer ``predict`` messages until the pipe closes."""
    try:
        import torch
        from threadpoolctl import threadpool_limits

        from ser_model.inference import Recognizer

        torch.set_num_threads(threads)
        threadpool_limits(threads)
        rec = Recognizer.load(weights, device=device, precision=precision)
        rec.warm_up()  # lazy imports, TorchScript's first calls on every live window length
        conn.send(("ready", {"file": rec.meta.get("file"), "device": device, "pid": os.getpid(),
                             "precision": rec.precision}))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(exc)))
        return
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        started, cpu = time.perf_counter(), time.process_time()
        try:
            windows, profiles, centres, shares = payload
            probs, stats = rec.analyse(windows, profiles, centres, shares)
            conn.send(("ok", (probs, stats, time.perf_counter() - started, time.process_time() - cpu)))
        except Exception as exc:  # noqa: BLE001 - one bad batch: say so, keep serving
            conn.send(("error", f"{exc!r} after {time.perf_counter() - started:.2f} s"))
