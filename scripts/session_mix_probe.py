"""The session mix, measured: once a session has speech, average the session head's probabilities
with the calm-voice head's, whose calm reference is found in the session itself (the mean
statistics of its speech windows weighted by the plain head's P(neutral)), so no calibration step.

    python scripts/session_mix_probe.py --protocol loco   # or cv (RAVDESS 5-fold by actor)

Heads and C as shipped (plain: gainaug, block 1, C 0.01; calm-voice: enrol2+gainaug, block 1,
C 0.001; session: sess4+gainaug, blocks 1+2, C 0.001), each fitted on the split's training side.
The session is simulated as in the probe's sess4 recipes: four clips of each test speaker, any
emotion, not scored. Writes reports/experiments/whisper_probe/session_mix_<protocol>.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import whisper_probe as P  # noqa: E402

from ser_model.labels import LABEL_TO_INDEX  # noqa: E402

NEUTRAL = LABEL_TO_INDEX["neutral"]
HEADS = {"plain": ("gainaug", "L1", 0.01), "calm": ("enrol2+gainaug", "L1", 0.001),
         "session": ("sess4+gainaug", "L1+L2", 0.001)}
VARIANTS = ("clean", "degraded")
CALIBRATION = ROOT / "reports" / "whisper_head_calibration.json"


def shipped_temperatures() -> dict:
    """The shipped session and calm-voice heads' temperatures."""
    cal = json.loads(CALIBRATION.read_text())
    return {"session": cal["session"]["temperature"], "adapted": cal["adapted"]["temperature"]}


def softmax_rows(linear, mean, std, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    with torch.inference_mode():
        logits = linear(torch.from_numpy(((x - mean) / std).astype(np.float32))) / temperature
        return torch.softmax(logits, 1).numpy()


def split_scores(prober: P.Prober, train: np.ndarray, test: np.ndarray, chosen: dict,
                 keep: dict | None = None, heads: dict = HEADS, temperatures: dict | None = None) -> dict:
    """UA and collapse of plain, session, calm-from-session and their mix on ``test`` minus the
    session clips, per variant; ``keep`` receives the app's (calibrated) mix probabilities of the
    scored files per variant, and their labels. ``heads``: name -> (recipe, layer set, C);
    ``temperatures``: the session and calm heads' (default: as shipped)."""
    t = prober.t
    temperatures = temperatures or shipped_temperatures()
    recipes = {k: P.BASE if r == "base" else P.RECIPES[r] for k, (r, _, _) in heads.items()}
    layers = {k: P.LAYER_SETS[ls] for k, (_, ls, _) in heads.items()}
    models = {k: prober.fit(recipes[k], train, layers[k], [c])[c] for k, (_, _, c) in heads.items()}
    in_session = np.zeros(len(t.records), bool)
    for files in chosen.values():
        in_session[files] = True
    scored = test[~in_session[test]]
    out = {}
    for variant in VARIANTS:
        x = t.features("raw", variant, layers["plain"], False)
        speech = t.speech(variant)
        lin, mean, std, _ = models["plain"]
        refs = {}
        for spk in np.unique(t.speaker[test]):
            if spk in chosen:
                win = np.flatnonzero(np.isin(t.win_file, chosen[spk]) & speech)
                w = softmax_rows(lin, mean, std, x[win])[:, NEUTRAL]
                refs[spk] = (w[:, None] * x[win]).sum(0) / w.sum()
        fallback = np.mean(list(refs.values()), axis=0)
        plain_logits, owner = prober.window_logits(models["plain"], recipes["plain"], scored, variant, layers["plain"])
        win = prober.kept_windows(scored, variant)  # the windows of those logits, in their order
        ref = np.stack([refs.get(s, fallback) for s in t.speaker[t.win_file[win]]])
        alin, amean, astd, _ = models["calm"]
        probs = {"plain": P.file_mean(torch.softmax(torch.from_numpy(plain_logits), 1).numpy(), owner, scored),
                 "calm-from-session": P.file_mean(softmax_rows(alin, amean, astd, x[win] - ref), owner, scored)}
        s_logits, s_owner = prober.window_logits(models["session"], recipes["session"], scored, variant, layers["session"])
        probs["session"] = P.file_mean(torch.softmax(torch.from_numpy(s_logits), 1).numpy(), s_owner, scored)
        probs["mix"] = 0.5 * probs["session"] + 0.5 * probs["calm-from-session"]
        # as the app mixes them: each head's probabilities calibrated by its own temperature
        t_s, t_c = temperatures["session"], temperatures["adapted"]
        probs["mix-calibrated"] = 0.5 * P.file_mean(torch.softmax(torch.from_numpy(s_logits / t_s), 1).numpy(),
                                                    s_owner, scored) \
            + 0.5 * P.file_mean(softmax_rows(alin, amean, astd, x[win] - ref, t_c), owner, scored)
        out[variant] = {k: P.score(t.label[scored], p) for k, p in probs.items()}
        if keep is not None:
            keep[variant], keep["y"] = probs["mix-calibrated"], t.label[scored]
    return out


def main() -> None:
    args, prober = P.protocol_prober(__doc__.split("\n\n")[0])
    protocol = args.protocol
    _, chosen = P.enrolment(prober.t, 4, source="any")  # the sess4 recipes' session clips
    result = {"protocol": protocol, "heads": HEADS, "splits": {}}
    for name, train, test, _ in P.Splits(prober.t).outer(protocol):
        scores = split_scores(prober, train, test, chosen)
        result["splits"][name] = scores
        print(name, {k: f"{100 * v['ua']:.1f} ({v['collapse']:.2f})" for k, v in scores["clean"].items()},
              "degraded", {k: f"{100 * v['ua']:.1f}" for k, v in scores["degraded"].items()}, flush=True)
    result["mean"] = {variant: {k: float(np.mean([s[variant][k]["ua"] for s in result["splits"].values()]))
                                for k in result["splits"][name][variant]} for variant in VARIANTS}
    print("mean UA", {v: {k: round(100 * x, 1) for k, x in m.items()} for v, m in result["mean"].items()})
    out = P.PROBE_DIR / f"session_mix_{protocol}.json"
    result["command"] = f"python scripts/session_mix_probe.py --protocol {protocol}"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
