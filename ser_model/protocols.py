"""Evaluation protocols: speaker-independent CV, leave-one-corpus-out, cross-corpus.

Every protocol splits by speaker (except the TESS random split, a sanity check
only), trains on the training side with augmentation drawn from training files
only, and scores the held-out files whole through ``Recognizer.predict_file``:
clean, degraded (a browser microphone) and at a random gain of +-20 dB per file
(``--no-gain`` leaves that out; ``--fixed-gains`` adds -15, 0 and +15 dB).

Leave-one-corpus-out (``loco``): for each corpus present (RAVDESS actors 1-20, TESS,
ASED, TurEV-DB), train on the others and test on all of it, scored over its own classes
with the app's 7-way prediction; reported per corpus with the prediction shares (how
often each label is predicted against its true share) and their collapse ratio.

    python -m ser_model.protocols ravdess-cv --arch attn_cnn --with tess
    python -m ser_model.protocols ravdess-cv --with --members 2 --bf16      # the shipped recipe
    python -m ser_model.protocols ensemble --name ENS --of RUN_A RUN_B      # average two CV runs
    python -m ser_model.protocols ensemble-sizes --name CURVE --of RUN_A RUN_B RUN_C ...
    python -m ser_model.protocols ravdess-to-tess --weights weights/attn_cnn.pt --name NAME
    python -m ser_model.protocols loco --members 2 --bf16 --encoder --head-variants 8 --name NAME
    python -m ser_model.protocols loco --holdout tess ased --name NAME     # some corpora; then `merge --name NAME`
    python -m ser_model.protocols loco --weights weights/attn_cnn_encoder.pt --fixed-gains   # a trained model
                                                                      # on every corpus it was not trained on
    python -m ser_model.protocols loco-table                               # the table of all loco reports
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .corpora import Record, scan
from .data import N_VARIANTS, FeatureBank, limit_blas_threads
from .evaluate import LEVEL_GAINS_DB, evaluate_records, score_conditions
from .inference import Recognizer
from .labels import EMOTIONS
from .metrics import (compute_metrics, format_report, plot_confusion, plot_curves, plot_ensemble_sizes,
                      plot_shares, prediction_shares, summarize_corpora, summarize_folds)
from .cli import add_precision_option, add_training_options, training_config
from .train import TrainConfig, config_dict, train

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
REPORTS = Path(__file__).resolve().parent.parent / "reports"
# Five folds of four RAVDESS actors: two male (odd) and two female (even) in each.
RAVDESS_FOLDS = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]
LOCO_CORPORA = ("ravdess", "tess", "ased", "turevdb")  # held out one at a time; RAVDESS means actors 1-20
CONDITIONS = ("clean", "degraded", "gain")  # each split's test conditions (see ser_model.evaluate)


def actor(r: Record) -> int:
    return int(r.speaker.split("-")[1])


def validation_speakers(records: list[Record]) -> set[str]:
    """Two training speakers (one per gender where possible) held out for early stopping: RAVDESS
    actors when RAVDESS is in ``records``, else speakers of the corpus with the most of them."""
    counts = {c: len({r.speaker for r in records if r.corpus == c}) for c in {r.corpus for r in records}}
    corpus = "ravdess" if "ravdess" in counts else max(sorted(counts), key=counts.get, default=None)
    speakers = sorted({(r.gender or "", r.speaker) for r in records if r.corpus == corpus})
    chosen = {}
    for gender, spk in speakers:
        chosen.setdefault(gender, spk)
    return set(chosen.values())


def run_split(bank: FeatureBank, train_recs: list[Record], test_recs: list[Record], cfg: TrainConfig,
              robust: bool = True, gain: bool = True, fixed_gains=(), precision: str = "auto") -> dict:
    """Train on ``train_recs``, score ``test_recs`` clean (and degraded with ``robust``, at a random
    gain with ``gain``, at ``fixed_gains`` dB) with the model run in ``precision``; return the split's results."""
    val_recs = []
    if cfg.arch == "cnn1d":  # its recipe needs validation data: take it from the training speakers
        held = validation_speakers(train_recs)
        val_recs = [r for r in train_recs if r.speaker in held]
        train_recs = [r for r in train_recs if r.speaker not in held]
    assert not {r.speaker for r in train_recs} & {r.speaker for r in test_recs}, "speaker leak"
    start = time.time()
    model, mcfg, history = train(bank, bank.subset(train_recs), bank.subset(val_recs) or None, cfg)
    recognizer = Recognizer(model, mcfg, precision=precision)
    result = {"train_speakers": sorted({r.speaker for r in train_recs}),
              "test_speakers": sorted({r.speaker for r in test_recs}),
              "n_train": len(train_recs), "train_seconds": round(time.time() - start, 1),
              "history": history}
    return {**result, **score_conditions(recognizer, test_recs, robust, gain, fixed_gains)}


