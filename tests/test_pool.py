"""Inference lanes in child processes: same probabilities as in-process, restart after a crash,
streams spread over the lanes."""
import os
import signal
import time

import numpy as np
import pytest

from ser_model.inference import Recognizer
from webapp.pool import PredictorError, ProcessPredictor
from webapp.extensions import socketio

NS = "/stream"


def windows(n=3, seconds=3.0):
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    return [(0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
            for i in range(n)]


@pytest.fixture(scope="module")
def predictor(random_weights):
    p = ProcessPredictor(str(random_weights / "m.pt"), name="test", precision="float32")
    yield p
    p.close()


def test_a_process_lane_gives_the_in_process_probabilities(predictor, random_weights):
    local = Recognizer.load(random_weights / "m.pt", precision="float32")
    batch = windows(3) + [windows(1, 1.2)[0]]  # mixed lengths, as the first windows of a stream are
    np.testing.assert_allclose(predictor.predict_proba(batch), local.predict_proba(batch), atol=1e-5)
    assert predictor.meta["pid"] != os.getpid() and predictor.precision == "float32"


def test_batches_sent_before_earlier_answers_are_answered_in_order(predictor, random_weights):
    local = Recognizer.load(random_weights / "m.pt", precision="float32")
    batches = [windows(1), windows(2), windows(3)]
    handles = [predictor.submit(b) for b in batches]  # all three in the pipe before any answer is read
    for batch, handle in zip(reversed(batches), reversed(handles)):  # read out of order: each gets its own
        probs, stats, seconds, cpu_seconds = handle()
        np.testing.assert_allclose(probs, local.predict_proba(batch), atol=1e-5)
        assert 0 < seconds < 30  # the child's own model time
        assert 0 < cpu_seconds <= seconds + 0.01  # its CPU time: one thread, so never more than the wall time


def test_a_killed_lane_process_fails_one_call_and_is_restarted(predictor):
    before = predictor.pid
    os.kill(before, signal.SIGKILL)
    time.sleep(0.2)
    try:
        first = predictor.predict_proba(windows(1))  # found dead before sending: restarted first
    except PredictorError:
        first = None
    second = predictor.predict_proba(windows(1))
    assert second.shape == (1, 7) and predictor.pid != before and predictor.restarts >= 1
    assert first is None or first.shape == (1, 7)


@pytest.mark.slow
def test_streams_are_spread_over_process_lanes(base_config):
    from webapp import create_app

    app = create_app({**base_config, "INFERENCE_MODE": "process", "INFERENCE_WORKERS": 2, "STREAM_BURST_S": 30.0})
    hub = app.extensions["ser_stream"]
    try:
        assert len(hub.workers) == 2 and all(p.alive for p in hub.predictors)
        assert len({p.pid for p in hub.predictors}) == 2
        measured = sum(w.capacity(0.75, 2) for w in hub.workers)
        assert measured > 0
        # A fast machine measures more than MAX_STREAMS: the configured ceiling then holds.
        assert hub.capacity() == min(measured, app.config["MAX_STREAMS"])
        clients = [socketio.test_client(app, namespace=NS) for _ in range(4)]
        for c in clients:
            assert c.emit("start", {"sample_rate": 16000}, callback=True, namespace=NS)["ok"]
        assert sorted(s.lane for s in hub._streams.values()) == [0, 0, 1, 1]
        pcm = (8000 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype("<i2")
        for c in clients:
            for i in range(0, 16000, 4000):
                c.emit("audio", pcm[i:i + 4000].tobytes(), namespace=NS)
        deadline = time.monotonic() + 30
        got = {id(c): [] for c in clients}
        while time.monotonic() < deadline and not all(len(v) >= 2 for v in got.values()):
            for c in clients:
                got[id(c)] += [m for m in c.get_received(NS) if m["name"] == "emotion"]
            time.sleep(0.05)
        assert all(len(v) >= 2 for v in got.values())
        assert hub.workers[0].stats["answered"] >= 4 and hub.workers[1].stats["answered"] >= 4  # both lanes served
        for c in clients:
            c.disconnect(namespace=NS)
    finally:
        hub.stop_background()
    assert not any(p.alive for p in hub.predictors)
