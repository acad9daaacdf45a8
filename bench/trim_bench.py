"""What a window's trimmed length costs the model: CPU per window of real speech windows, exactly
trimmed (one length per window, as before 2026-12-02) against trimmed to a multiple of
``TRIM_STEP_S`` (what the app runs), in batches of 4 on one thread, and how far the answers move.

    python bench/trim_bench.py [--windows 400] [--audio-dir ../shared/datasets]

The windows are 3 s cut at random places from RAVDESS files (actors 1-9), as a live stream's
windows fall; each set is timed twice (the second pass meets only lengths it has met before) and
beside a 3 s noise window, the shape every benchmark times quiet. Writes
bench/results/trim_bench_<time>.txt.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import ser_model.inference as inference  # noqa: E402
from ser_model import Recognizer  # noqa: E402
from ser_model.audio import SAMPLE_RATE, load_audio  # noqa: E402
from ser_model.data import limit_blas_threads  # noqa: E402

BATCH = 4


def speech_windows(audio_dir: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    files = sorted((audio_dir / "RAVDESS").glob("Actor_0*/*.*"))
    if not files:
        sys.exit(f"no RAVDESS audio under {audio_dir} (use --audio-dir)")
    rng = random.Random(seed)
    rng.shuffle(files)
    n = int(3 * SAMPLE_RATE)
    out = []
    for f in files[:count]:
        wave = load_audio(f)
        start = rng.randint(0, max(0, len(wave) - n))
        out.append(np.ascontiguousarray(wave[start:start + n]))
    return out


def cpu_ms_per_window(rec: Recognizer, windows: list[np.ndarray]) -> float:
    started = time.process_time()
    for i in range(0, len(windows), BATCH):
        rec.predict_proba(windows[i:i + BATCH])
    return 1000 * (time.process_time() - started) / len(windows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=400)
    ap.add_argument("--weights", default=str(ROOT / "weights"))
    ap.add_argument("--audio-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads()
    windows = speech_windows(args.audio_dir, args.windows)
    half = len(windows) // 2
    noise = [(0.1 * np.random.default_rng(i).standard_normal(3 * SAMPLE_RATE)).astype(np.float32) for i in range(100)]
    lines = [f"# python bench/trim_bench.py --windows {args.windows}  ({time.strftime('%Y-%m-%d %H:%M:%S')})",
             f"{len(windows)} speech windows of 3 s, batches of {BATCH}, one thread; CPU ms per window", ""]
    step = inference.TRIM_STEP_S
    answers = {}
    for name, step_s in (("exact", 0.0), (f"step {step:g} s", step)):
        inference.TRIM_STEP_S = step_s  # what Recognizer.features reads
        rec = Recognizer.load(args.weights)  # a fresh model: no length met before but the warm-up's
        rec.warm_up()
        lengths = {len(rec.features(w)) for w in windows}
        row = [f"{name}: {len(lengths)} lengths",
               f"3 s noise {cpu_ms_per_window(rec, noise):.2f}",
               f"speech first pass {cpu_ms_per_window(rec, windows[:half]):.2f}",
               f"second pass {cpu_ms_per_window(rec, windows[:half]):.2f}",
               f"other half {cpu_ms_per_window(rec, windows[half:]):.2f}"]
        answers[name] = np.concatenate([rec.predict_proba([w]) for w in windows[:half]])
        lines.append(", ".join(row))
        print(lines[-1], flush=True)
    inference.TRIM_STEP_S = step
    a, b = answers.values()
    lines += ["", f"answers, exact against stepped, {half} windows one at a time: labels agree "
                  f"{(a.argmax(1) == b.argmax(1)).mean():.3f}, |dp| mean {np.abs(a - b).mean():.4f}, max {np.abs(a - b).max():.4f}"]
    print(lines[-1])
    out = ROOT / "bench" / "results" / f"trim_bench_{time.strftime('%Y%m%d_%H%M%S')}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
