"""The Redis Streams inference tier against a real redis-server: answers, batching across
requests, a dead worker's windows claimed by another, poison requests, and the app in tier mode."""
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from ser_model.labels import EMOTIONS
from webapp import tier
from webapp.pool import PredictorError

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.fixture
def redis_url(tmp_path):
    from test_server import free_port

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


class CountingRecognizer:
    """Probabilities that encode each window's first sample, and a record of every model call."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def predict_proba(self, windows):
        self.calls.append(len(windows))
        if self.fail_on is not None and any(w[0] == self.fail_on for w in windows):
            raise RuntimeError("poisoned")
        out = np.zeros((len(windows), len(EMOTIONS)), np.float32)
        for i, w in enumerate(windows):
            out[i, int(w[0]) % len(EMOTIONS)] = 1.0
        return out


def window(marker: float, n: int = 16000) -> np.ndarray:
    w = np.zeros(n, np.float32)
    w[0] = marker
    return w


def serve_in_thread(worker):
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    return t


def test_windows_go_through_the_tier_and_come_back_in_order(redis_url):
    worker = tier.TierWorker(CountingRecognizer(), redis_url)
    serve_in_thread(worker)
    try:
        lane = tier.RedisPredictor(redis_url)
        probs = lane.predict_proba([window(2), window(5, 8000), window(3)])
        assert probs.shape == (3, 7) and list(probs.argmax(axis=1)) == [2, 5, 3]
    finally:
        worker.stop()


def test_requests_of_several_lanes_share_one_model_call(redis_url):
    rec = CountingRecognizer()
    lanes = [tier.RedisPredictor(redis_url, name=f"lane{i}") for i in range(4)]
    worker = tier.TierWorker(rec, redis_url)  # created first so the group exists; started after the requests
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, lanes[i].predict_proba([window(i)] * 2)))
               for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    serve_in_thread(worker)
    for t in threads:
        t.join(10)
    worker.stop()
    assert [r.argmax(axis=1).tolist() for r in results] == [[i, i] for i in range(4)]
    assert rec.calls[0] == 8  # four requests, one model call


def test_a_dead_workers_windows_are_claimed_by_another(redis_url, monkeypatch):
    monkeypatch.setattr(tier, "CLAIM_IDLE_MS", 300)
    import redis

    lane = tier.RedisPredictor(redis_url)
    tier.TierWorker(CountingRecognizer(), redis_url, name="doomed")  # makes the group
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("probs", lane.predict_proba([window(4)])))
    t.start()
    # The doomed worker takes the request (as soon as the lane has sent it: a busy machine may take a
    # while) and dies before answering: it stays pending in its name.
    client, got, deadline = redis.Redis.from_url(redis_url), None, time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = client.xreadgroup(tier.GROUP, "doomed", {tier.STREAM: ">"}, count=8, block=100)
    assert got and got[0][1]
    survivor = tier.TierWorker(CountingRecognizer(), redis_url, name="survivor")
    serving = serve_in_thread(survivor)
    t.join(10)
    survivor.stop()
    serving.join(5)  # the worker counts a batch after answering it: read the count once it has stopped
    assert answer["probs"].argmax() == 4 and survivor.served == 1


def test_a_request_that_breaks_every_worker_is_answered_with_an_error(redis_url, monkeypatch):
    monkeypatch.setattr(tier, "CLAIM_IDLE_MS", 100)
    monkeypatch.setattr(tier, "CLAIM_EVERY_S", 0.05)
    worker = tier.TierWorker(CountingRecognizer(fail_on=6.0), redis_url)
    serve_in_thread(worker)
    try:
        lane = tier.RedisPredictor(redis_url)
        with pytest.raises(RuntimeError, match="failed on every worker"):
            lane.predict_proba([window(6)])
        assert lane.predict_proba([window(1)]).argmax() == 1  # the next request is served as ever
    finally:
        worker.stop()


def test_no_tier_means_a_clear_error_not_a_hang(redis_url, monkeypatch):
    monkeypatch.setattr(tier, "CALL_TIMEOUT_S", 1)
    began = time.monotonic()
    with pytest.raises(PredictorError, match="did not answer"):
        tier.RedisPredictor(redis_url).predict_proba([window(1)])
    assert time.monotonic() - began < 5
    with pytest.raises(PredictorError, match="unreachable"):
        tier.RedisPredictor("redis://127.0.0.1:1/0").predict_proba([window(1)])


def test_the_app_in_tier_mode_waits_for_the_tier_then_serves(base_config, redis_url, monkeypatch):
    from webapp import create_app
    from webapp.extensions import socketio
    from ser_model.inference import Recognizer

    monkeypatch.setattr(tier, "CALL_TIMEOUT_S", 1)
    app = create_app({**base_config, "INFERENCE_MODE": "redis", "TIER_REDIS_URL": redis_url, "INFERENCE_WORKERS": 2,
                      "STREAM_BURST_S": 30.0})
    hub = app.extensions["ser_stream"]
    client = app.test_client()
    try:
        assert client.get("/readyz").json["stream_capacity"] == 0  # no tier yet: nothing admitted
        sc = socketio.test_client(app, namespace="/stream")
        assert sc.emit("start", {"sample_rate": 16000}, callback=True, namespace="/stream")["code"] == "server_busy"
        worker = tier.TierWorker(Recognizer.load(base_config["WEIGHTS"]), redis_url)
        serve_in_thread(worker)
        deadline = time.monotonic() + 20
        while hub.capacity() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hub.capacity() > 0  # the reaper measured the lanes once the tier answered
        assert sc.emit("start", {"sample_rate": 16000}, callback=True, namespace="/stream")["ok"]
        sc.emit("audio", np.zeros(16000, "<i2").tobytes(), namespace="/stream")
        sc.emit("stop", namespace="/stream")
        deadline = time.monotonic() + 10
        names = []
        while "summary" not in names and time.monotonic() < deadline:
            names += [m["name"] for m in sc.get_received("/stream")]
            time.sleep(0.05)
        assert names.count("emotion") == 2 and names[-1] == "summary"
        worker.stop()
    finally:
        hub.stop_background()


def test_requests_carry_adapted_windows_voice_profiles():
    from webapp.tier import decode, encode

    windows = [np.arange(4, dtype=np.float32), np.ones(3, np.float32), np.zeros(5, np.float32)]
    profiles = [None, np.full(6, 2.0, np.float32), np.full(6, 3.0, np.float32)]
    fields = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in encode(windows, profiles).items()}
    got, got_profiles = decode(fields)
    assert [len(w) for w in got] == [4, 3, 5]
    assert got_profiles[0] is None and got_profiles[1][0] == 2.0 and got_profiles[2][0] == 3.0
    plain = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in encode(windows).items()}
    assert decode(plain)[1] is None
    bad = {**fields, b"adapted": b"[7]"}
    with pytest.raises(ValueError):
        decode(bad)
