"""Capacity: the most concurrent real-time streams served with p95 <= 0.5 s and every hop delivered.

For each topology, streams real speech from N clients in real time (one thread drives them all,
``loadgen.ClientGroup``, so the load generator takes little CPU from the server; admission
control off, so the server takes every stream) and searches N: upwards in steps until a round
fails, then by halving between the last pass and the first failure. In the same run, just before
and just after each topology, it measures the model's throughput cost per window (one thread,
windows batched as a busy lane batches them, time divided by windows, in the precision a lane
picks) and reports, with the mean of the two,

    efficiency = capacity / (cores x 1000 / (2 x per-window ms))

the share of the machine's physical limit (every core running the model, 2 windows per stream
per second) that is actually served.

Topologies: ``one-process`` (run.py, one model process), ``one-thread`` (run.py, the model in a
thread of the web process itself: one process, as the app was before it had lanes), ``per-core`` (run.py, one model process
per core), ``stack`` (scripts/stack.py: nginx + Redis + K app processes sharing the cores),
``stack-tier`` (the same stack, the model in ``python -m webapp.tier`` workers fed through Redis).

    python bench/capacity_bench.py --topologies one-process,per-core,stack --seconds 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (FRAME_MS, HOP_S, ONE_ADDRESS, ROOT, STARTUP_S, CpuSampler, LaneCounters, LiveClient, ProcStats, add_frame_arg,  # noqa: E402
                     add_server_args, cores, free_port, load_speech, percentile, save_results, scratch_folder, start_server,
                     stop_server)
from loadgen import CLIENT_KINDS, make_client, start_clients  # noqa: E402

sys.path.insert(0, str(ROOT))
from webapp.stream import CPU_BATCH_MAX  # noqa: E402

P95_LIMIT_S = 0.5
NO_ADMISSION = {"SER_ADMIT_UTILISATION": "1000", "SER_ADMIT_MAX_LAG_S": "1000", "SER_MAX_STREAMS": "1000", **ONE_ADDRESS}
# Windows per model call when measuring the throughput cost: as many as a lane on CPU takes at
# most (BATCH_MAX "auto"); a lane at capacity runs such batches. Until 2026-12-01 this was 8,
# when lanes took up to 32; batches of 8 cost a few per cent less per window here.
COST_BATCH = CPU_BATCH_MAX


def window_cost_ms(weights: Path, batch: int = COST_BATCH, repeats: int = 30, precision: str = "auto") -> tuple[dict, str]:
    """Median ms per window of predict_proba on batches of 1, 4, 8, ``batch`` and 16 3 s windows, one
    thread, in a fresh process that loads the model as a lane does; and the precision it ran in."""
    code = f"""
import json, statistics, sys, time
import numpy as np, torch
sys.path.insert(0, {str(ROOT)!r})
from threadpoolctl import threadpool_limits
from ser_model import Recognizer
torch.set_num_threads(1); threadpool_limits(1)
rec = Recognizer.load({str(weights)!r}, precision={precision!r})
rng = np.random.default_rng(0)
t = np.arange(48000) / 16000
w = (0.2 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(48000)).astype(np.float32)
out = {{}}
for b in {sorted({1, 4, 8, batch, 16})}:
    for _ in range(3):
        rec.predict_proba([w] * b)
    ms = []
    for _ in range({repeats}):
        s = time.perf_counter(); rec.predict_proba([w] * b); ms.append((time.perf_counter() - s) * 1000 / b)
    out[b] = statistics.median(ms)
