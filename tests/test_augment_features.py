"""Augmentation keeps length and label and is reproducible; features are one shared path."""
from __future__ import annotations

import numpy as np
import pytest

from ser_model import augment as A
from ser_model import features as F
from ser_model.audio import SAMPLE_RATE
from ser_model.data import N_VARIANTS, FeatureBank, crop

SR = SAMPLE_RATE


def voice(seconds=1.5, f0=180.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1
    return (wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def band_energy(wave, lo, hi):
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    return spec[(freqs >= lo) & (freqs < hi)].sum()


@pytest.mark.parametrize("fn", [
    lambda w, r: A.add_noise(w, r, 10), lambda w, r: A.gain(w, -6), lambda w, r: A.time_shift(w, 0.1),
    lambda w, r: A.time_shift(w, -0.1), lambda w, r: A.pitch_shift(w, 2), lambda w, r: A.time_stretch(w, 1.2),
    lambda w, r: A.time_stretch(w, 0.8), lambda w, r: A.band_limit(w, 300, 3400),
    lambda w, r: A.opus_round_trip(w), lambda w, r: A.reverb(w, r, 0.4), A.augment, A.browser_degrade,
])
def test_every_augmentation_keeps_length_and_finite_float32(fn):
    wave = voice()
    out = fn(wave, np.random.default_rng(1))
    assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, wave)


def test_augment_is_reproducible_from_its_seed():
    wave = voice()
    a = A.augment(wave, np.random.default_rng(7))
    b = A.augment(wave, np.random.default_rng(7))
    c = A.augment(wave, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_noise_hits_the_requested_snr():
    wave = voice()
    noisy = A.add_noise(wave, np.random.default_rng(0), 20.0)
    noise = noisy - wave
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean(noise ** 2))
    assert abs(snr - 20.0) < 0.1


def test_gain_scales_and_clips():
    wave = voice()
    assert np.allclose(A.gain(wave, -20), wave * 0.1, atol=1e-7)
    assert np.abs(A.gain(wave, 40)).max() <= 1.0


def test_time_shift_moves_the_signal():
    wave = np.zeros(SR, np.float32)
    wave[100] = 1.0
    assert A.time_shift(wave, 0.01)[100 + 160] == 1.0
    assert A.time_shift(wave, -0.005)[100 - 80] == 1.0


def test_pitch_shift_moves_the_fundamental():
    wave = np.sin(2 * np.pi * 200 * np.arange(SR) / SR).astype(np.float32)
    shifted = A.pitch_shift(wave, 12)  # one octave up
    assert band_energy(shifted, 380, 420) > 10 * band_energy(shifted, 180, 220)


def test_band_limit_removes_out_of_band_energy():
    t = np.arange(SR) / SR
    wave = (np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 7000 * t)).astype(np.float32) * 0.3
    out = A.band_limit(wave, 300, 3400)
    assert band_energy(out, 6900, 7100) < 0.01 * band_energy(wave, 6900, 7100)
    assert band_energy(out, 900, 1100) > 0.8 * band_energy(wave, 900, 1100)


def test_opus_round_trip_is_lossy_but_close():
    wave = voice()
    out = A.opus_round_trip(wave)
    assert np.corrcoef(wave, out)[0, 1] > 0.9 and not np.array_equal(wave, out)


def test_log_mel_shape_and_frame_count():
    wave = voice(2.0)
    spec = F.log_mel(wave)
    assert spec.shape == (F.N_MELS, F.num_frames(len(wave))) and spec.dtype == np.float32
    assert F.handcrafted(wave).shape == (F.N_HANDCRAFTED,)


def test_log_mel_of_a_window_equals_the_slice_of_the_whole():
    """Streaming computes features per window; on hop-aligned windows they match batch features."""
    wave = voice(3.0)
    whole = F.log_mel(wave)
    start = 50 * F.HOP_LENGTH
    window = F.log_mel(wave[start:start + SR])
    # centred frames away from the window edges see identical samples
    assert np.allclose(window[:, 3:-3], whole[:, 53:50 + window.shape[1] - 3], atol=1e-4)


