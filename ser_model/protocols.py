"""Evaluation protocols: speaker-independent CV, leave-one-speaker-out, cross-corpus.

Every protocol splits by speaker (except the TESS random split, a sanity check
only), trains on the training side with augmentation drawn from training files
only, and scores the held-out files whole through ``Recognizer.predict_file``.

    python -m ser_model.protocols ravdess-cv --arch attn_cnn --with tess
    python -m ser_model.protocols ravdess-cv --with --members 2 --bf16      # the shipped recipe
    python -m ser_model.protocols ensemble --name ENS --of RUN_A RUN_B      # average two CV runs
    python -m ser_model.protocols ensemble-sizes --name CURVE --of RUN_A RUN_B RUN_C ...
    python -m ser_model.protocols ravdess-to-tess --weights weights/attn_cnn.pt --name NAME
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
from .evaluate import evaluate_records
from .inference import Recognizer
from .labels import EMOTIONS
from .metrics import (compute_metrics, format_report, plot_confusion, plot_curves, plot_ensemble_sizes,
                      summarize_folds)
from .cli import add_training_options, training_config
from .train import TrainConfig, config_dict, train

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
REPORTS = Path(__file__).resolve().parent.parent / "reports"
# Five folds of four RAVDESS actors: two male (odd) and two female (even) in each.
RAVDESS_FOLDS = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]


def actor(r: Record) -> int:
    return int(r.speaker.split("-")[1])


def validation_speakers(records: list[Record]) -> set[str]:
    """Two training speakers (one per gender where possible) held out for early stopping."""
    speakers = sorted({(r.gender or "", r.speaker) for r in records if r.corpus == "ravdess"})
    chosen = {}
    for gender, spk in speakers:
        chosen.setdefault(gender, spk)
    return set(chosen.values())


def run_split(bank: FeatureBank, train_recs: list[Record], test_recs: list[Record], cfg: TrainConfig,
              robust: bool = True) -> dict:
    """Train on ``train_recs``, score ``test_recs`` clean (and degraded); return the fold's results."""
    val_recs = []
    if cfg.arch == "cnn1d":  # its recipe needs validation data: take it from the training speakers
        held = validation_speakers(train_recs)
        val_recs = [r for r in train_recs if r.speaker in held]
        train_recs = [r for r in train_recs if r.speaker not in held]
    assert not {r.speaker for r in train_recs} & {r.speaker for r in test_recs}, "speaker leak"
    start = time.time()
    model, mcfg, history = train(bank, bank.subset(train_recs), bank.subset(val_recs) or None, cfg)
    recognizer = Recognizer(model, mcfg)
    result = {"train_speakers": sorted({r.speaker for r in train_recs}),
              "test_speakers": sorted({r.speaker for r in test_recs}),
              "n_train": len(train_recs), "train_seconds": round(time.time() - start, 1),
              "history": history, "clean": evaluate_records(recognizer, test_recs, keep_files=True)}
    if robust:
        result["degraded"] = evaluate_records(recognizer, test_recs, degrade=True, keep_files=True)
    return result


def _records(data: list[Path]) -> dict[str, list[Record]]:
    return scan(*data).by_corpus()


