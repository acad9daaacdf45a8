"""Decode any common audio into mono float32 at the model rate, within limits.

soundfile (libsndfile) reads wav/flac/ogg/opus/mp3 in-process; ffmpeg backs the
rest (webm, m4a, ...; see :mod:`ser_model.ffmpeg`). Everything that is not usable
audio raises an :class:`AudioError` subclass whose ``code`` names the problem.

Decoding is bounded by construction: the declared sample rate and channel count
are checked before any sample is decoded, and decoding stops as soon as the
output passes ``max_duration_s`` (whatever the header claimed), so memory is at
most the input bytes plus about twice ``max_duration_s`` of 16 kHz float32.
Samples are always finite; float audio louder than full scale is scaled down.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf

from . import ffmpeg

SAMPLE_RATE = 16000  # the one rate every model sees
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 96000
MAX_CHANNELS = 8
DECODE_BLOCK = 1 << 16  # frames per libsndfile read
TRUNCATION_TOLERANCE = 0.01  # a file may miss this share of its declared samples before it counts as truncated

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


class TruncatedAudioError(AudioError):
    code = "truncated"


class TooShortError(AudioError):
    code = "too_short"


class TooLongError(AudioError):
    code = "too_long"


# Leading bytes of the containers we accept -> container name; tells "broken audio" from "not audio".
_MAGIC = (
    (0, b"RIFF", "wav"), (0, b"RIFX", "wav"), (0, b"RF64", "wav"), (0, b"fLaC", "flac"), (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"), (0, b"\x1a\x45\xdf\xa3", "webm"), (4, b"ftyp", "mp4"), (0, b"FORM", "aiff"),
    (0, b"caff", "caf"), (0, b".snd", "au"), (0, b"#!AMR", "amr"), (0, b"wvpk", "wavpack"), (0, b"MAC ", "ape"),
)
_LIBSNDFILE = {"wav", "flac", "ogg", "mp3", "aiff", "caf", "au"}  # containers libsndfile is tried on first


def container_of(head: bytes) -> str | None:
    """The container the first bytes announce ("wav", "mp4", ...), or None if they are not audio."""
    for off, sig, name in _MAGIC:
        if head[off:off + len(sig)] == sig:
            return name
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio / ADTS frame sync
        return "aac" if (head[1] & 0x06) == 0 else "mp3"
    return None


def looks_like_audio(head: bytes) -> bool:
    """True if ``head`` starts like a supported audio container or an MPEG/AAC frame."""
    return container_of(head) is not None


def load_audio(source: AudioSource, sr: int = SAMPLE_RATE, *, max_duration_s: float | None = None,
               min_duration_s: float = 0.0, allow_truncated: bool = True) -> np.ndarray:
    """Decode ``source`` (path, bytes or binary file) to mono float32 at ``sr``.

    Parameters
    ----------
    max_duration_s
        Longer audio raises ``TooLongError``, as soon as the header declares it or the decoder
        has produced that much (None: no limit, for trusted files).
    min_duration_s
        Shorter audio raises ``TooShortError``.
    allow_truncated
        False: a file holding clearly fewer samples than its header declares raises
        ``TruncatedAudioError`` instead of yielding the part that is there.

    Raises
    ------
    AudioError
        ``EmptyAudioError``, ``NotAudioError``, ``UndecodableAudioError``, ``InvalidSamplesError``,
        ``SampleRateError``, ``TruncatedAudioError``, ``TooShortError`` or ``TooLongError``;
        a missing path raises ``FileNotFoundError``.
    """
    data = _read_bytes(source)
    if not data:
        raise EmptyAudioError("the file is empty")
    container = container_of(data[:64])
    if container is None:
        raise NotAudioError("the file is not in a supported audio format")
    wave = None
    if container in _LIBSNDFILE:
        wave = _decode_soundfile(data, container, sr, max_duration_s, allow_truncated)
    if wave is None:  # libsndfile cannot read it
        wave = _decode_ffmpeg(data, container, sr, max_duration_s, allow_truncated)
    elif not len(wave):
        # A header claiming zero frames may still be followed by audio (a WAV whose writer never
        # patched the sizes: a crashed or streaming recorder); ffmpeg reads such files to the end.
        try:
            wave = _decode_ffmpeg(data, container, sr, max_duration_s, allow_truncated)
        except (EmptyAudioError, UndecodableAudioError):
            raise EmptyAudioError("the audio holds no samples") from None
    if len(wave) < min_duration_s * sr:
        raise TooShortError(f"the audio is {len(wave) / sr:.2f} s long; at least {min_duration_s:g} s is needed")
    return _within_full_scale(wave)


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
    return _within_full_scale(resample(samples, rate, sr))


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
    return ffmpeg.available()


def _read_bytes(source: AudioSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    return source.read()


def _check_stream(rate: int, channels: int):
    """Refuse what no speech recording declares, before decoding any of it."""
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise SampleRateError(f"sample rate {rate} Hz is outside {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidSamplesError(f"{channels} channels; at most {MAX_CHANNELS} are accepted")


def _too_long(seconds: float, limit: float) -> TooLongError:
    return TooLongError(f"the audio is longer than {limit:g} s" if seconds == float("inf")
                        else f"the audio is {seconds:.0f} s long; at most {limit:g} s is accepted")


def _decode_soundfile(data: bytes, container: str, sr: int, max_s: float | None,
                      allow_truncated: bool) -> np.ndarray | None:
    """libsndfile, block by block, resampled as it goes; None when libsndfile cannot read the file."""
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any libsndfile refusal: ffmpeg may still read it
        return None
    with f:
        rate, channels, declared = f.samplerate, f.channels, f.frames
        _check_stream(rate, channels)
        if max_s is not None and 0 < declared < 1 << 62 and declared / rate > max_s + 0.5:
            raise _too_long(declared / rate, max_s)
        resampler = _Resampler(rate, sr)
        n_in, complete = 0, True
        try:
            for block in f.blocks(blocksize=DECODE_BLOCK, dtype="float32", always_2d=True):
                n_in += len(block)
                if max_s is not None and n_in > (max_s + 0.5) * rate:
                    raise _too_long(float("inf"), max_s)
                mono = block[:, 0] if channels == 1 else block.mean(axis=1, dtype=np.float32)
                if not np.isfinite(mono).all():
                    raise InvalidSamplesError("the audio contains NaN or infinite samples")
                resampler.push(mono)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - a corrupt frame part-way: keep what came before it
            complete = False
    if n_in == 0:
        return np.zeros(0, dtype=np.float32)
    if not allow_truncated:
        expected = _declared_wav_frames(data) if container == "wav" else (declared if container == "flac" else 0)
        if not complete or (expected and n_in < expected * (1 - TRUNCATION_TOLERANCE)):
            raise TruncatedAudioError(f"the file is truncated: {n_in / rate:.2f} s of the "
                                      f"{max(expected, n_in) / rate:.2f} s its header declares")
    return resampler.finish()


def _decode_ffmpeg(data: bytes, container: str, sr: int, max_s: float | None, allow_truncated: bool) -> np.ndarray:
    if not ffmpeg_available():
        raise UndecodableAudioError("this audio format needs ffmpeg, which is not installed")
    if container == "mp4":
        data = ffmpeg.move_index_first(data)
    try:
        stream = ffmpeg.probe(data, container)
    except (ffmpeg.FfmpegError, ffmpeg.TooMuchOutput):
        stream = None
    if stream is None or not stream["rate"]:
        if container in ("mp3", "aac"):
            # Only a frame sync or an ID3 tag matched, which arbitrary files can also start
            # with: with nothing decodable behind it, it was not audio at all.
            raise NotAudioError("the file is not in a supported audio format")
        raise UndecodableAudioError("the audio could not be decoded (truncated or corrupt?)")
    _check_stream(stream["rate"], stream["channels"])
    if stream["codec"] not in ffmpeg.PROBE_CODECS:
        raise UndecodableAudioError(f"the audio codec {stream['codec'][:40]!r} is not supported")
    try:
        wave = ffmpeg.decode(data, container, sr, max_s)
    except ffmpeg.TooMuchOutput:
        raise _too_long(float("inf"), max_s) from None
    except ffmpeg.FfmpegError as exc:
        if not len(exc.output):
            raise UndecodableAudioError("the audio could not be decoded (truncated or corrupt?)") from None
        if not allow_truncated:
            raise TruncatedAudioError("the file is truncated or corrupt part-way") from None
        wave = exc.output
    if not len(wave):
        raise EmptyAudioError("the audio holds no samples")
    if not np.isfinite(wave).all():
        raise InvalidSamplesError("the audio contains NaN or infinite samples")
    return wave


def _declared_wav_frames(data: bytes) -> int:
    """Frames the RIFF header of a WAV declares in its data chunk; 0 if unknown (unpatched sizes)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0
    pos, block_align = 12, 0
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if kind == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack("<H", data[pos + 20:pos + 22])[0]
        if kind == b"data":
            unknown = size in (0, 0xFFFFFFFF) or size >= 0x7FFF0000
            return 0 if unknown or not block_align else size // block_align
        pos += 8 + size + (size & 1)
    return 0


class _Resampler:
    """Collects mono blocks at ``rate`` as ``sr`` samples (soxr streaming: the same as all at once)."""

    def __init__(self, rate: int, sr: int):
        self._parts: list[np.ndarray] = []
        self._stream = None
        if rate != sr:
            import soxr

            self._stream = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")

    def push(self, mono: np.ndarray):
        self._parts.append(self._stream.resample_chunk(mono) if self._stream else mono.copy())

    def finish(self) -> np.ndarray:
        if self._stream:
            self._parts.append(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        return np.concatenate(self._parts).astype(np.float32, copy=False) if self._parts \
            else np.zeros(0, dtype=np.float32)


def _within_full_scale(wave: np.ndarray) -> np.ndarray:
    """Float audio may exceed [-1, 1] (even by 1e25): scale it down so every later step stays finite."""
    peak = max(float(wave.max()), -float(wave.min())) if len(wave) else 0.0  # no |wave| temporary
    return wave / np.float32(peak) if peak > 1.0 else wave
