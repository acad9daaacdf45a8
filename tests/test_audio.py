"""Tests for ser_model.audio: decoding every upload format, resampling, validation.

All audio is synthesised here (numpy tones written by soundfile, re-encoded by
ffmpeg for the lossy containers), so the tests need no data files.
"""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model import audio
from ser_model.audio import (
    SAMPLE_RATE,
    AudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    SampleRateError,
    UndecodableAudioError,
    load_audio,
    looks_like_audio,
    pad_or_trim,
    pcm16_to_float,
    resample,
    to_model_rate,
)

HAVE_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed")

TONE_HZ = 440.0
AMP = 0.5
TONE_RMS = AMP / np.sqrt(2.0)
DURATION_TOL_S = 0.020


# --------------------------------------------------------------------------- helpers
def tone(rate: int, seconds: float = 1.0, freq: float = TONE_HZ, amp: float = AMP) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectrum(y: np.ndarray, sr: int):
    power = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    return np.fft.rfftfreq(len(y), 1.0 / sr), power


def peak_hz(y: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    freqs, power = spectrum(y, sr)
    return float(freqs[np.argmax(power)])


def band_fraction(y: np.ndarray, f0: float, sr: int = SAMPLE_RATE, half_width: float = 25.0) -> float:
    """Share of the signal's energy within ``f0 +- half_width`` Hz."""
    freqs, power = spectrum(y, sr)
    return float(power[np.abs(freqs - f0) <= half_width].sum() / power.sum())


def amplitude_at(y: np.ndarray, f0: float, sr: int = SAMPLE_RATE) -> float:
    """Amplitude of an integer-Hz sinusoid in exactly one second of signal."""
    y = y[:sr]
    assert len(y) == sr
    spec = np.fft.rfft(y)
    return float(2 * np.abs(spec[int(round(f0))]) / len(y))


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def assert_model_wave(y: np.ndarray) -> None:
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.float32
    assert y.ndim == 1
    assert np.isfinite(y).all()


def assert_is_tone(y: np.ndarray, seconds: float = 1.0, *, tol_s: float = DURATION_TOL_S,
                   min_band: float = 0.98, rms_rel_tol: float = 0.05) -> None:
    """``y`` is a 16 kHz rendering of the AMP-amplitude 440 Hz test tone."""
    assert_model_wave(y)
    assert abs(len(y) / SAMPLE_RATE - seconds) <= tol_s, f"duration {len(y) / SAMPLE_RATE:.4f} s"
    assert abs(peak_hz(y) - TONE_HZ) <= 3.0, f"peak at {peak_hz(y)} Hz"
    assert band_fraction(y, TONE_HZ) >= min_band
    assert rms(y) == pytest.approx(TONE_RMS, rel=rms_rel_tol)


def ffmpeg_encode(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1",
         "-i", str(src), *args, str(dst)],
        check=True, capture_output=True, timeout=60,
    )
    assert dst.stat().st_size > 0
    return dst


def write_sf(path: Path, data: np.ndarray, rate: int, fmt: str, subtype: str) -> Path:
    sf.write(str(path), data, rate, format=fmt, subtype=subtype)
    return path


# --------------------------------------------------------------------------- format fixtures
# name -> (needs ffmpeg, maker(dir, source_wav) -> path, header check, duration tolerance, min band)
SRC_RATE = 44100


def _wav(subtype):
    return lambda d, src: write_sf(d / f"tone_{subtype}.wav", tone(SRC_RATE), SRC_RATE, "WAV", subtype)


