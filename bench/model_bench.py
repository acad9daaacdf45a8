"""Latency of one 3 s analysis window on one CPU thread (target: at most 20 ms).

    python bench/model_bench.py [--weights weights/] [--repeats 100] [--compare weights/attn_cnn_encoder.pt]
                                [--precision float32 bfloat16]

``--compare`` times another checkpoint in the same run and prints the ratio of the two models'
``predict_proba`` costs (issue 12's budget: the shipped model at most 1.5x the one it replaced);
``--precision`` times each model in each arithmetic asked (``Recognizer.load``'s ``precision``;
default ``auto``, what the app runs) and prints their ratio.

Times the features (trim + log-mel) and the network separately (eager, and the TorchScript copy
that ``Recognizer`` runs) and together, as ``Recognizer.predict_proba`` runs them, and prints
medians and 90th percentiles, and the network's floating-point operations per window (PyTorch's
``FlopCounterMode``: matrix products and convolutions) with the rate this CPU achieved on them,
the basis of the GPU projection in docs/benchmarks.md where no GPU was measured.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser_model import Recognizer  # noqa: E402
from ser_model.inference import PRECISIONS  # noqa: E402
from ser_model.audio import SAMPLE_RATE  # noqa: E402
from ser_model.data import limit_blas_threads  # noqa: E402
from ser_model.model import count_parameters  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"))
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--compare", help="another weights folder or checkpoint, timed in the same run")
    p.add_argument("--precision", nargs="+", default=["auto"], choices=PRECISIONS,
                   help="CPU arithmetic(s) to time each model in (default: auto, as the app runs)")
    args = p.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads()
    costs = {}
    for weights in [args.weights] + ([args.compare] if args.compare else []):
        for precision in args.precision:
            costs[weights, precision] = bench(weights, args.repeats, precision)
    if len(costs) > 1:
        print()
        (a, ca), *others = costs.items()
        for b, cb in others:
            print(f"predict_proba per window: {' '.join(a)} {ca[0]:.2f} ms (batched {ca[1]:.2f}), {' '.join(b)} "
                  f"{cb[0]:.2f} ms (batched {cb[1]:.2f}): ratio {ca[0] / cb[0]:.2f}x one window, "
                  f"{ca[1] / cb[1]:.2f}x batched")


def bench(weights: str, repeats: int, precision: str = "auto") -> tuple[float, float]:
    """Print the table for one model; returns (ms for one window, ms per window in batches of 16)."""
    rec = Recognizer.load(weights, precision=precision)
    rng = np.random.default_rng(0)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    window = (0.2 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t))
              + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    feats = torch.from_numpy(rec.features(window))[None]
    with torch.inference_mode():
        rows = [("features (trim, spectrograms)", timed(lambda: rec.features(window), repeats)),
                ("network, eager PyTorch", timed(lambda: rec.model(feats), repeats)),
                (f"network, optimized ({rec.precision})", timed(lambda: rec.runner(feats), repeats)),
                ("predict_proba, 1 window", timed(lambda: rec.predict_proba([window]), repeats)),
                ("predict_proba, 16 windows / 16", [x / 16 for x in timed(lambda: rec.predict_proba([window] * 16),
                                                                         max(10, repeats // 8))])]
        if rec.adapts:
            # a reference as voice_profile makes it (the window's statistics), without its VAD
            profile = rec.model.embed(torch.from_numpy(rec.features(window))[None])[0].numpy()
            rows.append(("predict_proba adapted, 1 window", timed(lambda: rec.predict_proba([window], [profile]),
                                                                 repeats)))
    print(f"model {rec.meta.get('file')}: {rec.config.arch}, {count_parameters(rec.model):,} parameters; "
          f"one 3 s window, 1 CPU thread, {repeats} runs; {rec.precision} (asked: {precision})")
    print(f"| {'step':<32} | median ms | p90 ms |\n|{'-' * 34}|-----------|--------|")
    for name, ms in rows:
        print(f"| {name:<32} | {statistics.median(ms):9.2f} | {np.percentile(ms, 90):6.2f} |")
    gflop = network_flops(rec.model, feats) / 1e9
    print(f"network: {gflop:.3f} GFLOP per window (matrix products and convolutions), "
          f"{gflop / statistics.median(rows[2][1]) * 1000:.1f} GFLOP/s achieved here on one thread")
    return statistics.median(rows[3][1]), statistics.median(rows[4][1])


def network_flops(model: torch.nn.Module, feats: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (PyTorch's count: matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(feats)
    return counter.get_total_flops()


if __name__ == "__main__":
    main()
