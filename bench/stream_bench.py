"""Live-stream benchmark: N concurrent real-time clients against the real server on 127.0.0.1.

Starts the app as ``run.py`` does (or gunicorn with ``--gunicorn``), then for each N streams real
speech (RAVDESS/TESS files, concatenated) from N clients in 250 ms frames paced at real time (all
driven from one thread, ``loadgen.ClientGroup``; ``--clients socketio``: a python-socketio client
each), and reports per N:

- latency p50/p95: from the moment a client had sent audio up to a window's end (t1) to that
  window's ``emotion`` event;
- events/s per stream (one per 0.5 s hop is expected: 2.0) and missing hops;
- summary latency p50/p95: from ``stop`` to ``summary``;
- server CPU % (100 = one core) and peak RSS, client-process CPU % (it shares the machine), and the
  web process's own CPU % (its model lanes, child processes by default, excluded), over the whole
  round and (``while_streaming``, the table's columns) over the part where every client streams.

    python bench/stream_bench.py --streams 1,10,20 --seconds 25
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ONE_ADDRESS, STARTUP_S, CpuSampler, LaneCounters, ProcStats, add_frame_arg, add_server_args, free_port, load_speech,  # noqa: E402
                     percentile, save_results, scratch_folder, start_server, stop_server)
from loadgen import CLIENT_KINDS, make_client, start_clients  # noqa: E402


def server_command(args, port: int, n_max: int) -> tuple[list[str], dict]:
    # Every client of the benchmark comes from loopback: lift the per-client limit. Admission control
    # stays on, so streams the server cannot serve well are refused at start (reported as errors).
    env = {"SER_WEIGHTS": str(args.weights), **ONE_ADDRESS, "SER_MAX_STREAMS": str(n_max + 8)}
    if args.no_admission:
        env.update(SER_ADMIT_UTILISATION="1000", SER_ADMIT_MAX_LAG_S="1000")
    if args.gunicorn:
        return [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"], \
            {**env, "SER_BIND": f"127.0.0.1:{port}", "SER_THREADS": str(n_max * 2 + 16)}
    return [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(args.weights)], env


# ---- one round --------------------------------------------------------------------------------

def run_round(url: str, n: int, signals: list[np.ndarray], args, server: ProcStats) -> dict:
    rng = random.Random(n)
    clients = [make_client(args.clients, url, signals[i % len(signals)], rate=args.rate, frame_s=args.frame_ms / 1000,
                           delay_s=rng.uniform(0, args.frame_ms / 1000)) for i in range(n)]
    lanes = LaneCounters(url)
    cpu0, web0, own0, wall0 = server.cpu_seconds(), server.cpu_seconds(own=True), time.process_time(), time.monotonic()
    sampler = CpuSampler([server])
    sampler.start()
    threads = start_clients(clients)
    deadline = time.monotonic() + args.seconds + 60 + n
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        server.sample_rss()
        time.sleep(0.5)
    wall = time.monotonic() - wall0
    sampler.stop()
    served = [c for c in clients if c.ack and c.ack.get("ok")]
    lat = np.array([x for c in served for x in c.latencies()])
    summ = np.array([c.summary_latency for c in served if c.summary_latency is not None])
    events = sum(len(c.events) for c in served)
    return {
        "streams": n, "refused": sum(c.refused for c in clients),
        "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
        "latency_max_s": percentile(lat, 100),
        "events_per_s_per_stream": round(events / max(1e-9, sum(c.seconds_sent for c in served)), 3),
        "missing_hops": sum(c.missing() for c in served),
        "speech_hops": sum(e["speech"] for c in served for _, e in c.events),
        "summary_p50_s": percentile(summ, 50), "summary_p95_s": percentile(summ, 95), "summaries": len(summ),
        "server_cpu_pct": round(100 * (server.cpu_seconds() - cpu0) / wall, 1),
        "web_cpu_pct": round(100 * (server.cpu_seconds(own=True) - web0) / wall, 1),  # without the model lanes
        "server_rss_mb": round(server.peak_rss / 2 ** 20, 1),
        "client_cpu_pct": round(100 * (time.process_time() - own0) / wall, 1),
        # while every client streams: from a frame after the last start to a second before the first stop
        "while_streaming": sampler.percent(wall0 + args.frame_ms / 1000 + STARTUP_S, wall0 + args.seconds - 1),
        "lanes": lanes.since_start(),  # mean batch and model ms per window as served
        "errors": sorted({e.get("code", "?") for c in clients for e in c.errors}
                         | {c.failure for c in clients if c.failure}),
    }


def print_table(rows: list[dict]):
    head = ["N", "refused", "p50 s", "p95 s", "max s", "ev/s/str", "missing", "sum p50", "sum p95", "srv CPU%*",
            "web CPU%*", "srv RSS MB", "cli CPU%*", "errors"]  # *: while every client streams
    keys = ["streams", "refused", "latency_p50_s", "latency_p95_s", "latency_max_s", "events_per_s_per_stream", "missing_hops",
            "summary_p50_s", "summary_p95_s", "server_cpu_pct", "web_cpu_pct", "server_rss_mb", "client_cpu_pct", "errors"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cell = {**r, **r["while_streaming"]}
        print("| " + " | ".join(",".join(r[k]) or "-" if k == "errors" else str(cell[k]) for k in keys) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,10,20,50", help="comma-separated N values")
    parser.add_argument("--seconds", type=float, default=25.0, help="audio per stream per round")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate the clients send")
    add_frame_arg(parser)
    parser.add_argument("--clients", choices=CLIENT_KINDS, default="lean",
                        help="lean: every stream driven from one thread (the load generator steals less CPU "
                             "from the server it measures); socketio: a python-socketio client per stream")
    parser.add_argument("--gunicorn", action="store_true", help="serve with the production gunicorn command")
    parser.add_argument("--no-admission", action="store_true",
                        help="admit every stream (to measure overload); by default the server refuses what it "
                             "cannot serve well")
    add_server_args(parser)
    args = parser.parse_args(argv)
    args.streams = [int(n) for n in args.streams.split(",")]

    tmp = scratch_folder(args, "stream_bench")
    signals = load_speech(args.audio_dir, args.seconds, min(max(args.streams), 50), args.rate)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd, env = server_command(args, port, max(args.streams))
    proc = start_server(cmd, url, tmp / "server.log", env)
    rows = []
    try:
        stats = ProcStats(proc.pid)
        run_round(url, 1, [signals[0][:3 * args.rate]], args, stats)  # warm-up
        for n in args.streams:
            row = run_round(url, n, signals, args, stats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop_server(proc)
    print_table(rows)
    meta = {"weights": str(args.weights), "server": "gunicorn gthread" if args.gunicorn else "run.py",
            "rate": args.rate, "frame_ms": args.frame_ms, "seconds": args.seconds, "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(), "python": platform.python_version(),
            "server_env": {k: v for k, v in os.environ.items() if k.startswith("SER_")},  # settings of an A/B
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    save_results(args.out, "stream_bench", {"meta": meta, "rows": rows}, indent=2)


if __name__ == "__main__":
    main()
