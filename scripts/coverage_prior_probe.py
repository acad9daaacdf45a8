"""A label's coverage as a prior, measured: a label that fewer of the training corpora carry is
learnt from fewer voices, and off those corpora it becomes a corpus marker (under LOCO with TESS
held out, disgust is learnt from RAVDESS alone and takes 37 % of TESS's answers; with RAVDESS
held out, disgust and surprised are learnt from TESS alone and are never predicted). This adds
``log(k / K)`` to each label's logit (k of the K training corpora carry it), a fixed shift known
at training time, to the shipped plain and session heads, each fitted on the split's training side.

    python scripts/coverage_prior_probe.py --protocol loco   # or cv (RAVDESS 5-fold by actor)

C per split is the one the head's nested run picked on that split's training side. Writes
reports/experiments/whisper_probe/<recipe>+cover_<layers>_<protocol>.json in the probe's format.
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
from ser_model.labels import NUM_CLASSES  # noqa: E402

HEADS = (("gainaug", "L1"), ("sess4w+gainaug+sizes", "L1+L2"))  # (recipe, layer set) as shipped


def scored_with_shift(prober: P.Prober, model, recipe: P.Recipe, files: np.ndarray, cond: str, layers,
                      shift: np.ndarray) -> dict:
    logits, owner = prober.window_logits(model, recipe, files, cond, layers)
    probs = torch.softmax(torch.from_numpy(logits + shift.astype(np.float32)), 1).numpy()
    return P.score(prober.t.label[files], P.file_mean(probs, owner, files))


def run(prober: P.Prober, name: str, layer_set: str, protocol: str) -> dict:
    recipe, layers = P.RECIPES[name], P.LAYER_SETS[layer_set]
    picks = P.saved_picks(f"{name}_{layer_set}", protocol)
    result = {"recipe": {"head": name, "layers": layer_set, "prior": "log(k / K), k of K training corpora"},
              "protocol": protocol, "splits": []}
    for split, train, test, _ in P.Splits(prober.t).outer(protocol):
        c = float(picks[split].split("C=")[1])
        model = prober.fit(recipe, train, layers, [c])[c]
        shift = P.coverage_shift(prober.t, train)
        files = prober.scored(recipe, test)
        conds = {cond: scored_with_shift(prober, model, recipe, files, cond, layers, shift)
                 for cond in P.TEST_CONDITIONS}
        plain_clean = scored_with_shift(prober, model, recipe, files, "clean", layers, np.zeros(NUM_CLASSES))
        if recipe.enrol_from == "any":  # the same head when the session so far was spoken in one mood
            stress = replace(recipe, enrol_from="one-emotion")
            conds["one-emotion"] = scored_with_shift(prober, model, stress, prober.scored(stress, test), "clean",
                                                     layers, shift)
        result["splits"].append({"test": split, "picked": picks[split], "inner": {}, "shift": shift.tolist(),
                                 "n_test_files": int(len(files)), "conditions": conds,
                                 "without_shift_clean": plain_clean})
        cl = conds["clean"]
        print(f"{name} {protocol} {split}: UA {100 * cl['ua']:.1f} (collapse {cl['collapse']:.2f}); without the "
              f"prior {100 * plain_clean['ua']:.1f} ({plain_clean['collapse']:.2f})", flush=True)
    result["summary"] = P.summarise(result["splits"])
    mood = P.add_one_mood(result)
    print(f"{name} {protocol}: " + P.summary_line(P.row_of(name, result)) + mood, flush=True)
    result["command"] = f"python scripts/coverage_prior_probe.py --protocol {protocol}"
    out = P.PROBE_DIR / f"{name}+cover_{layer_set}_{protocol}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


def main() -> None:
    args, prober = P.protocol_prober(__doc__.split("\n\n")[0])
    protocol = args.protocol
    for name, layer_set in HEADS:
        run(prober, name, layer_set, protocol)


if __name__ == "__main__":
    main()