def ravdess_cv(data: list[Path], cfg: TrainConfig, extra: tuple[str, ...], folds=None, name=None,
               reports: Path = REPORTS, command: str = "") -> dict:
    by = _records(data)
    extra_recs = [r for c in extra for r in by.get(c, [])]
    bank = FeatureBank(by["ravdess"] + extra_recs, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
    results = []
    for k, test_actors in enumerate(RAVDESS_FOLDS):
        if folds is not None and k not in folds:
            continue
        print(f"--- fold {k + 1}/{len(RAVDESS_FOLDS)}: test actors {test_actors}", flush=True)
        test = [r for r in by["ravdess"] if actor(r) in test_actors]
        train_recs = [r for r in by["ravdess"] if actor(r) not in test_actors] + extra_recs
        results.append({"fold": k + 1, **run_split(bank, train_recs, test, cfg)})
        if name:  # each fold also on its own, so folds can run in parallel processes and be merged
            fold_dir = reports / "folds" / name
            fold_dir.mkdir(parents=True, exist_ok=True)
            fold = {**results[-1], "train_config": config_dict(cfg), "command": command}
            (fold_dir / f"fold{k + 1}.json").write_text(json.dumps(fold, indent=1) + "\n")
        print(f"    UA {results[-1]['clean']['ua']:.3f}  WA {results[-1]['clean']['wa']:.3f}  "
              f"degraded UA {results[-1]['degraded']['ua']:.3f}", flush=True)
    return summarize_cv(results)


def summarize_cv(results: list[dict]) -> dict:
    out = {"folds": results, "clean": summarize_folds([r["clean"] for r in results])}
    if all("degraded" in r for r in results):
        out["degraded"] = summarize_folds([r["degraded"] for r in results])
    return out


def _load_folds(name: str, reports: Path) -> list[dict]:
    """The per-fold results of a CV run, reports/folds/NAME/fold*.json, in fold order."""
    return [json.loads(f.read_text()) for f in sorted((reports / "folds" / name).glob("fold*.json"))]


def merge_folds(name: str, command: str, reports: Path = REPORTS) -> dict:
    """Combine reports/folds/NAME/fold*.json (from parallel --folds runs) into one CV result."""
    folds = _load_folds(name, reports)
    result = summarize_cv(folds)
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
        for condition in ("clean", "degraded"):
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
            for condition in ("clean", "degraded"):
                if condition in result:
                    for metric in ("ua", "wa"):
                        scores.setdefault(f"{condition}_{metric}", []).append(result[condition][metric]["mean"])
        sizes.append({"k": k, "subsets": math.comb(len(members), k),
                      **{key: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                         for key, v in scores.items()}})
    return {"runs": members, "sizes": sizes}


def tess_loso(data: list[Path], cfg: TrainConfig) -> dict:
    tess = _records(data)["tess"]
    bank = FeatureBank(tess, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
    results = []
    for speaker in sorted({r.speaker for r in tess}):
        test = [r for r in tess if r.speaker == speaker]
        results.append(run_split(bank, [r for r in tess if r.speaker != speaker], test, cfg, robust=False))
    return {"folds": results, "clean": summarize_folds([r["clean"] for r in results])}


def tess_random(data: list[Path], cfg: TrainConfig, test_fraction: float = 0.2) -> dict:
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
            "clean": evaluate_records(Recognizer(model, mcfg), test), "history": history}


def cross_corpus(data: list[Path], cfg: TrainConfig, source: str, target: str, weights: Path | None = None) -> dict:
    """Train on all of ``source`` and test on all of ``target``; or, with ``weights``, score a
    checkpoint that was trained on exactly the files of ``source`` (e.g. the shipped model)."""
    by = _records(data)
    if weights is None:
        bank = FeatureBank(by[source] + by[target], n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
        return run_split(bank, by[source], by[target], cfg, robust=False)
    recognizer = Recognizer.load(weights)
    trained_on = recognizer.meta.get("data", {})
    speakers = sorted({r.speaker for r in by[source]})
    if set(trained_on) != {source} or trained_on[source].get("files") != len(by[source]) \
            or trained_on[source].get("speakers") != len(speakers):
        raise ValueError(f"{weights} was trained on {trained_on}, not on the {len(by[source])} {source} files here")
    return {"train_speakers": speakers, "test_speakers": sorted({r.speaker for r in by[target]}),
            "n_train": len(by[source]), "weights": str(weights), "train_config": recognizer.meta.get("train_config"),
            "clean": evaluate_records(recognizer, by[target], keep_files=True)}


PROTOCOLS = ("ravdess-cv", "tess-loso", "tess-random", "ravdess-to-tess", "tess-to-ravdess")


def run(protocol: str, data: list[Path], cfg: TrainConfig, extra: tuple[str, ...] = ("tess",), folds=None,
        name=None, reports: Path = REPORTS, command: str = "", weights: Path | None = None) -> dict:
    if protocol == "ravdess-cv":
        return ravdess_cv(data, cfg, extra, folds, name, reports, command)
    if protocol == "tess-loso":
        return tess_loso(data, cfg)
    if protocol == "tess-random":
        return tess_random(data, cfg)
    source, target = protocol.split("-to-")
    return cross_corpus(data, cfg, source, target, weights)


def pooled_metrics(confusion: np.ndarray, labels: list[str]) -> dict:
    """Metrics of the pooled predictions behind a summed confusion matrix."""
    y_true = [t for t in range(len(labels)) for p in range(len(labels)) for _ in range(int(confusion[t][p]))]
    y_pred = [p for t in range(len(labels)) for p in range(len(labels)) for _ in range(int(confusion[t][p]))]
    return compute_metrics(y_true, y_pred, labels)


def save_report(name: str, result: dict, out_dir: Path = REPORTS) -> Path:
    """Write the result JSON, a summed confusion matrix and the first run's curves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    runs = result.get("folds") or [result]
    confusion = np.sum([r["clean"]["confusion"] for r in runs], axis=0)
    pooled = pooled_metrics(confusion, runs[0]["clean"]["labels"])
    plot_confusion(pooled, out_dir / f"{name}_confusion.png",
                   title=f"{name}: held-out files of all {len(runs)} fold(s) pooled, clean")
    if runs[0].get("history"):
        plot_curves({k: v for k, v in runs[0]["history"].items() if isinstance(v, list) and len(v) > 1},
                    out_dir / f"{name}_curves.png", title=f"{name}: training curves (fold 1)")
    return out_dir / f"{name}.json"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=PROTOCOLS + ("merge", "ensemble", "ensemble-sizes"),
                   help="merge: combine per-fold files of --name; ensemble: average the per-file "
                        "probabilities of the CV runs named by --of into --name; ensemble-sizes: UA of "
                        "ensembles of every size made of those runs (JSON and plot --name)")
    p.add_argument("--data", nargs="+", type=Path, default=[DEFAULT_DATA])
    p.add_argument("--with", dest="extra", nargs="*", default=["tess"], help="corpora added to training (ravdess-cv)")
    p.add_argument("--folds", type=int, nargs="*", help="run only these fold numbers (1-based)")
    p.add_argument("--name", help="report name (default: protocol_arch)")
    p.add_argument("--command", nargs="*", help="merge: the commands that produced the folds (recorded)")
    p.add_argument("--of", dest="ensemble_of", nargs="+", metavar="NAME", help="ensemble: the CV runs to average")
    add_training_options(p)
    p.add_argument("--reports", type=Path, default=REPORTS, help="where reports go (default reports/)")
    p.add_argument("--weights", type=Path, help="cross-corpus: score this checkpoint (trained on exactly the "
                                                "source corpus) instead of training one")
    args = p.parse_args(argv)
    command = "python -m ser_model.protocols " + " ".join(argv if argv is not None else sys.argv[1:])
    limit_blas_threads()
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
        print(json.dumps({k: result[k] for k in ("clean", "degraded") if k in result}, indent=1))
        print(f"report: {save_report(args.name, result, args.reports)}")
        return
    cfg = training_config(args)
    folds = [f - 1 for f in args.folds] if args.folds else None
    name = args.name or f"{args.protocol}_{args.arch}"
    if args.weights and "-to-" not in args.protocol:
        p.error("--weights only applies to the cross-corpus protocols")
    result = run(args.protocol, args.data, cfg, tuple(args.extra), folds, name, args.reports, command, args.weights)
    result["train_config"] = result.get("train_config") or config_dict(cfg)
    result["command"] = command
    path = save_report(name, result, args.reports)
    summary = result.get("clean")
    print(format_report(summary) if "per_class" in summary else json.dumps(summary, indent=1))
    if "degraded" in result:
        print("degraded:", json.dumps({k: result["degraded"][k] for k in ("ua", "wa")}, indent=None))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
