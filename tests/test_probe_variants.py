"""The probe's training and test copies of a recording (scripts/whisper_probe.py: variant_waves)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import whisper_probe as P  # noqa: E402


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
