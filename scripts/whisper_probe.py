"""What a frozen Whisper tiny.en encoder can do for emotion off RAVDESS (issue 12), measured by linear probes.

    python scripts/whisper_probe.py cost  [--repeats 30]            # per-window cost table
    python scripts/whisper_probe.py embed [--part 0/2]               # cache embeddings (.cache/whisper/)
    python scripts/whisper_probe.py probe [--only NAME ...]          # LOCO + RAVDESS CV + gains
    python scripts/whisper_probe.py report                           # tables and plots of every run
    python scripts/whisper_probe.py choose --protocol loco --among A B  # nested choice among saved runs

``embed --lite --upto 2 --variants clean g-15 g+15 degraded rgain aug1 aug2 rgain2`` caches only
what the shipped heads' recipes read (blocks 1-2, no channel copies): about 40 min on two cores.

``embed``: every file of the four corpora is cut into the app's windows (3 s every 0.5 s over the
whole file, a shorter file is one window; ``ser_model.inference.window_starts``), each window
silence-trimmed exactly (the app, since 2026-12-02, to a multiple of ``TRIM_STEP_S``) and padded to
0.5 s, and Whisper's six hidden states (``ser_model.whisper``: 0 = conv + positions, 1-4 = blocks, 5
= final LayerNorm) are summarised by their mean and standard deviation over time; Resemblyzer's
layer-2 statistics (the shipped encoder head's input) are kept too. This for the clean file, test
conditions (fixed gains of -15 and +15 dB, the browser degradation and a random gain of +-20 dB,
seeded per file as ``ser_model.evaluate`` seeds them) and training copies (two ``augment()`` chains,
two ``channel_augment()`` chains, a second random gain; two voice-shifted copies, ``spk`` by file
and ``vox`` by speaker, added with ``embed --add``), each once as recorded ("raw") and once with
every window scaled to an active level of -26 dBFS ("norm"). Silero VAD marks the windows with
speech, as the app does; a file's prediction is the mean of its speech windows' probabilities.

``probe``: multinomial logistic regressions (``ser_model.encoder.fit_linear``, corpus- and class-
balanced weights) under leave-one-corpus-out and RAVDESS 5-fold CV by actor, the layer and C of
each chosen by nested validation inside the training side only (leave one training corpus out for
LOCO, two inner folds of 8 training actors, 4 men and 4 women, for RAVDESS), never on the test
corpus or fold.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ser_model import augment as A  # noqa: E402
from ser_model import whisper as W  # noqa: E402
from ser_model.audio import SAMPLE_RATE, load_audio, pad_or_trim  # noqa: E402
from ser_model.corpora import scan  # noqa: E402
from ser_model.data import limit_blas_threads  # noqa: E402
from ser_model.features import encoder_log_mel, trim_silence  # noqa: E402
from ser_model.inference import MIN_SPEECH_S, MIN_WINDOW_S, WINDOW_S, window_starts  # noqa: E402
from ser_model.model import divide_by_spread  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
CACHE = ROOT / ".cache" / "whisper"
REPORTS = ROOT / "reports" / "experiments"
CORPORA = ("ravdess", "tess", "ased", "turevdb")
LAYERS = tuple(range(W.OUTPUT_LAYER + 1))
STATS = 2 * W.D_MODEL  # mean + std per layer
NORM_DBFS = -26.0  # per-window level normalisation target
DEGRADE_GAIN_RANGE = (-20.0, 20.0)
PAIRED_COPIES = ("aug", "chan", "spk", "vox")  # <name>1 and <name>2 are drawn one after the other
SPEAKER_SHIFT_SEMITONES = (2.0, 4.0)  # spk copies: pitch and formants moved together by this much, up or down
# Variants of each file: name -> how its waveform is made from the recording (see make_variant).
RAW_VARIANTS = ("clean", "g-15", "g+15", "degraded", "rgain", "aug1", "aug2", "chan1", "chan2", "rgain2", "spk1", "spk2",
                "vox1", "vox2")
NORM_VARIANTS = ("clean", "g+15", "degraded", "rgain", "aug1", "aug2", "chan1", "chan2", "rgain2")
VAD_VARIANTS = ("clean", "g-15", "g+15", "degraded", "rgain")  # the others borrow clean's speech flags
EMBED_VERSION = "w1"


def file_rng(name: str, *stream: int) -> np.random.Generator:
    """The per-file generator ``ser_model.evaluate`` uses (seed 0), so test conditions hear the same audio."""
    return np.random.default_rng([0, zlib.crc32(name.encode()), *stream])


def speaker_shift(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another voice, roughly: pitch and formants moved together (``augment.pitch_shift``, which
    keeps the duration) by 2-4 semitones up or down."""
    return A.pitch_shift(wave, shift_semitones(rng))


def shift_semitones(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(*SPEAKER_SHIFT_SEMITONES))


def voice_shifts(speaker: str) -> tuple[float, float]:
    """The vox copies' two shifts of one speaker: every file of a speaker moves the same way in a
    copy, so a session of that copy is one (new) voice."""
    rng = file_rng(speaker, 500)
    return shift_semitones(rng), shift_semitones(rng)


def variant_waves(wave: np.ndarray, name: str, only=RAW_VARIANTS, speaker: str = "") -> dict[str, np.ndarray]:
    """The RAW_VARIANTS waveforms in ``only`` of one recording (same length as it), seeded by the file
    name (the vox pair: by ``speaker``); each pair (aug, chan, spk, vox) draws from one generator, so a
    copy never depends on ``only``."""
    def pair(rng, fn):
        return fn(wave, rng), fn(wave, rng)

    makers = {"clean": lambda: wave, "g-15": lambda: A.gain(wave, -15.0), "g+15": lambda: A.gain(wave, 15.0),
              "degraded": lambda: A.browser_degrade(wave, file_rng(name)),
              "rgain": lambda: A.gain(wave, file_rng(name, 1).uniform(*DEGRADE_GAIN_RANGE)),
              "aug": lambda: pair(file_rng(name, 100), A.augment),
              "chan": lambda: pair(file_rng(name, 200), A.channel_augment),
              "rgain2": lambda: A.gain(wave, file_rng(name, 301).uniform(*DEGRADE_GAIN_RANGE)),
              "spk": lambda: pair(file_rng(name, 400), speaker_shift),
              "vox": lambda: tuple(A.pitch_shift(wave, st) for st in voice_shifts(speaker))}
    out = {}
    for variant in RAW_VARIANTS:
        if variant not in only or variant in out:
            continue
        pair_name = variant[:-1]
        if pair_name in PAIRED_COPIES:  # both copies of the pair come from one generator
            out[f"{pair_name}1"], out[f"{pair_name}2"] = makers[pair_name]()
        else:
            out[variant] = makers[variant]()
    return {k: v for k, v in out.items() if k in only}


def windows_of(wave: np.ndarray) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """The app's analysis windows of ``wave``, each trimmed and padded as ``Recognizer.features`` does,
    but trimmed exactly: the cached statistics and the heads trained on them predate ``TRIM_STEP_S``."""
    duration = len(wave) / SAMPLE_RATE
    spans = [(s, min(duration, s + WINDOW_S)) for s in window_starts(duration)]
    out = []
    for s, e in spans:
        w = trim_silence(wave[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)])
        if len(w) < MIN_WINDOW_S * SAMPLE_RATE:
            w = pad_or_trim(w, int(MIN_WINDOW_S * SAMPLE_RATE))
        out.append(w)
    return out, spans


def normalise_level(window: np.ndarray) -> np.ndarray:
    """Scale a window to an active level of NORM_DBFS (no clipping: the features are floats)."""
    if not np.any(window):
        return window
    return (window * 10 ** ((NORM_DBFS - A.active_level_db(window)) / 20)).astype(np.float32)


class Embedder:
    """Whisper's six layers and Resemblyzer's layer 2, pooled over time, for lists of windows.
    ``upto`` < 5: only layers 0..upto are computed (the encoder stops there, less than half the
    cost for 2); the others' columns are NaN, which ``Table.features`` refuses."""

    def __init__(self, upto: int = LAYERS[-1]):
        from ser_model.encoder import load_pretrained
        from ser_model.model import EncoderHead, ModelConfig

        self.upto = upto
        self.whisper = W.load_pretrained(W.WhisperEncoder(LAYERS[:upto + 1]))
        self.resemblyzer = load_pretrained(EncoderHead(ModelConfig(arch="encoder_head"))).eval()

    @torch.inference_mode()
    def whisper_stats(self, windows: list[np.ndarray], dynamics: list | None = None) -> np.ndarray:
        """(windows, layers x 768) mean and std over time; ``dynamics``, a list, receives the
        (windows, layers x 384) standard deviation over time of each state's frame-to-frame change."""
        out = np.full((len(windows), len(LAYERS) * STATS), np.nan, np.float32)
        dyn = np.full((len(windows), len(LAYERS) * W.D_MODEL), np.nan, np.float32) if dynamics is not None else None
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_len.setdefault(len(w), []).append(i)
        for idx in by_len.values():
            batch = torch.from_numpy(np.stack([windows[i] for i in idx]))
            states = self.whisper(batch)
            out[idx, :(self.upto + 1) * STATS] = W.pool(states).numpy()
            if dyn is not None:
                dyn[idx, :(self.upto + 1) * W.D_MODEL] = states.diff(dim=2).std(2).flatten(1).numpy()
        if dynamics is not None:
            dynamics.append(dyn)
        return out

    @torch.inference_mode()
    def resemblyzer_stats(self, windows: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.resemblyzer.embed(torch.from_numpy(encoder_log_mel(w))[None])[0].numpy()
                         for w in windows])


