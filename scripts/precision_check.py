"""Does the model answer the same in bfloat16 as in float32? The same corpus files through both.

    python scripts/precision_check.py [--weights weights/] [--files 150] [--data ../shared/datasets]

For ``--files`` random files of each corpus (seeded), ``Recognizer.predict`` in float32 and in
bfloat16 (``Recognizer.load(precision=...)``): how often the label and the ``uncertain`` flag are
the same, the largest difference of any probability, and the UA of each over those files; then one
session per corpus (15 clips of one speaker, long enough for the session head), window by window.
Writes ``reports/experiments/precision_check.json``. Needs a CPU with bfloat16 kernels.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ser_model import Recognizer  # noqa: E402
from ser_model.audio import load_audio  # noqa: E402
from ser_model.corpora import scan  # noqa: E402
from ser_model.data import limit_blas_threads  # noqa: E402
from ser_model.inference import bfloat16_kernels  # noqa: E402
from ser_model.labels import EMOTIONS  # noqa: E402
from ser_model.metrics import compute_metrics  # noqa: E402

SESSION_CLIPS = 15


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--files", type=int, default=150, help="files per corpus")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "experiments" / "precision_check.json")
    args = p.parse_args()
    if not bfloat16_kernels():
        sys.exit("this CPU has no bfloat16 kernels: nothing to compare")
    torch.set_num_threads(1)
    limit_blas_threads()
    recs = {name: Recognizer.load(args.weights, precision=name) for name in ("float32", "bfloat16")}
    by = defaultdict(list)
    for r in scan(args.data).records:
        by[r.corpus].append(r)
    rng = np.random.default_rng(1)
    out = {"weights": recs["float32"].meta.get("file"), "files_per_corpus": args.files, "corpora": {}}
    for corpus, records in sorted(by.items()):
        pick = [records[i] for i in rng.choice(len(records), min(args.files, len(records)), replace=False)]
        rows = defaultdict(list)
        for r in tqdm(pick, desc=corpus):
            wave = load_audio(r.path)
            a, b = (recs[k].predict(wave) for k in ("float32", "bfloat16"))
            rows["same_label"].append(a.label == b.label)
            rows["same_uncertain"].append(a.uncertain == b.uncertain)
            rows["diff"].append(max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities))
            rows["y"].append(r.label)
            rows["float32"].append(a.label)
            rows["bfloat16"].append(b.label)
        speaker = pick[0].speaker  # a session: clips of one speaker, long enough for the session head
        wave = np.concatenate([load_audio(r.path) for r in records if r.speaker == speaker][:SESSION_CLIPS])
        a, b = (recs[k].predict(wave) for k in ("float32", "bfloat16"))
        out["corpora"][corpus] = row = {
            "files": len(pick), "same_label": int(sum(rows["same_label"])),
            "same_uncertain": int(sum(rows["same_uncertain"])), "max_prob_diff": round(float(max(rows["diff"])), 4),
            "mean_max_prob_diff": round(float(np.mean(rows["diff"])), 4),
            "ua_float32": round(compute_metrics(rows["y"], rows["float32"], EMOTIONS)["ua"], 4),
            "ua_bfloat16": round(compute_metrics(rows["y"], rows["bfloat16"], EMOTIONS)["ua"], 4),
            "session": {"speaker": speaker, "session_head": bool(a.session and b.session), "windows": len(a.segments),
                        "same_window_labels": sum(x.label == y.label for x, y in zip(a.segments, b.segments)),
                        "same_overall_label": a.label == b.label}}
        print(f"{corpus}: same label {row['same_label']}/{row['files']}, same uncertain flag {row['same_uncertain']}, "
              f"max probability difference {row['max_prob_diff']}, UA {row['ua_float32']:.3f} / {row['ua_bfloat16']:.3f}; "
              f"session: {row['session']['same_window_labels']}/{row['session']['windows']} windows alike", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
