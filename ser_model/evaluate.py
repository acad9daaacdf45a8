"""Score a model on corpus files, each predicted whole through ``Recognizer.predict_file``."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, AudioError, load_audio
from .augment import browser_degrade
from .corpora import Record
from .inference import Recognizer
from .labels import EMOTIONS, LABEL_TO_INDEX
from .metrics import compute_metrics


def predict_records(recognizer: Recognizer, records: list[Record], degrade: bool = False,
                    seed: int = 0, progress: bool = True) -> tuple[list[int], list[int], list[tuple], int]:
    """(true indices, predicted indices, (file name, probabilities) per scored file, files that
    failed to decode) over ``records``.

    With ``degrade`` each file first goes through the browser-microphone
    degradation, seeded per file so every model sees the same degraded audio.
    """
    y_true, y_pred, scored, failed = [], [], [], 0
    for r in tqdm(records, desc="degraded" if degrade else "evaluate", unit="file", disable=not progress, leave=False):
        try:
            if degrade:
                rng = np.random.default_rng([seed, zlib.crc32(Path(r.path).name.encode())])
                pred = recognizer.predict(browser_degrade(load_audio(r.path), rng), SAMPLE_RATE)
            else:
                pred = recognizer.predict_file(r.path)
        except AudioError:
            failed += 1
            continue
        y_true.append(LABEL_TO_INDEX[r.label])
        y_pred.append(LABEL_TO_INDEX[pred.label])
        scored.append((Path(r.path).name, [pred.probabilities[e] for e in EMOTIONS]))
    return y_true, y_pred, scored, failed


def evaluate_records(recognizer: Recognizer, records: list[Record], skipped: int = 0,
                     keep_files: bool = False, **kw) -> dict:
    """The contract's metrics object for ``records``; undecodable files count as skipped.

    ``keep_files`` adds ``files``: [name, true index, probabilities] per scored file, so
    the predictions of several models can be averaged later (``protocols ensemble``).
    """
    y_true, y_pred, scored, failed = predict_records(recognizer, records, **kw)
    metrics = compute_metrics(y_true, y_pred, EMOTIONS, skipped=skipped + failed)
    if keep_files:
        metrics["files"] = [[name, t, probs] for t, (name, probs) in zip(y_true, scored)]
    return metrics