FORMATS = {
    "wav_int16": (False, _wav("PCM_16"), lambda b: b[:4] == b"RIFF" and b[20:22] == b"\x01\x00", 0.020, 0.98),
    "wav_int32": (False, _wav("PCM_32"), lambda b: b[:4] == b"RIFF" and b[34:36] == b"\x20\x00", 0.020, 0.98),
    "wav_float32": (False, _wav("FLOAT"), lambda b: b[:4] == b"RIFF" and b[20:22] == b"\x03\x00", 0.020, 0.98),
    "flac": (False, lambda d, src: write_sf(d / "tone.flac", tone(SRC_RATE), SRC_RATE, "FLAC", "PCM_16"),
             lambda b: b[:4] == b"fLaC", 0.020, 0.98),
    "ogg_vorbis": (True, lambda d, src: ffmpeg_encode(src, d / "tone_vorbis.ogg", "-c:a", "libvorbis", "-q:a", "4"),
                   lambda b: b[:4] == b"OggS" and b"\x01vorbis" in b[:64], 0.020, 0.95),
    "ogg_opus": (True, lambda d, src: ffmpeg_encode(src, d / "tone_opus.ogg", "-c:a", "libopus", "-b:a", "64k", "-f", "ogg"),
                 lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:64], 0.020, 0.95),
    "webm_opus": (True, lambda d, src: ffmpeg_encode(src, d / "tone.webm", "-c:a", "libopus", "-b:a", "64k"),
                  lambda b: b[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in b[:64], 0.020, 0.95),
    "mp3": (True, lambda d, src: ffmpeg_encode(src, d / "tone.mp3", "-c:a", "libmp3lame", "-b:a", "128k"),
            lambda b: b[:3] == b"ID3" or (b[0] == 0xFF and b[1] & 0xE0 == 0xE0), 0.020, 0.95),
    # AAC pads the last frame to 1024 samples and ffmpeg's MP4 reader keeps that tail
    # (~23 ms at 44.1 kHz), so the m4a duration gets one AAC frame of slack.
    "m4a_aac": (True, lambda d, src: ffmpeg_encode(src, d / "tone.m4a", "-c:a", "aac", "-b:a", "128k"),
                lambda b: b[4:8] == b"ftyp", 0.020 + 1024 / SRC_RATE, 0.95),
}
FORMAT_PARAMS = [pytest.param(name, marks=needs_ffmpeg if spec[0] else ()) for name, spec in FORMATS.items()]


@pytest.fixture(scope="module")
def fmt_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("formats")
    write_sf(d / "source.wav", tone(SRC_RATE), SRC_RATE, "WAV", "PCM_16")
    return d


@pytest.fixture(scope="module")
def encoded(fmt_dir):
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            path = FORMATS[name][1](fmt_dir, fmt_dir / "source.wav")
            assert FORMATS[name][2](path.read_bytes()[:64]), f"{name} fixture has the wrong header"
            cache[name] = path
        return cache[name]

    return get


def _sources(path: Path):
    """The same file as every kind of source load_audio accepts."""
    data = path.read_bytes()
    return {
        "str": str(path),
        "pathlib": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "bytesio": io.BytesIO(data),
        "open_file": path.open("rb"),
    }


# --------------------------------------------------------------------------- every format
@pytest.mark.parametrize("name", FORMAT_PARAMS)
def test_every_format_decodes_from_path_bytes_and_file_object(name, encoded):
    path = encoded(name)
    _, _, _, tol_s, min_band = FORMATS[name]
    lossless = name.startswith("wav") or name == "flac"
    results = {}
    for kind, src in _sources(path).items():
        try:
            y = load_audio(src)
        finally:
            if hasattr(src, "close"):
                src.close()
        assert_is_tone(y, tol_s=tol_s, min_band=min_band, rms_rel_tol=0.02 if lossless else 0.10)
        results[kind] = y
    # Every kind of source is the same file, so it must decode to the same samples.
    ref = results["str"]
    for kind, y in results.items():
        np.testing.assert_array_equal(y, ref, err_msg=f"{name} from {kind} differs from path")


def test_lossless_formats_agree_sample_for_sample(encoded):
    """int16/int32/float wav and flac of one tone decode to (almost) the same wave."""
    ref = load_audio(encoded("wav_float32"))
    for name in ("wav_int16", "wav_int32", "flac"):
        y = load_audio(encoded(name))
        assert len(y) == len(ref)
        assert np.max(np.abs(y - ref)) < 1e-3, name