def _records(data: list[Path]) -> dict[str, list[Record]]:
    return scan(*data).by_corpus()


def ravdess_cv(data: list[Path], cfg: TrainConfig, extra: tuple[str, ...], folds=None, name=None,
               reports: Path = REPORTS, command: str = "", gain: bool = True, fixed_gains=(), workers: int = 2,
               precision: str = "auto") -> dict:
    by = _records(data)
    extra_recs = [r for c in extra for r in by.get(c, [])]
    bank = FeatureBank(by["ravdess"] + extra_recs, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder,
                       workers=workers)
    results = []
    for k, test_actors in enumerate(RAVDESS_FOLDS):
        if folds is not None and k not in folds:
            continue
        print(f"--- fold {k + 1}/{len(RAVDESS_FOLDS)}: test actors {test_actors}", flush=True)
        test = [r for r in by["ravdess"] if actor(r) in test_actors]
        train_recs = [r for r in by["ravdess"] if actor(r) not in test_actors] + extra_recs
        results.append({"fold": k + 1, **run_split(bank, train_recs, test, cfg, gain=gain, fixed_gains=fixed_gains,
                                                   precision=precision)})
        if name:  # each fold also on its own, so folds can run in parallel processes and be merged
            fold_dir = reports / "folds" / name
            fold_dir.mkdir(parents=True, exist_ok=True)
            fold = {**results[-1], "train_config": config_dict(cfg), "command": command}
            (fold_dir / f"fold{k + 1}.json").write_text(json.dumps(fold, indent=1) + "\n")
        print(f"    {_scores(results[-1])}", flush=True)
    return summarize_cv(results)


def _scores(result: dict) -> str:
    """One line: a split's UA and WA, and its UA under the other conditions."""
    line = f"UA {result['clean']['ua']:.3f}  WA {result['clean']['wa']:.3f}"
    line += "".join(f"  {c} UA {result[c]['ua']:.3f}" for c in CONDITIONS[1:] if c in result)
    if "fixed_gains" in result:
        line += "  at " + ", ".join(f"{k} dB {ua:.3f}" for k, ua in result["fixed_gains"]["ua"].items())
    return line


def summarize_cv(results: list[dict]) -> dict:
    out = {"folds": results, "clean": summarize_folds([r["clean"] for r in results])}
    for condition in CONDITIONS[1:]:
        if all(condition in r for r in results):
            out[condition] = summarize_folds([r[condition] for r in results])
    if all("fixed_gains" in r for r in results):
        out["fixed_gains"] = summarize_fixed_gains(results)
    return out


def summarize_fixed_gains(results: list[dict]) -> dict:
    """UA at each fixed gain (mean and values over folds or corpora) and its spread: the level-
    invariance target asks the same UA within 3 points at -15, 0 and +15 dB."""
    keys = list(results[0]["fixed_gains"]["ua"])
    ua = {k: [r["fixed_gains"]["ua"][k] for r in results] for k in keys}
    means = {k: float(np.mean(v)) for k, v in ua.items()}
    spreads = [r["fixed_gains"]["ua_spread"] for r in results]
    return {"gains_db": results[0]["fixed_gains"]["gains_db"],
            "ua": {k: {"mean": means[k], "values": ua[k]} for k in keys},
            "ua_spread": {"of_means": max(means.values()) - min(means.values()), "values": spreads,
                          "worst": max(spreads)}}


def _load_folds(name: str, reports: Path) -> list[dict]:
    """The per-fold results of a CV run, reports/folds/NAME/fold*.json, in fold order."""
    return [json.loads(f.read_text()) for f in sorted((reports / "folds" / name).glob("fold*.json"))]


def _load_holdouts(name: str, reports: Path) -> list[dict]:
    """The per-corpus results of a loco run, reports/folds/NAME/holdout-CORPUS.json, in LOCO_CORPORA order."""
    found = {f.stem.removeprefix("holdout-"): f for f in (reports / "folds" / name).glob("holdout-*.json")}
    order = sorted(found, key=lambda c: (LOCO_CORPORA.index(c) if c in LOCO_CORPORA else len(LOCO_CORPORA), c))
    return [json.loads(found[c].read_text()) for c in order]


