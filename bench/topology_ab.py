"""A single model lane against one lane per core, in the same minutes: the issue's ratio and
efficiency without an hour between the measurements they divide.

    python bench/topology_ab.py --one 38,42,46 --per-core 62,68,74 --alternations 3 --arrivals spread

Each alternation measures the model's throughput cost per window (``capacity_bench``'s
measurement), then starts the ``--baseline`` (``one-process``: one model process beside the web
process; ``one-thread``: the model in a thread of the web process, one process in all, as the app
was before it had lanes) and runs one capacity round at each of ``--one``, stops it, and does the
same for ``per-core`` at each of ``--per-core``. Rounds are judged as in ``capacity_bench`` (p95
<= 0.5 s, every hop delivered). From the first failing count of each list it brackets the
capacities, and so the ratio (per-core / baseline) and per-core's efficiency against that
alternation's cost: bounds from a few rounds, not a search.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity_bench as cb  # noqa: E402
from harness import add_frame_arg, add_server_args, load_speech, save_results, scratch_folder  # noqa: E402


def bracket(rows: list[dict]) -> tuple[int | None, int | None]:
    """(most streams passed below the first failure, first failing count) of one topology's rounds."""
    passed, failed = None, None
    for row in sorted(rows, key=lambda r: r["streams"]):
        if not row["ok"]:
            failed = row["streams"]
            break
        passed = row["streams"]
    return passed, failed


def summarise(rows: list[dict], alternation: int) -> dict:
    """The alternation's brackets, ratio and efficiency bounds."""
    mine = [r for r in rows if r["alternation"] == alternation]
    one = bracket([r for r in mine if r["topology"] != "per-core"])
    core = bracket([r for r in mine if r["topology"] == "per-core"])
    ms = mine[0]["window_ms"]
    limit = cb.cores() * 1000 / (2 * ms)
    out = {"alternation": alternation, "window_ms": ms, "physical_limit": round(limit, 1),
           "one_process": one, "per_core": core}
    if one[0] and core[0]:
        hi_one = one[1] - 1 if one[1] else None  # capacity <= the first failure - 1
        hi_core = core[1] - 1 if core[1] else None
        out["ratio"] = [round(core[0] / hi_one, 2) if hi_one else None, round(hi_core / one[0], 2) if hi_core else None]
        out["efficiency"] = [round(core[0] / limit, 3), round(hi_core / limit, 3) if hi_core else None]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", default="34,38,42", help="stream counts for the baseline")
    p.add_argument("--baseline", choices=("one-process", "one-thread"), default="one-process")
    p.add_argument("--per-core", default="58,64,70", help="stream counts for one model process per core")
    p.add_argument("--alternations", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream per round")
    p.add_argument("--arrivals", choices=("aligned", "spread"), default="aligned")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    add_frame_arg(p)
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "topology_ab")
    signals = load_speech(args.audio_dir, args.seconds, 40, 16000)

    def cost(alternation: int) -> dict:
        ms, precision = cb.window_cost_ms(args.weights, precision=args.precision)
        print(f"alternation {alternation}: {ms[cb.COST_BATCH]} ms per window batched ({precision})", flush=True)
        return {"window_ms": ms[cb.COST_BATCH], "cost_precision": precision}

    counts = [int(x) for x in args.one.split(",")], [int(x) for x in args.per_core.split(",")]
    rows = cb.alternate([(args.baseline, args.precision, counts[0]), ("per-core", args.precision, counts[1])],
                        args.alternations, args, signals, tmp, args.arrivals, between=cost)
    summary = [summarise(rows, a) for a in range(args.alternations)]
    print(f"| alternation | ms per window | {args.baseline}: passes / fails at | per core: passes / fails at | ratio | efficiency |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        span = (lambda v: "-" if v is None else " to ".join("?" if x is None else f"{x:g}" for x in v))
        print(f"| {s['alternation']} | {s['window_ms']} | {s['one_process'][0]} / {s['one_process'][1]} | "
              f"{s['per_core'][0]} / {s['per_core'][1]} | {span(s.get('ratio'))} | {span(s.get('efficiency'))} |")
    save_results(args.out, "topology_ab", {"command": " ".join(sys.argv), "weights": str(args.weights),
                                           "arrivals": args.arrivals, "baseline": args.baseline, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
