"""An inference tier on Redis Streams: model workers that any app process can feed.

App side (``INFERENCE_MODE="redis"``): each lane's :class:`RedisPredictor` adds its batch of
windows to the stream ``ser:windows`` and waits for the answer on a reply list of its own.

Worker side (``python -m webapp.tier --redis URL [--weights weights/] [--device cuda]``): each
worker is a consumer in the group ``inference``; it reads up to ``--batch`` windows from any
number of requests, runs them as ONE model call (batching across app processes), pushes each
request's probabilities to its reply list, then acknowledges and deletes the entries. A worker
that dies leaves its entries pending: the others claim entries idle for ``CLAIM_IDLE_MS`` and
serve them (``XAUTOCLAIM``); an entry delivered ``MAX_DELIVERIES`` times is answered with an
error instead of being tried forever.

    python -m webapp.tier --redis redis://127.0.0.1:6379/0 --workers 2
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
import uuid

import numpy as np

from .pool import PredictorError

STREAM = "ser:windows"
GROUP = "inference"
STREAM_MAXLEN = 10_000  # entries kept at most (approximately): a bound if no worker runs
CALL_TIMEOUT_S = 10  # an app lane waits this long for its answer
REPLY_TTL_S = 30  # unanswered replies expire
CLAIM_IDLE_MS = 2_000  # entries pending this long with a (dead) worker are taken over
CLAIM_EVERY_S = 1.0
MAX_DELIVERIES = 3
MODEL_BATCH = 32  # windows per model call
N_LABELS = 7
log = logging.getLogger(__name__)


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_keepalive=True, health_check_interval=30)


def encode(windows: list[np.ndarray], profiles: list | None = None) -> dict:
    """A request's fields: the windows' samples, and each adapted window's voice profile."""
    lengths = [len(w) for w in windows]
    pcm = np.concatenate([np.asarray(w, dtype="<f4") for w in windows]) if windows else np.zeros(0, "<f4")
    fields = {"lengths": json.dumps(lengths), "pcm": pcm.tobytes()}
    if profiles is not None and any(p is not None for p in profiles):
        adapted = [i for i, p in enumerate(profiles) if p is not None]
        fields["adapted"] = json.dumps(adapted)
        fields["profiles"] = np.concatenate([np.asarray(profiles[i], dtype="<f4") for i in adapted]).tobytes()
    return fields


def decode(fields: dict) -> tuple[list[np.ndarray], list | None]:
    lengths = json.loads(fields[b"lengths"])
    pcm = np.frombuffer(fields[b"pcm"], dtype="<f4")
    if sum(lengths) != len(pcm) or any(n <= 0 for n in lengths):
        raise ValueError("window lengths do not match the samples")
    windows = np.split(pcm, np.cumsum(lengths)[:-1]) if lengths else []
    if b"adapted" not in fields:
        return windows, None
    adapted = json.loads(fields[b"adapted"])
    stacked = np.frombuffer(fields[b"profiles"], dtype="<f4")
    if not adapted or len(stacked) % len(adapted) or not all(0 <= i < len(windows) for i in adapted):
        raise ValueError("voice profiles do not match the windows")
    profiles: list = [None] * len(windows)
    for i, p in zip(adapted, np.split(stacked, len(adapted))):
        profiles[i] = p
    return windows, profiles


class RedisPredictor:
    """``predict_proba`` by the tier's workers (one request at a time per predictor)."""

    def __init__(self, url: str, name: str = "lane"):
        self.url, self.name = url, name
        self._redis = _redis(url)
        self._reply = f"ser:reply:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self.alive = True

    def predict_proba(self, windows: list[np.ndarray], profiles: list | None = None) -> np.ndarray:
        with self._lock:
            request_id = uuid.uuid4().hex
            try:
                self._redis.xadd(STREAM, {"reply": self._reply, "id": request_id, **encode(windows, profiles)},
                                 maxlen=STREAM_MAXLEN, approximate=True)
                deadline = time.monotonic() + CALL_TIMEOUT_S
                while (left := deadline - time.monotonic()) > 0:
                    got = self._redis.blpop([self._reply], timeout=max(1, int(left)))
                    if got is None:
                        continue
                    answer = json.loads(got[1])
                    if answer["id"] == request_id:  # not a late answer to an earlier, timed-out request
                        break
                else:
                    raise PredictorError(f"{self.name}: the inference tier did not answer in {CALL_TIMEOUT_S} s")
            except PredictorError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or unreachable
                raise PredictorError(f"{self.name}: the inference tier is unreachable ({exc})") from None
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return np.asarray(answer["probs"], dtype=np.float32).reshape(len(windows), N_LABELS)

    def close(self):
        self.alive = False
        self._redis.close()


