"""Features shared by training, file prediction and streaming.

Every path (training cache, ``Recognizer.predict`` and the live stream) calls
:func:`log_mel`, :func:`encoder_log_mel` or :func:`handcrafted` on a float32
16 kHz waveform, so the same audio always gives the same features.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE

N_FFT = 512  # 32 ms
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms -> 100 frames per second
N_MELS = 64
FMIN, FMAX = 50.0, 8000.0
LOG_FLOOR = 1e-6
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100

# The classic hand-crafted recipe: per-file means of these frame features.
N_MFCC = 40
N_CHROMA = 12
N_MEL_HANDCRAFTED = 128
N_HANDCRAFTED = N_MFCC + N_CHROMA + N_MEL_HANDCRAFTED + 2  # + ZCR + RMS = 182

# The pretrained speaker encoder's own input (Resemblyzer's hparams): 40 mel bands 0-8 kHz of
# the power STFT, 25 ms Hann window, 10 ms hop, after raising quiet audio to -30 dBFS.
ENCODER_BANDS = 40
ENCODER_N_FFT = 400
ENCODER_LEVEL_DBFS = -30.0
ENCODER_FLOOR = 1e-10  # the encoder reads exp() of these values: keep its near-silence near zero


@lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised mel filterbank (Slaney's mel scale), built once;
    the same numbers as ``librosa.filters.mel`` (tested), without importing librosa."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, freqs)
    bank = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for i in range(n_mels):
        bank[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    bank *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[:, None]  # equal area per band
    return bank


_MEL_LINEAR_HZ = 200.0 / 3  # Slaney's scale: linear below 1 kHz, logarithmic above
_MEL_LOG_HZ, _MEL_LOG_STEP = 1000.0, np.log(6.4) / 27.0


def _hz_to_mel(hz) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _MEL_LOG_HZ / _MEL_LINEAR_HZ + np.log(np.maximum(hz, 1e-10) / _MEL_LOG_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_LOG_HZ, log_part, hz / _MEL_LINEAR_HZ)


def _mel_to_hz(mel) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    start = _MEL_LOG_HZ / _MEL_LINEAR_HZ
    return np.where(mel >= start, _MEL_LOG_HZ * np.exp(_MEL_LOG_STEP * (mel - start)), _MEL_LINEAR_HZ * mel)


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n, size) overlapping views of ``x`` every ``hop`` samples (no copy)."""
    n = 1 + (len(x) - size) // hop
    return np.lib.stride_tricks.as_strided(x, shape=(n, size), strides=(hop * x.strides[0], x.strides[0]),
                                           writeable=False)


def power_spectrogram(wave: np.ndarray, n_fft: int = N_FFT, win_length: int = WIN_LENGTH) -> np.ndarray:
    """(n_fft // 2 + 1, frames) power STFT, centred frames every HOP_LENGTH (zero-padded ends), a
    periodic Hann window of ``win_length`` centred in ``n_fft``: ``librosa.stft``'s numbers (tested)."""
    wave = np.asarray(wave, dtype=np.float32)
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    frames = _frames(np.pad(wave, n_fft // 2), n_fft, HOP_LENGTH)
    spec = np.fft.rfft(window * frames, axis=1).astype(np.complex64).T
    return (spec.real ** 2 + spec.imag ** 2).astype(np.float32)


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(N_MELS, frames) natural-log mel power spectrogram of a 16 kHz waveform."""
    mel = mel_filterbank() @ power_spectrogram(wave)
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def encoder_log_mel(wave: np.ndarray) -> np.ndarray:
    """(ENCODER_BANDS, frames) natural-log mel power in the speaker encoder's settings; as many
    frames as :func:`log_mel` gives, so the two stack into one input."""
    wave = np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) if len(wave) else 0.0
    target = 10 ** (ENCODER_LEVEL_DBFS / 20)
    if 0 < rms < target:  # raise only, as the encoder's training did (lowering loud audio too: no gain)
        wave = wave * np.float32(target / rms)
    bank = mel_filterbank(ENCODER_BANDS, ENCODER_N_FFT, 0.0, SAMPLE_RATE / 2)  # librosa's default range
    mel = bank @ power_spectrogram(wave, ENCODER_N_FFT, ENCODER_N_FFT)
    return np.log(mel + ENCODER_FLOOR).astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Frames :func:`log_mel` returns for ``num_samples`` samples."""
    return 1 + num_samples // HOP_LENGTH


def handcrafted(wave: np.ndarray) -> np.ndarray:
    """(N_HANDCRAFTED,) vector: mean MFCC(40), chroma(12), log-mel(128), ZCR, RMS."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    power = power_spectrogram(wave)
    mel = librosa.feature.melspectrogram(S=power, sr=SAMPLE_RATE, n_mels=N_MEL_HANDCRAFTED,
                                         fmin=FMIN, fmax=FMAX)
    log_mel128 = np.log(mel + LOG_FLOOR)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
    chroma = librosa.feature.chroma_stft(S=power, sr=SAMPLE_RATE, n_fft=N_FFT)
    zcr = librosa.feature.zero_crossing_rate(wave, frame_length=WIN_LENGTH, hop_length=HOP_LENGTH)
    rms = librosa.feature.rms(S=np.sqrt(power), frame_length=N_FFT, hop_length=HOP_LENGTH)
    parts = [mfcc.mean(1), chroma.mean(1), log_mel128.mean(1), zcr.mean(1), np.log(rms.mean(1) + LOG_FLOOR)]
    return np.concatenate(parts).astype(np.float32)


TRIM_TOP_DB = 35.0  # frames this far below the loudest count as silence
TRIM_MARGIN_S = 0.1
# The app keeps a multiple of this much of each window (``trim_silence``'s ``step_s``): a few input
# shapes instead of one per window, which the optimised model runs at its warmed-up speed and in
# batches (exact lengths cost 1.7-1.9x as much per window on AMX; docs/benchmarks.md).
TRIM_STEP_S = 0.25


def trim_silence(wave: np.ndarray, step_s: float = 0.0) -> np.ndarray:
    """Cut leading and trailing silence (frames whose RMS is TRIM_TOP_DB below the loudest frame's,
    ``librosa.effects.trim``'s rule, tested against it), keeping a margin. ``step_s`` > 0: the span
    kept grows evenly at both ends, into the wave's own audio, to a multiple of ``step_s`` seconds
    (or the whole wave)."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) < N_FFT or not np.any(wave):
        return wave
    frames = _frames(np.pad(wave, WIN_LENGTH // 2), WIN_LENGTH, HOP_LENGTH)
    power = np.mean(frames * frames, axis=1)
    db = 10 * np.log10(np.maximum(1e-10, power)) - 10 * np.log10(max(1e-10, float(power.max())))
    loud = np.flatnonzero(db > -TRIM_TOP_DB)
    start, end = (int(loud[0] * HOP_LENGTH), min(len(wave), int((loud[-1] + 1) * HOP_LENGTH))) if len(loud) else (0, 0)
    margin = int(TRIM_MARGIN_S * SAMPLE_RATE)
    start, end = max(0, start - margin), min(len(wave), end + margin)
    if step_s > 0:
        step = int(round(step_s * SAMPLE_RATE))
        size = min(len(wave), max(step, -(-(end - start) // step) * step))
        start = max(0, min(start - (size - (end - start)) // 2, len(wave) - size))
        end = start + size
    return wave[start:end]
