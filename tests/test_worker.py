"""The inference worker with a fake model: batching across streams, ordering, load shedding, failures."""
import threading
import time

import numpy as np
import pytest

from ser_model.labels import EMOTIONS
from ser_model.streaming import StreamSession, WindowJob
from webapp.worker import InferenceWorker


class FakeRecognizer:
    def __init__(self, delay_s=0.0, fail=False):
        self.calls, self.delay_s, self.fail = [], delay_s, fail

    def predict_proba(self, windows):
        self.calls.append(len(windows))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("boom")
        probs = np.full((len(windows), len(EMOTIONS)), 0.1 / 6)
        probs[:, 3] = 0.9
        return probs


class Outbox:
    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def __call__(self, event, payload, sid):
        with self.lock:
            self.events.append((sid, event, payload))

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate(self.events):
            time.sleep(0.01)
        return list(self.events)


def window(t1, speech=True):
    return WindowJob(max(0.0, t1 - 3), t1, speech, np.zeros(16000, np.float32))


def test_batches_windows_of_many_streams_and_summary_comes_last():
    rec, out = FakeRecognizer(), Outbox()
    worker = InferenceWorker(rec, out, batch_wait_ms=50)
    sessions = {f"s{i}": StreamSession(16000) for i in range(5)}
    for sid, session in sessions.items():
        worker.submit(sid, session, [window(0.5), window(1.0, speech=False), window(1.5)])
        worker.finish(sid, session)
    events = out.wait(lambda ev: sum(e[1] == "summary" for e in ev) == 5)
    worker.stop()
    assert rec.calls[0] == 10  # every speech window of all five streams in one call; silence skipped
    for sid in sessions:
        mine = [(e, p) for s, e, p in events if s == sid]
        assert [e for e, _ in mine] == ["emotion"] * 3 + ["summary"]
        assert [p["speech"] for _, p in mine[:3]] == [True, False, True]
        assert mine[0][1]["label"] == "angry" and mine[-1][1]["label"] == "angry"


def test_a_lagging_worker_skips_to_each_streams_newest_window():
    rec, out = FakeRecognizer(delay_s=0.3), Outbox()
    worker = InferenceWorker(rec, out, coalesce_s=0.2)
    session = StreamSession(16000)
    for k in range(15):  # a window every 0.1 s, three times faster than the model
        worker.submit("a", session, [window(0.5 * (k + 1))])
        time.sleep(0.1)
    worker.finish("a", session)
    events = out.wait(lambda ev: any(e == "summary" for _, e, _ in ev), timeout=10)
    worker.stop()
    t1 = [p["t1"] for _, e, p in events if e == "emotion"]
    assert [p["code"] for _, e, p in events if e == "error"] == ["server_busy"]  # told once
    assert 2 < len(t1) < 15 and t1 == sorted(t1) and t1[-1] == 7.5  # in order, the newest is analysed
    assert worker.stats["dropped"] == 15 - len(t1)


def test_closed_sessions_get_nothing():
    rec, out = FakeRecognizer(), Outbox()
    worker = InferenceWorker(rec, out)
    session = StreamSession(16000)
    session.close()
    worker.submit("gone", session, [window(0.5)])
    time.sleep(0.3)
    worker.stop()
    assert out.events == [] and rec.calls == []


def test_a_failing_batch_reports_and_the_worker_goes_on():
    rec, out = FakeRecognizer(fail=True), Outbox()
    worker = InferenceWorker(rec, out)
    worker.submit("a", StreamSession(16000), [window(0.5)])
    out.wait(lambda ev: ev)
    rec.fail = False
    worker.submit("b", StreamSession(16000), [window(0.5)])
    events = out.wait(lambda ev: any(s == "b" for s, _, _ in ev))
    worker.stop()
    assert events[0][:2] == ("a", "error") and events[0][2]["code"] == "analysis_failed"
    assert events[1][:2] == ("b", "emotion")
    assert worker.stats["failed_windows"] == 1


class PoisonRecognizer(FakeRecognizer):
    """Fails on any batch holding a window whose first sample is 1.0 (a stand-in for a model bug)."""

    def predict_proba(self, windows):
        if any(w[0] == 1.0 for w in windows):
            self.calls.append(len(windows))
            raise RuntimeError("poisoned window")
        return super().predict_proba(windows)


def test_a_window_that_breaks_the_model_errors_only_its_own_stream():
    rec, out = PoisonRecognizer(), Outbox()
    worker = InferenceWorker(rec, out, batch_wait_ms=50)
    poison = window(0.5)
    poison.audio = np.ones(16000, np.float32)
    good, bad = StreamSession(16000), StreamSession(16000)
    worker.submit("good", good, [window(0.5), window(1.0)])
    worker.submit("bad", bad, [poison, window(1.0)])
    worker.finish("good", good)
    worker.finish("bad", bad)
    events = out.wait(lambda ev: sum(e == "summary" for _, e, _ in ev) == 2)
    worker.stop()
    assert rec.calls[0] == 4  # one batch first: it failed, then window by window
    mine = lambda sid: [(e, p) for s, e, p in events if s == sid]  # noqa: E731
    assert [e for e, _ in mine("good")] == ["emotion", "emotion", "summary"]
    assert [e for e, _ in mine("bad")] == ["error", "emotion", "summary"]
    assert mine("bad")[0][1]["code"] == "analysis_failed" and "0.0-0.5 s" in mine("bad")[0][1]["message"]


