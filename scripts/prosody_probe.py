"""Does pitch and loudness prosody add to the Whisper statistics off the training corpora? A quick look.

Per file (clean audio): F0 from librosa's pYIN in semitones (spread, range, slope, mean step,
the rise above and fall below the median, the median itself in the ``+f0`` sets), the voiced share
and voiced segments per second of active speech, the voiced frames' loudness against the clip's
peak, the loudness spread and range. Per file too: the mean over its windows of the Whisper block-1
statistics the shipped heads read (``.cache/whisper``). A class- and corpus-balanced logistic
regression on each feature set, under LOCO and the RAVDESS 5-fold CV, clean training copies only
(no augmentation, one fixed C): a look at whether the family is worth a nested run, not one.
``--speaker-z`` standardises every feature over each speaker's files: an oracle (all of a
speaker's clips, all emotions, which no live session has) that bounds what a session could gain.

    python scripts/whisper_probe.py embed ...            # the Whisper cache, once
    python scripts/prosody_probe.py --c 0.01 0.1         # 17 min on two cores the first time
    python scripts/prosody_probe.py --c 0.01 --speaker-z
"""
from __future__ import annotations

import argparse
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import librosa
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import whisper_probe as P  # noqa: E402
from ser_model.audio import load_audio  # noqa: E402

SR, HOP = 16000, 160  # 10 ms frames
ACTIVE_DB = 35.0  # a frame is active within this many dB of the clip's loudest
NAMES = ("f0_median", "f0_std", "f0_range", "f0_slope", "f0_step", "f0_rise", "f0_fall", "voiced_level",
         "voiced_segments_per_s", "voicing_prob", "voiced_share", "level_std", "level_range", "active_s",
         "active_level", "has_pitch")
RELATIVE = [NAMES.index(n) for n in NAMES if n not in ("f0_median", "active_s", "has_pitch")]
CACHE = P.CACHE.parent / "prosody.npy"
OUT = P.REPORTS / "prosody_probe.json"


def prosody(wave: np.ndarray) -> np.ndarray:
    """The 16 ``NAMES`` of one clip (pitch ones 0 when under 5 voiced frames)."""
    f0, voiced, prob = librosa.pyin(wave, fmin=65, fmax=600, sr=SR, frame_length=1024, hop_length=HOP,
                                    n_thresholds=50, resolution=0.1)
    db = 20 * np.log10(librosa.feature.rms(y=wave, frame_length=400, hop_length=HOP)[0] + 1e-6)
    n = min(len(f0), len(db))
    f0, voiced, prob, db = f0[:n], voiced[:n], prob[:n], db[:n]
    active = db > db.max() - ACTIVE_DB
    v = voiced & np.isfinite(f0) & active
    out = np.zeros(len(NAMES))
    level = db[active]
    out[10] = v.sum() / max(active.sum(), 1)
    out[11], out[12] = np.std(level), np.percentile(level, 90) - np.percentile(level, 10)
    out[13] = active.sum() * HOP / SR
    out[14] = np.mean(level - level.max())
    if v.sum() >= 5:
        st = 12 * np.log2(f0[v] / 100.0)
        t = np.flatnonzero(v) * HOP / SR
        steps = np.diff(st)[np.diff(np.flatnonzero(v)) == 1]
        out[0], out[1] = np.median(st), np.std(st)
        out[2] = np.percentile(st, 90) - np.percentile(st, 10)
        out[3] = np.polyfit(t, st, 1)[0] if np.ptp(t) > 0 else 0
        out[4] = np.mean(np.abs(steps)) if len(steps) else 0
        out[5], out[6] = np.percentile(st, 95) - out[0], out[0] - np.percentile(st, 5)
        out[7] = np.mean(db[v]) - np.percentile(level, 95)
        out[8] = (np.sum(np.diff(v.astype(int)) == 1) + int(v[0])) / max(out[13], 0.1)
        out[9] = np.mean(prob[v])
        out[15] = 1
    return out


