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
                    seed: int = 0, progress: bool = True) -> tuple[list[int], list[int], int]:
    """(true indices, predicted indices, files that failed to decode) over ``records``.

    With ``degrade`` each file first goes through the browser-microphone
    degradation, seeded per file so every model sees the same degraded audio.
    """
    y_true, y_pred, failed = [], [], 0
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
    return y_true, y_pred, failed


def evaluate_records(recognizer: Recognizer, records: list[Record], skipped: int = 0, **kw) -> dict:
    """The contract's metrics object for ``records``; undecodable files count as skipped."""
    y_true, y_pred, failed = predict_records(recognizer, records, **kw)
    return compute_metrics(y_true, y_pred, EMOTIONS, skipped=skipped + failed)
