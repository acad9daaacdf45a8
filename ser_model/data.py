"""Training data: a disk cache of features per file, and random-crop batches.

For each file the cache holds the features of the clean, silence-trimmed audio
(variant 0) and of ``n_variants`` augmented copies, each drawn with a seed
derived from the file name. Test folds only ever read variant 0, so the
augmented copies of a file are used only when that file is on the training
side of a split. Banks built ``with_encoder`` also hold the speaker encoder's
log-mel of every variant (their own cache entries; the default ones stay valid).
"""
from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import features as F
from .audio import load_audio
from .augment import augment
from .corpora import Record
from .labels import LABEL_TO_INDEX

CACHE_DIR = Path(os.environ.get("SER_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "features"))
N_VARIANTS = 2  # augmented copies per file, besides the clean one


def _feature_version(n_variants: int, encoder: bool = False) -> str:
    """Part of each cache key: a change to these settings makes the cache recompute."""
    version = f"v1-{F.N_MELS}-{F.N_FFT}-{F.HOP_LENGTH}-{F.TRIM_TOP_DB}-{n_variants}"
    if encoder:
        version += f"-enc{F.ENCODER_BANDS}-{F.ENCODER_N_FFT}-{F.ENCODER_LEVEL_DBFS:g}"
    return version


def _cache_path(path: Path, seed: int, cache_dir: Path | None = None, n_variants: int = N_VARIANTS,
                encoder: bool = False) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{_feature_version(n_variants, encoder)}|{seed}"
    digest = hashlib.sha1(key.encode()).hexdigest()
    return Path(cache_dir or CACHE_DIR) / digest[:2] / f"{digest}.npz"


def extract(path: Path, seed: int = 0, n_variants: int = N_VARIANTS, encoder: bool = False) -> dict:
    """Log-mel (float16) and hand-crafted features of the clean file and its augmented copies
    (and the speaker encoder's log-mel, with ``encoder``)."""
    clean = F.trim_silence(load_audio(path))
    rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
    waves = [clean] + [augment(clean, rng) for _ in range(n_variants)]
    out = {f"logmel{i}": F.log_mel(w).astype(np.float16) for i, w in enumerate(waves)}
    out["handcrafted"] = np.stack([F.handcrafted(w) for w in waves])
    if encoder:
        out.update({f"encmel{i}": F.encoder_log_mel(w).astype(np.float16) for i, w in enumerate(waves)})
    return out


def limit_blas_threads() -> None:
    """One BLAS thread for numpy: its matrices here are small, and threads thrash 2 cores."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
    except ImportError:
        pass


def _single_thread_worker() -> None:
    """Feature workers run one thread each (torch and BLAS)."""
    torch.set_num_threads(1)
    limit_blas_threads()


def _extract_to_cache(args) -> str:
    path, seed, cache_dir, n_variants, encoder = args
    target = _cache_path(path, seed, cache_dir, n_variants, encoder)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp.npz")  # own name: runs may share a cache
        np.savez(tmp, **extract(path, seed, n_variants, encoder))
        tmp.replace(target)
    return str(target)


class FeatureBank:
    """Cached features for a list of records, loaded into memory."""

    def __init__(self, records: list[Record], seed: int = 0, workers: int = 2, cache_dir: Path | None = None,
                 n_variants: int = N_VARIANTS, with_encoder: bool = False):
        self.records = list(records)
        key = (seed, cache_dir, n_variants, with_encoder)
        todo = [(r.path, *key) for r in self.records if not _cache_path(r.path, *key).exists()]
        if todo:
            with ProcessPoolExecutor(max(1, workers), initializer=_single_thread_worker) as pool:
                list(tqdm(pool.map(_extract_to_cache, todo, chunksize=8), total=len(todo),
                          desc="features", unit="file"))
        self.logmel: list[list[np.ndarray]] = []
        self.handcrafted: list[np.ndarray] = []
        self.encmel: list[list[np.ndarray]] = []  # filled only with_encoder
        for r in tqdm(self.records, desc="loading cache", unit="file", leave=False):
            with np.load(_cache_path(r.path, *key)) as z:
                self.logmel.append([z[f"logmel{i}"] for i in range(n_variants + 1)])
                self.handcrafted.append(z["handcrafted"])
                if with_encoder:
                    self.encmel.append([z[f"encmel{i}"] for i in range(n_variants + 1)])
        self.labels = np.array([LABEL_TO_INDEX[r.label] for r in self.records])
        self.index = {str(r.path): i for i, r in enumerate(self.records)}

    def subset(self, records: list[Record]) -> list[int]:
        return [self.index[str(r.path)] for r in records]


def crop(spec: np.ndarray, frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """A (n_mels, frames) crop: random if ``rng`` is given, else centred; short clips repeat."""
    n = spec.shape[1]
    if n < frames:
        spec = np.tile(spec, (1, -(-frames // n)))
        n = spec.shape[1]
    start = int(rng.integers(0, n - frames + 1)) if rng is not None else (n - frames) // 2
    return spec[:, start:start + frames]


def spec_augment(batch: torch.Tensor, rng: np.random.Generator, n_freq=2, max_f=8, n_time=2, max_t=20) -> torch.Tensor:
    """SpecAugment: mask random mel bands and time spans with each example's mean."""
    batch = batch.clone()
    for x in batch:
        fill = x.mean()
        for _ in range(n_freq):
            f = int(rng.integers(0, max_f + 1)); f0 = int(rng.integers(0, x.shape[0] - f + 1))
            x[f0:f0 + f] = fill
        for _ in range(n_time):
            t = int(rng.integers(0, max_t + 1)); t0 = int(rng.integers(0, max(1, x.shape[1] - t + 1)))
            x[:, t0:t0 + t] = fill
    return batch


def balanced_weights(records: list[Record]) -> np.ndarray:
    """Sampling weights giving every corpus equal mass and every class equal mass within it."""
    from collections import Counter

    counts = Counter((r.corpus, r.label) for r in records)
    classes = Counter(c for c, _ in counts)
    corpora = len(classes)
    w = np.array([1.0 / (corpora * classes[r.corpus] * counts[(r.corpus, r.label)]) for r in records])
    return w / w.sum()
