"""Score a model on corpus files, each predicted whole through ``Recognizer.predict_file``.

Besides the clean files, the protocols re-test the same files under two conditions, each
seeded per file name so every model hears the same audio: ``degraded`` (the browser
microphone: noise, gain, Opus) and ``gain`` (only a random level, uniform in
``GAIN_RANGE_DB``, clipped at full scale). :func:`score_at_gains` scores fixed levels, for the
level-invariance target: the same clips at -15, 0 and +15 dB should score alike.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, AudioError, load_audio
from .augment import browser_degrade, gain
from .corpora import Record
from .inference import Recognizer
from .labels import EMOTIONS, LABEL_TO_INDEX
from .metrics import compute_metrics, prediction_shares

GAIN_RANGE_DB = (-20.0, 20.0)  # the "gain" condition: one random level per file
LEVEL_GAINS_DB = (-15.0, 0.0, 15.0)  # the level-invariance check's fixed levels
_GAIN_STREAM = 1  # keeps the gain condition's draws apart from the degraded condition's


def _file_rng(seed: int, name: str, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), *stream])


def condition_audio(path: str | Path, degrade: bool = False, random_gain: bool = False,
                    gain_db: float | None = None, seed: int = 0) -> np.ndarray:
    """A file's 16 kHz audio as a test condition hears it: browser-degraded, at a random level
    (seeded by the file name), and/or at a fixed ``gain_db``; gains clip at full scale."""
    name = Path(path).name
    wave = load_audio(path)
    if degrade:
        wave = browser_degrade(wave, _file_rng(seed, name))
    if random_gain:
        wave = gain(wave, _file_rng(seed, name, _GAIN_STREAM).uniform(*GAIN_RANGE_DB))
    if gain_db is not None:
        wave = gain(wave, gain_db)
    return wave


def predict_records(recognizer: Recognizer, records: list[Record], degrade: bool = False,
                    seed: int = 0, progress: bool = True, random_gain: bool = False,
                    gain_db: float | None = None) -> tuple[list[int], list[int], list[tuple], int]:
    """(true indices, predicted indices, (file name, probabilities) per scored file, files that
    failed to decode) over ``records``.

    With ``degrade``, ``random_gain`` or ``gain_db`` each file first goes through
    :func:`condition_audio`; without, through ``predict_file`` like an upload.
    """
    changed = degrade or random_gain or gain_db is not None
    desc = "degraded" if degrade else "random gain" if random_gain else f"{gain_db:+g} dB" if changed else "evaluate"
    y_true, y_pred, scored, failed = [], [], [], 0
    for r in tqdm(records, desc=desc, unit="file", disable=not progress, leave=False):
        try:
            if changed:
                pred = recognizer.predict(condition_audio(r.path, degrade, random_gain, gain_db, seed), SAMPLE_RATE)
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


def gain_key(db: float) -> str:
    """How a fixed gain names its result: ``-15``, ``+0``, ``+15``."""
    return f"{db:+g}"


def score_at_gains(recognizer: Recognizer, records: list[Record], gains_db=LEVEL_GAINS_DB,
                   known: dict[float, dict] | None = None, **kw) -> dict:
    """Metrics of the same files at each fixed gain in dB, and how far UA moves between them.

    ``known`` maps gains already scored (e.g. 0 dB: the clean result) to their metrics.
    Returns ``{"gains_db": [...], "ua": {key: UA}, "ua_spread": max - min UA, "metrics": {key: ...}}``
    with keys from :func:`gain_key`.
    """
    known = known or {}
    metrics = {gain_key(g): known[g] if g in known else evaluate_records(recognizer, records, gain_db=g, **kw)
               for g in gains_db}
    ua = {k: m["ua"] for k, m in metrics.items()}
    return {"gains_db": [float(g) for g in gains_db], "ua": ua,
            "ua_spread": max(ua.values()) - min(ua.values()) if ua else 0.0, "metrics": metrics}


def score_conditions(recognizer: Recognizer, records: list[Record], degraded: bool = True,
                     random_gain: bool = True, fixed_gains=(), progress: bool = True) -> dict:
    """The held-out results of one split: ``clean`` and, as asked, ``degraded``, ``gain`` (a random
    level per file) and ``fixed_gains`` (:func:`score_at_gains`). Each condition keeps its files
    and the prediction shares (``metrics.prediction_shares``)."""
    out = {"clean": evaluate_records(recognizer, records, keep_files=True, progress=progress)}
    if degraded:
        out["degraded"] = evaluate_records(recognizer, records, degrade=True, keep_files=True, progress=progress)
    if random_gain:
        out["gain"] = evaluate_records(recognizer, records, random_gain=True, keep_files=True, progress=progress)
    for condition in ("clean", "degraded", "gain"):
        if condition in out:
            out[condition]["shares"] = prediction_shares(out[condition])
    if fixed_gains:
        clean = {k: v for k, v in out["clean"].items() if k != "files"}  # its files are kept once, above
        out["fixed_gains"] = score_at_gains(recognizer, records, fixed_gains, known={0.0: clean}, progress=progress)
    return out