def test_trim_silence_cuts_edges_but_keeps_margin():
    wave = np.concatenate([np.zeros(SR), voice(1.0), np.zeros(SR)])
    trimmed = F.trim_silence(wave)
    assert 1.0 * SR <= len(trimmed) <= 1.0 * SR + 2 * F.TRIM_MARGIN_S * SR + 2 * F.WIN_LENGTH
    assert len(F.trim_silence(np.zeros(SR, np.float32))) == SR  # all silence: left alone


def test_trim_silence_in_steps_keeps_the_exact_span_and_a_few_lengths():
    rng = np.random.default_rng(0)
    step = int(F.TRIM_STEP_S * SR)
    lengths = set()
    for _ in range(40):  # speech of random length at a random place in a 3 s window
        n, lead = int(rng.uniform(0.3, 2.6) * SR), int(rng.uniform(0, 0.3) * SR)
        wave = np.zeros(3 * SR, np.float32)
        seg = voice(n / SR)
        wave[lead:lead + len(seg)] = seg
        exact = F.trim_silence(wave)
        kept = F.trim_silence(wave, F.TRIM_STEP_S)
        lengths.add(len(kept))
        assert len(kept) % step == 0 and len(kept) - len(exact) < step
        offset = np.flatnonzero(np.abs(wave) > 0)[0]  # the exact span sits inside what is kept
        s_exact = next(i for i in range(len(wave)) if np.array_equal(wave[i:i + len(exact)], exact))
        s_kept = next(i for i in range(len(wave)) if np.array_equal(wave[i:i + len(kept)], kept))
        assert s_kept <= s_exact <= offset and s_exact + len(exact) <= s_kept + len(kept) <= len(wave)
    assert len(lengths) <= 3 * SR // step < 40  # a few shapes, where exact lengths are one per window
    short = F.trim_silence(voice(0.2), F.TRIM_STEP_S)
    assert len(short) == len(voice(0.2))  # shorter than a step: the whole wave


def test_crop_is_exact_length_and_repeats_short_clips():
    spec = np.arange(20, dtype=np.float32).reshape(2, 10)
    assert crop(spec, 25, None).shape == (2, 25)
    assert crop(spec, 6, np.random.default_rng(0)).shape == (2, 6)
    assert np.array_equal(crop(spec, 4, None), spec[:, 3:7])  # centred


def test_feature_bank_keeps_labels_and_holds_distinct_variants(tmp_path):
    import soundfile as sf

    from ser_model.corpora import scan

    folder = tmp_path / "Actor_01"
    folder.mkdir()
    for code, f0 in (("05", 220), ("04", 140)):
        sf.write(folder / f"03-01-{code}-01-01-01-01.wav", voice(1.0, f0), SR)
    bank = FeatureBank(scan(tmp_path).records, workers=1, cache_dir=tmp_path / "cache")
    assert [r.label for r in bank.records] == ["sad", "angry"]  # sorted by path: 04 before 05
    assert list(bank.labels) == [2, 3]
    assert len(bank.logmel[0]) == N_VARIANTS + 1
    assert not np.allclose(bank.logmel[0][0][:, :50], bank.logmel[0][1][:, :50])
    # the clean variant is exactly the shared feature path on the trimmed file
    clean = F.log_mel(F.trim_silence(sf.read(bank.records[0].path, dtype="float32")[0]))
    assert np.allclose(bank.logmel[0][0].astype(np.float32), clean, atol=1e-2)
    # a second bank reads the cache instead of recomputing
    again = FeatureBank(bank.records, workers=1, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.logmel[1][2], bank.logmel[1][2])


def test_more_variants_are_cached_apart_and_extend_the_default_ones(tmp_path):
    """``--variants 4``: five log-mels per file in their own cache entries; the first two augmented
    copies are the default bank's (same seeded draws), the others new."""
    import soundfile as sf

    from ser_model.corpora import scan

    folder = tmp_path / "Actor_01"
    folder.mkdir()
    sf.write(folder / "03-01-05-01-01-01-01.wav", voice(1.0, 180), SR)
    records = scan(tmp_path).records
    default = FeatureBank(records, workers=1, cache_dir=tmp_path / "cache")
    more = FeatureBank(records, workers=1, cache_dir=tmp_path / "cache", n_variants=4)
    assert len(default.logmel[0]) == N_VARIANTS + 1 and len(more.logmel[0]) == 5
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2
    for i in range(N_VARIANTS + 1):
        assert np.array_equal(more.logmel[0][i], default.logmel[0][i])
    assert not np.allclose(more.logmel[0][3][:, :50], more.logmel[0][1][:, :50])


