"""Upload admission: bounded concurrency, a bounded waiting line, per-client limits, Retry-After;
message rates per client address (WebSocket and long-polling)."""
import io
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from webapp.limits import LimitExceeded, PerClient, PerClientRate, RateLimit, UploadGate, _polling_within


def test_per_client_counts_each_address_separately():
    slots = PerClient(2)
    assert slots.acquire("a") and slots.acquire("a") and not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a") and slots.count("a") == 2 and slots.count("b") == 1


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_limit_allows_its_burst_then_its_rate():
    clock = Clock()
    limit = RateLimit(burst=3, rate=2, clock=clock)
    assert [limit.allow() for _ in range(4)] == [True, True, True, False]
    assert limit.wait_s() == pytest.approx(0.5) and limit.wait_s(2) == pytest.approx(1.0)
    clock.now = 0.5  # one more token
    assert limit.allow() and not limit.allow()
    clock.now = 100.0  # refilled to the burst, no further
    assert sum(limit.allow() for _ in range(10)) == 3


def test_a_clients_rate_is_shared_by_its_connections_and_not_refilled_by_reconnecting():
    clock = Clock()
    rates = PerClientRate(burst=4, rate=1, clock=clock)
    rates.acquire("a")
    rates.acquire("a")  # two connections of one client draw on one bucket
    assert sum(rates.allow("a") for _ in range(10)) == 4
    rates.acquire("b")
    assert rates.allow("b")  # another address has its own
    rates.release("a")
    rates.release("a")
    rates.acquire("a")  # reconnecting at once: still empty
    assert not rates.allow("a")
    rates.release("a")
    clock.now = 2.0  # half refilled, held by nobody: kept, so a reconnection gets only the half
    rates.acquire("c")  # (a sweep runs on acquire)
    assert len(rates) == 3
    clock.now = 10.0  # refilled: forgotten (a new bucket would be the same); "b" is still held
    rates.release("c")
    rates.acquire("b")
    assert len(rates) == 1


def test_polling_posts_wait_for_the_budget_and_a_vanished_session_is_a_400():
    rates = PerClientRate(burst=32, rate=1000)
    calls = []

    def engineio(environ, start_response):
        calls.append(time.monotonic())
        if "sid=gone" in environ["QUERY_STRING"]:
            raise KeyError("Session is disconnected")
        start_response("200 OK", [])
        return [b"ok"]

    handle = _polling_within(engineio, rates)
    post = {"REQUEST_METHOD": "POST", "QUERY_STRING": "EIO=4&transport=polling&sid=x", "REMOTE_ADDR": "a"}
    began = time.monotonic()
    for i in range(2 + 10):  # the burst holds two POSTs (16 each); ten more wait 16 ms each
        # without transport=polling (Engine.IO's default) or with a look-alike of sid: charged all the same
        query = ["EIO=4&sid=x", "EIO=4&transport=polling&xsid=1"][i % 2]
        assert handle({**post, "QUERY_STRING": query}, lambda status, headers: None) == [b"ok"]
    assert time.monotonic() - began >= 10 * 16 / 1000 * 0.9
    statuses = []
    body = handle({**post, "QUERY_STRING": "EIO=4&transport=polling&sid=gone"}, lambda s, h: statuses.append(s))
    assert statuses == ["400 BAD REQUEST"] and body == [b"Session is disconnected"]


def hold(gate: UploadGate, client: str, release: threading.Event, entered: threading.Event, out: list):
    try:
        with gate.slot(client):
            entered.set()
            release.wait(5)
        out.append("ok")
    except LimitExceeded as exc:
        out.append(exc)


