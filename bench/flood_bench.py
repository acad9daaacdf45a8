"""Do good streams stay served while a hostile client floods the server with messages?

    python bench/flood_bench.py [--streams 16] [--seconds 20] [--flooders 1] [--alternations 2]
                                [--transport websocket|polling]

Starts ``run.py`` twice, with its per-address limit on WebSocket messages (``WS_MESSAGES_PER_S``,
``WS_MESSAGE_BURST``) as configured and lifted, and in each alternates rounds of ``--streams`` real-time streams of real
speech (from 127.0.0.1) alone and beside ``--flooders`` hostile clients (from 127.0.0.2, another
client address) that send tiny valid audio frames (2 bytes) as fast as they can and reconnect as
soon as they are closed (``--transport polling``: Engine.IO's long-polling transport instead, POSTs
of 16 tiny events each on one keep-alive connection, a new session whenever the old one ends). Reports per round the good streams' p95 latency and missing hops, the web
process's CPU (its model lanes excluded) and what the flooders managed. Writes
``bench/results/flood_bench_<time>.json``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity_bench import round_at  # noqa: E402
from harness import (ONE_ADDRESS, LiveClient, ProcStats, add_server_args, free_port, load_speech, save_results,  # noqa: E402
                     scratch_folder, start_server, stop_server)
from loadgen import flood  # noqa: E402

FLOOD_SOURCE = "127.0.0.2"  # another loopback address: the flooders are another client


def flood_until(port: int, until: float, tally: dict):
    """Flood, reconnecting whenever closed, until ``until``; counts in ``tally``."""
    while time.monotonic() < until:
        try:
            got = flood(port, until - time.monotonic(), 1e12, 2, source=FLOOD_SOURCE)
            tally["frames"] += got["messages"]
            tally["closed_1008"] += got["closed_by_server"] == 1008
        except OSError:  # refused or reset while connecting
            tally["failed"] += 1
        tally["connections"] += 1


def poll_until(port: int, until: float, tally: dict):
    """Flood over long-polling until ``until``: POSTs of 16 events (Engine.IO's most per POST), a new
    session whenever the old one is refused (it ends by ping timeout: the flooder never polls)."""
    body = "\x1e".join(['42/stream,["nonsense"]'] * 16)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(FLOOD_SOURCE, 0))
    path = None
    while time.monotonic() < until:
        try:
            if path is None:
                conn.request("GET", "/socket.io/?EIO=4&transport=polling")
                sid = json.loads(conn.getresponse().read()[1:])["sid"]
                path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
                conn.request("POST", path, body="40/stream,")
                conn.getresponse().read()
                tally["connections"] += 1
            conn.request("POST", path, body=body)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                path = None
                continue
            tally["frames"] += 16
        except (OSError, http.client.HTTPException, ValueError):
            tally["failed"] += 1
            conn.close()
            path = None


def one_round(url: str, port: int, args, signals, stats, flooding: bool) -> dict:
    tally = {"connections": 0, "frames": 0, "closed_1008": 0, "failed": 0}
    web = ProcStats(stats[0].pid)
    cpu0, t0 = web.cpu_seconds(own=True), time.monotonic()
    target = poll_until if args.transport == "polling" else flood_until
    threads = [threading.Thread(target=target, args=(port, t0 + args.seconds + 5, tally), daemon=True)
               for _ in range(args.flooders if flooding else 0)]
    for t in threads:
        t.start()
    row = round_at(url, args.streams, signals, args.seconds, stats)
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return {"flooding": flooding, "p95_s": row["latency_p95_s"], "missing_hops": row["missing_hops"],
            "served": row["served"], "failures": row["failures"], "ok": row["ok"],
            "web_core_percent": round(100 * (web.cpu_seconds(own=True) - cpu0) / wall, 1),
            "flooders": {**tally, "frames_per_s": round(tally["frames"] / wall)} if flooding else None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=16, help="good real-time streams per round (one address, 8 "
                   "messages a second each: keep them under WS_MESSAGES_PER_S)")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--flooders", type=int, default=1)
    p.add_argument("--alternations", type=int, default=2)
    p.add_argument("--transport", choices=("websocket", "polling"), default="websocket",
                   help="the flooders' Engine.IO transport (polling: \"frames\" count the events they POSTed)")
    add_server_args(p)
    args = p.parse_args()
    tmp = scratch_folder(args, "flood_bench")
    signals = load_speech(args.audio_dir, args.seconds + 5, 8, 16000)
    result = {"streams": args.streams, "seconds": args.seconds, "flooders": args.flooders,
              "transport": args.transport, "runs": []}
    # the good streams all come from 127.0.0.1: their own limits lifted, the flooders' address keeps them
    base = {"SER_STREAMS_PER_CLIENT": str(args.streams + 8), "SER_MAX_STREAMS": str(args.streams + 8)}
    lifted = {k: v for k, v in ONE_ADDRESS.items() if k != "SER_STREAMS_PER_CLIENT"}
    for budget, env in (("configured", base), ("lifted", {**base, **lifted})):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--weights", str(args.weights)]
        proc = start_server(cmd, url, tmp / f"server_{budget}.log", env)
        try:
            stats = [ProcStats(proc.pid)]
            LiveClient(url, signals[0][:3 * 16000]).run()  # warm-up
            for alternation in range(args.alternations):
                for flooding in (False, True):
                    row = {"budget": budget, "alternation": alternation,
                           **one_round(url, port, args, signals, stats, flooding)}
                    result["runs"].append(row)
                    print(json.dumps(row), flush=True)
        finally:
            stop_server(proc)
    save_results(args.out, "flood_bench", result)


if __name__ == "__main__":
    main()