class TierWorker:
    """One consumer of ``ser:windows``: batches windows from any requests into one model call."""

    def __init__(self, recognizer, url: str, batch: int = 8, name: str | None = None):
        self.recognizer, self.batch = recognizer, batch
        self.name = name or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._redis = _redis(url)
        self._stop = threading.Event()
        self.served = 0
        self._make_group()

    def _make_group(self):
        try:
            self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except Exception as exc:  # noqa: BLE001 - BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self):
        self._stop.set()

    def run(self):
        last_claim = 0.0
        while not self._stop.is_set():
            try:
                entries = []
                if time.monotonic() - last_claim > CLAIM_EVERY_S:
                    last_claim = time.monotonic()
                    entries += self._claim()
                if not entries:
                    got = self._redis.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=self.batch, block=500)
                    entries = [e for _, stream_entries in (got or []) for e in stream_entries]
                if entries:
                    self.serve(entries)
            except Exception as exc:  # noqa: BLE001 - Redis restarting or unreachable: wait, then go on
                if self._stop.is_set():
                    return
                log.warning("tier worker %s: %s; retrying in 1 s", self.name, exc)
                self._stop.wait(1.0)
                if "NOGROUP" in str(exc):  # a restarted Redis lost the group: make it again
                    self._make_group()

    def _claim(self) -> list:
        """Entries a dead worker left pending, delivered fewer than MAX_DELIVERIES times."""
        _, claimed, _ = self._redis.xautoclaim(STREAM, GROUP, self.name, min_idle_time=CLAIM_IDLE_MS,
                                               start_id="0-0", count=self.batch)
        if not claimed:
            return []
        ids = [entry_id for entry_id, _ in claimed]
        pending = self._redis.xpending_range(STREAM, GROUP, min=ids[0], max=ids[-1], count=len(ids))
        delivered = {p["message_id"]: p["times_delivered"] for p in pending}
        keep = []
        for entry_id, fields in claimed:
            if not fields:  # deleted meanwhile
                self._redis.xack(STREAM, GROUP, entry_id)
            elif delivered.get(entry_id, 0) > MAX_DELIVERIES:
                self._answer(entry_id, fields, {"error": "these windows failed on every worker"})
            else:
                keep.append((entry_id, fields))
        return keep

    def serve(self, entries: list):
        requests_, windows, profiles = [], [], []
        for entry_id, fields in entries:
            try:
                mine, their_profiles = decode(fields)
            except Exception as exc:  # noqa: BLE001 - a malformed request fails alone
                self._answer(entry_id, fields, {"error": f"bad request: {exc}"})
                continue
            requests_.append((entry_id, fields, len(windows), len(mine)))
            windows += mine
            profiles += their_profiles or [None] * len(mine)
        if not windows:
            return
        adapted = any(p is not None for p in profiles)
        try:  # one model call per MODEL_BATCH windows: bounds the network's activations
            probs = np.concatenate([
                self.recognizer.predict_proba(windows[i:i + MODEL_BATCH], profiles[i:i + MODEL_BATCH]) if adapted
                else self.recognizer.predict_proba(windows[i:i + MODEL_BATCH])
                for i in range(0, len(windows), MODEL_BATCH)])
        except Exception:  # noqa: BLE001 - leave them pending: another worker (or a retry) may serve them
            log.exception("tier batch failed")
            return
        for entry_id, fields, start, n in requests_:
            self._answer(entry_id, fields, {"probs": probs[start:start + n].round(6).tolist()})
        self.served += len(windows)

    def _answer(self, entry_id, fields: dict, answer: dict):
        reply = fields.get(b"reply")
        if reply:
            answer["id"] = fields.get(b"id", b"").decode()
            pipe = self._redis.pipeline()
            pipe.rpush(reply, json.dumps(answer))
            pipe.expire(reply, REPLY_TTL_S)
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            pipe.execute()
        else:
            self._redis.xack(STREAM, GROUP, entry_id)
            self._redis.xdel(STREAM, entry_id)


def main(argv=None):
    from ser_model.inference import PRECISIONS, Recognizer

    from .config import DEFAULTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", default=os.environ.get("SER_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--weights", default=os.environ.get("SER_WEIGHTS", DEFAULTS["WEIGHTS"]))
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU worker")
    p.add_argument("--batch", type=int, default=8, help="requests (each a lane's batch of windows) read at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--precision", default=os.environ.get("SER_INFERENCE_PRECISION", DEFAULTS["INFERENCE_PRECISION"]),
                   choices=PRECISIONS, help="CPU: as INFERENCE_PRECISION")
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    rec = Recognizer.load(args.weights, device=args.device, precision=args.precision)
    rec.warm_up()  # every live window length, as a lane warms (webapp/pool.py)
    worker = TierWorker(rec, args.redis, batch=args.batch)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    log.info("tier worker %s serving %s on %s (%s)", worker.name, rec.meta.get("file"), args.device, rec.precision)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
