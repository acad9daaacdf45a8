"""Admission benchmark: add real-time streams one by one until the server refuses them at ``start``.

Starts ``run.py`` (shipped weights, default admission settings) and every ``--interval`` seconds
opens one more client that streams real speech in real time, looping, until ``--refusals``
starts in a row were refused; then holds ``--hold`` seconds while further clients keep knocking
(each should be refused) and measures the admitted streams: latency p50/p95 (from the frame that
completed a window to its ``emotion``), missing hops and ``server_busy`` notices. The server's own
measured model time per window (batched as it serves them) is read from ``/readyz`` in the same
run, so the figures can be compared across machines as ratios.

    python bench/admission_bench.py [--interval 1.0] [--hold 30] [--max 120]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ONE_ADDRESS, LiveClient, ProcStats, add_server_args, free_port, load_speech, percentile,  # noqa: E402
                     save_results, scratch_folder, start_server, stop_server)


def ramp(url: str, signals, args, stats: ProcStats) -> dict:
    clients: list[LiveClient] = []
    refused_in_a_row, hold_from, timeline = 0, None, []
    began = time.monotonic()
    while True:
        client = LiveClient(url, signals[len(clients) % len(signals)], loop=True)
        client.start()
        deadline = time.monotonic() + 30
        while client.ack is None and client.failure is None and time.monotonic() < deadline:
            time.sleep(0.02)
        clients.append(client)
        admitted = sum(1 for c in clients if c.ack and c.ack.get("ok"))
        refused_in_a_row = refused_in_a_row + 1 if client.refused else 0
        ready = requests.get(url + "/readyz", timeout=10).json()
        timeline.append({"t": round(time.monotonic() - began, 1), "admitted": admitted, "refused": client.refused,
                         "capacity": ready["stream_capacity"], "window_cost_ms": ready["window_cost_ms"],
                         "lag_s": ready["lag_s"]})
        stats.sample_rss()
        if hold_from is None and (refused_in_a_row >= args.refusals or len(clients) >= args.max):
            hold_from = time.monotonic()
        if hold_from is not None and time.monotonic() - hold_from >= args.hold:
            break
        time.sleep(args.interval)
    hold_until = time.monotonic()
    ready = requests.get(url + "/readyz", timeout=10).json()
    for c in clients:
        c.finish()
    for c in clients:
        c.join(30)
    served = [c for c in clients if c.ack and c.ack.get("ok")]
    refused = [c for c in clients if c.refused]
    lat = np.array([x for c in served for x in c.latencies(hold_from, hold_until)])
    lat_all = np.array([x for c in served for x in c.latencies()])
    first_refusal = next((row["admitted"] for row in timeline if row["refused"]), None)
    return {
        "admitted": len(served), "refused": len(refused), "admitted_at_first_refusal": first_refusal,
        "refusal_codes": sorted({(c.ack or {}).get("code", "?") for c in refused}),
        "hold_s": round(hold_until - hold_from, 1),
        "hold_latency_p50_s": percentile(lat, 50), "hold_latency_p95_s": percentile(lat, 95),
        "hold_latency_max_s": percentile(lat, 100),
        "hold_missing_hops": sum(c.missing(hold_from, hold_until) for c in served),
        "run_latency_p95_s": percentile(lat_all, 95), "run_missing_hops": sum(c.missing() for c in served),
        "server_busy_notices": sum(1 for c in served for e in c.errors if e.get("code") == "server_busy"),
        "other_errors": sorted({e.get("code", "?") for c in served for e in c.errors} - {"server_busy"}
                               | {c.failure for c in clients if c.failure}),
        "window_cost_ms_end": ready["window_cost_ms"], "capacity_end": ready["stream_capacity"],
        "server_rss_mb": round(stats.peak_rss / 2 ** 20, 1), "timeline": timeline,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between new clients")
    p.add_argument("--hold", type=float, default=30.0, help="seconds measured after admission stopped")
    p.add_argument("--refusals", type=int, default=5, help="refused starts in a row that end the ramp")
    p.add_argument("--max", type=int, default=120, help="clients at most")
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "admission_bench")
    signals = load_speech(args.audio_dir, 60.0, 40, 16000)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SER_WEIGHTS": str(args.weights), **ONE_ADDRESS}  # loopback is every client here
    proc = start_server([sys.executable, "run.py", "--port", str(port), "--weights", str(args.weights)], url,
                        tmp / "server.log", env)
    try:
        LiveClient(url, signals[0][:3 * 16000]).run()  # warm-up
        result = ramp(url, signals, args, ProcStats(proc.pid))
    finally:
        stop_server(proc)
    result["meta"] = {"weights": str(args.weights), "cpus": os.cpu_count(), "loadavg_after": os.getloadavg(),
                      "interval_s": args.interval, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=1))
    print("| admitted | first refusal at | refused | hold p50 s | hold p95 s | hold missing hops | "
          "server_busy | window ms (server, batched) | capacity |")
    print("|---|---|---|---|---|---|---|---|---|")
    r = result
    print(f"| {r['admitted']} | {r['admitted_at_first_refusal']} | {r['refused']} | {r['hold_latency_p50_s']} | "
          f"{r['hold_latency_p95_s']} | {r['hold_missing_hops']} | {r['server_busy_notices']} | "
          f"{r['window_cost_ms_end']} | {r['capacity_end']} |")
    save_results(args.out, "admission_bench", result)


if __name__ == "__main__":
    main()
