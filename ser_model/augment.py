"""Waveform augmentation for training data only (applied after the speaker split).

Every function takes a 16 kHz float32 waveform and returns one of the same
length; randomness comes only from the ``numpy.random.Generator`` passed in, so
a seed reproduces a chain exactly. :func:`augment` draws a random chain that
mimics what a browser microphone does to a voice: noise, gain, band-limiting,
an Opus round trip and room reverberation, plus pitch, tempo and time shifts.
"""
from __future__ import annotations

import io

import numpy as np

from .audio import SAMPLE_RATE, pad_or_trim

OPUS_COMPRESSION = 0.9  # soundfile's Opus level: about 31 kbit/s at 16 kHz, like a WebRTC call


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wave ** 2) + 1e-12))


def add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """Add coloured Gaussian noise at ``snr_db`` relative to the signal's RMS."""
    from scipy.signal import lfilter

    noise = rng.standard_normal(len(wave)).astype(np.float32)
    colour = rng.uniform(0.0, 0.95)  # 0 = white, towards 1 = brown-ish
    noise = lfilter([1.0], [1.0, -colour], noise).astype(np.float32)
    noise *= _rms(wave) / (_rms(noise) * 10 ** (snr_db / 20))
    return (wave + noise).astype(np.float32)


def gain(wave: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels, hard-clipping at full scale like a real ADC."""
    return np.clip(wave * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def time_shift(wave: np.ndarray, shift_s: float) -> np.ndarray:
    """Delay (positive) or advance (negative) the audio, filling with silence."""
    n = int(round(shift_s * SAMPLE_RATE))
    out = np.zeros_like(wave)
    if n >= 0:
        out[n:] = wave[:len(wave) - n] if n < len(wave) else []
    else:
        out[:n] = wave[-n:]
    return out


def pitch_shift(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch keeping duration (phase vocoder + resampling)."""
    import librosa

    return pad_or_trim(librosa.effects.pitch_shift(wave, sr=SAMPLE_RATE, n_steps=semitones), len(wave))


def time_stretch(wave: np.ndarray, rate: float) -> np.ndarray:
    """Speed up (rate > 1) or slow down keeping pitch; padded or cut back to the input length."""
    import librosa

    return pad_or_trim(librosa.effects.time_stretch(wave, rate=rate), len(wave)).astype(np.float32)


def band_limit(wave: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Band-pass like a cheap microphone or a telephone line."""
    from scipy.signal import butter, sosfiltfilt

    nyquist = SAMPLE_RATE / 2
    sos = butter(4, [low_hz / nyquist, min(high_hz, nyquist * 0.99) / nyquist], btype="band", output="sos")
    return sosfiltfilt(sos, wave).astype(np.float32)


def opus_round_trip(wave: np.ndarray, compression: float = OPUS_COMPRESSION) -> np.ndarray:
    """Encode to Ogg/Opus in memory and decode again (lossy speech codec)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1, 1), SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=compression)
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    return pad_or_trim(decoded, len(wave))


def reverb(wave: np.ndarray, rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """Convolve with a synthetic room response (exponentially decaying noise) of ``rt60_s``."""
    from scipy.signal import fftconvolve

    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    rir[0] = 1.0 / 0.3  # keep the direct path dominant
    out = fftconvolve(wave, rir)[:len(wave)]
    return (out * _rms(wave) / _rms(out)).astype(np.float32)


def augment(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random chain of the augmentations above; same length, label unchanged."""
    wave = np.asarray(wave, dtype=np.float32)
    if rng.random() < 0.3:
        wave = pitch_shift(wave, rng.uniform(-2.0, 2.0))
    if rng.random() < 0.3:
        wave = time_stretch(wave, rng.uniform(0.85, 1.15))
    if rng.random() < 0.3:
        wave = reverb(wave, rng, rng.uniform(0.15, 0.6))
    if rng.random() < 0.4:
        wave = band_limit(wave, rng.uniform(60, 300), rng.uniform(3400, 8000))
    if rng.random() < 0.6:
        wave = add_noise(wave, rng, rng.uniform(5, 30))
    if rng.random() < 0.4:
        wave = opus_round_trip(wave, rng.uniform(0.6, 0.95))
    if rng.random() < 0.3:
        wave = time_shift(wave, rng.uniform(-0.2, 0.2))
    peak = float(np.abs(wave).max()) + 1e-9
    return gain(wave, rng.uniform(-12, min(6.0, -20 * np.log10(peak))))


DEGRADE_SNR_DB = 20.0
DEGRADE_GAIN_DB = (-12.0, 6.0)


def browser_degrade(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The robustness protocol's fixed degradation: noise at 20 dB SNR, random gain, Opus round trip."""
    wave = add_noise(np.asarray(wave, dtype=np.float32), rng, DEGRADE_SNR_DB)
    return opus_round_trip(gain(wave, rng.uniform(*DEGRADE_GAIN_DB)))
