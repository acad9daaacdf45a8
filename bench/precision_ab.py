"""float32 against bfloat16 in the same minutes: one lane per core, rounds at fixed stream counts.

    python bench/precision_ab.py --streams 40,48 --alternations 3

A machine's speed drifts by a third from one hour to the next, so two capacity searches an hour
apart cannot compare arithmetics. This starts the default topology (``run.py``, one model lane per
core, admission off) in float32, runs one ``capacity_bench`` round at each stream count, stops it,
does the same in bfloat16, and alternates; each round is judged as a capacity round (p95 <= 0.5 s,
every hop delivered). Needs a CPU with bfloat16 kernels.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity_bench as cb  # noqa: E402
from harness import add_server_args, load_speech, save_results, scratch_folder  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="40,48", help="stream counts, one round each per server start")
    p.add_argument("--alternations", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream per round")
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "precision_ab")
    signals = load_speech(args.audio_dir, args.seconds, 40, 16000)
    streams = [int(x) for x in args.streams.split(",")]
    rows = cb.alternate([("per-core", precision, streams) for precision in PRECISIONS], args.alternations,
                        args, signals, tmp)
    print("| streams | " + " | ".join(PRECISIONS) + " |\n|---|" + "---|" * len(PRECISIONS))
    for n in sorted({r["streams"] for r in rows}):
        cells = [f"passes {sum(r['ok'] for r in rows if r['streams'] == n and r['precision'] == prec)} of "
                 f"{sum(r['streams'] == n and r['precision'] == prec for r in rows)}" for prec in PRECISIONS]
        print(f"| {n} | " + " | ".join(cells) + " |")
    save_results(args.out, "precision_ab", {"command": " ".join(sys.argv), "weights": str(args.weights), "rows": rows})


if __name__ == "__main__":
    main()
