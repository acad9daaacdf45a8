"""Command line: ``python -m ser_model {predict,train,evaluate}`` (see CONTRACTS.md).

This module owns all argument parsing; the library functions it calls take
plain values. Progress bars go to stderr, so ``--json`` output stays clean.
"""
from __future__ import annotations

import os

# One BLAS thread: numpy's linear algebra here is tiny and threads thrash 2 cores.
# (torch keeps its own pool, sized by torch.set_num_threads.)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from .inference import DEFAULT_WEIGHTS, PRECISIONS  # noqa: E402
from .model import ARCHITECTURES  # noqa: E402


def _predict(args) -> int:
    from .audio import AudioError, load_audio
    from .inference import ProfileError, Recognizer

    recognizer = Recognizer.load(args.weights, precision=args.precision)
    profile = None
    if args.reference:
        try:
            import numpy as np

            profile = recognizer.voice_profile(np.concatenate([load_audio(f) for f in args.reference]))
        except (AudioError, ProfileError, FileNotFoundError) as err:
            print(f"{' '.join(args.reference)}: cannot adapt to this voice: {err}", file=sys.stderr)
            return 2
    status = 0
    for file in args.files:
        try:
            result = recognizer.predict(load_audio(file), profile=profile)
        except (AudioError, FileNotFoundError, IsADirectoryError) as err:
            status = 1
            code = getattr(err, "code", "not_found")
            if args.json:
                print(json.dumps({"file": file, "error": str(err), "code": code}))
            else:
                print(f"{file}: error: {err}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"file": file, **result.to_dict()}))
        else:
            print(_describe(file, result))
    return status


def _describe(file: str, result) -> str:
    lines = [f"{file}: {result.label} ({result.confidence:.0%}), {result.duration:.1f} s"
             + ("" if result.speech_detected else "  [no speech detected]")
             + ("  [unsure: below the model's calibrated threshold]" if result.uncertain else "")
             + ("  [adapted to the reference voice]" if result.adapted else "")
             + ("  [judged beside the file's own speech]" if result.session else "")]
    for label, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {label:<10} {p:6.1%} {'#' * round(p * 40)}")
    lines.append("  timeline: " + " ".join(
        f"{s.start:.1f}-{s.end:.1f}s:{s.label if s.speech else '(silence)'}" for s in result.segments))
    return "\n".join(lines)


def _train(args) -> int:
    from .corpora import scan
    from .data import FeatureBank
    from .modelcard import write_training_outputs
    from .train import join_encoder_head, train

    scanned = scan(*args.data)
    records = [r for r in scanned.records if not args.corpora or r.corpus in args.corpora]
    if not records:
        print(f"no labelled audio found under {', '.join(map(str, args.data))}", file=sys.stderr)
        return 2
    cfg = training_config(args)
    networks = kept = None
    if args.networks_from:
        cfg, networks = _networks_from(args.networks_from, cfg, records)
    bank = FeatureBank(records, workers=args.workers, n_variants=cfg.bank_variants, with_encoder=cfg.uses_encoder)
    idx = list(range(len(records)))
    if networks:
        from .checkpoint import sha256

        model, mcfg, meta = networks
        model, mcfg, history = join_encoder_head(list(model.members) if mcfg.members > 1 else [model], mcfg,
                                                 meta.get("history", {}), bank, idx, cfg)
        kept = {"file": meta["file"], "sha256": sha256(meta["file"])}
    else:
        model, mcfg, history = train(bank, idx, None, cfg)
    paths = write_training_outputs(Path(args.out), model, mcfg, cfg, history, bank, scanned,
                                   make_default=args.default, networks_from=kept)
    for p in paths:
        print(p)
    return 0


def _networks_from(path: str, cfg, records):
    """(the checkpoint's training config with the encoder on, (model, config, meta)) for
    ``--networks-from``; refuses a checkpoint trained on other data than ``records``."""
    from collections import Counter
    from dataclasses import replace

    from .checkpoint import load_checkpoint
    from .train import TrainConfig

    if not cfg.encoder:
        raise SystemExit("--networks-from adds an encoder head: pass --encoder too")
    model, mcfg, meta = load_checkpoint(path)
    if mcfg.arch != "attn_cnn" or mcfg.encoder:
        raise SystemExit(f"{path}: --networks-from takes an attn_cnn model without an encoder head")
    files = Counter(r.corpus for r in records)
    trained_on = {c: v.get("files") for c, v in meta.get("data", {}).items()}
    if trained_on != dict(files):
        raise SystemExit(f"{path} was trained on {trained_on} files, but --data/--corpora give {dict(files)}: "
                         "the head must be fitted on the networks' own training data")
    saved = meta["train_config"]
    trained = TrainConfig(**{**saved, "channels": tuple(saved["channels"])})
    return (replace(trained, encoder=True, head_c=cfg.head_c, head_variants=cfg.head_variants, threads=cfg.threads),
            (model, mcfg, meta))


def _evaluate(args) -> int:
    from .corpora import scan
    from .evaluate import evaluate_records
    from .inference import Recognizer
    from .metrics import format_report, plot_confusion

    scanned = scan(args.data)
    if not scanned.records:
        print(f"no labelled audio found under {args.data}", file=sys.stderr)
        return 2
    metrics = evaluate_records(Recognizer.load(args.weights, precision=args.precision), scanned.records, skipped=scanned.n_skipped,
                               degrade=args.degrade, progress=not args.quiet)
    if args.report_dir:
        out = Path(args.report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (out / "report.txt").write_text(format_report(metrics) + "\n")
        plot_confusion(metrics, out / "confusion.png", title=f"{Path(args.weights).name} on {args.data}")
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_report(metrics))
    return 0


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``python -m ser_model.protocols``; unset ones keep TrainConfig's."""
    p.add_argument("--arch", default="attn_cnn", choices=ARCHITECTURES)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads (default 2)")
    p.add_argument("--channels", type=int, nargs="+", help="attn_cnn conv widths")
    p.add_argument("--tdnn-width", type=int, help="tdnn channels")
    p.add_argument("--utterance-norm", action="store_true", help="subtract each window's mean log-mel per band")
    p.add_argument("--crop-s", type=float, help="training crop length in seconds")
    p.add_argument("--mixup", type=float, help="mixup alpha (0: off)")
    p.add_argument("--members", type=int, help="train this many networks (seeds seed, seed+1, ...) and average them")
    p.add_argument("--bf16", action="store_true", help="train with bfloat16 autocast (faster on recent CPUs)")
    p.add_argument("--variants", type=int, help="augmented copies cached per training file (default 2)")
    p.add_argument("--device", help="train on this torch device, e.g. cuda (default cpu)")
    p.add_argument("--encoder", action="store_true",
                   help="attn_cnn: add a head on the pretrained speaker encoder (needs the resemblyzer wheel)")
    p.add_argument("--head-c", type=float, help="encoder head's inverse L2 strength (default 0.003)")
    p.add_argument("--head-variants", type=int, help="augmented copies per file the encoder head is fitted on "
                                                        "(default: --variants)")


def training_config(args: argparse.Namespace):
    """The TrainConfig that ``add_training_options``'s values ask for."""
    from .train import TrainConfig

    fields = ("epochs", "steps_per_epoch", "seed", "threads", "tdnn_width", "crop_s", "members", "device", "variants",
              "head_c", "head_variants")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if args.channels:
        overrides["channels"] = tuple(args.channels)
    if args.mixup is not None:
        overrides["mixup_alpha"] = args.mixup
    if args.device:
        import torch

        torch.device(args.device)  # an unknown device fails here, before features are extracted
    for flag in ("utterance_norm", "bf16", "encoder"):
        if getattr(args, flag):
            overrides[flag] = True
    try:
        cfg = TrainConfig.for_arch(args.arch, **overrides)
    except ValueError as err:  # a combination TrainConfig refuses
        raise SystemExit(str(err)) from None
    if cfg.uses_encoder:
        from .encoder import EncoderMissing, pretrained_file

        try:
            pretrained_file()  # a missing wheel fails here, before features are extracted
        except EncoderMissing as err:
            raise SystemExit(str(err)) from None
    return cfg


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="CPU arithmetic: bfloat16 is about 1.8x faster where the CPU has it, within about 0.01 "
                             "of float32's probabilities; auto (default) times both here and keeps the faster")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ser_model", description="Speech emotion recognition.")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="predict the emotion of audio files")
    pr.add_argument("files", nargs="+", metavar="FILE")
    pr.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    pr.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="weights folder or checkpoint")
    pr.add_argument("--reference", nargs="+", metavar="CALM_FILE",
                    help="at least 2 s of the same voice speaking calmly (one or more files): adapt the answers to it")
    pr.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a busy machine's cores are no faster shared; default 1)")
    add_precision_option(pr)
    pr.set_defaults(func=_predict)

    tr = sub.add_parser("train", help="train a model on corpus folders")
    tr.add_argument("--data", nargs="+", required=True, type=Path, metavar="DIR")
    tr.add_argument("--out", required=True, help="checkpoint path, e.g. weights/NAME")
    tr.add_argument("--corpora", nargs="*", help="use only these corpora (e.g. ravdess tess)")
    add_training_options(tr)
    tr.add_argument("--workers", type=int, default=2, help="feature-extraction processes")
    tr.add_argument("--default", action="store_true", help="make it the folder's default model")
    tr.add_argument("--networks-from", metavar="CHECKPOINT",
                    help="with --encoder: keep this trained attn_cnn model's networks and fit only the encoder "
                         "head on the same data; its recorded training settings replace the network options")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="score a model on labelled corpus files")
    ev.add_argument("--weights", required=True, help="weights folder (its default model) or a checkpoint")
    ev.add_argument("--data", required=True, type=Path, metavar="DIR")
    ev.add_argument("--json", action="store_true", help="print the metrics as one JSON object, last line")
    ev.add_argument("--degrade", action="store_true", help="noise 20 dB SNR + random gain + Opus first")
    ev.add_argument("--report-dir", help="also write metrics.json, report.txt and confusion.png here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_precision_option(ev)
    ev.set_defaults(func=_evaluate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None) and args.command != "train":  # train sets its own (TrainConfig)
        import torch

        # torch starts one OpenMP thread per core; on a machine whose cores are busy, threads that
        # wait for each other made one prediction 50 times slower (docs/benchmarks.md).
        torch.set_num_threads(args.threads)
    return args.func(args)