def merge_folds(name: str, command: str, reports: Path = REPORTS) -> dict:
    """Combine reports/folds/NAME/fold*.json (from parallel --folds runs) into one CV result, or
    reports/folds/NAME/holdout-*.json (from loco runs of some held-out corpora) into one loco result."""
    folds, holdouts = _load_folds(name, reports), _load_holdouts(name, reports)
    if folds and holdouts:
        raise ValueError(f"reports/folds/{name} holds both CV folds and loco holdouts")
    if not folds and not holdouts:
        raise ValueError(f"reports/folds/{name} holds no fold*.json or holdout-*.json")
    folds = folds or holdouts
    result = summarize_loco(holdouts) if holdouts else summarize_cv(folds)
    result["train_config"] = next((f["train_config"] for f in folds if f.get("train_config")), None)
    # the commands the folds recorded themselves, unless given
    result["command"] = command or " && ".join(dict.fromkeys(f["command"] for f in folds if f.get("command")))
    return result


def ensemble_folds(members: list[str], command: str = "", reports: Path = REPORTS) -> dict:
    """Average the per-file probabilities of several CV runs (reports/folds/NAME/fold*.json), fold by
    fold: the held-out score of their ensemble. ``ravdess-cv --members K`` trains the same ensemble
    in one run (member i with seed + i); this merges runs made apart, e.g. in parallel processes."""
    return _ensemble(members, _load_runs(members, reports), command)


def _load_runs(members: list[str], reports: Path) -> list[dict[int, dict]]:
    return [{fold["fold"]: fold for fold in _load_folds(name, reports)} for name in members]


def _ensemble(members: list[str], runs: list[dict[int, dict]], command: str = "") -> dict:
    folds = sorted(set.intersection(*(set(r) for r in runs)))
    if not folds:
        raise ValueError(f"no fold is present in all of {members}")
    results = []
    for k in folds:
        parts = [r[k] for r in runs]
        fold = {"fold": k, "members": members, "train_speakers": parts[0]["train_speakers"],
                "test_speakers": parts[0]["test_speakers"], "n_train": parts[0]["n_train"]}
        for condition in CONDITIONS:
            if not all(condition in p for p in parts):
                continue
            files = [{name: (true, probs) for name, true, probs in p[condition]["files"]} for p in parts]
            if any(f.keys() != files[0].keys() for f in files):
                raise ValueError(f"fold {k} ({condition}): the members scored different files")
            names = sorted(files[0])
            mean = {n: np.mean([f[n][1] for f in files], axis=0) for n in names}
            y_true = [files[0][n][0] for n in names]
            metrics = compute_metrics(y_true, [int(mean[n].argmax()) for n in names], EMOTIONS,
                                      skipped=parts[0][condition].get("skipped", 0))
            metrics["files"] = [[n, files[0][n][0], [round(float(p), 5) for p in mean[n]]] for n in names]
            fold[condition] = metrics
        results.append(fold)
    result = summarize_cv(results)
    configs = [r[folds[0]]["train_config"] for r in runs]
    networks = [c for c in configs if c.get("arch") != "encoder_head"] or configs
    result["train_config"] = {**networks[0], "members": len(networks)}
    heads = [c for c in configs if c.get("arch") == "encoder_head"]
    if heads and len(heads) < len(configs):  # encoder-head runs joined the networks: the --encoder recipe
        result["train_config"]["encoder"] = True
        head_variants = heads[0].get("head_variants") or heads[0].get("variants", N_VARIANTS)
        if head_variants != networks[0].get("variants", N_VARIANTS):
            result["train_config"]["head_variants"] = head_variants
    result["command"] = command or f"python -m ser_model.protocols ensemble --of {' '.join(members)}"
    return result


def ensemble_sizes(members: list[str], reports: Path = REPORTS) -> dict:
    """Held-out UA of an ensemble of k of the CV runs ``members``, for k = 1..len(members): the mean
    (and range) over every k-subset, so no choice of seeds flatters the curve."""
    runs = _load_runs(members, reports)
    sizes = []
    for k in range(1, len(members) + 1):
        scores: dict[str, list[float]] = {}
        for subset in itertools.combinations(range(len(members)), k):
            result = _ensemble([members[i] for i in subset], [runs[i] for i in subset])
            for condition in CONDITIONS:
                if condition in result:
                    for metric in ("ua", "wa"):
                        scores.setdefault(f"{condition}_{metric}", []).append(result[condition][metric]["mean"])
        sizes.append({"k": k, "subsets": math.comb(len(members), k),
                      **{key: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                         for key, v in scores.items()}})
    return {"runs": members, "sizes": sizes}


