"""Prediction API used by the CLI, the HTTP upload and the live stream.

>>> rec = Recognizer.load("weights")
>>> result = rec.predict_file("clip.wav")
>>> result.label, result.probabilities["angry"], result.segments[0].speech
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import vad
from .audio import SAMPLE_RATE, AudioSource, load_audio, pad_or_trim, to_model_rate
from .checkpoint import load_checkpoint
from .features import TRIM_STEP_S, encoder_log_mel, handcrafted, log_mel, trim_silence
from .labels import EMOTIONS

WINDOW_S = 3.0  # analysis window
HOP_S = 0.5  # step between windows (also the live stream's hop)
MIN_WINDOW_S = 0.5  # shorter windows are zero-padded to this
MIN_SPEECH_S = 0.3  # a window needs this much detected speech to count as speech
MIN_PROFILE_SPEECH_S = 2.0  # a voice profile needs at least this much detected speech
SESSION_MIN_SPEECH_S = 8.0  # the session head judges a voice once this much of its speech was heard ...
SESSION_BLEND_S = 4.0  # ... and from this much on, before that, the mean of its and the plain head's probabilities
SESSION_BLEND_SHARE = 0.5  # the session head's share of that mean (docs/results.md: the blended hand-over)
PREDICT_CHUNK = 16  # windows analysed together: bounds the network's activations (a few MB per window)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


class ProfileError(ValueError):
    """The reference audio cannot make a voice profile (too little speech, or the model cannot adapt)."""


@dataclass
class Segment:
    start: float
    end: float
    speech: bool
    label: str | None
    probabilities: dict[str, float] | None


@dataclass
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    duration: float
    segments: list[Segment] = field(default_factory=list)
    speech_detected: bool = True
    uncertain: bool = False  # the calibrated confidence is below the model's threshold (``uncertain_below``)
    adapted: bool = False  # predicted relative to the speaker's calm voice (a voice profile was given)
    session: bool = False  # predicted relative to the recording's own speech (the session head)

    def to_dict(self) -> dict:
        """The JSON object of the HTTP and CLI contracts."""
        return asdict(self)


def session_share(speech_s: float) -> float | None:
    """The session head's share of a window's answer once a voice has spoken ``speech_s`` seconds:
    None before ``SESSION_BLEND_S`` (the plain head alone), ``SESSION_BLEND_SHARE`` until
    ``SESSION_MIN_SPEECH_S`` (the hand-over, blended with the plain head), 1 from then on."""
    if speech_s < SESSION_BLEND_S:
        return None
    return 1.0 if speech_s >= SESSION_MIN_SPEECH_S else SESSION_BLEND_SHARE


def window_starts(duration_s: float, window_s: float = WINDOW_S, hop_s: float = HOP_S) -> list[float]:
    """Window start times covering ``duration_s``; the last window ends at the end of the audio."""
    if duration_s <= window_s:
        return [0.0]
    starts = list(np.arange(0.0, duration_s - window_s, hop_s))
    return [round(float(s), 4) for s in starts] + [round(duration_s - window_s, 4)]


class _Statistics(torch.nn.Module):
    """A model with a session head, as its runner sees it: windows in, pooled statistics out (the
    heads then run on those, ``Recognizer.heads``)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def runner_of(model: torch.nn.Module, config) -> torch.nn.Module:
    """What ``Recognizer.runner`` computes, eager: logits, or statistics for a model with a session head."""
    return _Statistics(model).eval() if getattr(config, "session", False) else model


PRECISIONS = ("auto", "float32", "bfloat16")
BF16_MIN_SPEEDUP = 1.2  # "auto" runs bfloat16 only when it is at least this much faster here
BF16_TOLERANCE = 5e-2  # a bfloat16 copy must match float32 within this (absolute and relative) on a check batch