@needs_ffmpeg
def test_m4a_with_index_at_the_end_and_at_the_start(encoded, fmt_dir):
    """MP4 with `moov` after `mdat` cannot be piped into ffmpeg; both layouts must decode."""
    tail = encoded("m4a_aac").read_bytes()
    assert tail.find(b"moov") > tail.find(b"mdat") > 0, "fixture should have its index at the end"
    fast = ffmpeg_encode(fmt_dir / "source.wav", fmt_dir / "fast.m4a",
                         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart").read_bytes()
    assert 0 < fast.find(b"moov") < fast.find(b"mdat")
    for data in (tail, fast):
        assert_is_tone(load_audio(data), tol_s=FORMATS["m4a_aac"][3], min_band=0.95, rms_rel_tol=0.10)


@needs_ffmpeg
def test_long_m4a_that_cannot_be_piped_still_decodes(tmp_path):
    """Past ~64 KB ffmpeg cannot seek back from a trailing `moov` over a pipe, so
    load_audio has to fall back to a temporary file."""
    src = write_sf(tmp_path / "long.wav", tone(SAMPLE_RATE, 40.0), SAMPLE_RATE, "WAV", "PCM_16")
    data = ffmpeg_encode(src, tmp_path / "long.m4a", "-c:a", "aac", "-b:a", "32k").read_bytes()
    assert len(data) > 128_000 and data.find(b"moov") > data.find(b"mdat")
    y = load_audio(data)
    assert_is_tone(y, 40.0, tol_s=0.020 + 1024 / SAMPLE_RATE, min_band=0.95, rms_rel_tol=0.10)


def test_load_audio_honours_target_rate(encoded):
    y = load_audio(encoded("wav_int16"), sr=8000)
    assert_model_wave(y)
    assert abs(len(y) - 8000) <= 8000 * DURATION_TOL_S
    assert abs(peak_hz(y, 8000) - TONE_HZ) <= 3.0


@needs_ffmpeg
def test_load_audio_honours_target_rate_through_ffmpeg(encoded):
    y = load_audio(encoded("webm_opus"), sr=8000)
    assert_model_wave(y)
    assert abs(len(y) - 8000) <= 8000 * DURATION_TOL_S
    assert abs(peak_hz(y, 8000) - TONE_HZ) <= 3.0


# --------------------------------------------------------------------------- every rate
RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]
ODD_SECONDS = 1.25  # not a whole number of 10 ms blocks at some rates: catches rounding slips


@pytest.mark.parametrize("rate", RATES)
def test_every_rate_comes_out_at_16k_with_the_tone_intact(rate, tmp_path):
    path = write_sf(tmp_path / f"tone_{rate}.wav", tone(rate, ODD_SECONDS), rate, "WAV", "PCM_16")
    assert sf.info(str(path)).samplerate == rate
    for src in (path, path.read_bytes()):
        y = load_audio(src)
        assert_is_tone(y, ODD_SECONDS, rms_rel_tol=0.02)


@pytest.mark.parametrize("rate", RATES)
def test_to_model_rate_resamples_arrays_at_every_rate(rate):
    y = to_model_rate(tone(rate, ODD_SECONDS), rate)
    assert_is_tone(y, ODD_SECONDS, rms_rel_tol=0.02)


@pytest.mark.parametrize("rate", [8000, 44100, 96000])
def test_flac_at_other_rates(rate, tmp_path):
    path = write_sf(tmp_path / f"tone_{rate}.flac", tone(rate), rate, "FLAC", "PCM_24")
    assert_is_tone(load_audio(path), rms_rel_tol=0.02)


def test_resample_is_identity_at_equal_rates_and_float32():
    x = np.linspace(-1, 1, 1000)  # float64
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_allclose(y, x, atol=1e-7)
    z = resample(tone(48000), 48000, 16000)
    assert z.dtype == np.float32 and len(z) == 16000


# --------------------------------------------------------------------------- channels
def multichannel_tones(rate: int, channels: int, amp: float = 0.3) -> tuple[np.ndarray, list[float]]:
    """(frames, channels): channel k holds its own whole-Hz tone, so the mix is measurable."""
    freqs = [300.0 + 200.0 * k for k in range(channels)]
    data = np.stack([tone(rate, 1.0, f, amp) for f in freqs], axis=1)
    return data, freqs


