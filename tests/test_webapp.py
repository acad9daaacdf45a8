"""HTTP routes: page, health, upload prediction (good and bad input), vendored files."""
import io
import os

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
def app_config(request, random_weights):
    """Overrides come from indirect parametrization."""
    return {"TESTING": True, "WEIGHTS": str(random_weights), **getattr(request, "param", {})}


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