def speech_flags(wave: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    from ser_model import vad

    speech = vad.speech_intervals(wave)
    return np.array([vad.speech_overlap(speech, s, e) >= min(MIN_SPEECH_S, 0.5 * (e - s)) for s, e in spans])


def cache_path(path: Path) -> Path:
    """Keyed by the file's place in its corpus and size, not its modification time: the corpora
    are copied afresh onto each machine, which changes every mtime and nothing else."""
    path = path.resolve()
    try:
        name = path.relative_to(DATA.resolve())
    except ValueError:
        name = path
    key = f"{name}|{path.stat().st_size}|{EMBED_VERSION}"
    return CACHE / "files" / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"


def embed_file(embedder: Embedder, path: Path, lite: bool = False,
               variants: tuple[str, ...] = RAW_VARIANTS, speaker: str = "") -> dict[str, np.ndarray]:
    """The statistics of ``variants``; ``lite`` keeps the raw Whisper ones only (no Resemblyzer, no
    level-normalised copies: half the cost)."""
    wave = load_audio(path)
    out = {"meta/upto": np.array(embedder.upto), "meta/variants": np.array(len(variants))}
    if any(v.startswith("vox") for v in variants) and not speaker:
        raise ValueError("the vox copies need the file's speaker")
    for variant, vw in variant_waves(wave, path.name, variants, speaker).items():
        windows, spans = windows_of(vw)
        dyn: list = []
        out[f"raw/{variant}"] = embedder.whisper_stats(windows, dyn).astype(np.float16)
        out[f"dyn/{variant}"] = dyn[0].astype(np.float16)
        out[f"level/{variant}"] = np.array([A.active_level_db(w) if np.any(w) else -200.0 for w in windows])
        if variant in VAD_VARIANTS:
            out[f"speech/{variant}"] = speech_flags(vw, spans)
        if lite:
            continue
        out[f"res/{variant}"] = embedder.resemblyzer_stats(windows).astype(np.float16)
        if variant in NORM_VARIANTS:
            out[f"norm/{variant}"] = embedder.whisper_stats([normalise_level(w) for w in windows]).astype(np.float16)
    return out


def save_npz(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache file whole or not at all (an interrupted run leaves the old one)."""
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(target)


def add_norm(embedder: Embedder, path: Path, target: Path) -> None:
    """Complete a ``--lite`` file with the level-normalised statistics the norm recipes read."""
    with np.load(target) as z:
        out = {k: z[k] for k in z.files}
    if all(f"norm/{v}" in out for v in NORM_VARIANTS):
        return
    wave = load_audio(path)
    for variant, vw in variant_waves(wave, path.name, NORM_VARIANTS).items():
        windows, _ = windows_of(vw)
        out[f"norm/{variant}"] = embedder.whisper_stats([normalise_level(w) for w in windows]).astype(np.float16)
    save_npz(target, out)


def add_variants(args, records: list, k: int, n: int) -> None:
    """Embed ``args.variants`` into cached files that lack them, keeping what the files hold."""
    todo = []
    for r in records:
        target = cache_path(r.path)
        if target.exists():
            with np.load(target) as z:
                if any(f"raw/{v}" not in z.files for v in args.variants):
                    todo.append(r)
    print(f"part {k}/{n}: {len(records)} files, {len(todo)} lack {' '.join(args.variants)}", flush=True)
    if not todo:
        return
    embedder = Embedder(args.upto)
    (CACHE / "table" / "done").unlink(missing_ok=True)  # the consolidated table is rebuilt with them
    for r in tqdm(todo, desc=f"add {k}/{n}", unit="file", mininterval=30):
        target = cache_path(r.path)
        with np.load(target) as z:
            out = {key: z[key] for key in z.files}
        missing = tuple(v for v in args.variants if f"raw/{v}" not in out)
        new = embed_file(embedder, r.path, lite=True, variants=missing, speaker=r.speaker)
        out.update({key: v for key, v in new.items() if not key.startswith("meta/")})
        if "meta/variants" in out:
            out["meta/variants"] = np.array(int(out["meta/variants"]) + len(missing))
        save_npz(target, out)


def records_of(data: Path) -> list:
    by = scan(data).by_corpus()
    return [r for c in CORPORA for r in by[c]]


def complete(target: Path, upto: int, n_variants: int) -> bool:
    """Whether a cached file has at least these layers and this many variants (older files,
    without the meta keys, have them all)."""
    if not target.exists():
        return False
    with np.load(target) as z:
        if "meta/upto" not in z.files:
            return True
        return int(z["meta/upto"]) >= upto and int(z["meta/variants"]) >= n_variants


def cmd_embed(args) -> None:
    torch.set_num_threads(1)
    limit_blas_threads()
    k, n = map(int, args.part.split("/"))
    records = records_of(args.data)[k::n]
    if args.add_norm:
        todo = [r for r in records if cache_path(r.path).exists()]
        embedder = Embedder()
        for r in tqdm(todo, desc=f"norm {k}/{n}", unit="file", mininterval=30):
            add_norm(embedder, r.path, cache_path(r.path))
        return
    if args.add:
        add_variants(args, records, k, n)
        return
    todo = [r for r in records if not complete(cache_path(r.path), args.upto, len(args.variants))]
    if args.every > 1:  # a subsample of what is left, spread over each corpus's speakers and classes
        todo = [r for c in CORPORA for r in [r for r in todo if r.corpus == c][::args.every]]
    print(f"part {k}/{n}: {len(records)} files, {len(todo)} to embed", flush=True)
    if not todo:
        return
    embedder = Embedder(args.upto)
    (CACHE / "files").mkdir(parents=True, exist_ok=True)
    (CACHE / "table" / "done").unlink(missing_ok=True)  # the consolidated table is rebuilt from the new files
    for r in tqdm(todo, desc=f"embed {k}/{n}", unit="file", mininterval=30):
        target = cache_path(r.path)
        save_npz(target, embed_file(embedder, r.path, lite=args.lite, variants=tuple(args.variants), speaker=r.speaker))


# ----------------------------------------------------------------------------------------------
# probe: linear heads on the cached embeddings
# ----------------------------------------------------------------------------------------------
RAVDESS_FOLDS = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]
LAYER_SETS = {"L0": (0,), "L1": (1,), "L2": (2,), "L3": (3,), "L4": (4,), "out": (5,), "L2+L3": (2, 3),
              "L1+L2": (1, 2)}
# The nested grid: L0 (the convolutions) left out after a look at two RAVDESS folds scored it 14-24
# points under every block; concatenations left out for time (L2+L3 is in the test-side layer scan).
SEARCHED_LAYER_SETS = ("L1", "L2", "L3", "L4", "out")
CS = (0.001, 0.01, 0.1)
TEST_CONDITIONS = ("clean", "g-15", "g+15", "rgain", "degraded")
SELECT_CONDITIONS = ("clean", "rgain")  # inner validation scores the mean UA of these
RES_DIM = 512


class Table:
    """The cached embeddings of every file: per-window rows, per-file labels and speakers."""

    def __init__(self, data: Path = DATA):
        from ser_model.labels import LABEL_TO_INDEX

        # the files embedded so far (``embed --every`` leaves a subsample of some corpora)
        records = [r for r in records_of(data) if cache_path(r.path).exists()]
        self.records = records
        self.corpus = np.array([r.corpus for r in records])
        self.speaker = np.array([r.speaker for r in records])
        self.label = np.array([LABEL_TO_INDEX[r.label] for r in records])
        self.neutral_enrol = np.array([r.label == "neutral" and r.extra.get("emotion", "neutral") in
                                       ("neutral", "sk") for r in records])  # RAVDESS: neutral, not calm
        self.actor = np.array([int(r.speaker.split("-")[1]) if r.corpus == "ravdess" else 0 for r in records])
        folder = CACHE / "table"
        if not (folder / "done").exists():
            self._consolidate(folder)
        self.win_file = np.load(folder / "win_file.npy")
        self.arrays = {p.stem.replace("__", "/"): np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
        self.n_windows = np.bincount(self.win_file, minlength=len(records))
        self._cache: dict = {}

    def _consolidate(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.npy"):  # a key the files no longer all have must not outlive them
            old.unlink()
        parts: dict[str, list] = {}
        win_file = []
        for i, r in enumerate(tqdm(self.records, desc="loading embeddings", unit="file", mininterval=10)):
            with np.load(cache_path(r.path)) as z:
                for k in z.files:
                    if not k.startswith("meta/"):
                        parts.setdefault(k, []).append(z[k])
                win_file += [i] * len(z["raw/clean"])
        np.save(folder / "win_file.npy", np.array(win_file))
        for k, v in parts.items():
            if len(v) < len(self.records):  # a key the lite embeddings lack (res/, norm/): not usable
                continue
            np.save(folder / f"{k.replace('/', '__')}.npy", np.concatenate(v))
        (folder / "done").touch()

    def features(self, kind: str, variant: str, layers: tuple[int, ...], res: bool,
                 dynamics: bool = False) -> np.ndarray:
        """(windows, D) float32: the chosen Whisper layers' statistics (+ the same layers' dynamics,
        + Resemblyzer's)."""
        key = (kind, variant, layers, res, dynamics)
        if key not in self._cache:
            # a normalised window does not depend on a gain that does not clip: -15 dB is the clean one
            whisper = self.arrays[f"{kind}/{'clean' if (kind, variant) == ('norm', 'g-15') else variant}"]
            cols = np.concatenate([np.arange(k * STATS, (k + 1) * STATS) for k in layers])
            parts = [np.asarray(whisper[:, cols], dtype=np.float32)]
            if np.isnan(parts[0][:1]).any():
                raise ValueError(f"layers {layers} are not in the cache (embedded with --upto below them)")
            if dynamics:
                if kind != "raw" or f"dyn/{variant}" not in self.arrays:
                    raise ValueError("the dynamics statistics are cached for the raw variants of embeddings made "
                                     "since they were added (embed again)")
                dcols = np.concatenate([np.arange(k * W.D_MODEL, (k + 1) * W.D_MODEL) for k in layers])
                parts.append(np.asarray(self.arrays[f"dyn/{variant}"][:, dcols], dtype=np.float32))
            if res:
                parts.append(np.asarray(self.arrays[f"res/{variant}"], dtype=np.float32))
            self._cache[key] = np.concatenate(parts, axis=1)
            if len(self._cache) > 48:  # keep memory bounded
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def speech(self, variant: str) -> np.ndarray:
        return np.asarray(self.arrays[f"speech/{variant if variant in VAD_VARIANTS else 'clean'}"], dtype=bool)


@dataclass(frozen=True)
class Recipe:
    """One way of training a head: which rows, which level handling, which extra features."""

    name: str
    kind: str = "raw"  # "raw" features or per-window level-normalised "norm" features
    train_variants: tuple[str, ...] = ("clean", "aug1", "aug2")
    res: bool = False  # append Resemblyzer's layer-2 statistics
    dynamics: bool = False  # append each layer's dynamics: the std over time of its states' frame-to-frame change
    enrol: int = 0  # centre each speaker on k of their clips (not scored)
    enrol_from: str = "neutral"  # those k clips: "neutral" (a calm reference), "any" emotion (a session
    #                              so far) or "one-emotion" (a session spoken in one mood: a test-only stress)
    keep_raw: bool = False  # features [x, x - centre] instead of x - centre
    enrol_scale: float = 0  # > 0: divide x - centre by the enrolment clips' per-dimension spread, shrunk
    #                         toward the training speakers' pooled spread with this many pseudo-windows
    enrol_weight: float = 0  # > 0: the same shrinkage with this fixed weight on the speaker's own spread
    #                          (the app's form: a live session's window count is not the clips')
    session_draws: bool = False  # each training copy (train_variants) gets its own draw of session clips
    session_sizes: tuple[int, ...] = ()  # per training copy, how many session clips (default: enrol each);
    #                                      a speaker with fewer clips than that gets all of theirs
    enrol_upto: bool = False  # a speaker with fewer than enrol (but at least 2) clips is centred on all of them
    swap_copies: tuple[int, ...] = ()  # these training copies' raw statistics carry another training speaker's
    #                                    session centre (one of another corpus) in place of their own, so the
    #                                    raw part cannot tie a corpus's voices to its labels (``swap_centres``)
    corpus_shift_copies: tuple[int, ...] = ()  # these training copies' rows move, speaker by speaker, from their
    #                                            corpus's mean to another training corpus's (``shift_corpora``):
    #                                            a corpus's average sound stops telling the head a label
    label_sets: bool = False  # each row's softmax over its corpus's labels only, so a corpus without
    #                           disgust does not teach that voices like its own are never disgusted
    prior_shift: bool = False  # add to the head's logits the per-label shift that the inner held-out
    #                            sides' balanced cross-entropy asks for (``fit_prior_shift``)
    hidden: int = 0  # > 0: a one-hidden-layer network (ReLU, dropout) instead of the linear head; cs are then
    #                  its AdamW weight decays, each fitted from scratch (``fit_mlp``)
    nap: int = 0  # remove the k directions along which the training speakers' mean features differ most
    raw_weight: float = 1.0  # with keep_raw: the raw statistics' scale after standardisation (below 1: their
    #                          weights pay 1 / raw_weight^2 times the L2 penalty of the centred ones' weights)
    ravdess_only: bool = False  # RAVDESS CV: train on the 16 other actors only
    layer_sets: tuple[str, ...] = SEARCHED_LAYER_SETS
    cs: tuple[float, ...] = CS

    @property
    def divides_by_spread(self) -> bool:
        return bool(self.enrol_scale or self.enrol_weight)


def enrolment(table: Table, k: int, seed: int = 0, source: str = "neutral",
              upto: bool = False) -> tuple[np.ndarray, dict]:
    """Pick k enrolment files per speaker (``Recipe.enrol_from`` says which); returns (enrolment mask
    over files, speaker -> file indices). Speakers with fewer than k such clips get none (centred on
    the mean offset), or with ``upto`` all of them when they have two or more."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(table.records), bool)
    chosen = {}
    for spk in np.unique(table.speaker):
        own = table.speaker == spk
        if source == "neutral":
            own &= table.neutral_enrol
        elif source == "one-emotion":  # one label of this speaker, drawn at random among those with k clips
            labels = [lab for lab in np.unique(table.label[own]) if np.sum(own & (table.label == lab)) >= k]
            own &= table.label == (rng.choice(labels) if labels else -1)
        cands = np.flatnonzero(own)
        if upto and 2 <= len(cands) < k:
            chosen[spk] = cands
            mask[cands] = True
        elif len(cands) >= k:
            chosen[spk] = np.sort(rng.choice(cands, k, replace=False))
            mask[chosen[spk]] = True
    return mask, chosen


def fit_logistic(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, c: float,
                 init: torch.nn.Linear | None = None,
                 allowed: torch.Tensor | None = None) -> tuple[torch.nn.Linear, int]:
    """``ser_model.encoder.fit_linear``'s objective (weighted cross-entropy + ||W||^2 / (2 c n), as
    scikit-learn's C) and optimiser, started from ``init`` when given; returns (layer, evaluations).
    ``allowed`` (rows x classes, bool): each row's softmax runs over those classes only."""
    import torch.nn.functional as F

    from ser_model.labels import NUM_CLASSES

    w = w / w.sum()
    l2 = 1.0 / (2 * c * len(y))
    linear = torch.nn.Linear(x.shape[1], NUM_CLASSES)
    if init is not None:
        linear.load_state_dict(init.state_dict())
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=500, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        opt.zero_grad()
        logits = linear(x) if allowed is None else linear(x).masked_fill(~allowed, -1e4)
        loss = (F.cross_entropy(logits, y, reduction="none") * w).sum() + l2 * linear.weight.pow(2).sum()
        loss.backward()
        evals[0] += 1
        return loss

    opt.step(closure)
    return linear.eval(), evals[0]


def fit_mlp(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, hidden: int, decay: float,
            epochs: int = 8, batch: int = 256, dropout: float = 0.2, seed: int = 0) -> tuple[torch.nn.Module, int]:
    """A ``hidden``-unit ReLU network on the standardised rows: AdamW (lr 1e-3, weight decay ``decay``),
    mini-batches drawn in proportion to the rows' balanced weights (the linear head's weighting),
    ``epochs`` passes' worth of batches; returns (network in eval mode, optimiser steps)."""
    import torch.nn.functional as F

    from ser_model.labels import NUM_CLASSES

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Dropout(dropout), torch.nn.Linear(hidden, NUM_CLASSES))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=decay)
    steps = epochs * (len(y) // batch)
    order = torch.multinomial(w / w.sum(), steps * batch, replacement=True, generator=gen)
    net.train()
    with torch.enable_grad():  # also when called under no_grad (ship_whisper_head.py)
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), steps