class ExplodingSession(StreamSession):
    """A session whose result bookkeeping raises: a bug outside the model call."""

    def apply(self, job, probs):
        raise KeyError("bug")


def test_the_worker_thread_survives_a_bug_and_tells_the_stream():
    rec, out = FakeRecognizer(), Outbox()
    worker = InferenceWorker(rec, out)
    worker.submit("x", ExplodingSession(16000), [window(0.5)])
    out.wait(lambda ev: ev)
    assert worker.alive
    worker.submit("y", StreamSession(16000), [window(0.5)])
    events = out.wait(lambda ev: any(s == "y" for s, _, _ in ev))
    worker.stop()
    assert events[0][:2] == ("x", "error") and events[0][2]["code"] == "internal"
    assert events[1][:2] == ("y", "emotion")


def test_a_dead_thread_is_restarted_by_the_next_submit():
    rec, out = FakeRecognizer(), Outbox()
    worker = InferenceWorker(rec, out)
    worker.start()
    worker.stop()
    assert not worker.alive
    worker.submit("a", StreamSession(16000), [window(0.5)])
    assert out.wait(lambda ev: ev)[0][1] == "emotion"
    worker.stop()


def test_cost_lag_and_capacity_are_measured():
    rec, out = FakeRecognizer(delay_s=0.04), Outbox()
    worker = InferenceWorker(rec, out, batch_wait_ms=1)
    worker.calibrate([np.zeros(16000, np.float32)] * 4, repeats=1)
    assert 0.009 < worker.window_cost_s < 0.02  # 40 ms for 4 windows
    assert worker.capacity(utilisation=0.8, windows_per_s=2) == int(0.8 / (worker.window_cost_s * 2))
    calibrated = worker.window_cost_s
    worker.submit("a", StreamSession(16000), [window(0.5)])
    out.wait(lambda ev: ev)
    assert worker.window_cost_s > calibrated * 1.2  # a batch of one costs the whole 40 ms: the average rises
    assert 0.03 < worker.lag_s < 0.5
    worker.stop()


class SleepThenSpin(FakeRecognizer):
    """A model call that waits 40 ms (as for a core) and then computes 20 ms."""

    def predict_proba(self, windows):
        time.sleep(0.04)
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        return super().predict_proba(windows)


def test_the_models_cpu_time_is_counted_apart_from_its_wall_time():
    from webapp.metrics import Metrics

    metrics, out = Metrics(), Outbox()
    worker = InferenceWorker(SleepThenSpin(), out, batch_wait_ms=1, metrics=metrics)
    worker.submit("a", StreamSession(16000), [window(0.5)])
    out.wait(lambda ev: ev)
    worker.stop()
    wall, cpu = metrics.inference_batch._sum.get(), metrics.inference_cpu._value.get()
    assert wall >= 0.06 and 0.018 <= cpu <= 0.04  # the wait is wall time, not CPU


def test_full_queue_refuses():
    worker = InferenceWorker(FakeRecognizer(delay_s=1.0), Outbox(), queue_max=2, batch_max=1)
    worker.start = lambda: None  # no thread consumes: the queue just fills (a stale attribute did this
    # once; the thread then took a window now and then on a busy machine and the test failed)
    assert worker.submit("a", StreamSession(16000), [window(0.5), window(1.0)])
    assert not worker.submit("a", StreamSession(16000), [window(1.5)])


class SubmittingRecognizer(FakeRecognizer):
    """A model in another process, as ``ProcessPredictor`` is: ``submit`` returns at once; the first
    answer is ready once ``queued_more`` is set (the test has queued another window), or after 5 s."""

    def __init__(self, log):
        super().__init__()
        self.log, self.queued_more = log, threading.Event()

    def submit(self, windows):
        self.log.append(("submit", len(self.calls)))
        probs = self.predict_proba(windows)

        def answer():
            self.queued_more.wait(5.0)
            return probs, None, 0.001, 0.001
        return answer


def test_the_next_batch_is_sent_before_the_last_is_answered():
    log = []
    rec = SubmittingRecognizer(log)
    worker = InferenceWorker(rec, lambda event, payload, sid: log.append((event, sid)), batch_wait_ms=1)
    worker.submit("a", StreamSession(16000), [window(0.5)])
    deadline = time.monotonic() + 5
    while not log and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.submit("b", StreamSession(16000), [window(0.5)])  # queued while the model works on "a"
    rec.queued_more.set()
    while len(log) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.stop()
    # b's window went to the model before a's answer was emitted, and answers keep their order.
    assert log == [("submit", 0), ("submit", 1), ("emotion", "a"), ("emotion", "b")]
    assert worker.window_cost_s == pytest.approx(0.001)  # the model's own seconds, not the wait


