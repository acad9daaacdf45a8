"""Bounded ffmpeg decoding of the containers libsndfile cannot read (webm, m4a, aac, ...).

Every input is hostile: ffmpeg is told the container (``-f``, from the file's
magic bytes, never probed), may read only the pipe it is given
(``-protocol_whitelist pipe``: no file, http, hls, concat), may open only the
audio decoders of :data:`DECODERS`, and runs under a CPU-time and address-space
limit. ``ffprobe`` first reads the declared sample rate, channels and codec so a
stream outside the accepted range is refused before anything is decoded; the
decoder's output is read incrementally and stopped at ``max_duration_s``
(also passed to ffmpeg as ``-t``), so no header can make it produce more.
MP4/M4A files whose index (``moov``) follows their samples are rewritten in
memory with the index first (what ``qt-faststart`` does), because a pipe
cannot seek back.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import threading

import numpy as np

# Container (from the file's magic bytes) -> ffmpeg demuxer. Nothing else is ever probed.
DEMUXERS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "aac": "aac", "webm": "matroska",
            "mp4": "mov", "aiff": "aiff", "caf": "caf", "au": "au", "amr": "amr", "wavpack": "wv", "ape": "ape"}
# Audio decoders ffmpeg may open (its -codec_whitelist); a stream needing another is refused.
DECODERS = ("aac", "aac_fixed", "mp3float", "mp3", "mp2float", "mp2", "opus", "libopus", "vorbis", "libvorbis",
            "flac", "alac", "gsm_ms", "gsm", "amrnb", "amrwb", "wavpack", "ape", "adpcm_ima_wav", "adpcm_ms",
            "pcm_mulaw", "pcm_alaw", "pcm_u8", "pcm_s8", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be",
            "pcm_s32le", "pcm_s32be", "pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_f64be")
PROBE_CODECS = {"aac", "mp3", "mp2", "opus", "vorbis", "flac", "alac", "gsm_ms", "gsm", "amr_nb", "amr_wb",
                "wavpack", "ape", "adpcm_ima_wav", "adpcm_ms", "pcm_mulaw", "pcm_alaw", "pcm_u8", "pcm_s8",
                "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be", "pcm_f32le",
                "pcm_f32be", "pcm_f64le", "pcm_f64be"}  # the same decoders, as ffprobe names their codecs
WALL_TIMEOUT_S = 20  # one ffmpeg/ffprobe run, wall clock
CPU_LIMIT_S = 10  # ... and CPU seconds (RLIMIT_CPU)
MEMORY_LIMIT_BYTES = 1 << 30  # ... and address space (RLIMIT_AS)
READ_CHUNK = 1 << 16
STDERR_KEEP = 4096


class FfmpegError(Exception):
    """ffmpeg could not decode the input; ``output`` holds what it produced before failing."""

    def __init__(self, message: str, output: bytes = b""):
        super().__init__(message)
        self.output = output


class TooMuchOutput(Exception):
    """The decoder produced more than the caller's limit (it was stopped there)."""


def available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def probe(data: bytes, container: str) -> dict:
    """Codec, sample rate and channels of the first audio stream, as the file declares them."""
    cmd = ["ffprobe", "-v", "error", "-protocol_whitelist", "pipe", "-f", DEMUXERS[container],
           "-i", "pipe:0", "-select_streams", "a:0", "-show_entries", "stream=codec_name,sample_rate,channels",
           "-of", "json"]
    out, err, rc = _run(cmd, data, max_output=1 << 16)
    try:
        streams = json.loads(out or b"{}").get("streams") or []
    except ValueError:
        streams = []
    if rc != 0 or not streams:
        raise FfmpegError(f"no audio stream found ({err.strip()[-200:] or 'ffprobe failed'})")
    s = streams[0]
    try:
        return {"codec": str(s.get("codec_name")), "rate": int(s.get("sample_rate") or 0),
                "channels": int(s.get("channels") or 0)}
    except (TypeError, ValueError):
        raise FfmpegError("the audio stream declares no usable sample rate") from None