class _Autocast(torch.nn.Module):
    """``model`` with its matrix products and convolutions in bfloat16 (PyTorch's CPU autocast:
    reductions, normalisations and the spectrogram stay in float32); float32 out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(x).float()


def choose_precision(float32_ms: float, bfloat16_ms: float | None) -> str:
    """``auto``'s choice from the two copies' measured times per batch (None: no bfloat16 copy)."""
    if bfloat16_ms is not None and float32_ms >= BF16_MIN_SPEEDUP * bfloat16_ms:
        return "bfloat16"
    return "float32"


def _median_ms(fn, x: torch.Tensor, repeats: int = 3) -> float:
    import time

    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def optimize_for_cpu(model: torch.nn.Module, config, precision: str = "auto") -> tuple[torch.nn.Module, str]:
    """A TorchScript copy of ``runner_of(model)`` frozen for CPU inference (batch norm folded into
    the convolutions, oneDNN kernels), and the precision it computes in: the shipped two-network
    model runs a 3 s window 2.5 times faster than eager PyTorch.

    ``precision``: ``float32``; ``bfloat16`` (matrix products in bfloat16, where this CPU has
    bfloat16 kernels: 1.4-1.8 times faster on an AVX-512 BF16 core, probabilities within about 0.01
    of float32's, docs/benchmarks.md); ``auto`` times both copies on two 3 s windows here and keeps
    bfloat16 only if it is at least ``BF16_MIN_SPEEDUP`` times faster (0.7 s more to load). A copy
    that fails to trace or disagrees with the eager model is not used: float32 then, and at worst
    the eager model."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = runner_of(model, config)

    def example(batch: int, frames: int) -> torch.Tensor:
        if config.input_kind == "handcrafted":
            return torch.randn(batch, config.n_features)
        if config.input_kind == "waveform":
            return 0.1 * torch.randn(batch, frames * 160)
        return torch.randn(batch, config.input_bands, frames)

    def traced(module: torch.nn.Module, tolerance: float) -> torch.nn.Module | None:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # check_trace=False: its own check re-ran the model many times (20 s of a 30 s start-up); ours follows
                fast = torch.jit.optimize_for_inference(torch.jit.freeze(
                    torch.jit.trace(module.eval(), example(2, 301), check_trace=False)))
                check = example(3, 173)  # another batch size and length than the traced ones
                for _ in range(2):  # TorchScript specializes on its first calls: make them here, not on a user's
                    fast(check)
                if torch.allclose(fast(check), model(check), atol=tolerance, rtol=tolerance):
                    return fast
        except Exception:  # noqa: BLE001 - any tracing failure just means this copy is not used
            pass
        return None

    model.eval()
    bf16 = traced(_Autocast(model), BF16_TOLERANCE) if precision != "float32" and bfloat16_kernels() else None
    if precision == "bfloat16" and bf16 is not None:
        return bf16, "bfloat16"
    fp32 = traced(model, 1e-4)
    if bf16 is not None and fp32 is not None:  # auto
        batch = example(2, 301)  # two 3 s windows: enough to tell 1.8x from emulation, a third of a second
        with torch.no_grad():
            if choose_precision(_median_ms(fp32, batch), _median_ms(bf16, batch)) == "bfloat16":
                return bf16, "bfloat16"
    return (fp32 if fp32 is not None else model), "float32"


def bfloat16_kernels() -> bool:
    """Whether oneDNN runs bfloat16 on this CPU at all (AVX-512 and newer). Only AVX-512 BF16 and AMX
    do it natively; on other AVX-512 CPUs it is emulated and slower than float32, which ``auto``'s
    timing finds."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - a build without that query: time it instead
        return True


_OPTIMIZED: dict[tuple, tuple] = {}  # (checkpoint file, mtime, size, precision asked) -> (optimized model, precision)


class Recognizer:
    """A trained emotion model plus the windowing and VAD around it.

    ``model`` stays the eager network; predictions run through ``self.runner``, its optimized
    copy on CPU (see ``optimize_for_cpu``; ``optimize=False`` keeps the eager one), computing in
    ``self.precision``.
    """

    def __init__(self, model: torch.nn.Module, config, meta: dict | None = None, device: str = "cpu",
                 optimize: bool = True, cache_key: tuple | None = None, precision: str = "auto"):
        self.model, self.config, self.meta, self.device = model.eval(), config, meta or {}, device
        self.labels = EMOTIONS
        # Confidence under which a label is reported as uncertain: chosen on held-out corpora when
        # the model was calibrated (its meta); None for models without a calibrated threshold.
        self.uncertain_below: float | None = self.meta.get("uncertain_below")
        self.runner, self.precision = runner_of(self.model, config), "float32"
        if optimize and device == "cpu":
            if cache_key is None:
                self.runner, self.precision = optimize_for_cpu(self.model, config, precision)
            else:  # one optimized copy per checkpoint file, precision asked and process
                key = (*cache_key, precision)
                if key not in _OPTIMIZED:
                    _OPTIMIZED[key] = optimize_for_cpu(self.model, config, precision)
                self.runner, self.precision = _OPTIMIZED[key]
        elif precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS, device: str = "cpu", optimize: bool = True,
             precision: str = "auto") -> "Recognizer":
        """Load a weights folder's default model, or one checkpoint file; ``precision`` as
        ``optimize_for_cpu`` takes it (CPU only)."""
        model, config, meta = load_checkpoint(path, device)
        stat = Path(meta["file"]).stat()
        return cls(model, config, meta, device, optimize, cache_key=(meta["file"], stat.st_mtime_ns, stat.st_size),
                   precision=precision)

    def warm_up(self):
        """Run every window length the model is given (multiples of ``TRIM_STEP_S`` from 0.5 s to
        3 s) and the file VAD once, so the first user does not pay for lazy imports and
        TorchScript's first calls on new shapes."""
        rng = np.random.default_rng(0)
        step = int(round((TRIM_STEP_S or HOP_S) * SAMPLE_RATE))  # exact trims (0): the stream's hops
        windows = [(0.1 * rng.standard_normal(n)).astype(np.float32)
                   for n in range(int(MIN_WINDOW_S * SAMPLE_RATE), int(WINDOW_S * SAMPLE_RATE) + 1, step)]
        for batch in (1, 2):
            for w in windows:
                self.predict_proba([w] * batch)
        vad.speech_intervals(windows[-1])

    def features(self, wave: np.ndarray) -> np.ndarray:
        """The model's input features for one 16 kHz window (silence at its edges trimmed, to a
        multiple of ``TRIM_STEP_S``)."""
        wave = trim_silence(wave, TRIM_STEP_S)
        if len(wave) < MIN_WINDOW_S * SAMPLE_RATE:
            wave = pad_or_trim(wave, int(MIN_WINDOW_S * SAMPLE_RATE))
        if self.config.input_kind == "waveform":
            return np.ascontiguousarray(wave, dtype=np.float32)
        if self.config.input_kind == "handcrafted":
            return handcrafted(wave)
        if not self.config.uses_encoder:
            return log_mel(wave)
        encoder = encoder_log_mel(wave)
        return encoder if self.config.arch == "encoder_head" else np.concatenate([log_mel(wave), encoder])

    @property
    def adapts(self) -> bool:
        """Whether this model can adapt to a voice (``voice_profile``, ``profiles=``)."""
        return bool(getattr(self.config, "adaptation", False))

    @torch.inference_mode()
    def voice_profile(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """A voice's reference for adaptation: the mean statistics of the speech windows of a few
        seconds of that voice speaking calmly. Raises ProfileError without enough speech."""
        if not self.adapts:
            raise ProfileError("this model cannot adapt to a voice")
        _, windows, is_speech, speech = self._windows(to_model_rate(waveform, sample_rate))
        if sum(e - s for s, e in speech) < MIN_PROFILE_SPEECH_S:
            raise ProfileError(f"a voice profile needs at least {MIN_PROFILE_SPEECH_S:g} s of speech")
        windows = [w for w, sp in zip(windows, is_speech) if sp][:PREDICT_CHUNK]
        return self._statistics(windows).mean(axis=0).astype(np.float32)

    def _statistics(self, windows: list[np.ndarray]) -> np.ndarray:
        """(N, D) pooled statistics of the windows, which the heads read: the runner's output for a
        model with a session head (traced), else the model's ``embed``."""
        embed = self.runner if self.sessions else self.model.embed
        return self._by_shape(windows, self.model.stats_size, lambda x, idx: embed(x))

    def _windows(self, wave: np.ndarray) -> tuple[list, list, list[bool], list]:
        """A 16 kHz waveform's analysis windows: their (start, end) spans, the windows (views, no
        copies), whether each holds speech, and the VAD's speech intervals."""
        duration = len(wave) / SAMPLE_RATE
        speech = vad.speech_intervals(wave)
        spans = [(s, min(duration, s + WINDOW_S)) for s in window_starts(duration)]
        windows = [wave[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans]
        is_speech = [vad.speech_overlap(speech, s, e) >= min(MIN_SPEECH_S, 0.5 * (e - s)) for s, e in spans]
        return spans, windows, is_speech, speech

    def _by_shape(self, windows: list[np.ndarray], width: int, fn) -> np.ndarray:
        """(N, width) rows of ``fn(batch, idx)`` over the windows' features, batched by equal shape
        (``idx``: the batch's positions in ``windows``), in the windows' order."""
        feats = [self.features(w) for w in windows]
        out = np.zeros((len(feats), width), dtype=np.float32)
        by_shape: dict[tuple, list[int]] = {}
        for i, f in enumerate(feats):
            by_shape.setdefault(f.shape, []).append(i)
        for idx in by_shape.values():
            batch = torch.from_numpy(np.stack([feats[i] for i in idx])).to(self.device)
            out[idx] = fn(batch, idx).cpu().numpy()
        return out

    @property
    def sessions(self) -> bool:
        """Whether this model judges a voice relative to its own speech so far (``centres=``)."""
        return bool(getattr(self.config, "session", False))

    @torch.inference_mode()
    def predict_proba(self, windows: list[np.ndarray], profiles: list | None = None) -> np.ndarray:
        """(N, 7) class probabilities for N 16 kHz windows (batched by equal length); a window
        whose ``profiles`` entry is a voice profile is judged relative to that voice."""
        return self.analyse(windows, profiles)[0]

    @torch.inference_mode()
    def analyse(self, windows: list[np.ndarray], profiles: list | None = None,
                centres: list | None = None, shares: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 7) probabilities, and for a model with a session head the windows' session
        statistics (``WhisperHead.session_statistics``; else None), from which a caller makes the
        ``centres`` of later windows: their mean over the same voice's speech so far. A window
        with a profile is judged by the calm-voice head, else one with a centre by the session
        head, else by the plain head. ``shares``: per window with a centre, the session head's share
        of its answer (below 1: the mean with the plain head's probabilities, weighted so; None: 1)."""
        profiled = [i for i, p in enumerate(profiles or []) if p is not None]
        if profiled and not self.adapts:
            raise ProfileError("this model cannot adapt to a voice")
        if not self.sessions:
            if not profiled:
                return self._by_shape(windows, len(self.labels), lambda x, idx: torch.softmax(self.runner(x), dim=-1)), None
            return self.heads(self._statistics(windows), profiles), None
        stats = self._statistics(windows)
        session_stats = self.model.session_statistics(torch.from_numpy(stats).to(self.device)).cpu().numpy()
        return self.heads(stats, profiles, centres, shares), session_stats

    @torch.inference_mode()
    def heads(self, stats: np.ndarray, profiles: list | None = None, centres: list | None = None,
              shares: list | None = None) -> np.ndarray:
        """(N, 7) probabilities of windows' (N, D) statistics, each by the head its profile or
        centre calls for (see ``analyse``)."""
        x = torch.from_numpy(np.ascontiguousarray(stats, dtype=np.float32)).to(self.device)
        logits = self.model.plain(x)
        blended = [i for i, share in enumerate(shares or []) if share is not None and share < 1 and self.sessions
                   and centres is not None and centres[i] is not None and (profiles is None or profiles[i] is None)]
        plain = torch.softmax(logits[blended], dim=-1) if blended else None  # before the session head replaces them
        for given, head in ((centres, self.model.in_session if self.sessions else None),
                            (profiles, self.model.adapted if self.adapts else None)):  # a profile wins
            rows = [i for i, v in enumerate(given or []) if v is not None]
            if rows and head is not None:
                refs = torch.from_numpy(np.stack([np.asarray(given[i], dtype=np.float32) for i in rows])).to(self.device)
                logits[rows] = head(x[rows], refs)
        probs = torch.softmax(logits, dim=-1)
        if blended:  # the hand-over: part session head, part plain head
            w = torch.tensor([float(shares[i]) for i in blended], device=probs.device)[:, None]
            probs[blended] = w * probs[blended] + (1 - w) * plain
        return probs.cpu().numpy()

    def predict(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                profile: np.ndarray | None = None) -> Prediction:
        """Emotion over time of a waveform (any rate; (frames,) or (frames, channels)); with a
        ``profile`` (``voice_profile`` of the same voice), relative to that voice."""
        wave = to_model_rate(waveform, sample_rate)
        duration = len(wave) / SAMPLE_RATE
        spans, windows, is_speech, speech = self._windows(wave)
        # A chunk of windows at a time, so a 10-minute file never holds 1,200 windows' features or activations at once.
        chunks = [self.analyse(windows[i:i + PREDICT_CHUNK], None if profile is None else [profile] * len(windows[i:i + PREDICT_CHUNK]))
                  for i in range(0, len(windows), PREDICT_CHUNK)]
        probs = np.concatenate([p for p, _ in chunks])
        # Enough speech and no calm-voice profile: every window judged relative to the recording's own
        # speech; with less (SESSION_BLEND_S or more), by the mean of that and the plain head.
        share = (session_share(sum(e - s for s, e in speech))
                 if profile is None and self.sessions and any(is_speech) else None)
        session = share == 1.0
        if share is not None:
            stats = np.concatenate([st for _, st in chunks])  # session statistics: the raw ones come first
            probs = self.heads(stats[:, :self.model.stats_size], centres=[stats[is_speech].mean(axis=0)] * len(stats),
                               shares=[share] * len(stats))
        segments = [Segment(round(s, 3), round(e, 3), sp, self.labels[int(p.argmax())] if sp else None,
                            self._as_dict(p) if sp else None)
                    for (s, e), sp, p in zip(spans, is_speech, probs)]
        chosen = probs[is_speech] if any(is_speech) else probs  # no speech found: judge the whole audio
        overall = chosen.mean(axis=0)
        best = int(overall.argmax())
        threshold = self.uncertain_threshold(profile is not None, session)
        uncertain = threshold is not None and float(overall[best]) < threshold
        return Prediction(self.labels[best], float(overall[best]), self._as_dict(overall), round(duration, 3),
                          segments, speech_detected=any(is_speech), uncertain=uncertain, adapted=profile is not None,
                          session=session)

    def uncertain_threshold(self, adapted: bool = False, session: bool = False) -> float | None:
        """The calibrated confidence under which a label is reported uncertain (None: never), for
        the head that judged it."""
        if adapted and self.meta.get("uncertain_below_adapted") is not None:
            return self.meta["uncertain_below_adapted"]
        if session and not adapted and self.meta.get("uncertain_below_session") is not None:
            return self.meta["uncertain_below_session"]
        return self.uncertain_below

    def predict_file(self, source: AudioSource, reference: AudioSource | None = None) -> Prediction:
        """Decode a file (path, bytes or binary file object) and predict it; ``reference``: a few
        seconds of the same voice speaking calmly, to adapt to it. Raises AudioError/ProfileError."""
        profile = None if reference is None else self.voice_profile(load_audio(reference))
        return self.predict(load_audio(source), SAMPLE_RATE, profile)

    def _as_dict(self, probs: np.ndarray) -> dict[str, float]:
        return {label: round(float(p), 5) for label, p in zip(self.labels, probs)}
