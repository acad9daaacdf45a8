"""Socket.IO namespace /stream through Flask-SocketIO's test client (no network)."""
import time

import numpy as np
import pytest
import soundfile as sf

from ser_model.labels import EMOTIONS
from webapp.extensions import socketio

NS = "/stream"


@pytest.fixture
def app_config(request, base_config):
    """The test client sends faster than real time: allow a long burst unless a test says otherwise."""
    return {**base_config, "STREAM_BURST_S": 30.0, **getattr(request, "param", {})}


def tone_pcm(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 330 * t) + np.random.RandomState(0).randn(len(t)) * 500).astype("<i2")


def send(sc, pcm: np.ndarray, rate: int = 16000, frame_s: float = 0.25):
    n = int(rate * frame_s)
    for i in range(0, len(pcm), n):
        sc.emit("audio", pcm[i:i + n].tobytes(), namespace=NS)


def collect(sc, until, timeout: float = 20.0) -> list[dict]:
    """Received events as {'name', 'args'} until ``until(events)`` holds or the timeout passes."""
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += [{"name": m["name"], "args": m["args"][0] if m["args"] else None} for m in sc.get_received(NS)]
        if until(events):
            break
        time.sleep(0.02)
    return events


def named(events, name):
    return [e["args"] for e in events if e["name"] == name]


def has(name, count=1):
    return lambda events: len(named(events, name)) >= count


def start(sc, rate=16000):
    return sc.emit("start", {"sample_rate": rate}, callback=True, namespace=NS)


def test_start_acknowledges(stream_client):
    ack = start(stream_client)
    assert ack["ok"] is True and isinstance(ack["session"], str) and ack["session"]


@pytest.mark.parametrize("payload", [{"sample_rate": 7000}, {"sample_rate": 96000}, {}, None,
                                     {"sample_rate": "16000"}, {"sample_rate": 16000.5}, "16000"])
def test_bad_start(stream_client, payload):
    args = () if payload is None else (payload,)
    ack = stream_client.emit("start", *args, callback=True, namespace=NS)
    assert ack["ok"] is False and ack["error"]
    assert named(collect(stream_client, has("error")), "error")[0]["code"] == "bad_start"


def test_audio_before_start(stream_client):
    stream_client.emit("audio", bytes(3200), namespace=NS)
    assert named(collect(stream_client, has("error")), "error")[0]["code"] == "not_started"


@pytest.mark.parametrize("payload, code", [(bytes(3201), "bad_audio"), (bytes(2 * 16000 + 2), "frame_too_long"),
                                           ("not binary", "bad_audio"), ({"x": 1}, "bad_audio")])
def test_bad_frames(stream_client, payload, code):
    start(stream_client)
    stream_client.emit("audio", payload, namespace=NS)
    errors = named(collect(stream_client, has("error")), "error")
    assert errors[0]["code"] == code and errors[0]["message"]


def test_audio_without_a_payload_or_with_extra_arguments(stream_client):
    start(stream_client)
    stream_client.emit("audio", namespace=NS)
    assert named(collect(stream_client, has("error")), "error")[0]["code"] == "bad_audio"
    stream_client.emit("audio", bytes(16000), "extra", namespace=NS)  # the frame (a hop) counts, the rest is ignored
    assert len(named(collect(stream_client, has("emotion", 1)), "emotion")) == 1


def test_a_bug_in_the_audio_path_answers_internal_and_the_stream_goes_on(stream_client, app, monkeypatch):
    from ser_model.streaming import StreamSession

    start(stream_client)
    real, calls = StreamSession.receive, []

    def broken_once(self, payload):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(self, payload)

    monkeypatch.setattr(StreamSession, "receive", broken_once)
    stream_client.emit("audio", bytes(8000), namespace=NS)
    assert named(collect(stream_client, has("error")), "error")[0]["code"] == "internal"
    send(stream_client, tone_pcm(1.0))
    assert len(named(collect(stream_client, has("emotion", 2)), "emotion")) == 2