def assert_equal_mix(y: np.ndarray, freqs: list[float], amp: float = 0.3) -> None:
    assert_model_wave(y)
    assert abs(len(y) - SAMPLE_RATE) <= SAMPLE_RATE * DURATION_TOL_S
    for f in freqs:  # every channel contributes 1/C of its amplitude
        assert amplitude_at(y, f) == pytest.approx(amp / len(freqs), rel=0.05), f"{f} Hz"


@pytest.mark.parametrize("channels", [2, 6])
@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                              ("FLAC", "PCM_16", "flac")])
def test_multichannel_files_are_down_mixed(channels, fmt, subtype, ext, tmp_path):
    data, freqs = multichannel_tones(48000, channels)
    path = write_sf(tmp_path / f"multi.{ext}", data, 48000, fmt, subtype)
    assert sf.info(str(path)).channels == channels
    assert_equal_mix(load_audio(path), freqs)
    assert_equal_mix(load_audio(path.read_bytes()), freqs)


@pytest.mark.parametrize("channels", [2, 6])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "int32"])
def test_to_model_rate_down_mixes_arrays_of_any_dtype(channels, dtype):
    data, freqs = multichannel_tones(SAMPLE_RATE, channels)
    if dtype.startswith("int"):
        data = np.round(data * (np.iinfo(dtype).max + 1)).astype(dtype)
    else:
        data = data.astype(dtype)
    y = to_model_rate(data, SAMPLE_RATE)
    assert np.max(np.abs(y)) <= 1.0  # integers are scaled, also when down-mixed
    assert_equal_mix(y, freqs)


def test_stereo_int16_at_44k_is_scaled_and_resampled():
    left = tone(44100)
    data = np.round(np.stack([left, left], axis=1) * 32768).astype(np.int16)
    assert_is_tone(to_model_rate(data, 44100), rms_rel_tol=0.01)


# --------------------------------------------------------------------------- int vs float input
@pytest.mark.parametrize("dtype,scale", [("int16", 2 ** 15), ("int32", 2 ** 31), ("int64", 2 ** 63)])
def test_signed_int_input_matches_float_input(dtype, scale):
    x = tone(22050)
    ints = np.round(x.astype(np.float64) * scale).astype(dtype)
    y_int = to_model_rate(ints, 22050)
    y_float = to_model_rate(x, 22050)
    assert_model_wave(y_int)
    np.testing.assert_allclose(y_int, y_float, atol=2e-4)


def test_int_full_scale_maps_to_minus_one_and_just_below_one():
    ints = np.array([-32768, -16384, 0, 16384, 32767] * 100, dtype=np.int16)
    y = to_model_rate(ints, SAMPLE_RATE)
    np.testing.assert_array_equal(y[:5], np.array([-1.0, -0.5, 0.0, 0.5, 32767 / 32768], np.float32))


def test_uint8_pcm_is_centred():
    x = tone(SAMPLE_RATE)
    u8 = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8)
    y = to_model_rate(u8, SAMPLE_RATE)
    assert abs(float(y.mean())) < 0.01  # not offset by +1/2 as a signed reading would be
    np.testing.assert_allclose(y, x, atol=1.0 / 128)


def test_float_input_passes_through_unscaled_and_unmodified():
    x = tone(SAMPLE_RATE).astype(np.float64)
    before = x.copy()
    y = to_model_rate(x, SAMPLE_RATE)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-7)
    np.testing.assert_array_equal(x, before)  # the caller's array is not touched


def test_python_lists_are_accepted():
    y = to_model_rate([0.0, 0.25, -0.25] * 1000, SAMPLE_RATE)
    assert_model_wave(y)
    assert len(y) == 3000


@pytest.mark.parametrize("bad", [
    np.zeros((10, 2, 2), np.float32),          # 3-D
    np.float32(0.5),                           # 0-D
    np.array([True, False] * 100),             # booleans
    np.array([1 + 1j] * 100),                  # complex
    np.array(["a", "b"] * 100),                # strings
])
def test_to_model_rate_rejects_arrays_that_are_not_samples(bad):
    with pytest.raises(InvalidSamplesError):
        to_model_rate(bad, SAMPLE_RATE)


# --------------------------------------------------------------------------- bad input
def test_empty_input_is_empty_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for src in (b"", bytearray(), io.BytesIO(b""), empty, str(empty)):
        with pytest.raises(EmptyAudioError) as info:
            load_audio(src)
        assert info.value.code == "empty"