def test_one_runs_some_wait_the_rest_are_refused_at_once():
    gate = UploadGate(concurrency=1, queue=1, wait_s=5, per_client=1)
    release, entered, out = threading.Event(), threading.Event(), []
    runner = threading.Thread(target=hold, args=(gate, "a", release, entered, out))
    runner.start()
    assert entered.wait(2)
    waiter_in = threading.Event()
    waiter = threading.Thread(target=hold, args=(gate, "b", release, waiter_in, out))
    waiter.start()
    deadline = time.monotonic() + 2
    while gate.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    with pytest.raises(LimitExceeded) as info:  # the line is full: refused without waiting
        with gate.slot("c"):
            pass
    assert time.monotonic() - began < 0.5
    assert info.value.status == 503 and info.value.retry_after_s >= 1
    release.set()
    runner.join(5)
    waiter.join(5)
    assert out == ["ok", "ok"] and gate.running == 0 and gate.waiting == 0


def test_a_second_upload_of_the_same_client_is_429():
    gate = UploadGate(concurrency=2, queue=4, wait_s=5, per_client=1)
    release, entered, out = threading.Event(), threading.Event(), []
    t = threading.Thread(target=hold, args=(gate, "a", release, entered, out))
    t.start()
    assert entered.wait(2)
    with pytest.raises(LimitExceeded) as info:
        with gate.slot("a"):
            pass
    assert info.value.status == 429
    with gate.slot("b"):  # another client is not affected
        pass
    release.set()
    t.join(5)


def test_waiting_too_long_is_503_with_retry_after():
    gate = UploadGate(concurrency=1, queue=2, wait_s=0.2, per_client=1)
    release, entered, out = threading.Event(), threading.Event(), []
    t = threading.Thread(target=hold, args=(gate, "a", release, entered, out))
    t.start()
    assert entered.wait(2)
    began = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        with gate.slot("b"):
            pass
    assert 0.15 < time.monotonic() - began < 2 and info.value.status == 503
    release.set()
    t.join(5)


# ---- through HTTP -----------------------------------------------------------------------------------
def wav(seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


@pytest.fixture
def app_config(base_config):
    return {**base_config, "TRUSTED_PROXIES": 1, "UPLOAD_QUEUE": 0}


def slow_model(app, seconds: float):
    """Make each analysis take ``seconds`` (the real model, slowed), to hold the upload slot."""
    rec = app.extensions["ser_model"]["recognizer"]
    original = rec.predict

    def predict(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    rec.predict = predict


def upload(client, forwarded_for: str):
    return client.post("/api/predict", data={"file": (io.BytesIO(wav()), "a.wav")},
                       content_type="multipart/form-data", headers={"X-Forwarded-For": forwarded_for})


def test_http_limits_use_the_forwarded_address_and_say_when_to_retry(app):
    slow_model(app, 1.0)
    results = {}

    def first():
        results["first"] = upload(app.test_client(), "203.0.113.7")

    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.3)
    same = upload(app.test_client(), "198.51.100.1, 203.0.113.7")  # same client behind the proxy
    other = upload(app.test_client(), "203.0.113.8")  # another client: the one slot is taken, no line
    t.join(10)
    assert results["first"].status_code == 200
    assert same.status_code == 429 and int(same.headers["Retry-After"]) >= 1 and same.json["error"]
    assert other.status_code == 503 and int(other.headers["Retry-After"]) >= 1
    metrics = app.extensions["ser_metrics"]
    assert metrics.uploads.labels("429")._value.get() == 1 and metrics.uploads.labels("200")._value.get() == 1


def test_tls_websockets_keep_a_reader_thread():
    """A TLS connection is read by a thread of its own even with WS_READ_INLINE: read by the request
    thread while Engine.IO's writer thread wrote, `run.py --https` lost connections under load."""
    import socket
    import ssl

    from webapp.limits import _InlineReader, _WebSocketReader, reader_class

    plain = socket.socket()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).wrap_socket(socket.socket(), server_side=True,
                                                               do_handshake_on_connect=False)
    try:
        assert reader_class(plain, inline=True) is _InlineReader
        assert reader_class(tls, inline=True) is _WebSocketReader
        assert reader_class(plain, inline=False) is _WebSocketReader
    finally:
        plain.close()
        tls.close()
