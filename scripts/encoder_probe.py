"""Which layer of the pretrained speaker encoder carries emotion, chosen without peeking at test actors.

    python scripts/encoder_probe.py [--data ../shared/datasets] [--out reports/encoder-probe.json]

For every RAVDESS file (actors 1-20) and each of its cached variants (clean + 2 augmented copies,
the same cache ``train --encoder`` uses), the three LSTM layers of Resemblyzer's voice encoder are
run over one centred 3 s window, and each layer's states are summarised by their mean and standard
deviation over time; the encoder's own 256-value embedding is kept too. A logistic regression
(``ser_model.encoder.fit_linear``) is then scored by nested cross-validation: in each of the five
outer folds of 4 held-out actors, four inner folds of the 16 training actors pick the feature set
and C; the pick is refitted on all 16 and scored on the 4 held-out actors' clean files. Training
rows are all variants; test rows the clean files only. Writes the picks, the outer UA per fold, and
the inner scores of every candidate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser_model.corpora import scan  # noqa: E402
from ser_model.data import FeatureBank, balanced_weights  # noqa: E402
from ser_model.encoder import fit_linear, pretrained_state  # noqa: E402
from ser_model.features import FRAMES_PER_SECOND  # noqa: E402
from ser_model.inference import WINDOW_S  # noqa: E402
from ser_model.metrics import compute_metrics  # noqa: E402
from ser_model.labels import EMOTIONS  # noqa: E402
from ser_model.protocols import DEFAULT_DATA, RAVDESS_FOLDS, REPORTS, actor  # noqa: E402

H = 256
FEATURE_SETS = {"layer1": [0], "layer2": [1], "layer3": [2], "layers1+2": [0, 1], "layers2+3": [1, 2],
                "layers1-3": [0, 1, 2], "embedding": [3]}
CS = (0.003, 0.01, 0.03)


def encoder_layers() -> tuple[list[torch.nn.LSTM], torch.nn.Linear]:
    """Resemblyzer's three LSTM layers as separate modules (to read each one's states) and its linear."""
    state = pretrained_state()
    layers = []
    for k in range(3):
        lstm = torch.nn.LSTM(40 if k == 0 else H, H, 1, batch_first=True)
        lstm.load_state_dict({f"{n}_l0": state[f"lstm.{n}_l{k}"]
                              for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        layers.append(lstm.eval())
    linear = torch.nn.Linear(H, H)
    linear.load_state_dict({"weight": state["linear.weight"], "bias": state["linear.bias"]})
    return layers, linear.eval()


@torch.inference_mode()
def describe(mel: np.ndarray, layers, linear) -> np.ndarray:
    """(3 * 512 + 256,) per-layer mean and std of states over time, then the encoder's embedding."""
    frames = int(WINDOW_S * FRAMES_PER_SECOND) + 1
    start = max(0, (mel.shape[1] - frames) // 2)
    x = torch.exp(torch.from_numpy(mel[:, start:start + frames].astype(np.float32))).T[None]
    parts = []
    for lstm in layers:
        x, (h, _) = lstm(x)
        parts += [x[0].mean(0), x[0].std(0)]
    embedding = torch.relu(linear(h[-1][0]))
    return torch.cat(parts + [embedding / embedding.norm()]).numpy()


def columns(name: str) -> np.ndarray:
    return np.concatenate([np.arange(k * 2 * H, (k + 1) * 2 * H) if k < 3 else np.arange(6 * H, 7 * H)
                           for k in FEATURE_SETS[name]])


def fit_score(X, y, w, variant, act, train_actors, test_actors, name, c) -> float:
    cols = columns(name)
    tr = np.isin(act, train_actors)
    te = np.isin(act, test_actors) & (variant == 0)
    mean, std = X[tr][:, cols].mean(0), X[tr][:, cols].std(0) + 1e-5
    z = lambda m: torch.from_numpy((X[m][:, cols] - mean) / std).float()  # noqa: E731
    linear, _ = fit_linear(z(tr), torch.from_numpy(y[tr]), torch.from_numpy(w[tr]).float(), c)
    with torch.no_grad():
        pred = linear(z(te)).argmax(1).numpy()
    return compute_metrics(y[te].tolist(), pred.tolist(), EMOTIONS)["ua"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPORTS / "encoder-probe.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    records = scan(args.data).by_corpus()["ravdess"]
    bank = FeatureBank(records, with_encoder=True)
    layers, linear = encoder_layers()
    X, y, w, variant, act = [], [], [], [], []
    weights = balanced_weights(records)
    for i, r in enumerate(tqdm(records, desc="encoder layers", unit="file")):
        for v, mel in enumerate(bank.encmel[i]):
            X.append(describe(mel, layers, linear))
            y.append(bank.labels[i]); w.append(weights[i]); variant.append(v); act.append(actor(r))
    X, y, w, variant, act = map(np.array, (X, y, w, variant, act))
    candidates = [(name, c) for name in FEATURE_SETS for c in CS]
    folds = []
    for k, test in enumerate(tqdm(RAVDESS_FOLDS, desc="outer folds", unit="fold"), 1):
        train = [a for a in range(1, 21) if a not in test]
        inner = [train[i::4] for i in range(4)]
        scores = {f"{name} C={c:g}": float(np.mean([
            fit_score(X, y, w, variant, act, [a for a in train if a not in held], held, name, c) for held in inner]))
            for name, c in candidates}
        best_key = max(scores, key=scores.get)
        name, c = candidates[list(scores).index(best_key)]
        outer = fit_score(X, y, w, variant, act, train, test, name, c)
        folds.append({"fold": k, "test_actors": test, "picked": best_key, "outer_ua": outer, "inner_ua": scores})
        print(f"fold {k}: picked {best_key} (inner UA {scores[best_key]:.3f}), held-out UA {outer:.3f}", flush=True)
    uas = [f["outer_ua"] for f in folds]
    result = {"nested_ua": {"mean": float(np.mean(uas)), "std": float(np.std(uas)), "values": uas},
              "folds": folds, "command": "python scripts/encoder_probe.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"nested held-out UA {np.mean(uas):.3f} +- {np.std(uas):.3f}; picks: {[f['picked'] for f in folds]}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
