"""The VAD batcher: streams of one tick judged in one round, stops after their audio, failures contained."""
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from ser_model.streaming import StreamSession
from webapp.vad_batch import VadBatcher

_ids = itertools.count()


@dataclass
class FakeStream:
    session: StreamSession
    id: str = field(default_factory=lambda: str(next(_ids)))


class Deliveries:
    def __init__(self):
        self.calls, self.lock = [], threading.Lock()

    def __call__(self, sid, stream, jobs, stopping, failed):
        with self.lock:
            self.calls.append((sid, [(j.t0, j.t1) for j in jobs], stopping, failed))

    def wait(self, n: int, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.calls)


def test_streams_of_one_tick_are_judged_in_one_round():
    delivered = Deliveries()
    batcher = VadBatcher(delivered, tick_ms=1000)  # the four adds take well under a second
    streams = [FakeStream(StreamSession(16000)) for _ in range(4)]
    try:
        for i, s in enumerate(streams):
            s.session.receive(bytes(2 * 8000))
            batcher.add(f"sid{i}", s)
        calls = delivered.wait(4)
    finally:
        batcher.stop()
    assert batcher.stats == {"rounds": 1, "streams": 4, "errors": 0}
    assert sorted(calls) == [(f"sid{i}", [(0.0, 0.5)], False, False) for i in range(4)]


def test_a_stop_is_delivered_after_the_audio_before_it():
    delivered = Deliveries()
    batcher = VadBatcher(delivered, tick_ms=100)
    stream, other = FakeStream(StreamSession(16000)), FakeStream(StreamSession(16000))
    try:
        stream.session.receive(bytes(2 * 12000))
        batcher.add("a", stream)
        batcher.add("a", stream, stopping=True)
        batcher.add("a", stream)  # a stop is never taken back
        other.session.receive(bytes(2 * 4000))
        batcher.add("b", other)
        deadline = time.monotonic() + 10
        while not any(c[0] == "a" and c[2] for c in delivered.calls) or not any(c[0] == "b" for c in delivered.calls):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        batcher.stop()
    a = [c for c in delivered.calls if c[0] == "a"]
    # a: the hop that was due, then (flushed) the last partial one, in order; the stop comes last.
    assert [w for c in a for w in c[1]] == [(0.0, 0.5), (0.0, 0.75)]
    assert a[-1][2] and not any(c[2] for c in a[:-1]) and not any(c[3] for c in a)
    assert [c[1:] for c in delivered.calls if c[0] == "b"] == [([], False, False)]  # b: nothing due yet


def test_without_a_tick_each_stream_is_judged_at_once_in_the_callers_thread():
    delivered = Deliveries()
    batcher = VadBatcher(delivered, tick_ms=0)
    stream = FakeStream(StreamSession(16000))
    stream.session.receive(bytes(2 * 16000))
    batcher.add("a", stream)
    assert delivered.calls == [("a", [(0.0, 0.5), (0.0, 1.0)], False, False)]
    assert batcher.alive and batcher._service is None


def test_a_failing_round_is_reported_and_the_thread_goes_on(monkeypatch):
    delivered = Deliveries()
    batcher = VadBatcher(delivered, tick_ms=20)
    broken, good = FakeStream(StreamSession(16000)), FakeStream(StreamSession(16000))
    try:
        broken.session.receive(bytes(2 * 8000))
        monkeypatch.setattr(broken.session, "_take_unjudged", lambda: 1 / 0)
        batcher.add("broken", broken)
        assert delivered.wait(1) == [("broken", [], False, True)]
        good.session.receive(bytes(2 * 8000))
        batcher.add("good", good)
        assert delivered.wait(2)[1] == ("good", [(0.0, 0.5)], False, False)
        assert batcher.alive and batcher.stats["errors"] == 1
        broken.session.receive(bytes(2 * 8000))
        batcher.add("broken", broken)  # fails again at once: not told again (at most every 5 s)
        deadline = time.monotonic() + 10
        while batcher.stats["errors"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)  # that round's deliveries, had there been any
        assert len(delivered.calls) == 2
    finally:
        batcher.stop()


def test_closed_streams_are_skipped():
    delivered = Deliveries()
    batcher = VadBatcher(delivered, tick_ms=50)
    stream = FakeStream(StreamSession(16000))
    stream.session.receive(np.zeros(8000, "<i2").tobytes())
    stream.session.close()
    try:
        batcher.add("gone", stream)
        time.sleep(0.3)
    finally:
        batcher.stop()
    assert delivered.calls == [] and batcher.stats["rounds"] == 0


@pytest.mark.parametrize("tick_ms", [0, 30])
def test_the_hub_streams_with_and_without_the_batcher(tick_ms, base_config):
    from webapp import create_app, socketio

    app = create_app({**base_config, "VAD_BATCH_MS": tick_ms, "STREAM_BURST_S": 30.0})
    client = socketio.test_client(app, namespace="/stream")
    assert client.emit("start", {"sample_rate": 16000}, callback=True, namespace="/stream")["ok"]
    for _ in range(6):
        client.emit("audio", bytes(2 * 4000), namespace="/stream")
    client.emit("stop", namespace="/stream")
    deadline, got = time.monotonic() + 20, []
    while time.monotonic() < deadline and not any(m["name"] == "summary" for m in got):
        got += client.get_received("/stream")
        time.sleep(0.05)
    names = [m["name"] for m in got]
    assert names == ["emotion"] * 3 + ["summary"]
    client.disconnect(namespace="/stream")