def fit_prior_shift(logits: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 0.01) -> np.ndarray:
    """The 7 numbers added to a head's logits that minimise the weighted cross-entropy of held-out
    windows (+ ``l2`` ||b||^2): what a head learnt about label priors on its training corpora that
    does not carry to another corpus (the label it over-predicts there, the labels that corpus lacks)."""
    import torch.nn.functional as F

    x, t, wt = torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(y), torch.from_numpy(w / w.sum()).float()
    b = torch.zeros(x.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([b], lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(x + b, t, reduction="none") * wt).sum() + l2 * b.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return b.detach().numpy()


def shifted(model: tuple, shift: np.ndarray) -> tuple:
    """``model`` (linear, mean, std, evaluations) with ``shift`` added to its logits."""
    linear, *rest = model
    out = torch.nn.Linear(linear.in_features, linear.out_features)
    out.load_state_dict(linear.state_dict())
    with torch.no_grad():
        out.bias += torch.from_numpy(shift)
    return (out.eval(), *rest)


class Prober:
    """Fits and scores heads for recipes; caches the features' enrolment offsets and spreads."""

    def __init__(self, table: Table):
        self.t = table
        self._offsets: dict = {}
        self._nap = None  # (mean, std, U): the projection of the last fit's training side
        self._pool = None  # per-dimension within-speaker variance of the last fit's training speakers

    def rows(self, recipe: Recipe, variant: str, layers: tuple[int, ...], draw: int = 0) -> np.ndarray:
        """Per window, the head's input in ``variant``; ``draw`` picks the session clips (0: the
        protocol's, whose clips are not scored)."""
        x = self.t.features(recipe.kind, variant, layers, recipe.res, recipe.dynamics)
        if recipe.enrol:
            centred = x - self.offsets(recipe, variant, layers, draw)
            if recipe.divides_by_spread:
                var, n = self.spreads(recipe, variant, layers, draw)
                if recipe.enrol_weight:  # a speaker without two enrolment windows gets the pool
                    own = np.where(n > 1, recipe.enrol_weight, 0.0)[:, None]
                else:
                    own = n[:, None] / (n[:, None] + recipe.enrol_scale)
                centred = divide_by_spread(centred, var, self._pool, own).astype(x.dtype)
            x = np.concatenate([x, centred], axis=1) if recipe.keep_raw else centred
        if recipe.nap and self._nap is not None:
            mu, sd, u = self._nap
            z = (x - mu) / sd
            x = mu + (z - (z @ u) @ u.T) * sd
        return x

    def fit_nap(self, recipe: Recipe, train_files: np.ndarray, layers) -> None:
        """Nuisance attribute projection: standardise the training windows (clean), average them per
        speaker (each speaker spoke every emotion of their corpus, so these means carry voice,
        corpus and channel, not emotion), and keep the top ``recipe.nap`` principal directions of
        those means to be projected out of every row."""
        self._nap = None
        x = self.rows(recipe, "clean", layers)
        win = np.flatnonzero(np.isin(self.t.win_file, train_files))
        mu, sd = x[win].mean(0), x[win].std(0) + 1e-5
        z = (x[win] - mu) / sd
        spk = self.t.speaker[self.t.win_file[win]]
        means = np.stack([z[spk == s].mean(0) for s in np.unique(spk)])
        means -= means.mean(0)
        u = np.linalg.svd(means, full_matrices=False)[2][:recipe.nap].T
        self._nap = (mu.astype(np.float32), sd.astype(np.float32), u.astype(np.float32))

    def spreads(self, recipe: Recipe, variant: str, layers, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per window: the per-dimension variance of its speaker's enrolment windows in the same
        condition, and how many windows that is (0 and 0 for a speaker without enrolment clips, whom
        ``rows`` gives the pool)."""
        key = ("spread", recipe.kind, variant, layers, recipe.res, recipe.dynamics, recipe.enrol, recipe.enrol_from,
               recipe.enrol_upto, draw)
        if key not in self._offsets:
            x = self.t.features(recipe.kind, variant, layers, recipe.res, recipe.dynamics)
            _, chosen = enrolment(self.t, recipe.enrol, seed=draw, source=recipe.enrol_from, upto=recipe.enrol_upto)
            spk_of_win = self.t.speaker[self.t.win_file]
            var, n = np.zeros_like(x), np.zeros(len(x))
            for s, f in chosen.items():
                own = x[np.isin(self.t.win_file, f)]
                var[spk_of_win == s], n[spk_of_win == s] = own.var(0), len(own)
            self._remember(key, (var, n))
        return self._offsets[key]

    def fit_pool(self, recipe: Recipe, train_files: np.ndarray, layers) -> np.ndarray:
        """The training speakers' mean enrolment variance (clean), the prior of ``spreads``
        (``WhisperHead.session_pool``); kept for the following rows and returned."""
        var, n = self.spreads(recipe, "clean", layers)
        win = np.flatnonzero(np.isin(self.t.win_file, train_files) & (n > 1))
        self._pool = (var[win].mean(0) + 1e-6).astype(np.float32)
        return self._pool

    def offsets(self, recipe: Recipe, variant: str, layers, draw: int = 0) -> np.ndarray:
        """Per window: the mean features of its speaker's enrolment windows in the same condition."""
        key = (recipe.kind, variant, layers, recipe.res, recipe.dynamics, recipe.enrol, recipe.enrol_from,
               recipe.enrol_upto, draw)
        if key not in self._offsets:
            x = self.t.features(recipe.kind, variant, layers, recipe.res, recipe.dynamics)
            _, chosen = enrolment(self.t, recipe.enrol, seed=draw, source=recipe.enrol_from, upto=recipe.enrol_upto)
            per_spk = {s: x[np.isin(self.t.win_file, f)].mean(0) for s, f in chosen.items()}
            fallback = np.mean(list(per_spk.values()), axis=0)
            spk_of_win = self.t.speaker[self.t.win_file]
            out = np.empty_like(x)
            for s in np.unique(spk_of_win):
                out[spk_of_win == s] = per_spk.get(s, fallback)
            self._remember(key, out)
        return self._offsets[key]

    def _remember(self, key, value) -> None:
        """Cache a per-window array (offsets, spreads), forgetting the oldest beyond 24."""
        self._offsets[key] = value
        if len(self._offsets) > 24:
            self._offsets.pop(next(iter(self._offsets)))

    def fit(self, recipe: Recipe, train_files: np.ndarray, layers, cs) -> dict[float, tuple]:
        """Heads for every C in ``cs`` on the same standardised rows (each warm-started from the
        previous, more strongly regularised one): {C: (linear, mean, std, L-BFGS evaluations)}."""
        t = self.t
        if recipe.nap:
            self.fit_nap(recipe, train_files, layers)
        if recipe.divides_by_spread:
            self.fit_pool(recipe, train_files, layers)
        win = np.flatnonzero(np.isin(t.win_file, train_files))
        if recipe.session_sizes and len(recipe.session_sizes) != len(recipe.train_variants):
            raise ValueError(f"{recipe.name}: one session size per training copy")
        if recipe.hidden and recipe.label_sets:
            raise ValueError(f"{recipe.name}: the network head (hidden) has no label sets")
        copies = ([replace(recipe, enrol=k, enrol_upto=True) for k in recipe.session_sizes] if recipe.session_sizes
                  else [recipe] * len(recipe.train_variants))
        parts = []
        for i, (v, r) in enumerate(zip(recipe.train_variants, copies)):
            draw = i if recipe.session_draws else 0
            if i in recipe.swap_copies:
                parts.append(self.swap_centres(r, v, layers, draw, win, seed=i))
            elif i in recipe.corpus_shift_copies:
                parts.append(self.shift_corpora(self.rows(r, v, layers, draw)[win], win, seed=i))
            else:
                parts.append(self.rows(r, v, layers, draw)[win])
        x = np.concatenate(parts)
        w = np.tile(window_weights(t, train_files, t.win_file[win]), len(recipe.train_variants))
        y = np.tile(t.label[t.win_file[win]], len(recipe.train_variants))
        allowed = torch.from_numpy(np.tile(corpus_labels(t, train_files)[t.win_file[win]],
                                           (len(recipe.train_variants), 1))) if recipe.label_sets else None
        mean, std = x.mean(0), x.std(0) + 1e-5
        if recipe.keep_raw and recipe.raw_weight != 1.0:  # [raw, centred]: shrink the raw half's inputs
            std[:x.shape[1] // 2] /= recipe.raw_weight
        x = torch.from_numpy((x - mean) / std)
        models, init = {}, None
        for c in sorted(cs):
            if recipe.hidden:
                net, steps = fit_mlp(x.float(), torch.from_numpy(y),
                                     torch.from_numpy(w).float(), recipe.hidden, c)
                models[c] = (net, mean, std, steps)
                continue
            linear, evals = fit_logistic(x, torch.from_numpy(y), torch.from_numpy(w).float(), c, init, allowed)
            models[c] = (linear, mean, std, evals)
            init = linear
        return models

    def shift_corpora(self, x: np.ndarray, win: np.ndarray, seed: int) -> np.ndarray:
        """Rows ``x`` of windows ``win`` (a training side), each speaker's moved by the mean of another
        training corpus (drawn per speaker) minus the mean of its own."""
        t = self.t
        spk, corpus = t.speaker[t.win_file[win]], t.corpus[t.win_file[win]]
        names = np.unique(corpus)
        if len(names) < 2:
            return x
        means = {c: x[corpus == c].mean(0) for c in names}
        rng = np.random.default_rng([seed, 7])
        out = x.copy()
        for s in np.unique(spk):
            own = spk == s
            mine = corpus[np.flatnonzero(own)[0]]
            other = rng.choice([c for c in names if c != mine])
            out[own] += (means[other] - means[mine]).astype(x.dtype)
        return out

    def swap_centres(self, recipe: Recipe, variant: str, layers, draw: int, win: np.ndarray, seed: int) -> np.ndarray:
        """``rows`` of windows ``win`` (a training side) with the raw statistics moved from their speaker's
        session centre to that of another speaker of the side, drawn from another corpus (one per speaker)."""
        t = self.t
        x = self.rows(recipe, variant, layers, draw)[win].copy()
        centre = self.offsets(recipe, variant, layers, draw)[win]
        spk, corpus = t.speaker[t.win_file[win]], t.corpus[t.win_file[win]]
        speakers = np.unique(spk)
        first = {s: np.flatnonzero(spk == s)[0] for s in speakers}
        rng = np.random.default_rng([seed, draw])
        d = centre.shape[1]
        for s in speakers:
            others = [o for o in speakers if corpus[first[o]] != corpus[first[s]]] or [o for o in speakers if o != s]
            other = others[rng.integers(len(others))]
            own = spk == s
            x[own, :d] += centre[first[other]] - centre[first[s]]
        return x

    def predict(self, model, recipe: Recipe, files: np.ndarray, variant: str, layers, draw: int = 0) -> np.ndarray:
        """(files, 7) probabilities: the mean over each file's speech windows (all windows if none)."""
        logits, owner = self.window_logits(model, recipe, files, variant, layers, draw)
        return file_mean(torch.softmax(torch.from_numpy(logits), dim=1).numpy(), owner, files)

    @torch.inference_mode()
    def window_logits(self, model, recipe: Recipe, files: np.ndarray, variant: str, layers, draw: int = 0):
        """(windows, 7) logits of the windows of ``files`` that count (the speech windows, or all
        of a file without speech) and each one's file index."""
        linear, mean, std, _ = model
        win = self.kept_windows(files, variant)
        x = (self.rows(recipe, variant, layers, draw)[win] - mean) / std
        return linear(torch.from_numpy(x.astype(np.float32))).numpy(), self.t.win_file[win]

    def kept_windows(self, files: np.ndarray, variant: str) -> np.ndarray:
        """Indices of the windows of ``files`` that count: the speech windows, or all of a file
        without speech."""
        t = self.t
        win = np.flatnonzero(np.isin(t.win_file, files))
        speech = t.speech(variant)[win]
        owner = t.win_file[win]
        has_speech = np.bincount(owner, weights=speech, minlength=len(t.records)) > 0
        return win[speech | ~has_speech[owner]]

    def scored(self, recipe: Recipe, files: np.ndarray, draw: int = 0) -> np.ndarray:
        """The files that count: all but enrolment clips (of session draw ``draw``) when the recipe enrols."""
        if not recipe.enrol:
            return files
        mask, _ = enrolment(self.t, recipe.enrol, seed=draw, source=recipe.enrol_from)
        return files[~mask[files]]


def file_mean(probs: np.ndarray, owner: np.ndarray, files: np.ndarray) -> np.ndarray:
    """(files, 7): the mean of the rows of ``probs`` owned by each of ``files`` (``owner``: file index per row)."""
    n = max(int(owner.max()), int(files.max())) + 1
    sums = np.zeros((n, probs.shape[1]))
    np.add.at(sums, owner, probs)
    return sums[files] / np.bincount(owner, minlength=n)[files, None]


def score(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """UA over the classes present, WA, per-class recall, prediction shares and the collapse ratio."""
    from ser_model.labels import EMOTIONS
    from ser_model.metrics import compute_metrics

    pred = probs.argmax(1)
    m = compute_metrics(y_true.tolist(), pred.tolist(), EMOTIONS)
    present = [e for e in EMOTIONS if m["per_class"][e]["support"] > 0]
    true_share = {e: m["per_class"][e]["support"] / m["n"] for e in EMOTIONS}
    pred_share = {e: float(np.mean(pred == i)) for i, e in enumerate(EMOTIONS)}
    return {"ua": m["ua"], "wa": m["wa"], "n": m["n"],
            "recall": {e: m["per_class"][e]["recall"] for e in present},
            "pred_share": pred_share, "true_share": {e: true_share[e] for e in present},
            "collapse": max(pred_share.values()) / max(true_share.values()),
            "outside": float(sum(v for e, v in pred_share.items() if e not in present)),  # labels the set lacks
            "confusion": m["confusion"]}


class Splits:
    """Outer splits of a protocol, and the inner splits of each outer training side."""

    def __init__(self, table: Table):
        self.t = table

    def outer(self, protocol: str, ravdess_only: bool = False):
        """The outer splits of ``protocol`` ("loco" or "cv")."""
        return self.loco() if protocol == "loco" else self.ravdess_cv(ravdess_only)

    def loco(self):
        t = self.t
        for test in CORPORA:
            train = [c for c in CORPORA if c != test]
            inner = [(np.flatnonzero(np.isin(t.corpus, [c for c in train if c != v])), np.flatnonzero(t.corpus == v))
                     for v in train]
            yield test, np.flatnonzero(np.isin(t.corpus, train)), np.flatnonzero(t.corpus == test), inner

    def ravdess_cv(self, ravdess_only: bool):
        t = self.t
        rav = t.corpus == "ravdess"
        others = np.flatnonzero(~rav) if not ravdess_only else np.array([], int)
        for k, test_actors in enumerate(RAVDESS_FOLDS, 1):
            train_actors = [a for a in range(1, 21) if a not in test_actors]
            inner = []
            males, females = [a for a in train_actors if a % 2], [a for a in train_actors if not a % 2]
            for i in range(2):  # two inner folds of 4 men and 4 women each
                held = males[i::2] + females[i::2]
                fit_actors = [a for a in train_actors if a not in held]
                inner.append((np.concatenate([np.flatnonzero(rav & np.isin(t.actor, fit_actors)), others]),
                              np.flatnonzero(rav & np.isin(t.actor, held))))
            train = np.concatenate([np.flatnonzero(rav & np.isin(t.actor, train_actors)), others])
            yield f"fold{k}", train, np.flatnonzero(rav & np.isin(t.actor, test_actors)), inner


def run_protocol(prober: Prober, recipe: Recipe, protocol: str, log, layer_picks: dict | None = None) -> dict:
    """Nested: per outer split, every (layer set, C) is fitted on each inner training side and
    scored on its inner held-out part (mean UA over SELECT_CONDITIONS); the best is refitted on
    the outer training side and scored on the outer test side under every TEST_CONDITION.
    ``layer_picks`` (split name -> layer set, chosen by another recipe's inner validation) fixes
    the layer set per split, so only C is searched."""
    outer = Splits(prober.t).outer(protocol, recipe.ravdess_only)
    t = prober.t
    result = {"recipe": asdict(recipe), "protocol": protocol, "splits": []}
    for name, train, test, inner in outer:
        layer_sets = [layer_picks[name]] if layer_picks is not None else recipe.layer_sets
        grid = [(ls, c) for ls in layer_sets for c in recipe.cs]
        inner_uas: dict[tuple, list] = {}
        inner_logits: dict[tuple, list] = {}  # (layer set, C) -> [(logits, labels, weights)] per inner side
        for ls in layer_sets:
            for fit_files, val_files in inner:
                models = prober.fit(recipe, fit_files, LAYER_SETS[ls], recipe.cs)
                val = prober.scored(recipe, val_files)
                for c, model in models.items():
                    inner_uas.setdefault((ls, c), []).append(np.mean([
                        score(t.label[val], prober.predict(model, recipe, val, cond, LAYER_SETS[ls]))["ua"]
                        for cond in SELECT_CONDITIONS]))
                    if recipe.prior_shift:
                        inner_logits.setdefault((ls, c), []).extend(
                            balanced_windows(prober, model, recipe, val, cond, LAYER_SETS[ls]) for cond in SELECT_CONDITIONS)
        inner_scores = {f"{ls} C={c:g}": float(np.mean(inner_uas[(ls, c)])) for ls, c in grid}
        log(f"  {recipe.name} {protocol} {name}: inner " + ", ".join(f"{k} {v:.3f}" for k, v in inner_scores.items()))
        best = max(inner_scores, key=inner_scores.get)
        ls, c = grid[list(inner_scores).index(best)]
        model = prober.fit(recipe, train, LAYER_SETS[ls], [c])[c]
        shift = None
        if recipe.prior_shift:
            logits, y, w = (np.concatenate(parts) for parts in zip(*inner_logits[(ls, c)]))
            shift = fit_prior_shift(logits, y, w)
            model = shifted(model, shift)
            log(f"  {recipe.name} {protocol} {name}: prior shift " + " ".join(f"{v:+.2f}" for v in shift))
        scored_files = prober.scored(recipe, test)
        conds = {cond: score(t.label[scored_files], prober.predict(model, recipe, scored_files, cond, LAYER_SETS[ls]))
                 for cond in TEST_CONDITIONS}
        if recipe.enrol_from == "any":  # the same head when the session so far was spoken in one mood
            stress = replace(recipe, enrol_from="one-emotion")
            files = prober.scored(stress, test)
            conds["one-emotion"] = score(t.label[files], prober.predict(model, stress, files, "clean", LAYER_SETS[ls]))
        result["splits"].append({"test": name, "picked": best, "inner": inner_scores, "lbfgs_evals": model[3],
                                 **({"prior_shift": shift.tolist()} if shift is not None else {}),
                                 "n_test_files": int(len(scored_files)), "conditions": conds})
        log(f"{recipe.name} {protocol} {name}: picked {best}; UA clean {conds['clean']['ua']:.3f}, "
            f"-15 dB {conds['g-15']['ua']:.3f}, +15 dB {conds['g+15']['ua']:.3f}, random gain "
            f"{conds['rgain']['ua']:.3f}, degraded {conds['degraded']['ua']:.3f}, collapse {conds['clean']['collapse']:.2f}")
    result["summary"] = summarise(result["splits"])
    if recipe.enrol_from == "any":
        uas = [s["conditions"]["one-emotion"]["ua"] for s in result["splits"]]
        result["summary"]["one-emotion"] = {"ua_mean": float(np.mean(uas)), "ua": dict(zip(
            [s["test"] for s in result["splits"]], uas)), "collapse_max": float(max(
                s["conditions"]["one-emotion"]["collapse"] for s in result["splits"]))}
    return result


def balanced_windows(prober: Prober, model, recipe: Recipe, files: np.ndarray, variant: str, layers):
    """(logits, labels, weights) of the counted windows of ``files``: every corpus and every class
    within it the same mass, each file's mass shared by its windows (the training rows' weighting)."""
    logits, owner = prober.window_logits(model, recipe, files, variant, layers)
    return logits, prober.t.label[owner], window_weights(prober.t, files, owner)


def corpus_labels(table: Table, files: np.ndarray) -> np.ndarray:
    """(all files x classes, bool): per file, the labels its corpus has among ``files``."""
    from ser_model.labels import NUM_CLASSES

    has = {c: np.bincount(table.label[files[table.corpus[files] == c]], minlength=NUM_CLASSES) > 0
           for c in np.unique(table.corpus[files])}
    out = np.zeros((len(table.records), NUM_CLASSES), bool)
    for c, row in has.items():
        out[table.corpus == c] = row
    return out


def window_weights(table: Table, files: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per window (``owner``: its file, one of ``files``): the files' balanced weight shared by their windows."""
    from ser_model.data import balanced_weights

    file_w = np.zeros(len(table.records))
    file_w[files] = balanced_weights([table.records[i] for i in files])
    return file_w[owner] / np.bincount(owner, minlength=len(table.records))[owner]


def summarise(splits: list[dict]) -> dict:
    out = {}
    for cond in TEST_CONDITIONS:
        uas = [s["conditions"][cond]["ua"] for s in splits]
        was = [s["conditions"][cond]["wa"] for s in splits]
        out[cond] = {"ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas)), "ua_min": float(np.min(uas)),
                     "wa_mean": float(np.mean(was)), "ua": {s["test"]: s["conditions"][cond]["ua"] for s in splits},
                     "collapse_max": float(max(s["conditions"][cond]["collapse"] for s in splits)),
                     "outside_max": float(max(s["conditions"][cond]["outside"] for s in splits))}
    gains = [s["conditions"][c]["ua"] for s in splits for c in ("g-15", "clean", "g+15")]
    out["level_spread_max"] = float(max(max(s["conditions"][c]["ua"] for c in ("g-15", "clean", "g+15")) -
                                        min(s["conditions"][c]["ua"] for c in ("g-15", "clean", "g+15"))
                                        for s in splits)) if gains else None
    out["degraded_drop"] = out["clean"]["ua_mean"] - out["degraded"]["ua_mean"]
    return out


# the shipped session head's recipe ("sess4w+gainaug+sizes" below), which its variants start from
SIZES = Recipe("sess4w+gainaug+sizes", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
               train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), session_draws=True,
               session_sizes=(4, 8, 16, 4, 8))

# the session head with two more copies, each speaker's voice moved 2-4 semitones (pitch and formants
# together, the same shift for all of a speaker's files in a copy: ``voice_shifts``): more voices to
# learn what a change within one voice means; their sessions are of 4 and 8 clips, as the sizes' pairs
VOX = replace(SIZES, name="sess4w+gainaug+sizes+vox", train_variants=SIZES.train_variants + ("vox1", "vox2"),
              session_sizes=SIZES.session_sizes + (4, 8))

RECIPES = {  # stage 2, in the order they run: the layer set of each split is the one "base" picked there
    "norm": Recipe("norm", kind="norm"),
    "gainaug": Recipe("gainaug", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    "chan": Recipe("chan", train_variants=("clean", "aug1", "aug2", "chan1", "chan2")),
    "res": Recipe("res", res=True),
    "enrol2": Recipe("enrol2", enrol=2),
    "ravdess-only": Recipe("ravdess-only", ravdess_only=True),  # RAVDESS CV only
    "norm+gainaug": Recipe("norm+gainaug", kind="norm", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    "enrol4": Recipe("enrol4", enrol=4),
    "norm+chan": Recipe("norm+chan", kind="norm", train_variants=("clean", "aug1", "aug2", "chan1", "chan2")),
    "gainaug+chan": Recipe("gainaug+chan", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2", "chan1", "chan2")),
    "enrol2+gainaug": Recipe("enrol2+gainaug", enrol=2, train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    "nap10": Recipe("nap10", nap=10),
    "nap20": Recipe("nap20", nap=20),
    "nap40": Recipe("nap40", nap=40),
    "nap20+gainaug": Recipe("nap20+gainaug", nap=20, train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    # automatic adaptation: centre on 4 clips of any emotion (the session so far), keep the raw statistics too
    "sess4+gainaug": Recipe("sess4+gainaug", enrol=4, enrol_from="any", keep_raw=True,
                            train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    "sess4z+gainaug": Recipe("sess4z+gainaug", enrol=4, enrol_from="any", keep_raw=True, enrol_scale=10,
                             train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    # the same with a fixed weight of 0.4 on the session's own spread (sess4z's mean n / (n + 10): 0.38)
    "sess4w+gainaug": Recipe("sess4w+gainaug", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
                             train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    # the same on a C grid reaching two steps further toward strong regularisation: the inner
    # validation picked sess4w's smallest C (0.001) in 8 of its 9 splits, its score still rising
    "sess4w+gainaug+lowc": Recipe("sess4w+gainaug+lowc", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
                                  train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                                  cs=(0.0001, 0.0003) + CS),
    "gainaug+lowc": Recipe("gainaug+lowc", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                           cs=(0.0001, 0.0003) + CS),  # the plain head on the same extended grid
    # the session head, each training copy centred on another draw of four session clips
    "sess4w+gainaug+draws": Recipe("sess4w+gainaug+draws", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
                                   train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), session_draws=True),
    # the same, the copies' sessions of 4 to 16 clips, as a live session grows past its first 8 s
    "sess4w+gainaug+sizes": SIZES,
    "sess4w+gainaug+sizes+vox": VOX,
    # sizes with the raw statistics penalised harder than the centred ones (the raw part carries the
    # per-corpus offset behind the collapse; the centred part judges a voice against its own average)
    "sess4w+gainaug+sizes+raw50": replace(SIZES, name="sess4w+gainaug+sizes+raw50", raw_weight=0.5),
    "sess4w+gainaug+sizes+raw25": replace(SIZES, name="sess4w+gainaug+sizes+raw25", raw_weight=0.25),
    "sess4w+gainaug+sizes+raw70": replace(SIZES, name="sess4w+gainaug+sizes+raw70", raw_weight=0.7),
    # the same with sessions twice as long (8 to 32 clips), for a live session that runs for minutes
    "sess4w+gainaug+sizes32": Recipe("sess4w+gainaug+sizes32", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
                                     train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), session_draws=True,
                                     session_sizes=(8, 16, 32, 8, 16)),
    # a mix of the two: the clean and gain copies on sizes' short sessions (4), the noisy copies and the
    # second gain copy on sizes32's long ones, for a head that keeps reading the raw statistics in short
    # or one-mood sessions and meets long sessions too
    "sess4w+gainaug+sizesmix": Recipe("sess4w+gainaug+sizesmix", enrol=4, enrol_from="any", keep_raw=True,
                                      enrol_weight=0.4, train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                                      session_draws=True, session_sizes=(4, 16, 32, 4, 16)),
    # sizes with the raw statistics of the second noisy copy and the second gain copy moved to another
    # corpus's speaker's session centre: the raw part's corpus offset (TESS: disgust) has nothing to learn from
    "sess4w+gainaug+sizes+swap": Recipe("sess4w+gainaug+sizes+swap", enrol=4, enrol_from="any", keep_raw=True,
                                        enrol_weight=0.4, train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                                        session_draws=True, session_sizes=(4, 8, 16, 4, 8), swap_copies=(2, 4)),
    # the same, each row's softmax over its corpus's labels only (Recipe.label_sets): the raw statistics'
    # logits carried a corpus offset (TESS held out: +5.2 on disgust, which only RAVDESS had in training)
    "sess4w+gainaug+draws+sets": Recipe("sess4w+gainaug+draws+sets", enrol=4, enrol_from="any", keep_raw=True,
                                        enrol_weight=0.4, train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                                        session_draws=True, label_sets=True),
    # the plain head with two of its five training copies moved, speaker by speaker, from their corpus's mean to
    # another training corpus's: the TESS collapse (disgust) comes through a corpus's average sound
    "gainaug+cshift": Recipe("gainaug+cshift", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                             corpus_shift_copies=(2, 4)),
    "gainaug+sets": Recipe("gainaug+sets", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), label_sets=True),
    # the plain head as a one-hidden-layer network (256 ReLU units, dropout 0.2, AdamW weight decay 0.01, 8
    # epochs): whether a non-linear head on the same statistics lifts the plain head's RAVDESS CV
    "gainaug+mlp": Recipe("gainaug+mlp", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                          hidden=256, cs=(0.01,)),
    # the plain head's pair with two more training copies whose voice is moved 2-4 semitones up or down
    # (pitch and formants together, ``speaker_shift``): more voices per emotion for a head that has no session
    "gainaug+spk": Recipe("gainaug+spk", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2", "spk1", "spk2")),
    "gainaug+mlp+spk": Recipe("gainaug+mlp+spk", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2", "spk1", "spk2"),
                              hidden=256, cs=(0.01,)),
    # the plain head's pair with each layer's dynamics beside its mean and std (``Recipe.dynamics``): how fast
    # every state moves from one 20 ms frame to the next, which a recording's fixed level, equaliser and
    # voice shift less than they shift the mean
    "gainaug+dyn": Recipe("gainaug+dyn", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), dynamics=True),
    "gainaug+mlp+dyn": Recipe("gainaug+mlp+dyn", train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"),
                              hidden=256, cs=(0.01,), dynamics=True),
    # the shipped session recipe with the dynamics too (centred and spread-divided with the rest)
    "sess4w+gainaug+sizes+dyn": replace(SIZES, name="sess4w+gainaug+sizes+dyn", dynamics=True),
    # the session head's rows read by the same network (256 ReLU units, ...): the session half of the
    # plain mix (scripts/plain_mix_probe.py --session)
    "sess4w+gainaug+sizes+mlp": replace(SIZES, name="sess4w+gainaug+sizes+mlp", hidden=256, cs=(0.01,)),
    # the session head with the prior shift learnt on the inner held-out sides (fit_prior_shift)
    "sess4w+gainaug+shift": Recipe("sess4w+gainaug+shift", enrol=4, enrol_from="any", keep_raw=True, enrol_weight=0.4,
                                   train_variants=("clean", "aug1", "aug2", "rgain", "rgain2"), prior_shift=True),
    "sess4c+gainaug": Recipe("sess4c+gainaug", enrol=4, enrol_from="any",
                             train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
    "enrol2r+gainaug": Recipe("enrol2r+gainaug", enrol=2, keep_raw=True,
                              train_variants=("clean", "aug1", "aug2", "rgain", "rgain2")),
}
BASE = Recipe("base")
PROBE_DIR = REPORTS / "whisper_probe"


def cmd_probe(args) -> None:
    torch.set_num_threads(1)
    limit_blas_threads()
    table = Table(args.data)
    prober = Prober(table)
    PROBE_DIR.mkdir(parents=True, exist_ok=True)
    log_file = open(PROBE_DIR / f"log_{args.protocol}.txt", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    def run(recipe: Recipe, picks=None) -> dict:
        if args.layer:  # every split uses this layer set; only C is searched
            picks = defaultdict(lambda: args.layer)
        suffix = f"_{args.layer}" if args.layer else ""
        out = PROBE_DIR / f"{recipe.name}{suffix}_{args.protocol}.json"
        if out.exists() and not args.force:
            return json.loads(out.read_text())
        t0 = time.time()
        result = run_protocol(prober, recipe, args.protocol, log, picks)
        result["seconds"] = time.time() - t0
        result["command"] = (f"python scripts/whisper_probe.py probe --protocol {args.protocol} --only {recipe.name}"
                             + (f" --layer {args.layer}" if args.layer else ""))
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    base = run(BASE) if not args.layer or "base" in args.only else None
    picks = {s["test"]: s["picked"].split(" ")[0] for s in base["splits"]} if base else None
    for name, recipe in RECIPES.items():
        if (args.only and name not in args.only) or (recipe.ravdess_only and args.protocol != "cv"):
            continue
        run(recipe, picks)
    if base and ("layer-scan" in args.only or not args.only):
        layer_scan(prober, base, args.protocol, log)


def layer_scan(prober: Prober, base: dict, protocol: str, log) -> None:
    """FOR INSIGHT ONLY, looked at on the test side: the base recipe's outer UA with every layer set
    (C as the inner validation picked it for that split)."""
    out = PROBE_DIR / f"layer-scan_{protocol}.json"
    if out.exists():
        return
    outer = Splits(prober.t).outer(protocol)
    scan_result = {"note": "test-side figures, for insight only: not a selection", "splits": {}}
    for (name, train, test, _), s in zip(outer, base["splits"]):
        c = float(s["picked"].split("C=")[1])
        row = {}
        for ls in LAYER_SETS:
            model = prober.fit(BASE, train, LAYER_SETS[ls], [c])[c]
            row[ls] = score(prober.t.label[test], prober.predict(model, BASE, test, "clean", LAYER_SETS[ls]))["ua"]
        scan_result["splits"][name] = row
        log(f"layer scan {protocol} {name} (C={c:g}, test-side): " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    out.write_text(json.dumps(scan_result, indent=1) + "\n")


SELECTABLE = ("base", "norm", "gainaug", "norm+gainaug", "chan", "norm+chan", "gainaug+chan", "res", "ravdess-only",
              "nap10", "nap20", "nap40", "nap20+gainaug")


def load_runs(protocol: str) -> dict[str, dict]:
    runs = {}
    for path in sorted(PROBE_DIR.glob(f"*_{protocol}.json")):
        name = path.stem.rsplit("_", 1)[0]
        run = json.loads(path.read_text())
        if name != "layer-scan" and "summary" in run:  # session_mix_probe.py keeps its own format here
            runs[name] = run
    return runs


def nested_recipe_choice(runs: dict[str, dict], names: list[str] | None = None) -> dict:
    """Per outer split, the recipe whose best inner score is highest (never the test side), and
    that recipe's outer scores: the figure to quote for "the recipe the probe would ship".
    ``names``: the candidates (default: the SELECTABLE ones that ran)."""
    names = names or [n for n in SELECTABLE if n in runs]
    splits = []
    for i, s in enumerate(runs[names[0]]["splits"]):
        best = max(names, key=lambda n: max(runs[n]["splits"][i]["inner"].values()))
        chosen = runs[best]["splits"][i]
        splits.append({**chosen, "recipe": best})
    return {"splits": splits, "summary": summarise(splits), "candidates": names}


def row_of(name: str, run: dict) -> dict:
    sm = run["summary"]
    return {"recipe": name, "ua": sm["clean"]["ua_mean"], "ua_std": sm["clean"]["ua_std"],
            "ua_min": sm["clean"]["ua_min"], "wa": sm["clean"]["wa_mean"], "per_test": sm["clean"]["ua"],
            "collapse_max": sm["clean"]["collapse_max"], "outside_max": sm["clean"]["outside_max"],
            "ua_-15dB": sm["g-15"]["ua_mean"], "ua_+15dB": sm["g+15"]["ua_mean"],
            "level_spread_max": sm["level_spread_max"], "ua_random_gain": sm["rgain"]["ua_mean"],
            "ua_degraded": sm["degraded"]["ua_mean"], "degraded_drop": sm["degraded_drop"],
            "picked": [s.get("recipe", "") + (" " if s.get("recipe") else "") + s["picked"] for s in run["splits"]]}


def summary_line(row: dict) -> str:
    """A ``row_of`` row in one line: mean UA, worst collapse, the three levels, the degraded drop."""
    return (f"mean UA {100 * row['ua']:.1f}, collapse max {row['collapse_max']:.2f}, -15/0/+15 dB "
            f"{100 * row['ua_-15dB']:.1f} / {100 * row['ua']:.1f} / {100 * row['ua_+15dB']:.1f}, "
            f"degraded drop {100 * row['degraded_drop']:+.1f}")


def add_one_mood(result: dict) -> str:
    """Put the mean UA of the splits' one-mood sessions (condition ``one-emotion``) in ``result``'s
    summary and return it as the end of a ``summary_line`` ("" when the run scored none)."""
    uas = [s["conditions"]["one-emotion"]["ua"] for s in result["splits"] if "one-emotion" in s["conditions"]]
    if not uas:
        return ""
    result["summary"]["one-emotion"] = {"ua_mean": float(np.mean(uas))}
    return f", one mood {100 * np.mean(uas):.1f}"


def coverage_shift(table: "Table", train: np.ndarray) -> np.ndarray:
    """log(k / K) per label: k of the K corpora of ``train`` have files of it (the coverage prior)."""
    from ser_model.labels import NUM_CLASSES

    corpora = np.unique(table.corpus[train])
    has = np.array([np.bincount(table.label[train[table.corpus[train] == c]], minlength=NUM_CLASSES) > 0
                    for c in corpora])
    return np.log(has.sum(0) / len(corpora))


def saved_picks(run: str, protocol: str) -> dict[str, str]:
    """Per outer split, the "layers C=c" a saved nested run (file stem ``run``) picked on its training side."""
    saved = json.loads((PROBE_DIR / f"{run}_{protocol}.json").read_text())
    return {s["test"]: s["picked"] for s in saved["splits"]}


def protocol_prober(description: str, flags: dict[str, str] | None = None) -> tuple[argparse.Namespace, "Prober"]:
    """What the side probes (``scripts/*_probe.py``) start with: ``--protocol loco|cv`` (and the
    on/off ``flags``, option -> help) from the command line, one thread, and a prober on the cached table."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--protocol", choices=("loco", "cv"), default="loco")
    for flag, help_text in (flags or {}).items():
        ap.add_argument(flag, action="store_true", help=help_text)
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads()
    return args, Prober(Table())


def cmd_report(args) -> None:
    out = {"note": "linear probes on frozen Whisper tiny.en states; every layer, C (and, in the nested row, "
                   "recipe) chosen on the training side only. UA over each test set's own classes, 7-way "
                   "prediction, a file = mean of its speech windows' probabilities.", "protocols": {}}
    table = Table(DATA)
    level = np.asarray(table.arrays["level/clean"])
    out["median_window_active_level_dbfs"] = {c: float(np.median(level[table.corpus[table.win_file] == c]))
                                              for c in CORPORA}
    print("median active level of the app's windows (dBFS):", out["median_window_active_level_dbfs"])
    for protocol in ("loco", "cv"):
        runs = load_runs(protocol)
        if "base" not in runs:
            continue
        rows = [row_of(n, r) for n, r in runs.items()]
        nested = nested_recipe_choice(runs)
        rows.append(row_of("nested choice of recipe", nested))
        scan_path = PROBE_DIR / f"layer-scan_{protocol}.json"
        out["protocols"][protocol] = {"rows": rows, "nested_choice": nested,
                                      "layer_scan_test_side": json.loads(scan_path.read_text()) if scan_path.exists() else None}
        print(f"\n{protocol}: UA % (clean) mean +- std [min] | per test | collapse max | -15/0/+15 dB | "
              f"random gain | degraded (drop)")
        for r in rows:
            per = " ".join(f"{k} {100 * v:.1f}" for k, v in r["per_test"].items())
            print(f"| {r['recipe']:<24} | {100 * r['ua']:.1f} +- {100 * r['ua_std']:.1f} [{100 * r['ua_min']:.1f}] | "
                  f"{per} | {r['collapse_max']:.2f} | {100 * r['ua_-15dB']:.1f} / {100 * r['ua']:.1f} / "
                  f"{100 * r['ua_+15dB']:.1f} (spread {100 * r['level_spread_max']:.1f}) | {100 * r['ua_random_gain']:.1f} | "
                  f"{100 * r['ua_degraded']:.1f} ({100 * r['degraded_drop']:+.1f}) |")
        plot_protocol(protocol, runs, nested)
    out["shipped_model_loco_ua"] = {"ua": shipped_loco(), "source": str(SHIPPED_LOCO.relative_to(ROOT)),
                                    "note": "trained on RAVDESS 1-20 only, so it has no RAVDESS row"}
    target = REPORTS / "whisper_probe.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"report: {target}")


def cmd_choose(args) -> None:
    """The nested choice among saved runs (e.g. one recipe at several raw weights): per outer split
    the candidate with the best inner score, scored on that split's test side."""
    runs = load_runs(args.protocol)
    names = [f"{n}_{args.layer}" if args.layer else n for n in args.among]
    missing = [n for n in names if n not in runs]
    if missing:
        raise SystemExit(f"no saved {args.protocol} run for: {', '.join(missing)}")
    unscored = [n for n in names if not all(s["inner"] for s in runs[n]["splits"])]
    if unscored:
        raise SystemExit(f"no inner scores to choose by in: {', '.join(unscored)}")
    nested = nested_recipe_choice(runs, names)
    for s in nested["splits"]:
        c = s["conditions"]["clean"]
        print(f"{s['test']}: {s['recipe']} ({s['picked']}) UA {100 * c['ua']:.1f}, collapse {c['collapse']:.2f}")
    print(summary_line(row_of("nested choice", nested)))


SHIPPED_LOCO = ROOT / "reports" / "loco_shipped_attn_cnn_encoder.json"


def shipped_loco() -> dict[str, float]:
    """The shipped model's clean UA per held-out corpus (``ser_model.protocols loco``), if run."""
    if not SHIPPED_LOCO.exists():
        return {}
    d = json.loads(SHIPPED_LOCO.read_text())
    return dict(zip(d["holdouts"], d["clean"]["ua"]["values"]))


def plot_protocol(protocol: str, runs: dict, nested: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ser_model.labels import EMOTIONS

    names = list(runs) + ["nested"]
    data = {**runs, "nested": nested}
    tests = [s["test"] for s in runs["base"]["splits"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(names)
    palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]  # one colour per recipe
    colour = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    for i, n in enumerate(names):
        uas = [100 * s["conditions"]["clean"]["ua"] for s in data[n]["splits"]]
        axes[0].bar(np.arange(len(tests)) + i * width, uas, width, label=n, color=colour[n])
    baseline = shipped_loco() if protocol == "loco" else {}
    label = "shipped model (trained on RAVDESS only)"
    for j, test in enumerate(tests):
        if test in baseline:
            axes[0].hlines(100 * baseline[test], j - width / 2, j + 0.8 - width / 2, colors="k", linestyles="--",
                           label=label)
            label = None
    axes[0].set_xticks(np.arange(len(tests)) + 0.4 - width / 2, tests)
    axes[0].set_ylabel("UA % (held-out, clean)")
    axes[0].set_title(f"Whisper tiny.en probes, {protocol}: every choice nested")
    for n in names:
        sm = data[n]["summary"]
        axes[1].plot([-15, 0, 15], [100 * sm[c]["ua_mean"] for c in ("g-15", "clean", "g+15")], marker="o",
                     color=colour[n])
    axes[1].set_xlabel("gain of the test files (dB, clipped)")
    axes[1].set_ylabel("mean UA %")
    axes[1].set_title("level invariance (target: within 3 points)")
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, ncol=4, loc="upper center",
               bbox_to_anchor=(0.5, 0.0))  # one legend for both panels, below them
    fig.savefig(REPORTS / f"whisper_probe_{protocol}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    # prediction shares of the nested choice against the true shares, per test set
    fig, axes = plt.subplots(1, len(tests), figsize=(3.2 * len(tests), 3.4), sharey=True)
    for ax, s in zip(np.atleast_1d(axes), nested["splits"]):
        c = s["conditions"]["clean"]
        ax.bar(np.arange(7) - 0.2, [100 * c["true_share"].get(e, 0) for e in EMOTIONS], 0.4, label="true")
        ax.bar(np.arange(7) + 0.2, [100 * c["pred_share"][e] for e in EMOTIONS], 0.4, label="predicted")
        ax.set_xticks(range(7), [e[:3] for e in EMOTIONS], fontsize=8)
        ax.set_title(f"{s['test']}: {s['recipe']}\nUA {100 * c['ua']:.1f}, collapse {c['collapse']:.2f}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("% of files")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(REPORTS / f"whisper_probe_{protocol}_shares.png", dpi=110)
    plt.close(fig)


def timed(fn, repeats: int) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_window() -> np.ndarray:
    """bench/model_bench.py's test window: a 3 s modulated 160 Hz tone with a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def cmd_cost(args) -> None:
    """Per-window cost on one thread: today's shipped model (as bench/model_bench.py times it) and
    the Whisper front end up to each block, eager and TorchScript, batch 1 and 16."""
    import platform
    import statistics

    from ser_model import Recognizer

    torch.set_num_threads(1)
    limit_blas_threads()
    window = bench_window()
    rec = Recognizer.load(args.weights)
    rows = []

    def add(name, ms, batch):
        rows.append({"step": name, "batch": batch, "median_ms_per_window": statistics.median(ms) / batch,
                     "p90_ms_per_window": float(np.percentile(ms, 90)) / batch})
        print(f"| {name:<58} | {batch:>5} | {rows[-1]['median_ms_per_window']:8.2f} | "
              f"{rows[-1]['p90_ms_per_window']:8.2f} |", flush=True)

    print(f"| {'step':<58} | batch | median ms/window | p90 |")
    with torch.inference_mode():
        for batch in (1, 16):
            add("shipped model: predict_proba (features + network, as used)",
                timed(lambda: rec.predict_proba([window] * batch), args.repeats), batch)
        add("trim_silence alone", timed(lambda: trim_silence(window), args.repeats), 1)
        for depth in (1, 2, 3, 4):
            encoder = W.load_pretrained(W.WhisperEncoder((depth,)))
            for batch in (1, 16):
                x = torch.from_numpy(np.stack([window] * batch))
                add(f"whisper log-mel + {depth} block(s) + pooling, eager",
                    timed(lambda: W.pool(encoder(x)), args.repeats), batch)
                fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(encoder, x)))
                add(f"whisper log-mel + {depth} block(s) + pooling, TorchScript",
                    timed(lambda: W.pool(fast(x)), args.repeats), batch)
            if depth == 2:
                add("trim + whisper log-mel + 2 blocks + pooling, TorchScript (as an app would)",
                    timed(lambda: W.pool(fast(torch.from_numpy(trim_silence(window))[None])), args.repeats), 1)
    result = {"rows": rows, "machine": platform.processor() or platform.machine(), "threads": 1,
              "repeats": args.repeats, "weights": str(rec.meta.get("file")),
              "command": "python scripts/whisper_probe.py cost"}
    out = REPORTS / "whisper_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"report: {out}")


def cmd_redraw(args) -> None:
    """A session recipe's outer heads (the C its nested run picked, refitted) scored over several
    draws of the held-out speakers' session clips: one draw of four clips per speaker is a noisy
    test where a corpus has two speakers (TESS)."""
    torch.set_num_threads(1)
    limit_blas_threads()
    prober = Prober(Table(args.data))
    t = prober.t
    suffix = f"_{args.layer}" if args.layer else ""
    for name in args.only:
        recipe = RECIPES[name]
        run = json.loads((PROBE_DIR / f"{name}{suffix}_{args.protocol}.json").read_text())
        picked = {s["test"]: s["picked"] for s in run["splits"]}
        outer = Splits(t).outer(args.protocol, recipe.ravdess_only)
        out = {"recipe": name, "protocol": args.protocol, "draws": args.draws,
               "session_clips": args.clips or recipe.enrol, "splits": {}}
        heard = replace(recipe, enrol=args.clips or recipe.enrol)  # the session at test time
        for split, train, test, _ in outer:
            ls, c = picked[split].split(" C=")
            model = prober.fit(recipe, train, LAYER_SETS[ls], [float(c)])[float(c)]
            rows = []
            for d in range(args.draws):
                files = prober.scored(heard, test, d)
                sc = score(t.label[files], prober.predict(model, heard, files, "clean", LAYER_SETS[ls], d))
                rows.append({"ua": sc["ua"], "collapse": sc["collapse"], "pred_share": sc["pred_share"]})
            uas = [r["ua"] for r in rows]
            out["splits"][split] = {"picked": picked[split], "ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas)),
                                    "collapse_mean": float(np.mean([r["collapse"] for r in rows])), "draws": rows}
            print(f"{name} {split}: UA over {args.draws} draws {100 * np.mean(uas):.1f} +- {100 * np.std(uas):.1f} "
                  f"({' '.join(f'{100 * u:.1f}' for u in uas)}), collapse {out['splits'][split]['collapse_mean']:.2f}",
                  flush=True)
        out["ua_mean"] = float(np.mean([v["ua_mean"] for v in out["splits"].values()]))
        out["command"] = (f"python scripts/whisper_probe.py redraw --protocol {args.protocol} --only {name}"
                          + (f" --layer {args.layer}" if args.layer else "") + f" --draws {args.draws}"
                          + (f" --clips {args.clips}" if args.clips else ""))
        clips = f"_clips{args.clips}" if args.clips else ""
        (PROBE_DIR / f"{name}{suffix}_{args.protocol}_redraw{clips}.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"{name}: mean UA over splits {100 * out['ua_mean']:.1f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="cache embeddings of every file")
    e.add_argument("--data", type=Path, default=DATA)
    e.add_argument("--part", default="0/1", help="k/n: embed every n-th file from the k-th (parallel runs)")
    e.add_argument("--every", type=int, default=1, help="embed every n-th of the files left, per corpus")
    e.add_argument("--lite", action="store_true", help="raw Whisper statistics only (no Resemblyzer, no norm)")
    e.add_argument("--add-norm", action="store_true", help="add the level-normalised statistics to --lite files")
    e.add_argument("--add", action="store_true", help="add --variants to cached files that lack them (raw, --upto)")
    e.add_argument("--upto", type=int, default=LAYERS[-1], choices=LAYERS,
                   help="compute Whisper layers 0..UPTO only (2: the shipped heads' blocks, under half the cost)")
    e.add_argument("--variants", nargs="+", default=list(RAW_VARIANTS), choices=RAW_VARIANTS,
                   help="the variants to embed (the chan ones only serve the chan recipes)")
    e.set_defaults(fn=cmd_embed)
    pr = sub.add_parser("probe", help="nested LOCO or RAVDESS CV of linear heads on the cached embeddings")
    pr.add_argument("--data", type=Path, default=DATA)
    pr.add_argument("--protocol", choices=("loco", "cv"), required=True)
    pr.add_argument("--only", nargs="*", default=[], help="recipes to run (base always runs first)")
    pr.add_argument("--force", action="store_true", help="rerun recipes whose report exists")
    pr.add_argument("--layer", choices=list(LAYER_SETS), help="fix the layer set of every split (only C is searched)")
    pr.set_defaults(fn=cmd_probe)
    rd = sub.add_parser("redraw", help="a session recipe's outer heads scored over several session draws")
    rd.add_argument("--data", type=Path, default=DATA)
    rd.add_argument("--protocol", choices=("loco", "cv"), required=True)
    rd.add_argument("--only", nargs="+", required=True, help="session recipes with a saved nested run")
    rd.add_argument("--layer", choices=list(LAYER_SETS))
    rd.add_argument("--draws", type=int, default=5)
    rd.add_argument("--clips", type=int, help="session clips heard before, at test time (default: the recipe's)")
    rd.set_defaults(fn=cmd_redraw)
    rp = sub.add_parser("report", help="tables, nested recipe choice and plots from the probe runs")
    rp.set_defaults(fn=cmd_report)
    ch = sub.add_parser("choose", help="the nested choice among saved runs, per outer split by inner score")
    ch.add_argument("--protocol", choices=("loco", "cv"), required=True)
    ch.add_argument("--layer", choices=list(LAYER_SETS), help="the runs' fixed layer set (their file suffix)")
    ch.add_argument("--among", nargs="+", required=True, help="recipes with a saved nested run")
    ch.set_defaults(fn=cmd_choose)
    c = sub.add_parser("cost", help="per-window cost on one thread")
    c.add_argument("--weights", default=str(ROOT / "weights"))
    c.add_argument("--repeats", type=int, default=30)
    c.set_defaults(fn=cmd_cost)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
