"""Two sets of app settings in the same minutes: one topology, rounds at fixed stream counts.

    python bench/settings_ab.py --b "SER_VAD_BATCH_MS=100" --streams 48,56 --alternations 3 --arrivals spread

A machine's speed drifts by a third from one hour to the next, so a setting is judged against the
other in alternation: start the server with settings A (``SER_`` variables, space-separated;
empty: the defaults), run one ``capacity_bench`` round at each stream count, stop it, the same
with B, and again. Each round is judged as a capacity round (p95 <= 0.5 s, every hop delivered)
and records the lanes' mean batch and model cost per window as served.

``--listeners 0.5``: half of the clients (client i streams signal i of 40, the quiet ones drawn at
random with a fixed seed) send a quiet room instead of speech, as people who only listen; their
windows skip the model, so the lanes' load depends on which lane the talkers are on.
``--listeners-alternate``: every odd client listens instead, the worst case for lanes given to
streams in turn as they start (every talker on one lane).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity_bench as cb  # noqa: E402
from harness import add_server_args, load_speech, save_results, scratch_folder, with_listeners  # noqa: E402


def settings(text: str) -> dict[str, str]:
    """"SER_A=1 SER_B=x" -> {"SER_A": "1", "SER_B": "x"}."""
    out = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("SER_"):
            raise argparse.ArgumentTypeError(f"not a SER_NAME=value setting: {item!r}")
        out[name] = value
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", type=settings, default={}, help="settings A (default: none, the app's defaults)")
    p.add_argument("--b", type=settings, required=True, help="settings B")
    p.add_argument("--topology", default="per-core", choices=("one-process", "one-thread", "per-core"))
    p.add_argument("--streams", default="48,56", help="stream counts, one round each per server start")
    p.add_argument("--alternations", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream per round")
    p.add_argument("--arrivals", choices=("aligned", "spread"), default="spread")
    p.add_argument("--listeners", type=float, default=0.0, help="share of the clients that send a quiet room, not speech")
    p.add_argument("--listeners-alternate", action="store_true", help="every odd client sends a quiet room")
    add_server_args(p)
    args = p.parse_args(argv)
    tmp = scratch_folder(args, "settings_ab")
    signals, quiet = with_listeners(load_speech(args.audio_dir, args.seconds, 40, 16000), args.listeners,
                                   alternate=args.listeners_alternate)
    if quiet:
        print(f"clients sending a quiet room: {quiet}")
    streams = [int(x) for x in args.streams.split(",")]
    named = {"A": args.a, "B": args.b}
    configs = [(args.topology, "auto", streams, {**env, "SER_AB": name}) for name, env in named.items()]
    rows = cb.alternate(configs, args.alternations, args, signals, tmp, args.arrivals)
    print(f"A = {args.a or 'defaults'}, B = {args.b}")
    print("| streams | A passes | B passes | A p95 s | B p95 s | A mean batch | B mean batch | A model ms | B model ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in streams:
        cells = {name: [r for r in rows if r["streams"] == n and r["settings"]["SER_AB"] == name] for name in named}
        def col(name, key):
            return " / ".join(str((r.get("lanes") or {}).get(key)) for r in cells[name])
        print(f"| {n} | " + " | ".join(f"{sum(r['ok'] for r in cells[k])} of {len(cells[k])}" for k in named)
              + " | " + " | ".join(" / ".join(str(r["latency_p95_s"]) for r in cells[k]) for k in named)
              + " | " + " | ".join(col(k, "mean_batch") for k in named)
              + " | " + " | ".join(col(k, "model_ms_per_window") for k in named) + " |")
    save_results(args.out, "settings_ab", {"command": " ".join(sys.argv), "weights": str(args.weights),
                                            "arrivals": args.arrivals, "a": args.a, "b": args.b,
                                            "listeners": quiet, "rows": rows})


if __name__ == "__main__":
    main()
