"""HTTP routes: page, health, upload prediction (good and bad input), vendored files."""
import io
import os
import time

import numpy as np
import pytest
import soundfile as sf

from ser_model.labels import EMOTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def audio_bytes(seconds: float = 2.0, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def upload(client, data: bytes, name: str = "clip.wav", field: str = "file"):
    return client.post("/api/predict", data={field: (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_index_renders_the_page(client):
    page = client.get("/")
    assert page.status_code == 200
    for hook in ("record", "current-emotion", "probability-chart", "timeline", "upload-form", "result-label"):
        assert f'data-testid="{hook}"' in page.get_data(as_text=True)


def test_healthz(client):
    res = client.get("/healthz")
    assert res.status_code == 200
    assert res.json["ok"] is True and res.json["model"] == "m" and res.json["active_streams"] == 0


@pytest.mark.parametrize("fmt, name", [("WAV", "a.wav"), ("OGG", "a.ogg"), ("FLAC", "a.flac")])
def test_predict_valid_audio(client, fmt, name):
    res = upload(client, audio_bytes(4.0, 22050, fmt), name)
    assert res.status_code == 200, res.json
    body = res.json
    assert {"label", "confidence", "probabilities", "duration", "segments"} <= set(body)
    assert list(body["probabilities"]) == list(EMOTIONS)
    assert body["label"] in EMOTIONS and sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert body["duration"] == pytest.approx(4.0, abs=0.01)
    assert body["segments"] and set(body["segments"][0]) >= {"start", "end", "speech", "label", "probabilities"}


def test_predict_never_writes_the_upload_to_disk(client, monkeypatch):
    import tempfile

    def no_disk(*args, **kwargs):
        raise AssertionError("upload spooled to disk")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    res = upload(client, audio_bytes(20.0))  # 640 kB: above Werkzeug's 500 kB in-memory limit
    assert res.status_code == 200


def test_missing_field(client):
    res = upload(client, audio_bytes(), field="audio")
    assert res.status_code == 400 and "file" in res.json["error"]
    assert client.post("/api/predict").status_code == 400


def test_empty_file(client):
    res = upload(client, b"")
    assert res.status_code == 400 and "empty" in res.json["error"]


def test_text_file_is_not_audio(client):
    res = upload(client, b"just some words, not a sound\n" * 20, "notes.txt")
    assert res.status_code == 415 and res.json["error"]


def test_truncated_wav(client):
    res = upload(client, audio_bytes()[:30])
    assert res.status_code == 400 and res.json["error"]


@pytest.mark.parametrize("seed", range(4))
def test_garbage_never_gives_500(client, seed):
    rng = np.random.RandomState(seed)
    good = audio_bytes(1.0)
    samples = [rng.bytes(2000), b"RIFF" + rng.bytes(500), good[:44] + rng.bytes(100), b"OggS" + rng.bytes(300)]
    res = upload(client, samples[seed])
    assert res.status_code < 500 and res.is_json  # a valid header + noise is audio: 200


@pytest.mark.parametrize("app_config", [{"MAX_UPLOAD_MB": 0.1}], indirect=True)
def test_too_large(client):
    res = upload(client, audio_bytes(5.0))  # 160 kB > 0.1 MB
    assert res.status_code == 413
    assert res.is_json and "too large" in res.json["error"]


@pytest.mark.parametrize("app_config", [{"MAX_DURATION_S": 2}], indirect=True)
def test_too_long(client):
    res = upload(client, audio_bytes(3.0))
    assert res.status_code == 413 and "at most 2 s" in res.json["error"]
    res = upload(client, audio_bytes(3.0, fmt="OGG"), "a.ogg")
    assert res.status_code == 413


def test_api_errors_are_json(client):
    assert client.get("/api/predict").status_code == 405 and client.get("/api/predict").is_json
    assert client.get("/api/nothing").status_code == 404 and client.get("/api/nothing").is_json


@pytest.fixture
def app_config(request, base_config):
    """Overrides come from indirect parametrization."""
    return {**base_config, **getattr(request, "param", {})}


@pytest.mark.parametrize("app_config", [{"WEIGHTS": "/nonexistent/weights"}], indirect=True)
def test_without_a_model_the_page_loads_and_predict_says_why(client):
    assert client.get("/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json["ok"] is False and health.json["error"]
    res = upload(client, audio_bytes())
    assert res.status_code == 503 and "no model" in res.json["error"]


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "node_modules", "socket.io-client", "dist")),
                    reason="node_modules not installed (npm ci)")
def test_vendor_files_are_whitelisted(client):
    ok = client.get("/vendor/socket.io-client/dist/socket.io.min.js")
    assert ok.status_code == 200 and b"io" in ok.data
    ok.close()
    for path in ("/vendor/socket.io-client/package.json", "/vendor/debug/src/index.js",
                 "/vendor/socket.io-client/dist/../package.json", "/vendor/socket.io-client/dist/%2e%2e/package.json",
                 "/vendor/socket.io-client/dist/nothing.js", "/vendor/chart.js/dist/../../../webapp/config.py"):
        assert client.get(path).status_code == 404, path


def test_every_response_carries_the_security_headers(client):
    for res in (client.get("/"), upload(client, b""), client.get("/healthz"), client.get("/nothing")):
        csp = res.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert res.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_has_no_inline_script_or_style(client):
    """A strict CSP (no 'unsafe-inline') would block them: every script and style is a file."""
    import re

    html = client.get("/").get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)


def test_readyz_reports_model_thread_and_lag(app, client):
    res = client.get("/readyz")
    assert res.status_code == 200, res.json
    body = res.json
    assert body["ready"] and body["model_loaded"] and body["inference_alive"] and body["lag_ok"]
    assert body["window_cost_ms"] > 0 and body["stream_capacity"] >= 1 and body["lag_s"] >= 0
    assert body["inference_precision"] == [app.extensions["ser_model"]["recognizer"].precision]
    assert body["inference_precision"][0] in ("float32", "bfloat16")
    app.extensions["ser_stream"].stop_background()  # the inference thread is gone
    res = client.get("/readyz")
    assert res.status_code == 503 and res.json["inference_alive"] is False
    assert client.get("/healthz").status_code == 200  # still alive, just not ready


@pytest.mark.parametrize("app_config", [{"WEIGHTS": "/nonexistent/weights"}], indirect=True)
def test_readyz_without_a_model(client):
    assert client.get("/readyz").status_code == 503 and client.get("/readyz").json["model_loaded"] is False


def test_metrics_count_uploads_and_streams(app, client):
    upload(client, audio_bytes(1.0))
    upload(client, b"not audio at all" * 10, "x.txt")
    from webapp.extensions import socketio

    sc = socketio.test_client(app, namespace="/stream")
    sc.emit("start", {"sample_rate": 16000}, callback=True, namespace="/stream")
    sc.emit("audio", bytes(16000), namespace="/stream")  # one hop: the VAD batcher judges it
    deadline = time.monotonic() + 10
    while "ser_vad_streams_judged_total 1.0" not in client.get("/metrics").get_data(as_text=True) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    text = client.get("/metrics").get_data(as_text=True)
    assert client.get("/metrics").headers["Content-Type"].startswith("text/plain")
    for line in ('ser_uploads_total{status="200"} 1.0', 'ser_uploads_total{status="415"} 1.0',
                 "ser_streams_active 1.0", "ser_streams_started_total 1.0"):
        assert line in text, line
    for name in ("ser_decode_seconds_count 1.0", "ser_window_cost_seconds", "ser_stream_capacity",
                 "ser_inference_lag_seconds_bucket", "ser_hops_skipped_total", "ser_windows_analysed_total",
                 "ser_vad_round_seconds_count 1.0", "ser_vad_streams_judged_total 1.0"):
        assert name in text, name
    sc.disconnect(namespace="/stream")


def test_requests_are_logged_as_json_without_addresses(client, caplog):
    import json
    import logging

    from webapp.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="ser.access"):
        upload(client, b"", "x.wav")
    (record,) = [r for r in caplog.records if r.name == "ser.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["route"] == "/api/predict" and line["status"] == 400 and line["method"] == "POST"
    assert "127.0.0.1" not in json.dumps(line) and line["ms"] >= 0


@pytest.mark.parametrize("app_config", [{"MIN_DURATION_S": 0.5}], indirect=True)
def test_too_short_and_truncated_uploads_are_400_with_a_code(client):
    res = upload(client, audio_bytes(0.3))
    assert res.status_code == 400 and res.json["code"] == "too_short" and "at least 0.5 s" in res.json["error"]
    res = upload(client, audio_bytes(4.0, 48000)[:3000])  # header says 4 s, 30 ms follow
    assert res.status_code == 400 and res.json["code"] == "truncated"


def test_model_info_share_links_and_card(client):
    info = client.get("/api/model").json
    assert info["name"] == "m" and info["labels"][0] == "neutral" and isinstance(info["headline"], list)
    share = client.get("/api/share").json
    assert share["urls"] and share["urls"][0].startswith("http") and share["self_signed"] is False


@pytest.mark.parametrize("app_config", [{"SHARE_URLS": ["https://192.0.2.7:5000/", "https://localhost:5000/"],
                                         "HTTPS": True}], indirect=True)
def test_share_links_of_a_self_signed_https_server(client):
    share = client.get("/api/share").json
    assert share["urls"][0] == "https://192.0.2.7:5000/" and share["https"] and share["self_signed"]


def test_certificate_names_cover_every_network_address(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    from webapp import share, tls

    monkeypatch.setattr(share, "local_addresses", lambda: ["192.0.2.7", "198.51.100.3"])
    names = share.certificate_names("0.0.0.0")
    assert {"localhost", "127.0.0.1", "192.0.2.7", "198.51.100.3"} <= set(names)
    cert, _ = tls.self_signed_cert(tmp_path, names)
    assert set(names) <= set(tls.certificate_hosts(cert))
    before = cert.read_bytes()
    assert tls.self_signed_cert(tmp_path, names)[0].read_bytes() == before  # kept while it covers them
    tls.self_signed_cert(tmp_path, names + ["203.0.113.9"])  # a new address: made again
    assert "203.0.113.9" in tls.certificate_hosts(cert)
    urls = share.share_urls("0.0.0.0", 5443, True, "https://demo.example.org")
    assert urls[0] == "https://demo.example.org/" and "https://192.0.2.7:5443/" in urls
