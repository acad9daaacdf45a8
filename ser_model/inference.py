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
from .features import encoder_log_mel, handcrafted, log_mel, trim_silence
from .labels import EMOTIONS

WINDOW_S = 3.0  # analysis window
HOP_S = 0.5  # step between windows (also the live stream's hop)
MIN_WINDOW_S = 0.5  # shorter windows are zero-padded to this
MIN_SPEECH_S = 0.3  # a window needs this much detected speech to count as speech
MIN_PROFILE_SPEECH_S = 2.0  # a voice profile needs at least this much detected speech
SESSION_MIN_SPEECH_S = 8.0  # the session head judges a voice once this much of its speech was heard
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


def optimize_for_cpu(model: torch.nn.Module, config) -> torch.nn.Module:
    """A TorchScript copy of ``runner_of(model)`` frozen for CPU inference (batch norm folded into
    the convolutions, oneDNN kernels): the shipped two-network model runs a 3 s window 2.5 times
    faster than eager PyTorch. Returns the eager one if tracing fails or the copy disagrees."""
    model = runner_of(model, config)
    def example(batch: int, frames: int) -> torch.Tensor:
        if config.input_kind == "handcrafted":
            return torch.randn(batch, config.n_features)
        if config.input_kind == "waveform":
            return 0.1 * torch.randn(batch, frames * 160)
        return torch.randn(batch, config.input_bands, frames)

    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # check_trace=False: its own check re-ran the model many times (20 s of a 30 s start-up); ours follows
            fast = torch.jit.optimize_for_inference(torch.jit.freeze(
                torch.jit.trace(model, example(2, 301), check_trace=False)))
            check = example(3, 173)  # another batch size and length than the traced ones
            for _ in range(2):  # TorchScript specializes on its first calls: make them here, not on a user's
                fast(check)
            if torch.allclose(fast(check), model(check), atol=1e-4, rtol=1e-4):
                return fast
    except Exception:  # noqa: BLE001 - any tracing failure just means the eager model is used
        pass
    return model


_OPTIMIZED: dict[tuple, torch.nn.Module] = {}  # (checkpoint file, mtime, size) -> optimized model


class Recognizer:
    """A trained emotion model plus the windowing and VAD around it.

    ``model`` stays the eager network; predictions run through ``self.runner``, its optimized
    copy on CPU (see ``optimize_for_cpu``; ``optimize=False`` keeps the eager one).
    """

    def __init__(self, model: torch.nn.Module, config, meta: dict | None = None, device: str = "cpu",
                 optimize: bool = True, cache_key: tuple | None = None):
        self.model, self.config, self.meta, self.device = model.eval(), config, meta or {}, device
        self.labels = EMOTIONS
        # Confidence under which a label is reported as uncertain: chosen on held-out corpora when
        # the model was calibrated (its meta); None for models without a calibrated threshold.
        self.uncertain_below: float | None = self.meta.get("uncertain_below")
        self.runner = runner_of(self.model, config)
        if optimize and device == "cpu":
            if cache_key is None:
                self.runner = optimize_for_cpu(self.model, config)
            else:  # one optimized copy per checkpoint file and process
                if cache_key not in _OPTIMIZED:
                    _OPTIMIZED[cache_key] = optimize_for_cpu(self.model, config)
                self.runner = _OPTIMIZED[cache_key]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS, device: str = "cpu", optimize: bool = True) -> "Recognizer":
        """Load a weights folder's default model, or one checkpoint file."""
        model, config, meta = load_checkpoint(path, device)
        stat = Path(meta["file"]).stat()
        return cls(model, config, meta, device, optimize, cache_key=(meta["file"], stat.st_mtime_ns, stat.st_size))

    def warm_up(self):
        """Run every window length a live stream sends (0.5 s to 3 s) and the file VAD once, so the
        first user does not pay for lazy imports and TorchScript's first calls on new shapes."""
        rng = np.random.default_rng(0)
        windows = [(0.1 * rng.standard_normal(int(k * HOP_S * SAMPLE_RATE))).astype(np.float32)
                   for k in range(1, int(WINDOW_S / HOP_S) + 1)]
        for batch in (1, 2):
            for w in windows:
                self.predict_proba([w] * batch)
        vad.speech_intervals(windows[-1])

    def features(self, wave: np.ndarray) -> np.ndarray:
        """The model's input features for one 16 kHz window (silence at its edges trimmed)."""
        wave = trim_silence(wave)
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
                centres: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 7) probabilities, and for a model with a session head the windows' session
        statistics (``WhisperHead.session_statistics``; else None), from which a caller makes the
        ``centres`` of later windows: their mean over the same voice's speech so far. A window
        with a profile is judged by the calm-voice head, else one with a centre by the session
        head, else by the plain head."""
        profiled = [i for i, p in enumerate(profiles or []) if p is not None]
        if profiled and not self.adapts:
            raise ProfileError("this model cannot adapt to a voice")
        if not self.sessions:
            if not profiled:
                return self._by_shape(windows, len(self.labels), lambda x, idx: torch.softmax(self.runner(x), dim=-1)), None
            return self.heads(self._statistics(windows), profiles), None
        stats = self._statistics(windows)
        session_stats = self.model.session_statistics(torch.from_numpy(stats).to(self.device)).cpu().numpy()
        return self.heads(stats, profiles, centres), session_stats

    @torch.inference_mode()
    def heads(self, stats: np.ndarray, profiles: list | None = None, centres: list | None = None) -> np.ndarray:
        """(N, 7) probabilities of windows' (N, D) statistics, each by the head its profile or
        centre calls for (see ``analyse``)."""
        x = torch.from_numpy(np.ascontiguousarray(stats, dtype=np.float32)).to(self.device)
        logits = self.model.plain(x)
        for given, head in ((centres, self.model.in_session if self.sessions else None),
                            (profiles, self.model.adapted if self.adapts else None)):  # a profile wins
            rows = [i for i, v in enumerate(given or []) if v is not None]
            if rows and head is not None:
                refs = torch.from_numpy(np.stack([np.asarray(given[i], dtype=np.float32) for i in rows])).to(self.device)
                logits[rows] = head(x[rows], refs)
        return torch.softmax(logits, dim=-1).cpu().numpy()

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
        # Enough speech and no calm-voice profile: every window judged relative to the recording's own speech.
        session = (profile is None and self.sessions and any(is_speech)
                   and sum(e - s for s, e in speech) >= SESSION_MIN_SPEECH_S)
        if session:
            stats = np.concatenate([st for _, st in chunks])  # session statistics: the raw ones come first
            probs = self.heads(stats[:, :self.model.stats_size], centres=[stats[is_speech].mean(axis=0)] * len(stats))
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