def _one(path: Path) -> np.ndarray:
    return prosody(load_audio(path))


def prosody_table(table: P.Table) -> np.ndarray:
    if CACHE.exists():
        cached = np.load(CACHE)
        if len(cached) == len(table.records):
            return cached.astype(np.float64)
    with Pool(2) as pool:
        rows = list(tqdm(pool.imap(_one, [r.path for r in table.records], chunksize=16), total=len(table.records),
                         desc="prosody", unit="file", mininterval=10))
    out = np.array(rows, dtype=np.float32)
    np.save(CACHE, out)
    return out.astype(np.float64)


def whisper_means(table: P.Table, layer: int = 1) -> np.ndarray:
    """(files, 768): the mean over each file's windows of one block's clean statistics."""
    rows = np.asarray(table.arrays["raw/clean"][:, layer * P.STATS:(layer + 1) * P.STATS], dtype=np.float64)
    sums = np.zeros((len(table.records), rows.shape[1]))
    np.add.at(sums, table.win_file, rows)
    return sums / np.bincount(table.win_file, minlength=len(table.records))[:, None]


def per_speaker_z(table: P.Table, x: np.ndarray) -> np.ndarray:
    out = x.copy()
    for speaker in np.unique(table.speaker):
        rows = table.speaker == speaker
        out[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + 1e-6)
    return out


def fit_score(table: P.Table, x: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> dict:
    from sklearn.linear_model import LogisticRegression

    from ser_model.data import balanced_weights

    w = balanced_weights([table.records[i] for i in train])
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=2000).fit((x[train] - mu) / sd, table.label[train],
                                                     sample_weight=w / w.mean())
    probs = np.zeros((len(test), 7))
    probs[:, clf.classes_] = clf.predict_proba((x[test] - mu) / sd)
    return P.score(table.label[test], probs)


def evaluate(table: P.Table, x: np.ndarray, c: float) -> dict:
    everything = np.arange(len(table.records))
    loco = {corpus: fit_score(table, x, np.flatnonzero(table.corpus != corpus), np.flatnonzero(table.corpus == corpus), c)
            for corpus in P.CORPORA}
    cv = []
    for actors in P.RAVDESS_FOLDS:
        test = np.flatnonzero((table.corpus == "ravdess") & np.isin(table.actor, actors))
        cv.append(fit_score(table, x, np.setdiff1d(everything, test), test, c)["ua"])
    return {"loco": {k: {"ua": v["ua"], "collapse": v["collapse"], "most_predicted": max(v["pred_share"], key=v["pred_share"].get)}
                     for k, v in loco.items()},
            "loco_mean_ua": float(np.mean([v["ua"] for v in loco.values()])), "ravdess_cv_ua": float(np.mean(cv))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--c", type=float, nargs="+", default=[0.01])
    parser.add_argument("--speaker-z", action="store_true", help="standardise each feature over each speaker's files")
    args = parser.parse_args()
    table = P.Table()
    pros, whisper = prosody_table(table), whisper_means(table)
    z = (lambda x: per_speaker_z(table, x)) if args.speaker_z else (lambda x: x)
    sets = {"whisper L1": z(whisper), "prosody": z(pros[:, RELATIVE]), "prosody+f0": z(pros),
            "whisper L1 + prosody": np.hstack([z(whisper), z(pros[:, RELATIVE])]),
            "whisper L1 + prosody+f0": np.hstack([z(whisper), z(pros)])}
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for c in args.c:
        for name, x in sets.items():
            r = evaluate(table, x, c)
            key = f"{name}{' (speaker-z)' if args.speaker_z else ''} C={c}"
            results[key] = r
            per = " | ".join(f"{k} {100 * v['ua']:.1f} ({v['collapse']:.2f} {v['most_predicted']})" for k, v in r["loco"].items())
            print(f"{key:42s} LOCO {100 * r['loco_mean_ua']:.1f} | {per} | CV {100 * r['ravdess_cv_ua']:.1f}", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