def decode(data: bytes, container: str, sr: int, max_duration_s: float | None) -> np.ndarray:
    """Mono float32 samples at ``sr``; raises TooMuchOutput past ``max_duration_s`` (None: no limit)."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
           "-protocol_whitelist", "pipe", "-f", DEMUXERS[container], "-codec_whitelist", ",".join(DECODERS),
           "-i", "pipe:0", "-map", "0:a:0", "-vn", "-sn", "-dn"]
    max_bytes = None
    if max_duration_s is not None:
        # Ask for one hop more than allowed: more output than the limit means the audio is too long.
        cmd += ["-t", f"{max_duration_s + 0.5:.3f}"]
        max_bytes = int(max_duration_s * sr) * 4
    cmd += ["-f", "f32le", "-ac", "1", "-ar", str(sr), "pipe:1"]
    out, err, rc = _run(cmd, data, max_output=max_bytes)
    usable = len(out) - len(out) % 4
    samples = np.frombuffer(out[:usable], dtype="<f4").copy()
    if rc != 0:
        raise FfmpegError(err.strip()[-200:] or f"ffmpeg exited with {rc}", samples)
    return samples


def move_index_first(data: bytes) -> bytes:
    """An MP4 with ``moov`` after ``mdat`` rewritten with ``moov`` first (chunk offsets patched);
    other files are returned unchanged."""
    boxes = _top_level_boxes(data)
    kinds = [kind for kind, _, _ in boxes]
    if "moov" not in kinds or "mdat" not in kinds or kinds.index("moov") < kinds.index("mdat"):
        return data
    first_mdat = kinds.index("mdat")
    moov_start, moov_end = next((s, e) for kind, s, e in boxes if kind == "moov")
    moov = bytearray(data[moov_start:moov_end])
    _shift_chunk_offsets(moov, 8, len(moov), len(moov))
    insert_at = boxes[first_mdat][1]
    rest = b"".join(data[s:e] for kind, s, e in boxes[first_mdat:] if kind != "moov")
    return data[:insert_at] + bytes(moov) + rest


# ---- internals -----------------------------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    boxes, pos = [], 0
    while pos + 8 <= len(data) and len(boxes) < 1024:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1 and pos + 16 <= len(data):
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            break  # truncated or corrupt: leave the rest as it is
        boxes.append((kind.decode("latin-1"), pos, pos + size))
        pos += size
    return boxes


def _shift_chunk_offsets(buf: bytearray, start: int, end: int, delta: int, depth: int = 0):
    """Add ``delta`` to every stco/co64 entry inside the boxes of ``buf[start:end]``."""
    pos = start
    while pos + 8 <= end and depth < 8:
        size, kind = struct.unpack(">I4s", buf[pos:pos + 8])
        if size < 8 or pos + size > end:
            return
        if kind in _CONTAINERS:
            _shift_chunk_offsets(buf, pos + 8, pos + size, delta, depth + 1)
        elif kind in (b"stco", b"co64") and size >= 16:
            wide = kind == b"co64"
            count = struct.unpack(">I", buf[pos + 12:pos + 16])[0]
            item = 8 if wide else 4
            count = min(count, (size - 16) // item)
            fmt = ">Q" if wide else ">I"
            for i in range(count):
                at = pos + 16 + i * item
                value = struct.unpack(fmt, buf[at:at + item])[0] + delta
                if not wide and value >= 1 << 32:
                    return  # cannot happen below 4 GB; leave the box alone rather than wrap
                buf[at:at + item] = struct.pack(fmt, value)
        pos += size


def _limit(pid: int):
    try:
        import resource

        resource.prlimit(pid, resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S))
        resource.prlimit(pid, resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, AttributeError, OSError, ValueError):  # not Linux, or the process already ended
        pass


def _run(cmd: list[str], data: bytes, max_output: int | None) -> tuple[bytes, str, int]:
    """(stdout, stderr tail, return code) of ``cmd`` fed ``data``; stdout is read incrementally and the
    process killed once it exceeds ``max_output`` bytes (TooMuchOutput) or WALL_TIMEOUT_S passes."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _limit(proc.pid)
    err = bytearray()
    threads = [threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
    for t in threads:
        t.start()
    timer = threading.Timer(WALL_TIMEOUT_S, proc.kill)
    timer.start()
    out, too_much = bytearray(), False
    try:
        while chunk := proc.stdout.read1(READ_CHUNK):
            out += chunk
            if max_output is not None and len(out) > max_output:
                too_much = True
                proc.kill()
                break
    finally:
        timer.cancel()
        proc.stdout.close()
        rc = proc.wait()
        for t in threads:
            t.join(1.0)
    if too_much:
        raise TooMuchOutput()
    return bytes(out), err.decode("utf-8", "replace"), rc


def _feed(pipe, data: bytes):
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):  # the reader stopped early: fine
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _drain(pipe, keep: bytearray):
    while chunk := pipe.read1(READ_CHUNK):
        keep += chunk
        del keep[:-STDERR_KEEP]
