"""The hand-over from the plain head to the session head, measured.

A voice's first seconds get the plain head (the first 8 s of speech in the app), then the session
head. With one or two of the voice's clips heard (about 1.7 and 3.3 s of speech) the session head
alone is already ahead of the plain head off the training corpora but behind it on new RAVDESS
actors (docs/results.md, "When the session head should take over"). This scores the mean of the
two heads' calibrated probabilities (the shipped temperatures, ``reports/whisper_head_calibration.json``:
the plain head's on the log of its mix, the session head's on its logits) with ``--clips`` clips
of each held-out voice heard, over five session draws. Each split's heads are fitted on its
training side as ``plain_mix_probe.py --cover`` and ``whisper_probe.py redraw`` fit them (the C
their nested runs picked there).

    python scripts/handover_probe.py --protocol loco --clips 1 2   # or --protocol cv
    python scripts/handover_probe.py --protocol loco --clips 4 8 --shares 0.75   # after the switch

Writes reports/experiments/whisper_probe/handover_<protocol>.json (with other ``--clips`` or
``--shares`` than the defaults: ``handover_<protocol>_clips<k>-<k>_shares<s>-<s>.json``). Each
share s scores ``blend_<s>`` = s x the session head + (1 - s) x the plain head; ``blend`` is 0.5.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import plain_mix_probe as M  # noqa: E402
import whisper_probe as P  # noqa: E402

SESSION = ("sess4w+gainaug+sizes", "L1+L2")  # the shipped session head's recipe and layers
SHARE = 0.5  # the session head's share of the blend


def calibrated_plain(prober: P.Prober, linear, network, train, files, temperature: float):
    """(windows, 7) the plain mix's probabilities weighted by coverage and tempered, and each window's file."""
    recipes = P.RECIPES[M.LINEAR[0]], P.RECIPES[M.NETWORK[0]]
    _, _, mix, owner = M.mixed(prober, linear, network, (M.LINEAR, M.NETWORK), recipes, files, "clean")
    mix = M.weighted(mix, np.exp(P.coverage_shift(prober.t, train)))
    return torch.softmax(torch.log(torch.from_numpy(mix).clamp_min(1e-12)) / temperature, 1).numpy(), owner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", choices=("loco", "cv"), default="loco")
    ap.add_argument("--clips", type=int, nargs="+", default=[1, 2], help="clips of each voice heard first")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--shares", type=float, nargs="+", default=[SHARE], help="session head's shares to score")
    args = ap.parse_args()
    torch.set_num_threads(1)
    P.limit_blas_threads()
    prober = P.Prober(P.Table())
    t = prober.t
    temps = json.loads((ROOT / "reports" / "whisper_head_calibration.json").read_text())
    t_plain, t_session = temps["plain"]["temperature"], temps["session"]["temperature"]
    lin_picks = P.saved_picks(f"{M.LINEAR[0]}_{M.LINEAR[1]}", args.protocol)
    sess_picks = P.saved_picks(f"{SESSION[0]}_{SESSION[1]}", args.protocol)
    session_recipe = P.RECIPES[SESSION[0]]
    blends = {("blend" if s == SHARE else f"blend_{s:g}"): s for s in args.shares}
    out = {"protocol": args.protocol, "draws": args.draws, "session_share": SHARE, "shares": blends,
           "temperatures": {"plain": t_plain, "session": t_session}, "clips": {}}
    splits: dict[int, dict] = {k: {} for k in args.clips}
    for name, train, test, _ in P.Splits(t).outer(args.protocol):
        lin_c = float(lin_picks[name].split("C=")[1])
        ls, sess_c = sess_picks[name].split(" C=")
        lin = prober.fit(P.RECIPES[M.LINEAR[0]], train, P.LAYER_SETS[M.LINEAR[1]], [lin_c])[lin_c]
        net = prober.fit(P.RECIPES[M.NETWORK[0]], train, P.LAYER_SETS[M.NETWORK[1]], [M.NETWORK[2]])[M.NETWORK[2]]
        session = prober.fit(session_recipe, train, P.LAYER_SETS[ls], [float(sess_c)])[float(sess_c)]
        for k in args.clips:
            heard = replace(session_recipe, enrol=k)  # the session at test time: k clips of the voice
            rows = []
            for d in range(args.draws):
                files = prober.scored(heard, test, d)
                p_plain, owner = calibrated_plain(prober, lin, net, train, files, t_plain)
                logits, owner_s = prober.window_logits(session, heard, files, "clean", P.LAYER_SETS[ls], d)
                assert np.array_equal(owner, owner_s)  # the same kept windows, in the same order
                p_session = torch.softmax(torch.from_numpy(logits) / t_session, 1).numpy()
                by_head = {"plain": p_plain, "session": p_session,
                           **{h: s * p_session + (1 - s) * p_plain for h, s in blends.items()}}
                rows.append({h: P.score(t.label[files], P.file_mean(p, owner, files)) for h, p in by_head.items()})
            splits[k][name] = {h: {"ua": float(np.mean([r[h]["ua"] for r in rows])),
                                   "collapse": float(np.mean([r[h]["collapse"] for r in rows]))} for h in rows[0]}
            print(f"{k} clips, {name}: " + ", ".join(f"{h} {100 * v['ua']:.1f} ({v['collapse']:.2f})"
                                                    for h, v in splits[k][name].items()), flush=True)
    for k in args.clips:
        means = {h: float(np.mean([s[h]["ua"] for s in splits[k].values()])) for h in ("plain", "session", *blends)}
        out["clips"][str(k)] = {"splits": splits[k], "ua_mean": means,
                                "collapse_max": {h: max(s[h]["collapse"] for s in splits[k].values()) for h in means}}
        print(f"{k} clips: mean UA " + ", ".join(f"{h} {100 * v:.1f}" for h, v in means.items()), flush=True)
    out["command"] = (f"python scripts/handover_probe.py --protocol {args.protocol} --clips {' '.join(map(str, args.clips))}"
                      + (f" --shares {' '.join(f'{s:g}' for s in args.shares)}" if args.shares != [SHARE] else ""))
    default = args.clips == [1, 2] and args.shares == [SHARE]
    suffix = "" if default else (f"_clips{'-'.join(map(str, args.clips))}_shares{'-'.join(f'{s:g}' for s in args.shares)}")
    path = P.PROBE_DIR / f"handover_{args.protocol}{suffix}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