print(json.dumps({{"ms": out, "precision": rec.precision}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {int(k): round(v, 2) for k, v in got["ms"].items()}, got["precision"]


# ---- topologies ---------------------------------------------------------------------------------------
class Topology:
    """Start with ``up()`` -> base URL; ``down()``; ``pids`` of the serving processes."""

    def __init__(self, name: str, weights: Path, tmp: Path, precision: str = "auto", env: dict | None = None):
        self.name, self.weights, self.tmp, self.precision = name, weights, tmp, precision
        self.env = env or {}  # more settings for the app processes (SER_...)
        self.procs: list[subprocess.Popen] = []
        self.stack = None

    def up(self) -> str:
        env = {**NO_ADMISSION, "SER_WEIGHTS": str(self.weights), "SER_INFERENCE_PRECISION": self.precision, **self.env}
        if self.name in ("one-process", "one-thread", "per-core"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env["SER_INFERENCE_WORKERS"] = "auto" if self.name == "per-core" else "1"
            if self.name == "one-thread":
                env["SER_INFERENCE_MODE"] = "thread"
            self.procs.append(start_server([sys.executable, "run.py", "--port", str(port)], url,
                                           self.tmp / f"{self.name}.log", env))
            return url
        sys.path.insert(0, str(ROOT / "scripts"))
        import stack  # scripts/stack.py

        tier = self.name == "stack-tier"
        if tier:
            env.update(SER_INFERENCE_MODE="redis", SER_INFERENCE_WORKERS=str(cores()))
        self.stack = stack.Stack(apps=2, weights=self.weights, run_dir=self.tmp / self.name, extra_env=env,
                                 port=free_port())
        url = self.stack.start(wait_ready=not tier)
        if tier:
            for i in range(cores()):
                proc = subprocess.Popen([sys.executable, "-m", "webapp.tier", "--redis", self.stack.redis_url,
                                         "--weights", str(self.weights), "--precision", self.precision], cwd=ROOT,
                                        stdout=open(self.tmp / f"tier{i}.log", "wb"), stderr=subprocess.STDOUT)
                self.procs.append(proc)
            self.stack.wait_ready()
        return url

    def down(self):
        for proc in self.procs:
            stop_server(proc)
        if self.stack is not None:
            self.stack.stop()

    def pids(self) -> list[int]:
        pids = [p.pid for p in self.procs]
        if self.stack is not None:
            pids += self.stack.pids()
        return pids


# ---- one round ----------------------------------------------------------------------------------------
def start_delay(i: int, n: int, arrivals: str) -> float:
    """When client ``i`` of ``n`` starts: ``aligned``, all within 0.24 s, so their windows complete
    together every hop (a burst the lanes must drain, the worst case); ``spread``, evenly over one
    hop, as independent users' windows fall."""
    return (i % 8) * 0.03 if arrivals == "aligned" else HOP_S * i / n


def round_at(url: str, n: int, signals, seconds: float, stats: list[ProcStats], arrivals: str = "aligned",
             kind: str = "lean", frame_ms: int = FRAME_MS) -> dict:
    clients = [make_client(kind, f"{url}/?c={uuid.uuid4().hex[:12]}", signals[i % len(signals)],
                           delay_s=start_delay(i, n, arrivals), frame_s=frame_ms / 1000)
               for i in range(n)]
    lanes = LaneCounters(url)
    cpu0, wall0, own0 = sum(s.cpu_seconds() for s in stats), time.monotonic(), os.times()
    sampler = CpuSampler(stats)
    sampler.start()
    deadline = time.monotonic() + seconds + 60
    for t in start_clients(clients):
        t.join(max(0.0, deadline - time.monotonic()))
    wall = time.monotonic() - wall0
    sampler.stop()
    # the streaming period: every client connected and sending (the last starts within a hop plus
    # its connection), until the first could stop
    streaming = sampler.percent(wall0 + HOP_S + STARTUP_S, wall0 + seconds)
    own = os.times()
    served = [c for c in clients if c.ack and c.ack.get("ok")]
    lat = np.array([x for c in served for x in c.latencies()])
    missing = sum(c.missing() for c in served) + sum(int(s.seconds_sent / 0.5) for s in clients if s not in served)
    p95 = percentile(lat, 95)
    return {"streams": n, "arrivals": arrivals, "served": len(served), "latency_p50_s": percentile(lat, 50), "latency_p95_s": p95,
            "missing_hops": missing, "busy_notices": sum(e.get("code") == "server_busy" for c in served for e in c.errors),
            "failures": sorted({c.failure for c in clients if c.failure}),
            "server_cpu_pct": round(100 * (sum(s.cpu_seconds() for s in stats) - cpu0) / wall, 1),
            "client_cpu_pct": round(100 * (own.user - own0.user + own.system - own0.system) / wall, 1),  # the load generator
            "while_streaming": streaming,  # the same over the streaming period only, and the machine's idle time
            "lanes": lanes.since_start(),  # mean batch and model ms per window as served (one app's /metrics)
            "ok": len(served) == n and p95 is not None and p95 <= P95_LIMIT_S and missing == 0}


def alternate(configs: list[tuple], alternations: int, args, signals, tmp: Path,
              arrivals: str = "aligned", between=None) -> list[dict]:
    """Same-minutes comparison: for each (topology, precision, stream counts[, settings]) in turn,
    start that server (with those ``SER_`` settings), run one capacity round at each stream count,
    stop it; ``alternations`` times over. A
    machine's speed drifts by a third from one hour to the next, so configurations compared this way
    share the machine's minutes. ``between(alternation)``, if given, runs before each alternation
    and its dict is added to that alternation's rows."""
    rows = []
    for alternation in range(alternations):
        extra = between(alternation) if between else {}
        for topology, precision, streams, *settings in configs:
            env = settings[0] if settings else {}
            topo = Topology(topology, args.weights, tmp, precision, env)
            url = topo.up()
            try:
                stats = [ProcStats(pid) for pid in topo.pids()]
                LiveClient(url, signals[0][:3 * 16000]).run()  # warm-up
                for n in streams:
                    row = {"alternation": alternation, "topology": topology, "precision": precision, **extra,
                           **({"settings": env} if env else {}), **round_at(url, n, signals, args.seconds, stats, arrivals,
                                                                                    frame_ms=getattr(args, "frame_ms", FRAME_MS))}
                    rows.append(row)
                    print(f"[{topology}, {precision}{', ' + str(env) if env else ''}] {n} streams: p95 {row['latency_p95_s']} s, "
                          f"{row['missing_hops']} hops missing, server {row['while_streaming']['server_cpu_pct']} % CPU, "
                          f"lanes {row['lanes']}, {'pass' if row['ok'] else 'FAIL'}", flush=True)
            finally:
                topo.down()
    return rows


def search(url: str, signals, args, stats, log) -> tuple[int, list[dict]]:
    """Largest N that passes: up by ``--step`` from ``--start``, then halving the gap. With
    ``--repeats K``, N passes when most of K rounds at N pass (near the limit a single round's p95
    swings between runs: one round is a coin toss there)."""
    rounds, good, bad = [], 0, None

    def passes(n: int) -> bool:
        need = args.repeats // 2 + 1  # passing rounds for a majority
        ok = failed = 0
        while ok < need and failed <= args.repeats - need:  # stop once the majority is decided
            row = round_at(url, n, signals, args.seconds, stats, args.arrivals, args.clients, args.frame_ms)
            rounds.append(row)
            log(row)
            ok, failed = ok + row["ok"], failed + (not row["ok"])
        return ok >= need

    n = args.start
    while bad is None and n <= args.max:
        if passes(n):
            good, n = n, n + args.step
        else:
            bad = n
    if bad is None:
        return good, rounds
    while bad - good > max(1, args.resolution):
        n = (good + bad) // 2
        good, bad = (n, bad) if passes(n) else (good, n)
    return good, rounds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topologies", default="one-process,per-core,stack")
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream per round")
    p.add_argument("--start", type=int, default=8)
    p.add_argument("--step", type=int, default=6)
    p.add_argument("--resolution", type=int, default=1, help="stop halving when the gap is this small")
    p.add_argument("--max", type=int, default=120)
    p.add_argument("--repeats", type=int, default=1, help="rounds per N; N passes when most of them pass")
    p.add_argument("--arrivals", choices=("aligned", "spread"), default="aligned",
                   help="aligned: every stream's windows complete in the same quarter second (worst case); "
                        "spread: stream starts spread evenly over one hop, as independent users")
    p.add_argument("--clients", choices=CLIENT_KINDS, default="lean",
                   help="lean: every stream driven from one thread (the load generator, on the same cores, "
                        "steals less CPU from the server it measures); socketio: a python-socketio client per stream")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="the model's CPU arithmetic, in the servers and in the cost measurement (default: auto)")
    add_frame_arg(p)
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "capacity_bench")
    signals = load_speech(args.audio_dir, args.seconds, 40, 16000)
    results = {"cores": cores(), "arrivals": args.arrivals, "clients": args.clients, "frame_ms": args.frame_ms,
               "weights": str(args.weights), "p95_limit_s": P95_LIMIT_S, "topologies": {}}
    for name in args.topologies.split(","):
        before, precision = window_cost_ms(args.weights, precision=args.precision)  # before and after this topology
        topo = Topology(name, args.weights, tmp, args.precision)
        url = topo.up()
        try:
            stats = [ProcStats(pid) for pid in topo.pids()]
            LiveClient(url, signals[0][:3 * 16000]).run()  # warm-up
            capacity, rounds = search(url, signals, args, stats,
                                      lambda row: print(f"[{name}] {json.dumps(row)}", flush=True))
        finally:
            topo.down()
        after, _ = window_cost_ms(args.weights, precision=args.precision)
        # one measurement swung from 20 to 32 ms within minutes on a shared VM: the mean of two
        cost = {b: round((before[b] + after[b]) / 2, 2) for b in before}
        limit = cores() * 1000 / (2 * cost[COST_BATCH])
        results["topologies"][name] = {"capacity": capacity, "window_ms_batched": cost[COST_BATCH],
                                       "window_ms_before": before[COST_BATCH], "window_ms_after": after[COST_BATCH],
                                       "precision": precision, "window_ms_by_batch": cost,
                                       "physical_limit": round(limit, 1),
                                       "efficiency": round(capacity / limit, 3), "rounds": rounds}
        print(f"[{name}] capacity {capacity} streams, {cost[COST_BATCH]} ms/window batched ({precision}; "
              f"{before[COST_BATCH]} before, {after[COST_BATCH]} after), "
              f"limit {limit:.1f}, efficiency {capacity / limit:.0%}", flush=True)
    one = results["topologies"].get("one-process", {}).get("capacity")
    print("| topology | capacity (streams) | per-window ms (batched, 1 thread) | physical limit | efficiency | vs one process |")
    print("|---|---|---|---|---|---|")
    for name, r in results["topologies"].items():
        ratio = f"{r['capacity'] / one:.2f}x" if one else "-"
        print(f"| {name} | {r['capacity']} | {r['window_ms_batched']} | {r['physical_limit']} | "
              f"{r['efficiency']:.0%} | {ratio} |")
    results["meta"] = {"seconds": args.seconds, "repeats": args.repeats, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "loadavg_after": os.getloadavg(), "median_note": "latency from the frame completing a window"}
    save_results(args.out, "capacity_bench", results)


if __name__ == "__main__":
    main()