def test_lanes_batch_four_windows_on_cpu_and_32_on_a_gpu_unless_told():
    from webapp.config import DEFAULTS
    from webapp.stream import StreamHub, lane_batch_max

    assert DEFAULTS["BATCH_MAX"] == "auto"
    assert lane_batch_max({"BATCH_MAX": "auto", "INFERENCE_DEVICE": "cpu"}) == 4
    assert lane_batch_max({"BATCH_MAX": "auto", "INFERENCE_DEVICE": "cuda:0"}) == 32
    assert lane_batch_max({"BATCH_MAX": "16", "INFERENCE_DEVICE": "cpu"}) == 16
    hub = StreamHub(FakeRecognizer(), dict(DEFAULTS), predictors=[FakeRecognizer(), FakeRecognizer()])
    assert [w.batch_max for w in hub.workers] == [4, 4]


def _hub_with_lanes(dispatch, *predictors):
    from webapp.config import DEFAULTS
    from webapp.limits import RateLimit
    from webapp.stream import Stream, StreamHub

    hub = StreamHub(FakeRecognizer(), {**DEFAULTS, "LANE_DISPATCH": dispatch}, predictors=list(predictors))
    out = Outbox()
    for w in hub.workers:
        w.emit = out
    streams = {}
    for i in range(4):  # every stream starts on lane 0
        streams[f"s{i}"] = hub._streams[f"s{i}"] = Stream(StreamSession(16000), "127.0.0.1", RateLimit(5, 1.5), lane=0)
    hub._lane_load = [4] + [0] * (len(predictors) - 1)
    return hub, out, streams


class GatedRecognizer(FakeRecognizer):
    """Answers once ``gate`` is set: a lane kept busy for as long as a test needs."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def predict_proba(self, windows):
        self.gate.wait(5)
        return super().predict_proba(windows)


def _wait_answered(hub, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while sum(w.stats["answered"] for w in hub.workers) < n and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("dispatch", ["window", "stream"])
def test_a_streams_window_goes_to_an_idle_lane_unless_its_earlier_ones_wait(dispatch):
    busy = GatedRecognizer()
    hub, out, streams = _hub_with_lanes(dispatch, busy, FakeRecognizer())
    s0, s1 = streams["s0"], streams["s1"]
    try:
        hub._deliver("s0", s0, [window(3.0)], False, False)  # lane 0 (a tie: its own), which now stays busy
        time.sleep(0.05)
        hub._deliver("s1", s1, [window(3.0)], False, False)  # nothing of s1 waits: the idle lane 1 ("window")
        _wait_answered(hub, 1 if dispatch == "window" else 0)
        hub._deliver("s0", s0, [window(3.5)], False, False)  # s0's first window still waits on lane 0: there too
        for sid in ("s0", "s1"):
            hub._deliver(sid, streams[sid], [], True, False)
        time.sleep(0.05)
        busy.gate.set()
        events = out.wait(lambda ev: sum(e[1] == "summary" for e in ev) == 2)
        deadline = time.monotonic() + 5  # an item is released just after its event is emitted
        while any(w.load for w in hub.workers) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        busy.gate.set()
        for w in hub.workers:
            w.stop()
    mine = [(e, p.get("t1")) for s, e, p in events if s == "s0"]
    assert mine == [("emotion", 3.0), ("emotion", 3.5), ("summary", None)]  # in order, and from one lane
    answered = [w.stats["answered"] for w in hub.workers]
    assert answered == ([2, 1] if dispatch == "window" else [3, 0])
    assert (s0.lane, s1.lane) == ((0, 1) if dispatch == "window" else (0, 0))
    assert hub._lane_load == ([3, 1] if dispatch == "window" else [4, 0])  # the stream's slot moved with it
    assert [w.load for w in hub.workers] == [0, 0] and not any(w._held for w in hub.workers)  # nothing left held


def test_windows_dropped_unanswered_do_not_hold_their_lane():
    worker = InferenceWorker(FakeRecognizer(delay_s=0.1), Outbox(), batch_wait_ms=1)
    gone, kept = StreamSession(16000), StreamSession(16000)
    worker.submit("a", kept, [window(3.0)])
    worker.submit("b", gone, [window(3.0), window(3.5)])
    gone.close()  # its windows are dropped when taken from the queue, not answered
    worker.finish("a", kept)
    deadline = time.monotonic() + 5
    while worker.load and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert worker.load == 0 and not worker.holds(gone) and not worker.holds(kept)


def test_an_unknown_lane_dispatch_is_refused():
    from webapp.config import DEFAULTS
    from webapp.stream import StreamHub

    with pytest.raises(ValueError, match="LANE_DISPATCH"):
        StreamHub(FakeRecognizer(), {**DEFAULTS, "LANE_DISPATCH": "random"})
