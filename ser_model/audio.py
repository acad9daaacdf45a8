"""Decode any common audio into mono float32 at the model rate.

soundfile (libsndfile) reads wav/flac/ogg/opus/mp3 in-process; ffmpeg, when
installed, backs the rest (webm, m4a, ...). Everything that is not usable
audio raises an :class:`AudioError` subclass whose ``code`` names the problem.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000  # the one rate every model sees
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 96000
FFMPEG_TIMEOUT_S = 60

AudioSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


class AudioError(ValueError):
    """Input that cannot be turned into audio; ``code`` is machine-readable."""

    code = "undecodable"


class EmptyAudioError(AudioError):
    code = "empty"


class NotAudioError(AudioError):
    code = "not_audio"


class UndecodableAudioError(AudioError):
    code = "undecodable"


class InvalidSamplesError(AudioError):
    code = "invalid_samples"


class SampleRateError(AudioError):
    code = "bad_sample_rate"


# Leading bytes of the containers we accept; used to tell "broken audio" from "not audio".
_MAGIC = (
    (0, b"RIFF"), (0, b"RIFX"), (0, b"RF64"), (0, b"fLaC"), (0, b"OggS"), (0, b"ID3"),
    (0, b"\x1a\x45\xdf\xa3"), (4, b"ftyp"), (0, b"FORM"), (0, b"caff"), (0, b".snd"),
    (0, b"#!AMR"), (0, b"wvpk"), (0, b"MAC "),
)


def _has_container_magic(head: bytes) -> bool:
    return any(head[off:off + len(sig)] == sig for off, sig in _MAGIC)


def looks_like_audio(head: bytes) -> bool:
    """True if ``head`` starts like a supported audio container or an MPEG/AAC frame."""
    if _has_container_magic(head):
        return True
    # MPEG audio / ADTS frame sync: 11 set bits.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``source`` (path, bytes or binary file) to mono float32 at ``sr``.

    Raises
    ------
    AudioError
        ``EmptyAudioError``, ``NotAudioError``, ``UndecodableAudioError`` or
        ``InvalidSamplesError``; a missing path raises ``FileNotFoundError``.
    """
    data = _read_bytes(source)
    if not data:
        raise EmptyAudioError("the file is empty")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # libsndfile cannot read it: try ffmpeg
        samples, rate = _decode_with_ffmpeg(data, sr), sr
    else:
        if samples.shape[0] == 0:
            # A header claiming zero frames may still be followed by audio (a WAV
            # whose writer never patched the sizes, e.g. a crashed or streaming
            # recorder); ffmpeg reads such files to the end. Truly empty stays empty.
            try:
                samples, rate = _decode_with_ffmpeg(data, sr), sr
            except AudioError:
                raise EmptyAudioError("the audio holds no samples") from None
    return to_model_rate(samples, rate, sr)


def to_model_rate(samples: np.ndarray, rate: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Validate, down-mix (frames, channels) or (frames,) samples and resample to ``sr``."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise InvalidSamplesError(
            f"expected (frames,) or (frames, channels) samples, got shape {samples.shape}")
    # Scale integers to [-1, 1) BEFORE down-mixing: the mean of an integer array is
    # float64, which would otherwise skip the scaling and leave values in the thousands.
    if np.issubdtype(samples.dtype, np.signedinteger):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    elif np.issubdtype(samples.dtype, np.unsignedinteger):  # e.g. 8-bit PCM: centred on 128
        half = float(np.iinfo(samples.dtype).max // 2 + 1)
        samples = (samples.astype(np.float64) - half).astype(np.float32) / half
    elif not np.issubdtype(samples.dtype, np.floating):
        raise InvalidSamplesError(f"samples must be integers or floats, not {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    if samples.size == 0:
        raise EmptyAudioError("the audio holds no samples")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise InvalidSamplesError("the audio contains NaN or infinite samples")
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise SampleRateError(f"sample rate {rate} Hz is outside {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz")
    return resample(samples, rate, sr)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality (soxr) resampling; a no-op when the rates match."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr  # a dependency of librosa; imported late to keep start-up light

    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32)


def pcm16_to_float(payload: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes -> float32 in [-1, 1)."""
    if len(payload) % 2:
        raise UndecodableAudioError("16-bit PCM payload has an odd number of bytes")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def pad_or_trim(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end or cut ``wave`` to exactly ``length`` samples."""
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if wave.shape[-1] >= length:
        return wave[..., :length]
    pad = [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])]
    return np.pad(wave, pad)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def _read_bytes(source: AudioSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    return source.read()


def _decode_with_ffmpeg(data: bytes, sr: int) -> np.ndarray:
    if not looks_like_audio(data[:64]):
        raise NotAudioError("the file is not in a supported audio format")
    if not ffmpeg_available():
        raise UndecodableAudioError("this audio format needs ffmpeg, which is not installed")
    out = _run_ffmpeg("pipe:0", data, sr)
    if not out:
        # MP4/M4A with the index at the end cannot be read from a pipe: use a
        # memory-backed temporary file that is removed straight away.
        tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".audio") as tmp:
            tmp.write(data)
            tmp.flush()
            retry = _run_ffmpeg(tmp.name, None, sr)
        out = retry if retry is not None else out
    if out == b"":  # ffmpeg read the file without error and found no samples in it
        raise EmptyAudioError("the audio holds no samples")
    if out is None:
        if not _has_container_magic(data[:64]):
            # Only an 11-bit frame sync matched, which 1 in 2048 arbitrary files also
            # start with: with nothing decodable behind it, it was not audio at all.
            raise NotAudioError("the file is not in a supported audio format")
        raise UndecodableAudioError("the audio could not be decoded (truncated or corrupt?)")
    usable = len(out) - len(out) % 4
    return np.frombuffer(out[:usable], dtype="<f4").copy()


def _run_ffmpeg(src: str, stdin: bytes | None, sr: int) -> bytes | None:
    """Decoded float32 PCM bytes; ``b""`` for a clean decode with no samples; None on failure."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", src,
           "-vn", "-f", "f32le", "-ac", "1", "-ar", str(sr), "pipe:1"]
    try:
        proc = subprocess.run(cmd, input=stdin if stdin is not None else b"",
                              capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout
