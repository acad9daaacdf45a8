"""Shared pieces of the live-stream benchmarks: speech to send, a server to start, real-time clients.

- :func:`load_speech`: int16 signals concatenated from real corpus files (RAVDESS/TESS);
- :func:`start_server`: ``run.py`` or gunicorn on a free loopback port, until ``/healthz`` answers;
- :class:`ProcStats`: CPU seconds and RSS of a process tree, from /proc;
- :class:`LaneCounters`: the model lanes' batches over a round, from the server's ``/metrics``;
- :class:`LiveClient`: one python-socketio client streaming in real time, recording when each frame
  left and when each ``emotion`` came back (:class:`StreamRecord`), so latency and missing hops can
  be read for any period; ``loadgen.ClientGroup`` drives many such streams from one thread.
"""
from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = ROOT.parent / "shared" / "datasets"
CORPORA = ("RAVDESS", "TESS")
NS = "/stream"
HOP_S = 0.5
FRAME_MS = 250  # the page's audio frames (static/js/mic.js)
START_TIMEOUT_S = 180
SUMMARY_TIMEOUT_S = 15
STARTUP_S = 3.0  # from launching a round's clients until all of them stream (connect + start)
# Every client of a benchmark comes from 127.0.0.1: the server's per-address limits, lifted
ONE_ADDRESS = {"SER_STREAMS_PER_CLIENT": "100000", "SER_WS_MESSAGES_PER_S": "1e9", "SER_WS_MESSAGE_BURST": "1e9"}


def with_listeners(signals: list[np.ndarray], share: float, seed: int = 0,
                   alternate: bool = False) -> tuple[list[np.ndarray], list[int]]:
    """The signals with a random ``share`` of them (fixed by ``seed``; ``alternate``: every odd one,
    whatever the share) replaced by a quiet room (noise at -60 dBFS, which the VAD calls silence):
    clients that listen rather than talk, whose windows skip the model. Returns the signals and the
    indices made quiet."""
    rng = np.random.default_rng(seed)
    quiet = list(range(1, len(signals), 2)) if alternate else \
        sorted(int(i) for i in rng.choice(len(signals), round(share * len(signals)), replace=False))
    out = list(signals)
    for i in quiet:
        out[i] = (32767 * 1e-3 * rng.standard_normal(len(signals[i]))).astype("<i2")
    return out, quiet