def test_empty_arrays_are_empty_audio():
    for arr in (np.zeros(0, np.float32), np.zeros((0, 2), np.int16), np.zeros((100, 0), np.float32)):
        with pytest.raises(EmptyAudioError):
            to_model_rate(arr, SAMPLE_RATE)


TEXTS = {
    "txt": b"This is a plain text file, definitely not audio.\n" * 40,
    "json": b'{"label": "happy", "confidence": 0.9}\n',
    "html": b"<!doctype html><html><body>hello</body></html>\n",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
}


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_non_audio_files_are_not_audio(kind, tmp_path):
    path = tmp_path / f"file.{kind}"
    path.write_bytes(TEXTS[kind])
    for src in (path, TEXTS[kind], io.BytesIO(TEXTS[kind])):
        with pytest.raises(NotAudioError) as info:
            load_audio(src)
        assert info.value.code == "not_audio"


def test_non_audio_is_recognised_without_ffmpeg(monkeypatch):
    monkeypatch.setattr(audio, "ffmpeg_available", lambda: False)
    with pytest.raises(NotAudioError):
        load_audio(TEXTS["txt"])


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_not_audio(seed):
    # Seed 1 happens to start with an MPEG frame sync (ff e4): still not audio.
    data = np.random.default_rng(seed).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    with pytest.raises(NotAudioError):
        load_audio(data)


@needs_ffmpeg
@pytest.mark.parametrize("sync", [b"\xff\xfb\x90\x64", b"\xff\xf1\x50\x80"])
def test_random_bytes_behind_a_frame_sync_are_not_audio(sync):
    """A 2-byte sync word is weak evidence; if nothing decodes behind it, it is not audio."""
    assert looks_like_audio(sync)
    data = sync + np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(NotAudioError):
        load_audio(data)


TRUNCATABLE = ["wav_int16", "wav_float32", "flac", pytest.param("mp3", marks=needs_ffmpeg),
               pytest.param("ogg_vorbis", marks=needs_ffmpeg), pytest.param("ogg_opus", marks=needs_ffmpeg),
               pytest.param("webm_opus", marks=needs_ffmpeg), pytest.param("m4a_aac", marks=needs_ffmpeg)]


