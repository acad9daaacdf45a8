"""The plain head as a mix, measured: what a single clip gets (under 8 s of speech, so no session)
is today the linear head on block 1 (LOCO 36.7, RAVDESS CV 66.0); the 256-unit network on blocks
1+2 (``gainaug+mlp``) has the CV (75.9) but not the LOCO (35.9). This averages their probabilities
per window, half each, fitted on each split's training side. With ``--cover`` the mixed
probabilities are then weighted by each label's coverage, k / K (k of the K training corpora carry
it; ``coverage_prior_probe.py``), and renormalised.

    python scripts/plain_mix_probe.py --protocol loco   # or cv (RAVDESS 5-fold by actor); --cover
    python scripts/plain_mix_probe.py --protocol loco --session --cover   # the session head's pair

``--spk`` trains both heads with two more copies of every file whose voice is moved 2-4 semitones
(``gainaug+spk``, ``gainaug+mlp+spk``; the linear head's C is still the one ``gainaug``'s nested run
picked on that split's training side).

``--dyn`` gives both heads each layer's dynamics beside its statistics (``gainaug+dyn``,
``gainaug+mlp+dyn``: the std over time of every state's frame-to-frame change; the linear head's C
the one ``gainaug+dyn``'s own nested run picked).

``--session`` mixes the session head instead (``sess4w+gainaug+sizes`` on blocks 1+2, a speaker's
four other clips as the session so far, not scored) with the same network on the same rows
(``sess4w+gainaug+sizes+mlp``), and also scores sessions spoken in one mood.

The linear head's C is the one its nested run picked on that split's training side
(``gainaug_L1_<protocol>.json``); the network is ``gainaug+mlp``'s one configuration. Writes
reports/experiments/whisper_probe/plain-mix[+cover]_L1_<protocol>.json (``--session``:
sess4w+gainaug+sizes+netmix[+cover]_L1+L2_<protocol>.json) in the probe's format (``report``,
``choose``).
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import whisper_probe as P  # noqa: E402

LINEAR = ("gainaug", "L1")  # recipe, layer set; C from its saved nested run
NETWORK = ("gainaug+mlp", "L1+L2", 0.01)  # recipe, layer set, weight decay
SPK_LINEAR = ("gainaug+spk", "L1")  # --spk: the same pair, trained with the voice-shifted copies too
SPK_NETWORK = ("gainaug+mlp+spk", "L1+L2", 0.01)
DYN_LINEAR = ("gainaug+dyn", "L1")  # --dyn: the same pair reading each layer's dynamics too
DYN_NETWORK = ("gainaug+mlp+dyn", "L1+L2", 0.01)
SESSION_LINEAR = ("sess4w+gainaug+sizes", "L1+L2")  # --session: the same pair for the session head
SESSION_NETWORK = ("sess4w+gainaug+sizes+mlp", "L1+L2", 0.01)
# flag -> (linear head, network, the linear recipe whose nested run's C is used, the run's name)
PAIRS = {"plain": (LINEAR, NETWORK, LINEAR, "plain-mix"),
         "spk": (SPK_LINEAR, SPK_NETWORK, LINEAR, "plain-mix+spk"),
         "dyn": (DYN_LINEAR, DYN_NETWORK, DYN_LINEAR, "plain-mix+dyn"),
         "session": (SESSION_LINEAR, SESSION_NETWORK, SESSION_LINEAR, f"{SESSION_LINEAR[0]}+netmix")}
MIX = 0.5  # the network's share of the probabilities


def window_probs(prober: P.Prober, model, recipe: P.Recipe, files: np.ndarray, variant: str, layers):
    logits, owner = prober.window_logits(model, recipe, files, variant, layers)
    return torch.softmax(torch.from_numpy(logits), 1).numpy(), owner


def weighted(probs: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """``probs`` (windows x classes) times ``prior`` per label, renormalised; unchanged without one."""
    if prior is None:
        return probs
    p = probs * prior
    return p / p.sum(1, keepdims=True)


def mixed(prober: P.Prober, linear, network, heads: tuple, recipes: tuple, files: np.ndarray, variant: str):
    """(windows, 7) the two heads' probabilities, their mix (unweighted) and each window's file;
    ``recipes``: the (linear, network) recipes to read the rows with."""
    (_, lin_set), (_, net_set, _) = heads
    p_lin, owner = window_probs(prober, linear, recipes[0], files, variant, P.LAYER_SETS[lin_set])
    p_net, owner_net = window_probs(prober, network, recipes[1], files, variant, P.LAYER_SETS[net_set])
    assert np.array_equal(owner, owner_net)  # the same kept windows, in the same order
    return p_lin, p_net, (1 - MIX) * p_lin + MIX * p_net, owner


def split_result(prober: P.Prober, name: str, train: np.ndarray, test: np.ndarray, picked: str,
                 cover: bool = False, heads: tuple = (LINEAR, NETWORK)) -> dict:
    """Both ``heads`` fitted on ``train``, their mix scored on ``test`` under every test condition
    (``cover``: weighted by the labels' coverage in ``train``); a session pair also in one mood."""
    t = prober.t
    c = float(picked.split("C=")[1])
    (lin_name, lin_set), (net_name, net_set, decay) = heads
    lin_recipe, lin_layers = P.RECIPES[lin_name], P.LAYER_SETS[lin_set]
    net_recipe, net_layers = P.RECIPES[net_name], P.LAYER_SETS[net_set]
    linear = prober.fit(lin_recipe, train, lin_layers, [c])[c]
    network = prober.fit(net_recipe, train, net_layers, [decay])[decay]
    prior = np.exp(P.coverage_shift(t, train)) if cover else None
    runs = [(cond, lin_recipe, net_recipe) for cond in P.TEST_CONDITIONS]
    if lin_recipe.enrol_from == "any":  # the same heads when the session so far was spoken in one mood
        runs.append(("one-emotion", replace(lin_recipe, enrol_from="one-emotion"),
                     replace(net_recipe, enrol_from="one-emotion")))
    conds = {}
    for cond, lin_r, net_r in runs:
        files, variant = prober.scored(lin_r, test), "clean" if cond == "one-emotion" else cond
        p_lin, p_net, mix, owner = mixed(prober, linear, network, heads, (lin_r, net_r), files, variant)
        conds[cond] = P.score(t.label[files], P.file_mean(weighted(mix, prior), owner, files))
        if cond == "clean":  # each head alone (the saved runs' figures again, if the cache is the same),
            alone = {k: P.score(t.label[files], P.file_mean(p, owner, files))  # and the mix without the prior
                     for k, p in (("linear", p_lin), ("network", p_net), ("mix", mix))}
    return {"test": name, "picked": f"linear {picked} + network {net_set} decay={decay:g}", "inner": {},
            "n_test_files": int(len(prober.scored(lin_recipe, test))), "conditions": conds, "alone_clean": alone}


def main() -> None:
    args, prober = P.protocol_prober(__doc__.split("\n\n")[0],
                                     {"--cover": "weight the mix by each label's coverage, k / K training corpora",
                                      "--session": "the session head's pair instead of the plain head's",
                                      "--spk": "the plain pair trained with voice-shifted copies too",
                                      "--dyn": "the plain pair reading each layer's dynamics too"})
    pair = "session" if args.session else "spk" if args.spk else "dyn" if args.dyn else "plain"
    linear, network, picked_by, name_of_run = PAIRS[pair]
    heads, protocol = (linear, network), args.protocol
    name_of_run += "+cover" if args.cover else ""
    picks = P.saved_picks(f"{picked_by[0]}_{picked_by[1]}", protocol)
    result = {"recipe": {"linear": heads[0], "network": heads[1], "network_share": MIX,
                         "prior": "k / K, k of K training corpora" if args.cover else None},
              "protocol": protocol, "splits": []}
    for name, train, test, _ in P.Splits(prober.t).outer(protocol):
        s = split_result(prober, name, train, test, picks[name], args.cover, heads)
        result["splits"].append(s)
        c = s["conditions"]
        print(f"{name}: UA clean {100 * c['clean']['ua']:.1f} (collapse {c['clean']['collapse']:.2f}), "
              f"-15 dB {100 * c['g-15']['ua']:.1f}, +15 dB {100 * c['g+15']['ua']:.1f}, "
              f"degraded {100 * c['degraded']['ua']:.1f}; alone: " + ", ".join(
                  f"{k} {100 * a['ua']:.1f} ({a['collapse']:.2f})" for k, a in s["alone_clean"].items()), flush=True)
    result["summary"] = P.summarise(result["splits"])
    print(P.summary_line(P.row_of(name_of_run, result)) + P.add_one_mood(result))
    result["command"] = (f"python scripts/plain_mix_probe.py --protocol {protocol}" + ("" if pair == "plain" else f" --{pair}")
                         + (" --cover" if args.cover else ""))
    out = P.PROBE_DIR / f"{name_of_run}_{heads[0][1]}_{protocol}.json"  # named as modelcard.probe_cv looks
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