def load_speech(audio_dir: Path, seconds: float, count: int, rate: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` int16 signals of ``seconds`` each, concatenated from random corpus files."""
    import soundfile as sf
    import soxr

    files = sorted(p for c in CORPORA for p in (audio_dir / c).rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    if not files:
        sys.exit(f"no RAVDESS/TESS audio under {audio_dir} (use --audio-dir)")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts, total = [], 0
        while total < seconds * rate:
            wave, sr = sf.read(rng.choice(files), dtype="float32", always_2d=True)
            wave = wave.mean(axis=1)
            if sr != rate:
                wave = soxr.resample(wave, sr, rate)
            parts.append(wave)
            total += len(wave)
        out.append((np.concatenate(parts)[:int(seconds * rate)] * 32767).clip(-32768, 32767).astype("<i2"))
    return out


def save_results(out_dir: Path, name: str, result: dict, indent: int = 1) -> Path:
    """Write a benchmark's ``result`` to ``out_dir/<name>_<local time>.json``; print and return the path."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {out}")
    return out


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_weights(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from ser_model.checkpoint import register, save_checkpoint
    from ser_model.model import ModelConfig, build_model

    cfg = ModelConfig()
    register(folder, "untrained", save_checkpoint(folder / "untrained.pt", build_model(cfg), cfg))
    return folder


def default_weights(tmp: Path) -> Path:
    if (ROOT / "weights" / "registry.json").exists():
        return ROOT / "weights"
    print("weights/ has no model yet: benchmarking an UNTRAINED model of the default size")
    return throwaway_weights(tmp)


def add_frame_arg(parser) -> None:
    parser.add_argument("--frame-ms", type=int, default=FRAME_MS,
                        help="audio per frame each client sends (default: the page's)")


def add_server_args(parser) -> None:
    """The options every live-server benchmark shares: the model, the speech it streams, where results go."""
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights folder or checkpoint (default: weights/ if it has a model, else untrained)")
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")


def scratch_folder(args, name: str) -> Path:
    """A temporary folder for this run's logs; fills in ``args.weights`` when it was not given."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    args.weights = args.weights or default_weights(tmp)
    return tmp


def start_server(cmd: list[str], url: str, log_path: Path, env: dict) -> subprocess.Popen:
    """Run ``cmd`` (in the project root) until ``url``/healthz answers 200."""
    import requests

    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited ({proc.returncode}); see {log_path}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.terminate()
    sys.exit(f"server did not start in {START_TIMEOUT_S} s; see {log_path}")


def stop_server(proc: subprocess.Popen):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class ProcStats:
    """CPU seconds and RSS of a server process and its children (gunicorn's worker), from /proc."""

    def __init__(self, pid: int):
        self.pid, self.peak_rss = pid, 0

    def _tree(self) -> list[int]:
        pids, i = [self.pid], 0
        while i < len(pids):
            for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
                try:
                    pids += [int(c) for c in task.read_text().split()]
                except OSError:  # the thread or process ended meanwhile
                    pass
            i += 1
        return pids

    @staticmethod
    def _read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    def cpu_seconds(self, own: bool = False) -> float:
        """CPU seconds of the process and its children, or with ``own`` of the process alone (run.py's
        web process, its model lanes excluded)."""
        total = 0
        for pid in [self.pid] if own else self._tree():
            stat = self._read(f"/proc/{pid}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def sample_rss(self) -> int:
        rss = 0
        for pid in self._tree():
            line = next((ln for ln in self._read(f"/proc/{pid}/status").splitlines() if ln.startswith("VmRSS")), "")
            rss += int(line.split()[1]) * 1024 if line else 0
        self.peak_rss = max(self.peak_rss, rss)
        return rss


class CpuSampler(threading.Thread):
    """Every 0.5 s: the server's CPU seconds (process trees, and the processes alone: the web
    processes without their model lanes), this process's (the load generator) and the machine's
    idle time, so that CPU can be read over the streaming period alone (a round's wall time also
    holds connecting and waiting for summaries, when the machine is quiet)."""

    def __init__(self, stats: list[ProcStats]):
        super().__init__(daemon=True)
        self.stats, self.samples, self._halt = stats, [], threading.Event()

    @staticmethod
    def _machine() -> tuple[float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        return sum(fields[:8]) / tick, (fields[3] + fields[4]) / tick  # (all, idle + iowait) CPU seconds

    def run(self):
        while not self._halt.is_set():
            own = os.times()
            self.samples.append((time.monotonic(), sum(s.cpu_seconds() for s in self.stats),
                                 sum(s.cpu_seconds(own=True) for s in self.stats),
                                 own.user + own.system, *self._machine()))
            self._halt.wait(0.5)

    def stop(self):
        self._halt.set()
        self.join()

    def percent(self, since: float, until: float) -> dict:
        """CPU % of the server, its web processes, the clients and idle over [since, until] (100 = one core)."""
        rows = [r for r in self.samples if since <= r[0] <= until]
        if len(rows) < 2:
            return {}
        (t0, s0, w0, c0, a0, i0), (t1, s1, w1, c1, a1, i1) = rows[0], rows[-1]
        cores_busy = 100 * cores()
        return {"server_cpu_pct": round(100 * (s1 - s0) / (t1 - t0), 1),
                "web_cpu_pct": round(100 * (w1 - w0) / (t1 - t0), 1),
                "client_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
                "machine_idle_pct": round(cores_busy * (i1 - i0) / (a1 - a0), 1) if a1 > a0 else None}


class StreamRecord:
    """What a benchmark client records of its stream: ``ack`` (the start acknowledgement),
    ``refused``, ``events`` [(received, event)], ``errors``, ``failure``, ``sent_at`` (when each
    frame left) and ``summary_latency``; :meth:`latencies` and :meth:`missing` read any period."""

    def __init__(self, frame_s: float):
        self.frame_s = frame_s
        self.sent_at: list[float] = []  # monotonic time each frame was sent
        self.events: list[tuple[float, dict]] = []
        self.errors: list[dict] = []
        self.ack: dict | None = None
        self.failure: str | None = None
        self.summary_latency: float | None = None
        self._finish = threading.Event()

    @property
    def refused(self) -> bool:
        return self.ack is not None and not self.ack.get("ok")

    @property
    def seconds_sent(self) -> float:
        return len(self.sent_at) * self.frame_s

    def finish(self):
        """Stop streaming after the current frame (then ``stop`` and wait for the summary)."""
        self._finish.set()

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """From the frame that completed each window to its ``emotion``, for events received in [since, until)."""
        out = []
        for received, event in self.events:
            k = int(np.ceil(event["t1"] / self.frame_s - 1e-9)) - 1
            if since <= received < until and 0 <= k < len(self.sent_at):
                out.append(received - self.sent_at[k])
        return out

    def missing(self, since: float = 0.0, until: float = float("inf")) -> int:
        """Hops whose audio was complete in [since, until) (and at least 1 s before the end) without an event."""
        last = self.sent_at[-1] - 1.0 if self.sent_at else 0.0
        due = {round(HOP_S * j, 3) for j in range(1, int(self.seconds_sent / HOP_S) + 1)
               if since <= self._sent_time(HOP_S * j) < min(until, last)}
        got = {round(e["t1"], 3) for _, e in self.events}
        return len(due - got)

    def _sent_time(self, t1: float) -> float:
        k = int(np.ceil(t1 / self.frame_s - 1e-9)) - 1
        return self.sent_at[k] if 0 <= k < len(self.sent_at) else float("inf")


class LiveClient(StreamRecord, threading.Thread):
    """Streams ``pcm`` in real time (looping it while ``loop``) until ``finish()`` or its end; then
    ``stop``. One python-socketio client and its threads: the page's protocol through the reference
    client library; :class:`loadgen.ClientGroup` drives many streams more cheaply."""

    def __init__(self, url: str, pcm: np.ndarray, rate: int = 16000, frame_s: float = FRAME_MS / 1000,
                 loop: bool = False, delay_s: float = 0.0, transports=("websocket",)):
        threading.Thread.__init__(self, daemon=True)
        StreamRecord.__init__(self, frame_s)
        self.url, self.pcm, self.rate, self.loop = url, pcm, rate, loop
        self.delay_s, self.transports = delay_s, list(transports)

    def run(self):
        import socketio

        frame = int(self.rate * self.frame_s)
        summary = threading.Event()
        summary_at = [None]
        sio = socketio.Client(reconnection=False)
        sio.on("emotion", lambda d: self.events.append((time.monotonic(), d)), namespace=NS)
        sio.on("error", lambda d: self.errors.append(d), namespace=NS)

        def on_summary(_):
            summary_at[0] = time.monotonic()
            summary.set()

        sio.on("summary", on_summary, namespace=NS)
        time.sleep(self.delay_s)
        stop_at = None
        try:
            sio.connect(self.url, namespaces=[NS], transports=self.transports, wait_timeout=30)
            self.ack = sio.call("start", {"sample_rate": self.rate}, namespace=NS, timeout=30)
            if not self.ack.get("ok"):
                return
            t0, k, n = time.monotonic(), 0, len(self.pcm)
            while not self._finish.is_set():
                i = (k * frame) % n if self.loop else k * frame
                if i >= n:
                    break
                pause = t0 + k * self.frame_s - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sio.emit("audio", self.pcm[i:i + frame].tobytes(), namespace=NS)
                self.sent_at.append(time.monotonic())
                k += 1
            stop_at = time.monotonic()
            sio.emit("stop", namespace=NS)
            summary.wait(SUMMARY_TIMEOUT_S)
        except Exception as exc:  # a failed client is reported, not fatal to the run
            self.failure = repr(exc)
        finally:
            try:
                sio.disconnect()
            except Exception:
                pass
        if summary_at[0] and stop_at:
            self.summary_latency = summary_at[0] - stop_at


class LaneCounters:
    """The model lanes' work over a period, read from one app's ``/metrics``: windows, batches,
    model seconds and model CPU seconds, so a round reports its mean batch and the model's cost per
    window as served, in wall time and in CPU time (less than the wall time when the model's process
    waited for a core) (behind nginx each read may reach another app: only for single-app topologies)."""

    NAMES = {"ser_windows_analysed_total": "windows", "ser_inference_batch_seconds_count": "batches",
             "ser_inference_batch_seconds_sum": "seconds", "ser_inference_cpu_seconds_total": "cpu"}

    def __init__(self, url: str):
        self.url = url
        self.start = self.read()

    def read(self) -> dict | None:
        import urllib.request

        try:
            text = urllib.request.urlopen(f"{self.url}/metrics", timeout=5).read().decode()
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in self.NAMES:
                out[self.NAMES[name]] = float(value)
        return out if len(out) == len(self.NAMES) else None

    def since_start(self) -> dict | None:
        """{"batches", "mean_batch", "model_ms_per_window", "model_cpu_ms_per_window"} since
        construction, or None unreadable."""
        end = self.read()
        if self.start is None or end is None:
            return None
        d = {k: end[k] - self.start[k] for k in end}
        if d["windows"] <= 0 or d["batches"] <= 0:
            return {"batches": int(d["batches"]), "mean_batch": None, "model_ms_per_window": None,
                    "model_cpu_ms_per_window": None}
        return {"batches": int(d["batches"]), "mean_batch": round(d["windows"] / d["batches"], 2),
                "model_ms_per_window": round(1000 * d["seconds"] / d["windows"], 2),
                "model_cpu_ms_per_window": round(1000 * d["cpu"] / d["windows"], 2)}


def percentile(values, q: float):
    return round(float(np.percentile(values, q)), 3) if len(values) else None
