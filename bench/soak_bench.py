"""Soak: N real-time streams (and a few uploads) for M minutes; memory and latency per minute.

Starts ``run.py`` with the shipped weights, opens ``--streams`` clients that loop real speech in
real time, posts an upload every ``--upload-every`` seconds, and prints one row per minute: server
RSS, latency p50/p95 of that minute's ``emotion`` events, events/s per stream, missing hops, server
CPU. A leak shows as RSS that keeps growing; a slowdown as a rising p95.

    python bench/soak_bench.py --streams 20 --minutes 10
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ONE_ADDRESS, LiveClient, ProcStats, add_server_args, free_port, load_speech, percentile,  # noqa: E402
                     save_results, scratch_folder, start_server, stop_server)


def uploader(url: str, wav: bytes, every_s: float, stop: threading.Event, statuses: list):
    while not stop.wait(every_s):
        try:
            statuses.append(requests.post(url + "/api/predict", files={"file": ("soak.wav", wav)}, timeout=60).status_code)
        except requests.RequestException as exc:
            statuses.append(repr(exc))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--upload-every", type=float, default=15.0, help="seconds between uploads (0: none)")
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "soak_bench")
    signals = load_speech(args.audio_dir, 60.0, min(args.streams, 40), 16000)
    buf = io.BytesIO()
    sf.write(buf, signals[0][:10 * 16000], 16000, format="WAV")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SER_WEIGHTS": str(args.weights), **ONE_ADDRESS}
    proc = start_server([sys.executable, "run.py", "--port", str(port), "--weights", str(args.weights)], url,
                        tmp / "server.log", env)
    rows, statuses, stop = [], [], threading.Event()
    try:
        stats = ProcStats(proc.pid)
        clients = [LiveClient(url, signals[i % len(signals)], loop=True, delay_s=i * 0.05) for i in range(args.streams)]
        for c in clients:
            c.start()
        if args.upload_every > 0:
            threading.Thread(target=uploader, args=(url, buf.getvalue(), args.upload_every, stop, statuses),
                             daemon=True).start()
        t0 = time.monotonic()
        for minute in range(int(np.ceil(args.minutes))):
            since, cpu0 = time.monotonic(), stats.cpu_seconds()
            while time.monotonic() - since < 60:
                stats.sample_rss()
                time.sleep(1)
            until = time.monotonic()
            lat = np.array([x for c in clients for x in c.latencies(since, until)])
            events = sum(1 for c in clients for received, _ in c.events if since <= received < until)
            rows.append({"minute": minute + 1, "rss_mb": round(stats.sample_rss() / 2 ** 20, 1),
                         "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
                         "events_per_s_per_stream": round(events / (until - since) / max(1, len(clients)), 2),
                         "missing_hops": sum(c.missing(since, until) for c in clients),
                         "server_cpu_pct": round(100 * (stats.cpu_seconds() - cpu0) / (until - since), 1),
                         "uploads": len(statuses)})
            print(json.dumps(rows[-1]), flush=True)
        stop.set()
        for c in clients:
            c.finish()
        for c in clients:
            c.join(30)
        ready = requests.get(url + "/readyz", timeout=10).json()
    finally:
        stop_server(proc)
    result = {"streams": args.streams, "minutes": args.minutes, "rows": rows,
              "refused": sum(c.refused for c in clients), "upload_statuses": sorted(set(map(str, statuses))),
              "errors": sorted({e.get("code", "?") for c in clients for e in c.errors}),
              "window_cost_ms_end": ready["window_cost_ms"],
              "meta": {"weights": str(args.weights), "cpus": os.cpu_count(), "loadavg_after": os.getloadavg(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - t0)}}
    print("| minute | RSS MB | p50 s | p95 s | events/s/stream | missing hops | server CPU % | uploads |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minute']} | {r['rss_mb']} | {r['latency_p50_s']} | {r['latency_p95_s']} | "
              f"{r['events_per_s_per_stream']} | {r['missing_hops']} | {r['server_cpu_pct']} | {r['uploads']} |")
    save_results(args.out, "soak_bench", result)


if __name__ == "__main__":
    main()
