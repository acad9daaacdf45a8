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


# Channel and level augmentations aimed at the cross-corpus collapse (issue 12): corpora differ in
# recording level (RAVDESS about -37 dBFS active level, TESS/ASED/TurEV-DB about -26, close
# microphones about -15), microphone colour and processing. None of these is used by augment().
LEVEL_FRAME_S = 0.02
LEVEL_ACTIVE_DB = 35.0  # frames this far below the loudest frame do not count as active speech


def active_level_db(wave: np.ndarray) -> float:
    """Level of the speech in ``wave`` in dBFS: RMS over the 20 ms frames within 35 dB of the loudest
    (silence and pauses left out, so a clip's level does not depend on how much of it is silent)."""
    n = int(LEVEL_FRAME_S * SAMPLE_RATE)
    frames = np.asarray(wave, dtype=np.float64)[:len(wave) // n * n].reshape(-1, n) if len(wave) >= n else \
        np.asarray(wave, dtype=np.float64)[None]
    power = np.mean(frames ** 2, axis=1) + 1e-20
    active = power >= power.max() * 10 ** (-LEVEL_ACTIVE_DB / 10)
    return float(10 * np.log10(np.mean(power[active])))


def set_level(wave: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale so the active level is ``dbfs`` (:func:`active_level_db`), hard-clipping at full scale."""
    return gain(wave, dbfs - active_level_db(wave))


def eq_tilt(wave: np.ndarray, db_per_octave: float, pivot_hz: float = 1000.0) -> np.ndarray:
    """Tilt the spectrum by ``db_per_octave`` around ``pivot_hz`` (positive: brighter, like a close
    or small microphone; negative: duller), flat below 50 Hz; the RMS is kept."""
    spec = np.fft.rfft(np.asarray(wave, dtype=np.float64))
    freqs = np.maximum(np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE), 50.0)
    spec *= 10 ** (db_per_octave * np.log2(freqs / pivot_hz) / 20)
    out = np.fft.irfft(spec, n=len(wave))
    return (out * _rms(wave) / _rms(out)).astype(np.float32)


def compress(wave: np.ndarray, threshold_db: float, ratio: float, release_s: float = 0.1) -> np.ndarray:
    """Dynamic-range compression like a phone's or a voice-chat's: the level above ``threshold_db``
    (relative to the active level) is divided by ``ratio``; 10 ms attack, ``release_s`` release,
    make-up gain restores the RMS."""
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import lfilter

    wave = np.asarray(wave, dtype=np.float32)
    hop = SAMPLE_RATE // 100
    n_frames = -(-len(wave) // hop)
    padded = np.pad(wave.astype(np.float64), (0, n_frames * hop - len(wave)))
    level = 10 * np.log10(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1) + 1e-20)
    level = maximum_filter1d(level, 2)  # attack: react within one frame
    a = np.exp(-1.0 / max(release_s * 100, 1e-3))
    smooth = level.copy()
    smooth[1:] = lfilter([1 - a], [1, -a], level[1:], zi=[a * level[0]])[0]  # release: decay slowly
    envelope = np.maximum(level, smooth)
    over = np.maximum(envelope - (active_level_db(wave) + threshold_db), 0.0)
    gain_db = np.repeat(-over * (1 - 1 / ratio), hop)[:len(wave)]
    out = wave * 10 ** (gain_db / 20)
    return (out * _rms(wave) / _rms(out)).astype(np.float32)


def clip_distort(wave: np.ndarray, drive_db: float) -> np.ndarray:
    """Overdrive: raise by ``drive_db`` above full scale at the peak, hard-clip, and bring the RMS back."""
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.abs(wave).max()) + 1e-9
    out = np.clip(wave * (10 ** (drive_db / 20) / peak), -1.0, 1.0)
    return (out * _rms(wave) / _rms(out)).astype(np.float32)


CHANNEL_LEVEL_DBFS = (-50.0, -10.0)  # active levels drawn by channel_augment (RAVDESS sits at -37)


def channel_augment(wave: np.ndarray, rng: np.random.Generator,
                    level_dbfs: tuple[float, float] = CHANNEL_LEVEL_DBFS) -> np.ndarray:
    """One random chain of microphone and room effects, then a random active level over a wide range
    (clipped where it clips): what separates a user's microphone from a corpus's studio."""
    wave = np.asarray(wave, dtype=np.float32)
    if rng.random() < 0.6:
        wave = eq_tilt(wave, rng.uniform(-4.0, 4.0))
    if rng.random() < 0.3:
        wave = band_limit(wave, rng.uniform(60, 400), rng.uniform(3400, 8000))
    if rng.random() < 0.4:
        wave = compress(wave, rng.uniform(-20.0, -5.0), rng.uniform(2.0, 8.0))
    if rng.random() < 0.3:
        wave = reverb(wave, rng, rng.uniform(0.15, 0.8))
    if rng.random() < 0.2:
        wave = clip_distort(wave, rng.uniform(2.0, 12.0))
    if rng.random() < 0.4:
        wave = add_noise(wave, rng, rng.uniform(10, 40))
    return set_level(wave, rng.uniform(*level_dbfs))