def test_tone_gives_one_event_per_hop(stream_client):
    start(stream_client)
    send(stream_client, tone_pcm(3.0))
    emotions = named(collect(stream_client, has("emotion", 6)), "emotion")
    assert len(emotions) == 6
    t1 = [e["t1"] for e in emotions]
    assert t1 == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert all(0 < b - a <= 0.5 for a, b in zip([0.0] + t1, t1))
    for e in emotions:
        assert set(e) == {"t0", "t1", "speech", "label", "confidence", "probabilities", "uncertain", "adapted", "session"}
        assert e["t0"] == max(0.0, e["t1"] - 3.0)


def test_silence_has_no_label(stream_client):
    start(stream_client, 48000)
    send(stream_client, np.zeros(48000 * 2, np.int16), 48000)
    emotions = named(collect(stream_client, has("emotion", 4)), "emotion")
    assert len(emotions) == 4
    assert all(e["speech"] is False and e["label"] is None and e["probabilities"] is None for e in emotions)


def test_speech_gets_labels_and_summary(stream_client, espeak_wav):
    pcm, rate = sf.read(espeak_wav, dtype="int16")
    start(stream_client, rate)
    send(stream_client, pcm, rate)
    stream_client.emit("stop", namespace=NS)
    events = collect(stream_client, has("summary"))
    emotions, summary = named(events, "emotion"), named(events, "summary")
    assert events[-1]["name"] == "summary" and len(summary) == 1  # summary comes after every emotion
    speech = [e for e in emotions if e["speech"]]
    assert speech
    for e in speech:
        assert e["label"] in EMOTIONS and list(e["probabilities"]) == list(EMOTIONS)
        assert sum(e["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert e["confidence"] == e["probabilities"][e["label"]]
    summary = summary[0]
    assert summary["label"] in EMOTIONS and len(summary["probabilities"]) == 7
    assert summary["duration"] == pytest.approx(len(pcm) / rate, abs=1e-3)
    assert len(summary["segments"]) == len(emotions)


def test_stop_summarises_and_closes(stream_client):
    start(stream_client)
    send(stream_client, np.zeros(16000, np.int16))
    stream_client.emit("stop", namespace=NS)
    summary = named(collect(stream_client, has("summary")), "summary")[0]
    assert summary["label"] is None and summary["duration"] == 1.0 and summary["segments"]
    stream_client.emit("audio", bytes(320), namespace=NS)
    stream_client.emit("stop", namespace=NS)
    codes = [e["code"] for e in named(collect(stream_client, has("error", 2)), "error")]
    assert codes == ["not_started", "not_started"]


def test_restart_on_the_same_connection(stream_client):
    start(stream_client)
    send(stream_client, tone_pcm(0.5))
    assert start(stream_client, 8000)["ok"]
    send(stream_client, tone_pcm(1.0, 8000), 8000)
    emotions = named(collect(stream_client, has("emotion", 3), timeout=5), "emotion")
    assert [e["t1"] for e in emotions][-2:] == [0.5, 1.0]


def test_a_bad_client_does_not_disturb_another(app):
    good = socketio.test_client(app, namespace=NS)
    bad = socketio.test_client(app, namespace=NS)
    start(good)
    bad.emit("audio", b"\x01\x02\x03", namespace=NS)  # before start
    bad.emit("start", {"sample_rate": "fast"}, callback=True, namespace=NS)
    start(bad)
    for i, chunk in enumerate(np.array_split(tone_pcm(2.0), 8)):
        good.emit("audio", chunk.tobytes(), namespace=NS)
        bad.emit("audio", b"\x00" * (3 + 2 * i), namespace=NS)  # odd byte counts
        bad.emit("audio", "garbage", namespace=NS)
    good_events = collect(good, has("emotion", 4))
    assert len(named(good_events, "emotion")) == 4 and not named(good_events, "error")
    bad_events = collect(bad, has("error", 18))
    assert not named(bad_events, "emotion") and len(named(bad_events, "error")) == 18
    assert app.extensions["ser_stream"].active == 2
    good.disconnect(namespace=NS)
    bad.disconnect(namespace=NS)
    assert app.extensions["ser_stream"].active == 0




@pytest.mark.parametrize("app_config", [{"STREAM_BURST_S": 1.0, "STREAM_RATE": 1.0}], indirect=True)
def test_too_fast(stream_client):
    start(stream_client)
    send(stream_client, tone_pcm(2.0))  # 2 s at once with 1 s of burst allowed
    assert "too_fast" in [e["code"] for e in named(collect(stream_client, has("error")), "error")]


@pytest.mark.parametrize("app_config", [{"MAX_STREAMS": 1}], indirect=True)
def test_server_busy(app, stream_client):
    assert start(stream_client)["ok"]
    other = socketio.test_client(app, namespace=NS)
    ack = start(other)
    assert ack["ok"] is False and ack["code"] == "server_busy"
    other.disconnect(namespace=NS)


@pytest.mark.parametrize("app_config", [{"WEIGHTS": "/nonexistent/weights"}], indirect=True)
def test_start_without_model(stream_client):
    ack = start(stream_client)
    assert ack["ok"] is False and ack["code"] == "no_model"


# ---- admission, per-client limits, idle streams -------------------------------------------------
def clients(app, n):
    return [socketio.test_client(app, namespace=NS) for _ in range(n)]


def test_admission_follows_the_measured_inference_capacity(app):
    hub = app.extensions["ser_stream"]
    assert hub.worker.window_cost_s > 0  # measured at start-up
    hub.worker.window_cost_s = 0.1  # as if a window cost 100 ms: 0.75 / (0.1 x 2 windows/s) = 3 streams
    assert hub.capacity() == 3
    a, b, c, d, e = clients(app, 5)
    acks = [start(x) for x in (a, b, c, d)]
    assert [ack["ok"] for ack in acks] == [True, True, True, False]
    assert acks[3]["code"] == "server_busy"
    a.emit("stop", namespace=NS)
    assert start(e)["ok"]  # a freed slot is given again
    assert app.extensions["ser_metrics"].streams_refused.labels("server_busy")._value.get() == 1


def test_a_lagging_server_admits_no_new_stream(app):
    import time as _time

    hub = app.extensions["ser_stream"]
    hub.worker._lag_s, hub.worker._last_batch = 1.0, _time.monotonic()
    ack = start(clients(app, 1)[0])
    assert ack["ok"] is False and ack["code"] == "server_busy" and "lagging" in ack["error"]


@pytest.mark.parametrize("app_config", [{"STREAMS_PER_CLIENT": 2}], indirect=True)
def test_one_client_address_cannot_take_every_slot(app):
    hub = app.extensions["ser_stream"]
    a, b, c = clients(app, 3)  # the test client connects every socket from the same address
    assert start(a)["ok"] and start(b)["ok"]
    assert start(a)["ok"]  # a restart on the same connection reuses its slot
    ack = start(c)
    assert ack["ok"] is False and ack["code"] == "too_many_streams"
    b.disconnect(namespace=NS)
    assert start(c)["ok"] and hub.active == 2


@pytest.mark.parametrize("app_config", [{"IDLE_STREAM_S": 0.5}], indirect=True)
def test_a_started_stream_without_audio_is_closed(app, stream_client):
    hub = app.extensions["ser_stream"]
    assert start(stream_client)["ok"] and hub.active == 1
    errors = named(collect(stream_client, has("error"), timeout=5), "error")
    assert [e["code"] for e in errors] == ["idle_timeout"] and hub.active == 0
    assert app.extensions["ser_metrics"].streams_closed.labels("idle")._value.get() == 1


@pytest.mark.parametrize("app_config", [{"IDLE_STREAM_S": 0.5}], indirect=True)
def test_a_stream_that_sends_audio_is_not_idle(app, stream_client):
    hub = app.extensions["ser_stream"]
    start(stream_client)
    for _ in range(8):  # 2 s of real-time frames
        stream_client.emit("audio", tone_pcm(0.25).tobytes(), namespace=NS)
        time.sleep(0.25)
    assert hub.active == 1
    assert "idle_timeout" not in [e["code"] for e in named(collect(stream_client, lambda ev: False, 0.1), "error")]


def test_audio_without_a_stream_is_answered_once_not_per_frame(stream_client):
    for _ in range(20):
        stream_client.emit("audio", tone_pcm(0.05).tobytes(), namespace=NS)
    errors = named(collect(stream_client, lambda ev: False, timeout=0.5), "error")
    assert [e["code"] for e in errors] == ["not_started"]