@pytest.mark.parametrize("name", TRUNCATABLE)
def test_truncated_files_raise_audio_errors_only(name, encoded):
    data = encoded(name).read_bytes()
    for cut in (1, 3, 4, 8, 12, 30, 44, 100, 400, len(data) // 3, len(data) // 2, len(data) - 1):
        head = data[:cut]
        try:
            y = load_audio(head)
        except AudioError as err:  # any other exception type fails the test
            assert type(err) is not AudioError, "raise a specific subclass"
            assert err.code in {"empty", "not_audio", "undecodable", "invalid_samples"}
        else:  # a decodable prefix must still be sane audio
            assert_model_wave(y)
            assert 0 < len(y) <= SAMPLE_RATE * 1.1
        if cut <= 12:  # nothing but (part of) a header: must be refused
            with pytest.raises(AudioError):
                load_audio(head)


@pytest.mark.parametrize("name", ["wav_int16", "flac"])
def test_half_a_lossless_file_yields_the_first_half(name, encoded):
    data = encoded(name).read_bytes()
    y = load_audio(data[: len(data) // 2])
    assert_model_wave(y)
    assert 0.3 * SAMPLE_RATE < len(y) < 0.6 * SAMPLE_RATE
    assert abs(peak_hz(y) - TONE_HZ) <= 3.0


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("ffmpeg", [True, False])
def test_zero_frame_wav_is_empty_audio(subtype, channels, ffmpeg, tmp_path, monkeypatch):
    if ffmpeg and not HAVE_FFMPEG:
        pytest.skip("ffmpeg is not installed")
    if not ffmpeg:
        monkeypatch.setattr(audio, "ffmpeg_available", lambda: False)
    path = write_sf(tmp_path / "zero.wav", np.zeros((0, channels), np.float32), 16000, "WAV", subtype)
    assert path.stat().st_size > 0 and sf.info(str(path)).frames == 0
    for src in (path, path.read_bytes()):
        with pytest.raises(EmptyAudioError):
            load_audio(src)


@needs_ffmpeg
def test_zero_length_flac_is_empty_audio(tmp_path):
    # libsndfile writes nothing at all for zero frames, so let ffmpeg make the file:
    # a valid FLAC header (total_samples "unknown") and no audio frames.
    path = tmp_path / "zero.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(path)], check=True, timeout=60)
    assert path.read_bytes()[:4] == b"fLaC"
    with pytest.raises(EmptyAudioError):
        load_audio(path)


@needs_ffmpeg
def test_streamed_flac_of_unknown_length_decodes(fmt_dir):
    """FLAC written to a pipe has total_samples = 0 ("unknown"); libsndfile gives up on it."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                           "-i", str(fmt_dir / "source.wav"), "-f", "flac", "pipe:1"],
                          check=True, capture_output=True, timeout=60)
    assert proc.stdout[:4] == b"fLaC"
    assert_is_tone(load_audio(proc.stdout), rms_rel_tol=0.02)


@needs_ffmpeg
def test_wav_with_unpatched_zero_sizes_still_decodes():
    """A recorder that never finalised its header leaves sizes of 0 before real audio."""
    buf = io.BytesIO()
    sf.write(buf, tone(SAMPLE_RATE), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    data[4:8] = struct.pack("<I", 0)
    pos = data.find(b"data")
    data[pos + 4:pos + 8] = struct.pack("<I", 0)
    assert_is_tone(load_audio(bytes(data)), rms_rel_tol=0.02)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_with_nan_or_inf_is_invalid(bad, subtype, tmp_path):
    data = tone(16000)
    data[8000] = bad
    path = write_sf(tmp_path / "bad.wav", data, 16000, "WAV", subtype)
    for src in (path, path.read_bytes()):
        with pytest.raises(InvalidSamplesError) as info:
            load_audio(src)
        assert info.value.code == "invalid_samples"


def test_nan_in_one_channel_of_stereo_is_invalid(tmp_path):
    data = np.stack([tone(16000), tone(16000)], axis=1)
    data[100, 1] = np.nan
    path = write_sf(tmp_path / "bad.wav", data, 16000, "WAV", "FLOAT")
    with pytest.raises(InvalidSamplesError):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_model_rate_rejects_non_finite_samples(bad):
    x = tone(SAMPLE_RATE)
    x[-1] = bad
    with pytest.raises(InvalidSamplesError):
        to_model_rate(x, SAMPLE_RATE)


@pytest.mark.parametrize("rate", [0, -16000, 4000, 7999, 96001, 192000, float("nan")])
def test_rates_outside_8_to_96k_are_refused(rate):
    with pytest.raises(SampleRateError) as info:
        to_model_rate(tone(16000, 0.1), rate)
    assert info.value.code == "bad_sample_rate"


@pytest.mark.parametrize("rate", [8000, 96000])
def test_rate_bounds_are_inclusive(rate):
    y = to_model_rate(tone(rate, 0.5), rate)
    assert abs(len(y) - SAMPLE_RATE // 2) <= 1


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")


@needs_ffmpeg
def test_ffmpeg_only_formats_without_ffmpeg_are_undecodable(encoded, monkeypatch):
    data = encoded("webm_opus").read_bytes()
    monkeypatch.setattr(audio, "ffmpeg_available", lambda: False)
    with pytest.raises(UndecodableAudioError) as info:
        load_audio(data)
    assert info.value.code == "undecodable"
    # Formats libsndfile reads itself keep working without ffmpeg.
    assert_is_tone(load_audio(encoded("wav_int16")))


@needs_ffmpeg
def test_audio_looking_garbage_is_undecodable():
    """Right magic, nothing decodable after it: broken audio, not 'not audio'."""
    for head in (b"RIFF" + b"\x00" * 200, b"OggS" + b"\x07" * 200, b"\x1a\x45\xdf\xa3" + b"\x00" * 200,
                 b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 200):
        with pytest.raises(UndecodableAudioError):
            load_audio(head)


def test_error_classes_and_codes():
    codes = {EmptyAudioError: "empty", NotAudioError: "not_audio", UndecodableAudioError: "undecodable",
             InvalidSamplesError: "invalid_samples", SampleRateError: "bad_sample_rate"}
    for cls, code in codes.items():
        assert issubclass(cls, AudioError) and issubclass(cls, ValueError)
        assert cls.code == code and cls("x").code == code
    assert len(set(codes.values())) == len(codes)


# --------------------------------------------------------------------------- looks_like_audio
@pytest.mark.parametrize("name", FORMAT_PARAMS)
def test_looks_like_audio_accepts_every_format(name, encoded):
    assert looks_like_audio(encoded(name).read_bytes()[:64])


@pytest.mark.parametrize("head", [b"", b"R", b"hello world", b"\x89PNG\r\n\x1a\n", b"%PDF-1.7", b"\xff",
                                  b"\xff\x00\x00\x00", b"PK\x03\x04"])
def test_looks_like_audio_rejects_other_heads(head):
    assert not looks_like_audio(head)


def test_looks_like_audio_accepts_bare_mpeg_and_adts_frames():
    assert looks_like_audio(b"\xff\xfb\x90\x64")  # MPEG-1 layer III
    assert looks_like_audio(b"\xff\xf1\x50\x80")  # ADTS AAC


# --------------------------------------------------------------------------- pcm16_to_float
def test_pcm16_round_trip_covers_every_value():
    ints = np.arange(-32768, 32768, dtype=np.int16)
    y = pcm16_to_float(ints.astype("<i2").tobytes())
    assert y.dtype == np.float32 and y.shape == ints.shape
    assert y.min() == -1.0 and y.max() == 32767 / 32768 and y.max() < 1.0
    back = np.round(y.astype(np.float64) * 32768).astype(np.int16)
    np.testing.assert_array_equal(back, ints)


def test_pcm16_is_little_endian():
    payload = struct.pack("<4h", -32768, 1, 256, 32767)
    np.testing.assert_array_equal(pcm16_to_float(payload),
                                  np.array([-1.0, 1 / 32768, 256 / 32768, 32767 / 32768], np.float32))
    assert pcm16_to_float(b"\x01\x00")[0] == pytest.approx(1 / 32768)  # not 256/32768


def test_pcm16_accepts_bytearray_and_empty():
    assert pcm16_to_float(bytearray(b"\x00\x40"))[0] == 0.5
    empty = pcm16_to_float(b"")
    assert empty.dtype == np.float32 and empty.size == 0


@pytest.mark.parametrize("size", [1, 3, 32001])
def test_pcm16_odd_length_is_undecodable(size):
    with pytest.raises(UndecodableAudioError) as info:
        pcm16_to_float(b"\x00" * size)
    assert isinstance(info.value, AudioError) and info.value.code == "undecodable"


def test_pcm16_stream_chunk_feeds_to_model_rate():
    x = tone(48000)
    payload = np.round(x * 32767).astype("<i2").tobytes()
    assert_is_tone(to_model_rate(pcm16_to_float(payload), 48000), rms_rel_tol=0.01)


# --------------------------------------------------------------------------- pad_or_trim
def test_pad_or_trim_pads_with_zeros_at_the_end():
    x = np.arange(1, 6, dtype=np.float32)
    y = pad_or_trim(x, 8)
    np.testing.assert_array_equal(y, [1, 2, 3, 4, 5, 0, 0, 0])
    assert y.dtype == np.float32


def test_pad_or_trim_trims_and_keeps_equal():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(pad_or_trim(x, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(pad_or_trim(x, 10), x)
    assert pad_or_trim(x, 0).shape == (0,)


def test_pad_or_trim_works_on_the_last_axis_of_batches():
    x = np.ones((3, 5), np.float32)
    assert pad_or_trim(x, 7).shape == (3, 7)
    np.testing.assert_array_equal(pad_or_trim(x, 7)[:, 5:], 0)
    assert pad_or_trim(x, 2).shape == (3, 2)


def test_pad_or_trim_refuses_negative_lengths():
    with pytest.raises(ValueError):
        pad_or_trim(np.ones(5, np.float32), -1)