def tess_loso(data: list[Path], cfg: TrainConfig, precision: str = "auto") -> dict:
    tess = _records(data)["tess"]
    bank = FeatureBank(tess, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
    results = []
    for speaker in sorted({r.speaker for r in tess}):
        test = [r for r in tess if r.speaker == speaker]
        results.append(run_split(bank, [r for r in tess if r.speaker != speaker], test, cfg, robust=False,
                                 gain=False, precision=precision))
    return {"folds": results, "clean": summarize_folds([r["clean"] for r in results])}


def tess_random(data: list[Path], cfg: TrainConfig, test_fraction: float = 0.2, precision: str = "auto") -> dict:
    """Sanity check only: the same two speakers (and words) on both sides."""
    tess = _records(data)["tess"]
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(tess))
    n_test = int(len(tess) * test_fraction)
    test = [tess[i] for i in order[:n_test]]
    train_recs = [tess[i] for i in order[n_test:]]
    bank = FeatureBank(tess, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
    # speakers are shared by design here, so bypass run_split's leak check
    model, mcfg, history = train(bank, bank.subset(train_recs), None, cfg)
    return {"train_speakers": sorted({r.speaker for r in train_recs}), "n_train": len(train_recs),
            "clean": evaluate_records(Recognizer(model, mcfg, precision=precision), test), "history": history}


def cross_corpus(data: list[Path], cfg: TrainConfig, source: str, target: str, weights: Path | None = None,
                 precision: str = "auto") -> dict:
    """Train on all of ``source`` and test on all of ``target``; or, with ``weights``, score a
    checkpoint that was trained on exactly the files of ``source`` (e.g. the shipped model), run in
    ``precision`` (``Recognizer.load``)."""
    by = _records(data)
    if weights is None:
        bank = FeatureBank(by[source] + by[target], n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
        return run_split(bank, by[source], by[target], cfg, robust=False, gain=False, precision=precision)
    recognizer = Recognizer.load(weights, precision=precision)
    if _trained_on(recognizer, weights, by) != [source]:
        raise ValueError(f"{weights} was trained on {recognizer.meta.get('data')}, not on {source} alone")
    speakers = sorted({r.speaker for r in by[source]})
    return {"train_speakers": speakers, "test_speakers": sorted({r.speaker for r in by[target]}),
            "n_train": len(by[source]), "weights": str(weights), "train_config": recognizer.meta.get("train_config"),
            "clean": evaluate_records(recognizer, by[target], keep_files=True)}


def _trained_on(recognizer: Recognizer, weights: Path, by: dict[str, list[Record]]) -> list[str]:
    """The corpora a checkpoint was trained on, checked against the files here: every one of them
    must be present with as many files and speakers as the checkpoint recorded."""
    trained_on = recognizer.meta.get("data", {})
    for corpus, seen in trained_on.items():
        recs = by.get(corpus, [])
        if seen.get("files") != len(recs) or seen.get("speakers") != len({r.speaker for r in recs}):
            raise ValueError(f"{weights} was trained on {trained_on}, not on the {len(recs)} {corpus} files here")
    return sorted(trained_on)


def loco_records(data: list[Path]) -> dict[str, list[Record]]:
    """The records of each LOCO corpus found under ``data``, in LOCO_CORPORA order (RAVDESS: actors 1-20)."""
    by = _records(data)
    if "ravdess" in by:
        by["ravdess"] = [r for r in by["ravdess"] if actor(r) <= 20]
    return {c: by[c] for c in LOCO_CORPORA if by.get(c)}


def _check_holdouts(by: dict[str, list[Record]], holdouts) -> list[str]:
    holdouts = list(holdouts or by)
    missing = [c for c in holdouts if c not in by]
    if missing:
        raise ValueError(f"no {', '.join(missing)} files under the data folders (found {', '.join(by) or 'none'})")
    return sorted(holdouts, key=LOCO_CORPORA.index)


def _save_holdout(result: dict, name: str | None, reports: Path, extra: dict) -> None:
    """reports/folds/NAME/holdout-CORPUS.json: one held-out corpus, so corpora can run apart and be merged."""
    if name:
        folder = reports / "folds" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"holdout-{result['holdout']}.json").write_text(json.dumps({**result, **extra}, indent=1) + "\n")
    print(f"    {result['holdout']}: {_scores(result)}  collapse {prediction_shares(result['clean'])['collapse']:.2f}",
          flush=True)


def loco(data: list[Path], cfg: TrainConfig, holdouts=None, name=None, reports: Path = REPORTS, command: str = "",
         gain: bool = True, fixed_gains=(), workers: int = 2, precision: str = "auto") -> dict:
    """Leave one corpus out: for each of ``holdouts`` (default: every LOCO corpus found), train on
    all the other corpora and score every file of it. Training never sees the held-out corpus (the
    recipes train a fixed number of steps; cnn1d's validation speakers come from the training side)."""
    by = loco_records(data)
    holdouts = _check_holdouts(by, holdouts)
    if len(by) < 2:
        raise ValueError(f"leave-one-corpus-out needs two corpora or more, found {list(by)}")
    trained = sorted({c for h in holdouts for c in by if c != h}, key=LOCO_CORPORA.index)
    bank = FeatureBank([r for c in trained for r in by[c]], n_variants=cfg.bank_variants,
                       with_encoder=cfg.uses_encoder, workers=workers)
    results = []
    for h in holdouts:
        others = [c for c in by if c != h]
        print(f"--- held out: {h} ({len(by[h])} files); training on {' + '.join(others)}", flush=True)
        split = run_split(bank, [r for c in others for r in by[c]], by[h], cfg, gain=gain, fixed_gains=fixed_gains,
                          precision=precision)
        results.append({"holdout": h, "train_corpora": others, **split})
        _save_holdout(results[-1], name, reports, {"train_config": config_dict(cfg), "command": command})
    return summarize_loco(results)


def loco_weights(data: list[Path], weights: Path, holdouts=None, name=None, reports: Path = REPORTS,
                 command: str = "", gain: bool = True, fixed_gains=(), precision: str = "auto") -> dict:
    """The loco scoring of a trained checkpoint (e.g. the shipped model, run in ``precision``) on every
    LOCO corpus it was not trained on (or ``holdouts``); the corpora it was trained on must be here,
    file for file."""
    by = loco_records(data)
    recognizer = Recognizer.load(weights, precision=precision)
    trained = _trained_on(recognizer, weights, by)
    holdouts = _check_holdouts(by, holdouts or [c for c in by if c not in trained])
    if set(holdouts) & set(trained):
        raise ValueError(f"{weights} was trained on {', '.join(trained)}: it cannot hold them out")
    train_recs = [r for c in trained for r in by[c]]
    results = []
    for h in holdouts:
        print(f"--- held out: {h} ({len(by[h])} files); {weights} was trained on {' + '.join(trained)}", flush=True)
        results.append({"holdout": h, "train_corpora": trained,
                        "train_speakers": sorted({r.speaker for r in train_recs}),
                        "test_speakers": sorted({r.speaker for r in by[h]}), "n_train": len(train_recs),
                        "weights": str(weights), **score_conditions(recognizer, by[h], True, gain, fixed_gains)})
        _save_holdout(results[-1], name, reports, {"train_config": recognizer.meta.get("train_config"),
                                                   "command": command})
    return {**summarize_loco(results), "train_config": recognizer.meta.get("train_config")}


def summarize_loco(results: list[dict]) -> dict:
    """A loco result from its held-out corpora's results: per condition, the mean and worst corpus UA,
    the mean WA and the collapse ratios (``metrics.summarize_corpora``)."""
    corpora = [r["holdout"] for r in results]
    out = {"protocol": "loco", "holdouts": corpora, "folds": results}
    for condition in CONDITIONS:
        if all(condition in r for r in results):
            out[condition] = summarize_corpora([r[condition] for r in results], corpora)
    if all("fixed_gains" in r for r in results):
        out["fixed_gains"] = summarize_fixed_gains(results)
    if all(r.get("weights") for r in results):
        out["weights"] = results[0]["weights"]
    return out


PROTOCOLS = ("ravdess-cv", "tess-loso", "tess-random", "ravdess-to-tess", "tess-to-ravdess")


def run(protocol: str, data: list[Path], cfg: TrainConfig, extra: tuple[str, ...] = ("tess",), folds=None,
        name=None, reports: Path = REPORTS, command: str = "", weights: Path | None = None, holdouts=None,
        gain: bool = True, fixed_gains=(), workers: int = 2, precision: str = "auto") -> dict:
    if protocol == "loco" and weights:
        return loco_weights(data, weights, holdouts, name, reports, command, gain, fixed_gains, precision)
    if protocol == "loco":
        return loco(data, cfg, holdouts, name, reports, command, gain, fixed_gains, workers, precision)
    if protocol == "ravdess-cv":
        return ravdess_cv(data, cfg, extra, folds, name, reports, command, gain, fixed_gains, workers, precision)
    if protocol == "tess-loso":
        return tess_loso(data, cfg, precision)
    if protocol == "tess-random":
        return tess_random(data, cfg, precision=precision)
    source, target = protocol.split("-to-")
    return cross_corpus(data, cfg, source, target, weights, precision)


def pooled_metrics(confusion: np.ndarray, labels: list[str]) -> dict:
    """Metrics of the pooled predictions behind a summed confusion matrix."""
    y_true = [t for t in range(len(labels)) for p in range(len(labels)) for _ in range(int(confusion[t][p]))]
    y_pred = [p for t in range(len(labels)) for p in range(len(labels)) for _ in range(int(confusion[t][p]))]
    return compute_metrics(y_true, y_pred, labels)


def save_report(name: str, result: dict, out_dir: Path = REPORTS) -> Path:
    """Write the result JSON, a summed confusion matrix (loco: one per held-out corpus, and the
    prediction shares of each) and the first run's curves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    runs = result.get("folds") or [result]
    if result.get("protocol") == "loco":
        for run_ in runs:
            plot_confusion(run_["clean"], out_dir / f"{name}_confusion_{run_['holdout']}.png",
                           title=f"{name}: all of {run_['holdout']} held out, clean")
        plot_shares({r["holdout"]: r["clean"] for r in runs}, out_dir / f"{name}_shares.png",
                    title=f"{name}: predicted against true share of each label, clean")
    else:
        confusion = np.sum([r["clean"]["confusion"] for r in runs], axis=0)
        pooled = pooled_metrics(confusion, runs[0]["clean"]["labels"])
        plot_confusion(pooled, out_dir / f"{name}_confusion.png",
                       title=f"{name}: held-out files of all {len(runs)} fold(s) pooled, clean")
    if runs[0].get("history"):
        plot_curves({k: v for k, v in runs[0]["history"].items() if isinstance(v, list) and len(v) > 1},
                    out_dir / f"{name}_curves.png", title=f"{name}: training curves (fold 1)")
    return out_dir / f"{name}.json"


LOCO_TITLES = {"ravdess": "RAVDESS 1-20", "tess": "TESS", "ased": "ASED", "turevdb": "TurEV-DB"}


def _loco_reports(reports_dir: Path) -> list[tuple[str, dict]]:
    return [(path.stem, json.loads(path.read_text())) for path in sorted(reports_dir.glob("loco_*.json"))]


def _loco_model(report: dict) -> str:
    """The run's model label (as the CV table names it), its epochs when not the recipe's, and
    the checkpoint it scored, if any."""
    from .modelcard import _model_name

    cfg = report.get("train_config") or {}
    label = f"`{_model_name(report, cfg.get('arch', '?'))}`"
    try:
        default_epochs = TrainConfig.for_arch(cfg.get("arch")).epochs
    except (KeyError, ValueError):
        default_epochs = None
    if cfg.get("epochs") and cfg["epochs"] != default_epochs:
        label += f", {cfg['epochs']} epochs"
    return label + (f", checkpoint `{report['weights']}`" if report.get("weights") else "")


def _trained_on_cell(report: dict) -> str:
    sets = {tuple(f.get("train_corpora", ())) for f in report["folds"]}
    if len(sets) == 1:
        return " + ".join(LOCO_TITLES.get(c, c) for c in next(iter(sets)))
    return "the other corpora"


def _pct_of(summary: dict | None, key: str, stat: str = "mean") -> str:
    return f"{100 * summary[key][stat]:.1f}" if summary else "-"


def loco_table(reports_dir: Path = REPORTS) -> str:
    """Markdown table of every loco report (reports/loco_*.json): one row per run."""
    rows = []
    for name, r in _loco_reports(reports_dir):
        clean = r["clean"]
        per = {c: (ua, col) for c, ua, col in zip(clean["corpora"], clean["ua"]["values"], clean["collapse"]["values"])}
        cells = [f"{100 * per[c][0]:.1f} ({per[c][1]:.2f})" if c in per else "-" for c in LOCO_CORPORA]
        worst = f"{100 * clean['ua']['worst']:.1f} ({LOCO_TITLES.get(clean['ua']['worst_corpus'])})"
        collapse = f"{clean['collapse']['worst']:.2f} ({LOCO_TITLES.get(clean['collapse']['worst_corpus'])})"
        rows.append(f"| {name} | {_loco_model(r)} | {_trained_on_cell(r)} | {_pct_of(clean, 'ua')} | {worst} | "
                    + " | ".join(cells) + f" | {_pct_of(clean, 'wa')} | {collapse} | {_pct_of(r.get('gain'), 'ua')} | "
                    f"{_pct_of(r.get('degraded'), 'ua')} | `{r.get('command', '')}` |")
    if not rows:
        return "No loco reports found (run `python -m ser_model.protocols loco ...`)."
    head = ("| run | model | trained on | mean UA % | worst UA % | "
            + " | ".join(f"{LOCO_TITLES[c]} UA % (collapse)" for c in LOCO_CORPORA)
            + " | mean WA % | worst collapse | mean UA % at random gain* | mean UA % degraded* | command |")
    return (head + "\n|" + "---|" * (head.count("|") - 1) + "\n" + "\n".join(rows) + "\n\n"
            "Each corpus is scored whole, over its own classes, with the app's 7-way prediction; UA is the mean "
            "recall over those classes, the mean over the corpora of the row (a dash: not held out). Collapse = "
            "the share of files given the most predicted label / the largest true share (target: at most 1.5). "
            "*random gain: each file at one level uniform in -20..+20 dB, clipped at full scale; degraded: noise "
            "at 20 dB SNR, a random gain (-12..+6 dB) and an Opus round trip; both seeded per file.")


def loco_details(reports_dir: Path = REPORTS) -> str:
    """Markdown table of every loco report's held-out corpora: recall per own class and prediction shares."""
    rows = []
    for name, r in _loco_reports(reports_dir):
        for f in r["folds"]:
            clean = f["clean"]
            recall = ", ".join(f"{label} {100 * c['recall']:.0f}" for label, c in clean["per_class"].items()
                               if c["support"])
            shares = prediction_shares(clean)
            ranked = sorted(shares["predicted"], key=lambda label: -shares["predicted"][label])
            predicted = ", ".join(f"{label} {100 * shares['predicted'][label]:.0f} ({100 * shares['true'][label]:.0f})"
                                  for label in ranked if shares["predicted"][label] or shares["true"][label])
            gains = f.get("fixed_gains", {}).get("ua", {})
            levels = ", ".join(f"{k} dB: {100 * ua:.1f}" for k, ua in gains.items()) or "-"
            other = [f"{100 * f[c]['ua']:.1f}" if c in f else "-" for c in ("gain", "degraded")]
            rows.append(f"| {name} | {LOCO_TITLES.get(f['holdout'], f['holdout'])} | {clean['n']} | "
                        f"{100 * clean['ua']:.1f} | {100 * clean['wa']:.1f} | {recall} | {predicted} | "
                        f"{shares['collapse']:.2f} | {100 * shares['outside']:.0f} | {' | '.join(other)} | {levels} |")
    if not rows:
        return ""
    return ("| run | held out | files | UA % | WA % | recall % per class | predicted share % (true share %) | "
            "collapse | % given a label the corpus lacks | UA % random gain | UA % degraded | UA % at fixed gains |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=PROTOCOLS + ("loco", "merge", "ensemble", "ensemble-sizes", "loco-table"),
                   help="loco: leave one corpus out; merge: combine per-fold (or per-held-out-corpus) files of "
                        "--name; ensemble: average the per-file probabilities of the CV runs named by --of into "
                        "--name; ensemble-sizes: UA of ensembles of every size made of those runs (JSON and plot "
                        "--name); loco-table: print the table of every loco report")
    p.add_argument("--data", nargs="+", type=Path, default=[DEFAULT_DATA])
    p.add_argument("--with", dest="extra", nargs="*", default=["tess"], help="corpora added to training (ravdess-cv)")
    p.add_argument("--folds", type=int, nargs="*", help="run only these fold numbers (1-based)")
    p.add_argument("--holdout", nargs="+", choices=LOCO_CORPORA, help="loco: hold out only these corpora")
    p.add_argument("--no-gain", dest="gain", action="store_false",
                   help="ravdess-cv, loco: leave out the test at a random gain of -20..+20 dB per file")
    p.add_argument("--fixed-gains", type=float, nargs="*", metavar="DB",
                   help=f"ravdess-cv, loco: also test at these gains (no value: {' '.join(f'{g:+g}' for g in LEVEL_GAINS_DB)})")
    p.add_argument("--workers", type=int, default=2, help="feature-extraction processes (default 2)")
    p.add_argument("--name", help="report name (default: protocol_arch)")
    p.add_argument("--command", nargs="*", help="merge: the commands that produced the folds (recorded)")
    p.add_argument("--of", dest="ensemble_of", nargs="+", metavar="NAME", help="ensemble: the CV runs to average")
    add_training_options(p)
    p.add_argument("--reports", type=Path, default=REPORTS, help="where reports go (default reports/)")
    p.add_argument("--weights", type=Path, help="cross-corpus, loco: score this checkpoint (trained on exactly "
                                                "the source corpora here) instead of training one")
    add_precision_option(p)
    args = p.parse_args(argv)
    command = "python -m ser_model.protocols " + " ".join(argv if argv is not None else sys.argv[1:])
    limit_blas_threads()
    if args.protocol == "loco-table":
        print(loco_table(args.reports))
        details = loco_details(args.reports)
        print("\n" + details if details else "")
        return
    if args.protocol == "ensemble-sizes":
        if not args.name or not args.ensemble_of:
            p.error("ensemble-sizes needs --name and --of")
        result = {**ensemble_sizes(args.ensemble_of, args.reports), "command": command}
        args.reports.mkdir(parents=True, exist_ok=True)
        (args.reports / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_ensemble_sizes(result["sizes"], args.reports / f"{args.name}.png",
                            title=f"{args.name}: ensembles of k of {len(args.ensemble_of)} CV runs")
        for size in result["sizes"]:
            print(f"k={size['k']} ({size['subsets']} subsets): UA {size['clean_ua']['mean']:.1%} "
                  f"[{size['clean_ua']['min']:.1%}, {size['clean_ua']['max']:.1%}]"
                  + (f", degraded {size['degraded_ua']['mean']:.1%}" if "degraded_ua" in size else ""))
        print(f"report: {args.reports / (args.name + '.json')}")
        return
    if args.protocol in ("merge", "ensemble"):
        if not args.name or (args.protocol == "ensemble" and not args.ensemble_of):
            p.error(f"{args.protocol} needs --name" + (" and --of" if args.protocol == "ensemble" else ""))
        given = " && ".join(args.command or [])  # the commands that made the runs, if stated
        result = (merge_folds(args.name, given, args.reports) if args.protocol == "merge"
                  else ensemble_folds(args.ensemble_of, given, args.reports))
        print(json.dumps({k: result[k] for k in CONDITIONS + ("fixed_gains",) if k in result}, indent=1))
        print(f"report: {save_report(args.name, result, args.reports)}")
        return
    if args.weights and "-to-" not in args.protocol and args.protocol != "loco":
        p.error("--weights only applies to the cross-corpus protocols and loco")
    if args.holdout and args.protocol != "loco":
        p.error("--holdout only applies to loco")
    cfg = training_config(args)
    folds = [f - 1 for f in args.folds] if args.folds else None
    name = args.name or (f"loco_{args.weights.stem}" if args.weights and args.protocol == "loco"
                         else f"{args.protocol}_{args.arch}")
    fixed_gains = () if args.fixed_gains is None else tuple(args.fixed_gains or LEVEL_GAINS_DB)
    if args.weights:  # no training sets the thread count: scoring keeps to --threads too
        import torch

        torch.set_num_threads(cfg.threads)
    result = run(args.protocol, args.data, cfg, tuple(args.extra), folds, name, args.reports, command,
                 args.weights, args.holdout, args.gain, fixed_gains, args.workers, args.precision)
    result["train_config"] = result.get("train_config") or config_dict(cfg)
    result["command"] = command
    path = save_report(name, result, args.reports)
    summary = result.get("clean")
    if "per_class" in summary:
        print(format_report(summary))
    else:  # the mean over folds or corpora
        print("clean:", json.dumps({k: v for k, v in summary.items() if k in ("ua", "wa", "collapse")}))
    for condition in CONDITIONS[1:] + ("fixed_gains",):
        if condition in result:
            print(f"{condition}:", json.dumps({k: v for k, v in result[condition].items()
                                                if k in ("ua", "wa", "collapse", "ua_spread")}, indent=None))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