@pytest.mark.parametrize("fn", [
    lambda w, r: A.set_level(w, -40), lambda w, r: A.eq_tilt(w, 3), lambda w, r: A.eq_tilt(w, -3),
    lambda w, r: A.compress(w, -10, 4), lambda w, r: A.clip_distort(w, 6), A.channel_augment,
])
def test_channel_augmentations_keep_length_and_finite_float32(fn):
    wave = voice()
    out = fn(wave, np.random.default_rng(1))
    assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, wave)


def test_active_level_ignores_silence_and_set_level_hits_it():
    wave = voice()
    padded = np.concatenate([np.zeros(SR, np.float32), wave, np.zeros(2 * SR, np.float32)])
    assert abs(A.active_level_db(padded) - A.active_level_db(wave)) < 0.2  # pauses do not lower the level
    assert abs(A.active_level_db(wave) - 20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))) < 1.5
    for target in (-50.0, -37.0, -20.0):
        assert abs(A.active_level_db(A.set_level(wave, target)) - target) < 0.05
    loud = A.set_level(wave, 0.0)  # peaks far above full scale: clipped like an ADC
    assert np.abs(loud).max() <= 1.0 and A.active_level_db(loud) < 0.0


def test_eq_tilt_moves_energy_between_low_and_high_bands():
    t = np.arange(SR) / SR
    wave = (0.1 * np.sin(2 * np.pi * 250 * t) + 0.1 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32)
    bright = A.eq_tilt(wave, 3.0)  # 250 Hz is 2 octaves below the pivot, 4 kHz 2 above: 12 dB apart
    ratio_db = 10 * np.log10(band_energy(bright, 3900, 4100) / band_energy(bright, 240, 260))
    assert abs(ratio_db - 12.0) < 0.5
    assert np.isclose(np.sqrt(np.mean(bright ** 2)), np.sqrt(np.mean(wave ** 2)), rtol=1e-3)


def test_compression_narrows_the_level_range_and_keeps_the_rms():
    t = np.arange(2 * SR) / SR
    wave = (np.sin(2 * np.pi * 200 * t) * np.where(t < 1, 0.5, 0.05)).astype(np.float32)  # a 20 dB step
    out = A.compress(wave, threshold_db=-25.0, ratio=4.0, release_s=0.05)

    def step_db(w):
        return 20 * np.log10(np.sqrt(np.mean(w[:SR // 2] ** 2)) / np.sqrt(np.mean(w[-SR // 2:] ** 2)))

    assert step_db(wave) == pytest.approx(20.0, abs=0.1)
    assert step_db(out) < 8.0  # both halves above the threshold: 20 dB / 4 = 5 dB apart
    assert np.isclose(np.sqrt(np.mean(out ** 2)), np.sqrt(np.mean(wave ** 2)), rtol=1e-3)


def test_clip_distortion_flattens_peaks_and_keeps_the_rms():
    wave = voice()
    out = A.clip_distort(wave, 12.0)
    crest = lambda w: np.abs(w).max() / np.sqrt(np.mean(w ** 2))  # noqa: E731
    assert crest(out) < 0.6 * crest(wave)
    assert np.isclose(np.sqrt(np.mean(out ** 2)), np.sqrt(np.mean(wave ** 2)), rtol=1e-3)


def test_channel_augment_is_reproducible_and_spreads_the_level_widely():
    wave = voice()
    a = A.channel_augment(wave, np.random.default_rng(3))
    assert np.array_equal(a, A.channel_augment(wave, np.random.default_rng(3)))
    levels = [A.active_level_db(A.channel_augment(wave, np.random.default_rng(s))) for s in range(12)]
    assert min(levels) < -40 and max(levels) > -20  # the source sits near -27 dBFS
    assert all(-51 < x < -9.5 for x in levels)
