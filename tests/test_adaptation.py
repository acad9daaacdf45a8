"""Voice adaptation (issue 12): a calm reference of the speaker's voice, for files, the HTTP API and
live streams. Uses the shipped model (it has the adapted head) and espeak-ng speech."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model import EMOTIONS, Recognizer
from ser_model.audio import load_audio
from ser_model.inference import ProfileError
from ser_model.streaming import StreamSession, WindowJob

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
NS = "/stream"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    rec = Recognizer.load(WEIGHTS)
    if not rec.adapts:
        pytest.skip("the shipped model has no adapted head")
    return rec


def test_a_profile_changes_the_answer_and_is_marked(recognizer, espeak_wav):
    wave = load_audio(espeak_wav)
    profile = recognizer.voice_profile(wave)
    assert profile.shape == (recognizer.model.stats_size,) and np.isfinite(profile).all()
    plain, adapted = recognizer.predict(wave), recognizer.predict(wave, profile=profile)
    assert not plain.adapted and adapted.adapted and adapted.to_dict()["adapted"] is True
    assert set(adapted.probabilities) == set(EMOTIONS)
    assert abs(sum(adapted.probabilities.values()) - 1) < 1e-3
    assert max(abs(plain.probabilities[e] - adapted.probabilities[e]) for e in EMOTIONS) > 1e-3


def test_a_profile_needs_speech(recognizer):
    with pytest.raises(ProfileError):
        recognizer.voice_profile(np.zeros(5 * 16000, np.float32))
    with pytest.raises(ProfileError):
        recognizer.voice_profile(0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32))


def test_batched_adapted_and_plain_windows_match_one_by_one(recognizer, espeak_wav):
    wave = load_audio(espeak_wav)
    profile = recognizer.voice_profile(wave)
    windows = [wave[:48000], wave[8000:40000], wave[:24000]]
    profiles = [profile, None, profile]
    together = recognizer.predict_proba(windows, profiles)
    alone = np.concatenate([recognizer.predict_proba([w], [p]) if p is not None else recognizer.predict_proba([w])
                            for w, p in zip(windows, profiles)])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_stream_session_collects_calibration_speech_then_adapts(espeak_wav):
    session = StreamSession(16000, calibrate_s=2.0)
    assert session.calibration_audio is None
    for _ in range(4):  # silence does not count towards the calibration
        session.feed(np.zeros(16000, "<i2").tobytes())
    assert session.calibration_audio is None
    pcm = (load_audio(espeak_wav) * 20000).astype("<i2")
    pcm = np.concatenate([pcm, pcm])
    jobs = []
    for i in range(0, len(pcm), 4000):
        jobs = session.feed(pcm[i:i + 4000].tobytes())
        if session.calibration_audio is not None:
            break
    speech = session.calibration_audio
    assert speech is not None and 2.0 <= len(speech) / 16000 < 2.1
    assert all(j.profile is None for j in jobs)
    session.set_profile(np.ones(8, np.float32))
    assert session.calibration_audio is None
    later = [j for k in range(i + 4000, len(pcm), 4000) for j in session.feed(pcm[k:k + 4000].tobytes())]
    assert later and all(j.profile is not None for j in later)
    event = session.apply(later[0], np.full(7, 1 / 7))
    assert event["adapted"] is True


def test_adapted_events_use_the_adapted_threshold():
    session = StreamSession(16000, uncertain_below=0.9, uncertain_below_adapted=0.1)
    job = WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32), profile=np.zeros(8, np.float32))
    assert session.apply(job, np.full(7, 1 / 7))["uncertain"] is False  # 0.14 >= 0.1


@pytest.fixture
def shipped_app(base_config):
    from webapp import create_app

    return create_app({**base_config, "WEIGHTS": str(WEIGHTS)})


def wav_bytes(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV")
    return buf.getvalue()


def test_upload_with_a_reference_is_adapted(shipped_app, espeak_wav):
    if not shipped_app.extensions["ser_model"]["recognizer"].adapts:
        pytest.skip("the shipped model has no adapted head")
    client = shipped_app.test_client()
    speech = wav_bytes(load_audio(espeak_wav))
    r = client.post("/api/predict", data={"file": (io.BytesIO(speech), "a.wav"),
                                          "reference": (io.BytesIO(speech), "calm.wav")},
                    content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["adapted"] is True
    silence = wav_bytes(np.zeros(3 * 16000, np.float32))
    r = client.post("/api/predict", data={"file": (io.BytesIO(speech), "a.wav"),
                                          "reference": (io.BytesIO(silence), "calm.wav")},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.get_json()["code"] == "bad_reference"
    r = client.post("/api/predict", data={"file": (io.BytesIO(speech), "a.wav")}, content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["adapted"] is False


def test_a_live_stream_calibrates_then_adapts(shipped_app, espeak_wav):
    from webapp import socketio

    if not shipped_app.extensions["ser_model"]["recognizer"].adapts:
        pytest.skip("the shipped model has no adapted head")
    client = socketio.test_client(shipped_app, namespace=NS)
    assert not client.emit("start", {"sample_rate": 16000, "calibrate_s": 50}, callback=True, namespace=NS)["ok"]
    assert client.emit("start", {"sample_rate": 16000, "calibrate_s": 2}, callback=True, namespace=NS)["ok"]
    pcm = (load_audio(espeak_wav) * 20000).astype("<i2")
    got = []

    def send_until(done, rounds: int = 8):
        """Stream the clip (a little faster than real time, within the rate limit: the profile is
        made while speech goes on) until ``done``."""
        for _ in range(rounds):
            for i in range(0, len(pcm), 4000):
                client.emit("audio", pcm[i:i + 4000].tobytes(), namespace=NS)
                time.sleep(0.2)
                got.extend(client.get_received(NS))
            if done():
                return

    send_until(lambda: "calibrated" in [m["name"] for m in got])
    send_until(lambda: any(m["name"] == "emotion" and m["args"][0].get("adapted") for m in got), rounds=2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(m["name"] == "emotion" and m["args"][0].get("adapted") for m in got):
        time.sleep(0.2)
        got.extend(client.get_received(NS))
    calibrated = [m["args"][0] for m in got if m["name"] == "calibrated"]
    assert calibrated and calibrated[0]["ok"] is True
    emotions = [m["args"][0] for m in got if m["name"] == "emotion"]
    assert any(e["adapted"] for e in emotions) and not emotions[0]["adapted"]
    assert [m["args"][0]["code"] for m in got if m["name"] == "error"] == ["bad_start"]  # the first start only
    client.disconnect(namespace=NS)


def test_cli_adapts_to_reference_files(espeak_wav, tmp_path):
    import json
    import subprocess
    import sys

    if not Recognizer.load(WEIGHTS).adapts:
        pytest.skip("the shipped model has no adapted head")
    cmd = [sys.executable, "-m", "ser_model", "predict", str(espeak_wav), "--json"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    adapted = subprocess.run(cmd + ["--reference", str(espeak_wav), str(espeak_wav)], capture_output=True,
                             text=True, timeout=300)
    assert json.loads(plain.stdout.splitlines()[-1])["adapted"] is False
    assert json.loads(adapted.stdout.splitlines()[-1])["adapted"] is True
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(3 * 16000, np.float32), 16000)
    refused = subprocess.run(cmd + ["--reference", str(silence)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "cannot adapt" in refused.stderr
