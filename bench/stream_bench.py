"""Live-stream benchmark: N concurrent real-time clients against the real server on 127.0.0.1.

Starts the app as ``run.py`` does (or gunicorn with ``--gunicorn``), then for each N streams real
speech (RAVDESS/TESS files, concatenated) from N python-socketio clients in 250 ms frames paced at
real time, and reports per N:

- latency p50/p95: from the moment a client had sent audio up to a window's end (t1) to that
  window's ``emotion`` event;
- events/s per stream (one per 0.5 s hop is expected: 2.0) and missing hops;
- summary latency p50/p95: from ``stop`` to ``summary``;
- server CPU % (100 = one core) and peak RSS, client-process CPU % (it shares the machine).

    python bench/stream_bench.py --streams 1,10,20 --seconds 25
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CORPORA = ("RAVDESS", "TESS")
NS = "/stream"
HOP_S = 0.5
START_TIMEOUT_S = 180
SUMMARY_TIMEOUT_S = 15


# ---- audio ------------------------------------------------------------------------------------

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


# ---- server -----------------------------------------------------------------------------------

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


def start_server(args, port: int, log_path: Path) -> subprocess.Popen:
    import requests

    env = {**os.environ, "SER_WEIGHTS": str(args.weights), "SER_MAX_STREAMS": str(max(args.streams) + 8)}
    if args.gunicorn:
        cmd = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "-w", "1",
               "--threads", str(max(args.streams) * 2 + 16), "-b", f"127.0.0.1:{port}", "wsgi:app"]
    else:
        cmd = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(args.weights)]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited ({proc.returncode}); see {log_path}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.terminate()
    sys.exit(f"server did not start in {START_TIMEOUT_S} s; see {log_path}")


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

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self._tree():
            stat = self._read(f"/proc/{pid}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def sample_rss(self) -> int:
        rss = 0
        for pid in self._tree():
            line = next((l for l in self._read(f"/proc/{pid}/status").splitlines() if l.startswith("VmRSS")), "")
            rss += int(line.split()[1]) * 1024 if line else 0
        self.peak_rss = max(self.peak_rss, rss)
        return rss


# ---- one client -------------------------------------------------------------------------------

def run_client(url: str, pcm: np.ndarray, rate: int, frame_s: float, delay_s: float, result: dict):
    """Stream ``pcm`` in real time; fills ``result`` with latencies and counts."""
    import socketio

    frame = int(rate * frame_s)
    sent_at: list[float] = []  # monotonic time each frame was sent
    emotions, errors = [], []
    summary_event = threading.Event()
    summary_at = [None]
    sio = socketio.Client(reconnection=False)
    sio.on("emotion", lambda d: emotions.append((time.monotonic(), d)), namespace=NS)
    sio.on("error", lambda d: errors.append(d), namespace=NS)

    def on_summary(d):
        summary_at[0] = time.monotonic()
        summary_event.set()

    sio.on("summary", on_summary, namespace=NS)
    time.sleep(delay_s)
    try:
        sio.connect(url, namespaces=[NS], transports=["websocket"], wait_timeout=30)
        ack = sio.call("start", {"sample_rate": rate}, namespace=NS, timeout=30)
        if not ack.get("ok"):
            result["error"] = f"start refused: {ack}"
            return
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), frame)):
            pause = t0 + k * frame_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sio.emit("audio", pcm[i:i + frame].tobytes(), namespace=NS)
            sent_at.append(time.monotonic())
        stop_at = time.monotonic()
        sio.emit("stop", namespace=NS)
        summary_event.wait(SUMMARY_TIMEOUT_S)
    except Exception as exc:  # a failed client is reported, not fatal to the run
        result["error"] = repr(exc)
    finally:
        try:
            sio.disconnect()
        except Exception:
            pass
    latencies = []
    for received, event in emotions:
        k = int(np.ceil(event["t1"] / frame_s - 1e-9)) - 1  # the frame that completed audio up to t1
        if 0 <= k < len(sent_at):
            latencies.append(received - sent_at[k])
    seconds = len(pcm) / rate
    result.update(latencies=latencies, events=len(emotions), seconds=seconds, errors=errors,
                  expected=int(seconds / HOP_S), speech=sum(e["speech"] for _, e in emotions),
                  summary_latency=(summary_at[0] - stop_at) if summary_at[0] and sent_at else None)


# ---- one round --------------------------------------------------------------------------------

def run_round(url: str, n: int, signals: list[np.ndarray], args, server: ProcStats) -> dict:
    results = [{} for _ in range(n)]
    rng = random.Random(n)
    threads = [threading.Thread(target=run_client, daemon=True,
                                args=(url, signals[i % len(signals)], args.rate, args.frame_ms / 1000,
                                      rng.uniform(0, args.frame_ms / 1000), results[i]))
               for i in range(n)]
    cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.seconds + 60 + n
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        server.sample_rss()
        time.sleep(0.5)
    wall = time.monotonic() - wall0
    lat = np.array([x for r in results for x in r.get("latencies", [])])
    summ = np.array([r["summary_latency"] for r in results if r.get("summary_latency") is not None])
    pct = lambda a, q: round(float(np.percentile(a, q)), 3) if len(a) else None  # noqa: E731
    events = sum(r.get("events", 0) for r in results)
    expected = sum(r.get("expected", 0) for r in results)
    return {
        "streams": n,
        "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95), "latency_max_s": pct(lat, 100),
        "events_per_s_per_stream": round(events / max(1e-9, sum(r.get("seconds", 0) for r in results)), 3),
        "missing_hops": expected - events,
        "speech_hops": sum(r.get("speech", 0) for r in results),
        "summary_p50_s": pct(summ, 50), "summary_p95_s": pct(summ, 95), "summaries": len(summ),
        "server_cpu_pct": round(100 * (server.cpu_seconds() - cpu0) / wall, 1),
        "server_rss_mb": round(server.peak_rss / 2 ** 20, 1),
        "client_cpu_pct": round(100 * (time.process_time() - own0) / wall, 1),
        "errors": sorted({e.get("code", "?") for r in results for e in r.get("errors", [])}
                         | {r["error"] for r in results if r.get("error")}),
    }


def print_table(rows: list[dict]):
    head = ["N", "p50 s", "p95 s", "max s", "ev/s/str", "missing", "sum p50", "sum p95", "srv CPU%",
            "srv RSS MB", "cli CPU%", "errors"]
    keys = ["streams", "latency_p50_s", "latency_p95_s", "latency_max_s", "events_per_s_per_stream", "missing_hops",
            "summary_p50_s", "summary_p95_s", "server_cpu_pct", "server_rss_mb", "client_cpu_pct", "errors"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(",".join(r[k]) or "-" if k == "errors" else str(r[k]) for k in keys) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,10,20,50", help="comma-separated N values")
    parser.add_argument("--seconds", type=float, default=25.0, help="audio per stream per round")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate the clients send")
    parser.add_argument("--frame-ms", type=int, default=250)
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights folder or checkpoint (default: weights/ if it has a model, else untrained)")
    parser.add_argument("--gunicorn", action="store_true", help="serve with the production gunicorn command")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.streams = [int(n) for n in args.streams.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="stream_bench_"))
    if args.weights is None:
        if (ROOT / "weights" / "registry.json").exists():
            args.weights = ROOT / "weights"
        else:
            print("weights/ has no model yet: benchmarking an UNTRAINED model of the default size")
            args.weights = throwaway_weights(tmp)
    signals = load_speech(args.audio_dir, args.seconds, min(max(args.streams), 50), args.rate)
    port = free_port()
    proc = start_server(args, port, tmp / "server.log")
    rows = []
    try:
        stats = ProcStats(proc.pid)
        url = f"http://127.0.0.1:{port}"
        run_round(url, 1, [signals[0][:3 * args.rate]], args, stats)  # warm-up
        for n in args.streams:
            row = run_round(url, n, signals, args, stats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"weights": str(args.weights), "server": "gunicorn gthread" if args.gunicorn else "run.py",
            "rate": args.rate, "frame_ms": args.frame_ms, "seconds": args.seconds, "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = args.out / f"stream_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
