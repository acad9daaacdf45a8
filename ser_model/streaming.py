"""Live-stream logic, free of any web framework: PCM in, window jobs out, smoothed results back.

A :class:`StreamSession` per connection turns 16-bit PCM frames at the client's
rate into 16 kHz audio (soxr streaming resampler, so chunk boundaries leave no
trace), runs Silero VAD on it chunk by chunk (512 samples, state kept across
frames) and, each time another ``HOP_S`` of audio has arrived, yields a
:class:`WindowJob` with the last ``WINDOW_S`` seconds. Whoever runs the model
(``Recognizer.predict_proba``, batched across streams) hands the probabilities
back to :meth:`StreamSession.apply`, which smooths them into the ``emotion``
event of the contract; :meth:`StreamSession.summary` gives the ``summary`` event.

``feed`` is ``receive`` (check and resample a frame) followed by :func:`advance`
(judge the new audio with the VAD, cut the due windows); a server calls them from
different threads so that :func:`advance` judges many streams in one model call.

Threading: ``receive`` from one thread at a time (the connection's), ``advance`` and
``flush`` from one thread at a time (the same or another), ``apply``/``summary``
from a third (the inference worker).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from . import silero
from .audio import SAMPLE_RATE
from .inference import HOP_S, MIN_SPEECH_S, WINDOW_S, session_share
from .labels import EMOTIONS
from .vad import SPEECH_THRESHOLD

MIN_STREAM_RATE, MAX_STREAM_RATE = 8000, 48000
MAX_FRAME_S = 1.0  # longest accepted PCM frame
VAD_CHUNK = silero.CHUNK  # Silero's window at 16 kHz (32 ms)
VAD_CONTEXT = silero.CONTEXT  # samples of the previous chunk it sees
VAD_OFF_MARGIN = 0.15  # speech ends below SPEECH_THRESHOLD - this (Silero's hysteresis)
TAIL_CONTEXT_S = 0.1  # input kept to approximate the resampler's not-yet-released output
FINAL_WINDOW_MIN_S = 0.1  # at stop, analyse a last partial hop if at least this long
SMOOTHING = 0.5  # weight of the newest window in the moving average
LABEL_MARGIN = 0.1  # a new label must lead the shown one by this much ...
LABEL_PERSIST_HOPS = 3  # ... or stay on top for this many speech hops
RESET_AFTER_SILENCE_S = 2.0  # forget the average after this much silence

MAX_UNJUDGED_S = 5.0  # audio received but not yet judged by the VAD, per stream, at most (default)
HOP = int(HOP_S * SAMPLE_RATE)  # 8000 samples
WINDOW = int(WINDOW_S * SAMPLE_RATE)  # 48000 samples
KEEP_AUDIO = WINDOW + 2 * SAMPLE_RATE  # a stream's latest audio kept for its windows and calibration


class StreamError(ValueError):
    """Bad input on a stream; ``code`` is the contract's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class WindowJob:
    """One analysis window: ``audio`` is 16 kHz float32 covering [t0, t1] seconds of the stream."""

    t0: float
    t1: float
    speech: bool
    audio: np.ndarray
    profile: np.ndarray | None = None  # the stream's voice profile, once calibrated (adapted window)
    centre: np.ndarray | None = None  # the mean statistics of the stream's speech so far (session head)
    session_share: float = 1.0  # the session head's share of the answer (below 1: blended with the plain head's)


def warm_up_streaming():
    """Load the VAD's weights and run a stream's path once (the first user's first frame
    should not wait for them)."""
    session = StreamSession(48000)
    session.feed((np.random.default_rng(0).standard_normal(48000) * 3000).astype("<i2").tobytes())
    session.flush()


class StreamingVAD:
    """Silero VAD over a 16 kHz stream: per-stream recurrent state, one shared model.

    ``push(samples)`` returns one speech flag per completed 512-sample chunk, with
    Silero's hysteresis (on at ``threshold``, off below ``threshold - 0.15``);
    :func:`judge_streams` does the same for many streams in one pass of the model.
    """

    def __init__(self, threshold: float = SPEECH_THRESHOLD):
        self.threshold = threshold
        self.reset_states()

    def reset_states(self):
        self._state = np.zeros((2, 1, silero.STATE), dtype=np.float32)
        self._context = np.zeros((1, VAD_CONTEXT), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.triggered = False

    def probability(self, chunk: np.ndarray) -> float:
        """Speech probability of the next 512-sample chunk (advances the state)."""
        return float(_probabilities([self], [chunk[None, :]])[0][0])

    def push(self, samples: np.ndarray) -> list[bool]:
        return judge_streams([self], [samples])[0]

    def _chunks(self, samples: np.ndarray) -> np.ndarray:
        """The completed chunks of what was pending plus ``samples`` (n x 512); keeps the rest."""
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // VAD_CHUNK
        self._pending = buf[n * VAD_CHUNK:].astype(np.float32, copy=True)
        return np.asarray(buf[:n * VAD_CHUNK], dtype=np.float32).reshape(n, VAD_CHUNK)

    def _flags(self, probs: np.ndarray) -> list[bool]:
        flags = []
        for p in probs:
            if p >= self.threshold:
                self.triggered = True
            elif p < self.threshold - VAD_OFF_MARGIN:
                self.triggered = False
            flags.append(self.triggered)
        return flags


def judge_streams(vads: list[StreamingVAD], samples: list[np.ndarray]) -> list[list[bool]]:
    """Advance each stream's VAD over its new samples; returns each stream's chunk flags.

    The streams share one pass of the model: every chunk of every stream through its convolutions
    at once, then its LSTM chunk position by chunk position (``ser_model.silero``).
    """
    chunks = [vad._chunks(x) for vad, x in zip(vads, samples)]
    return [vad._flags(p) for vad, p in zip(vads, _probabilities(vads, chunks))]


def _probabilities(vads: list[StreamingVAD], chunks: list[np.ndarray]) -> list[np.ndarray]:
    """Silero's speech probability of each stream's chunks (n_i x 512), in order: all chunks of
    all streams in one pass (``ser_model.silero``)."""
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))  # rows at position k: a prefix
    counts = [len(chunks[i]) for i in order]
    if not counts or not counts[0]:
        return [np.empty(0, dtype=np.float32) for _ in chunks]
    # Each chunk with its context, the previous chunk's end (the stream's kept context for its first).
    live = [j for j, n in enumerate(counts) if n]
    first = np.cumsum([0] + counts[:-1])  # stream j's rows, stream by stream: first[j] + 0..n-1
    by_stream = np.empty((sum(counts), VAD_CONTEXT + VAD_CHUNK), dtype=np.float32)
    by_stream[:, VAD_CONTEXT:] = np.concatenate([chunks[order[j]] for j in live])
    by_stream[1:, :VAD_CONTEXT] = by_stream[:-1, -VAD_CONTEXT:]
    by_stream[first[live], :VAD_CONTEXT] = np.concatenate([vads[order[j]]._context for j in live])
    # Then position by position, the streams of each in ``order``: stream j's k-th chunk is row at[k] + j.
    per_position = [sum(1 for n in counts if n > k) for k in range(counts[0])]
    at = np.cumsum([0] + per_position[:-1])
    x = by_stream[np.concatenate([first[:r] + k for k, r in enumerate(per_position)])]
    state = np.concatenate([vads[i]._state for i in order], axis=1)  # (2, streams, 128)
    probs, state = silero.speech_probabilities(x, per_position, state)
    result = [None] * len(chunks)
    for j, i in enumerate(order):
        result[i] = probs[at[:counts[j]] + j]
        if counts[j]:
            vads[i]._state = state[:, j:j + 1].copy()
            vads[i]._context = chunks[i][-1:, -VAD_CONTEXT:].copy()
    return result


class StreamResampler:
    """Incremental resampling to 16 kHz, identical to resampling the whole signal at once.

    soxr holds back a few ms of output (its filter delay); :meth:`provisional`
    approximates those samples from the latest input so a window can end exactly
    where the input ends.
    """

    def __init__(self, rate: int):
        self.rate = rate
        self._stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._block = rate // math.gcd(rate, SAMPLE_RATE)  # input samples per whole number of outputs
        self._history = np.zeros(0, dtype=np.float32)  # the latest input, for provisional()
        self.n_in = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """Resample the next input frame; returns the output soxr releases now."""
        self.n_in += len(x)
        if self._stream is None:
            return x
        keep = int(TAIL_CONTEXT_S * self.rate) + self.rate // 2 + self._block
        self._history = np.concatenate([self._history, x])[-keep:]
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """End of input: the output still held back."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def provisional(self, n_out: int, count: int) -> np.ndarray:
        """``count`` output samples after the ``n_out`` released ones, from the input so far."""
        import soxr

        first = int(n_out * self.rate / SAMPLE_RATE - TAIL_CONTEXT_S * self.rate)  # input index, with context
        start = max(0, first // self._block * self._block, self.n_in - len(self._history))
        start = -(-start // self._block) * self._block  # on the output grid: no phase shift
        seg = self._history[len(self._history) - (self.n_in - start):]
        if not len(seg):
            return np.zeros(count, dtype=np.float32)
        y = soxr.resample(seg, self.rate, SAMPLE_RATE, quality="HQ")
        seg_start = (self.n_in - len(seg)) * SAMPLE_RATE / self.rate  # in output samples
        j0 = max(0, int(round(n_out - seg_start)))
        tail = y[j0:j0 + count]
        return np.pad(tail, (0, count - len(tail))).astype(np.float32)


class StreamSession:
    """State of one live stream: resampler, VAD, window schedule and result smoothing."""

    def __init__(self, sample_rate: int, max_duration_s: float | None = None,
                 labels: tuple[str, ...] = EMOTIONS, uncertain_below: float | None = None,
                 calibrate_s: float | None = None, uncertain_below_adapted: float | None = None,
                 uncertain_below_session: float | None = None, max_unjudged_s: float = MAX_UNJUDGED_S):
        """``uncertain_below``: a shown label whose (calibrated) confidence is lower is marked
        ``uncertain`` (the model's own threshold, ``Recognizer.uncertain_threshold``; None: never).
        ``calibrate_s``: collect that much speech first (``calibration_audio``) for a voice
        profile; windows after ``set_profile`` are judged relative to that voice. Statistics that
        come back with results (``apply``) are averaged; once ``SESSION_MIN_SPEECH_S`` of speech
        is in, later windows carry that mean as their ``centre`` (the model's session head), and from
        ``SESSION_BLEND_S`` on, before that, with ``session_share`` SESSION_BLEND_SHARE (the mean of the
        session and plain heads).
        ``max_unjudged_s``: frames that would leave more audio than this waiting for ``advance``
        are refused (``server_busy``)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) \
                or not MIN_STREAM_RATE <= sample_rate <= MAX_STREAM_RATE:
            raise ValueError(f"sample_rate must be an integer from {MIN_STREAM_RATE} to {MAX_STREAM_RATE}")
        self.sample_rate, self.max_duration_s, self.labels = sample_rate, max_duration_s, labels
        self.uncertain_below, self.uncertain_below_adapted = uncertain_below, uncertain_below_adapted
        self.uncertain_below_session = uncertain_below_session
        self._stats: tuple[np.ndarray, int] | None = None  # (sum, count) of the speech windows' statistics
        self.calibrate_s = calibrate_s
        self._calibration: list[np.ndarray] | None = [] if calibrate_s else None  # speech chunks so far
        self.profile: np.ndarray | None = None
        self.max_frame_bytes = 2 * int(MAX_FRAME_S * sample_rate)
        self.max_unjudged = int(max_unjudged_s * SAMPLE_RATE)
        self._resampler = StreamResampler(sample_rate)
        self._vad = StreamingVAD()
        self._input_lock = threading.Lock()  # receive (connection) against advance (the VAD's thread)
        self._buffer = np.zeros(2 * KEEP_AUDIO, dtype=np.float32)  # the latest 16 kHz audio: _audio
        self._buffered = 0  # samples at the buffer's start that hold audio
        self._n_out = 0  # 16 kHz samples released so far
        self._unjudged: list[np.ndarray] = []  # released audio the VAD has not seen yet
        self._n_unjudged = 0  # its samples
        self._speech = deque()  # (end sample, flag, speech chunks so far) of each VAD chunk kept
        self._n_speech = 0  # speech chunks so far
        self._n_vad = 0  # 16 kHz samples the VAD has judged
        self._next_hop = HOP  # end sample of the next window
        self._last_end = 0  # end sample of the last window
        self.finished = False  # no more input (flushed)
        self.closed = False  # the client is gone: results are no longer wanted
        # Result side (inference worker).
        self._lock = threading.Lock()
        self._ema: np.ndarray | None = None
        self._shown: int | None = None
        self._leader, self._leader_hops, self._silent_hops = None, 0, 0
        self._segments: list[dict] = []
        self._speech_probs: list[np.ndarray] = []

    def close(self):
        """Mark the session abandoned (pending results get dropped)."""
        self.closed = True

    @property
    def duration(self) -> float:
        """Seconds of audio received."""
        return self._resampler.n_in / self.sample_rate

    def feed(self, payload) -> list[WindowJob]:
        """Take one PCM frame; returns the windows that became due (0, 1 or 2)."""
        self.receive(payload)
        return advance([self])[0]

    def receive(self, payload):
        """Check and resample one PCM frame and keep it for :func:`advance` (which judges it with
        the VAD and cuts the windows), so that another thread can judge many streams at once."""
        if self.finished:
            raise StreamError("not_started", "the stream was stopped")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise StreamError("bad_audio", "audio must be binary 16-bit PCM")
        if len(payload) % 2:
            raise StreamError("bad_audio", "16-bit PCM frame has an odd number of bytes")
        if len(payload) > self.max_frame_bytes:
            raise StreamError("frame_too_long", f"a frame may hold at most {MAX_FRAME_S:g} s of audio")
        if not payload:
            return
        n = len(payload) // 2
        if self.max_duration_s and (self._resampler.n_in + n) / self.sample_rate > self.max_duration_s:
            raise StreamError("stream_too_long", f"a stream may last at most {self.max_duration_s:g} s")
        x = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
        with self._input_lock:
            if self._n_unjudged + n * SAMPLE_RATE / self.sample_rate > self.max_unjudged:
                raise StreamError("server_busy", "the server is overloaded; some audio was not analysed")
            self._store(self._resampler.push(x))

    @property
    def calibration_audio(self) -> np.ndarray | None:
        """The calibration's speech (16 kHz), once ``calibrate_s`` of it has arrived and no profile
        is set yet; None before and after."""
        with self._input_lock:
            return self._calibration_speech()

    def take_calibration(self) -> np.ndarray | None:
        """``calibration_audio``, handed out once (collecting stops; ``set_profile`` follows)."""
        with self._input_lock:
            speech = self._calibration_speech()
            if speech is not None:
                self._calibration = None
            return speech

    def _calibration_speech(self) -> np.ndarray | None:
        if self._calibration is None or len(self._calibration) * VAD_CHUNK < self.calibrate_s * SAMPLE_RATE:
            return None
        return np.concatenate(self._calibration)

    def set_profile(self, profile: np.ndarray | None):
        """Adapt the following windows to this voice profile (None: calibration failed, go on unadapted)."""
        with self._input_lock:
            self.profile, self._calibration = profile, None

    def flush(self) -> list[WindowJob]:
        """End of input: release the resampler's tail; a last window if a partial hop is left."""
        with self._input_lock:
            if self.finished:
                return []
            self.finished = True
            self._store(self._resampler.flush())
        jobs = advance([self])[0]
        with self._input_lock:
            if self._n_out - self._last_end >= FINAL_WINDOW_MIN_S * SAMPLE_RATE:
                jobs.append(self._window(self._n_out))
        return jobs

    def _store(self, y: np.ndarray):
        """Keep released 16 kHz audio (call with the input lock held)."""
        if not len(y):
            return
        n = len(y)
        if self._buffered + n > len(self._buffer):  # keep the latest KEEP_AUDIO, once per KEEP_AUDIO
            kept = min(self._buffered, KEEP_AUDIO)
            if kept + n > len(self._buffer):
                self._buffer = np.concatenate([self._buffer, np.zeros(kept + n, dtype=np.float32)])
            self._buffer[:kept] = self._buffer[self._buffered - kept:self._buffered]
            self._buffered = kept
        self._buffer[self._buffered:self._buffered + n] = y
        self._buffered += n
        self._n_out += n
        self._unjudged.append(y)
        self._n_unjudged += n

    @property
    def _audio(self) -> np.ndarray:
        """The latest 16 kHz audio: ``KEEP_AUDIO`` samples or more once that much has come (a view
        of the buffer: copy what must outlive the input lock)."""
        return self._buffer[:self._buffered]

    def _take_unjudged(self) -> tuple[np.ndarray, float]:
        """The audio the VAD has not judged, and the input length so far in output samples."""
        with self._input_lock:
            y, self._unjudged, self._n_unjudged = self._unjudged, [], 0
            return (np.concatenate(y) if y else np.zeros(0, dtype=np.float32),
                    self._resampler.n_in * SAMPLE_RATE / self.sample_rate)

    def _judged(self, flags: list[bool], n_in_out: float) -> list[WindowJob]:
        """Record the VAD's chunk flags; the windows due up to ``n_in_out`` (the input length when
        the judged audio was taken)."""
        with self._input_lock:
            first = self._n_out - len(self._audio)  # stream index of self._audio[0]
            for flag in flags:
                self._n_vad += VAD_CHUNK
                self._n_speech += flag
                self._speech.append((self._n_vad, flag, self._n_speech))
                if flag and self._calibration is not None and self._n_vad - VAD_CHUNK >= first \
                        and len(self._calibration) * VAD_CHUNK < self.calibrate_s * SAMPLE_RATE:
                    self._calibration.append(self._audio[self._n_vad - VAD_CHUNK - first:self._n_vad - first].copy())
            while self._speech and self._speech[0][0] <= first:  # chunks that ended before the kept audio
                self._speech.popleft()
            jobs = []
            while self._next_hop <= n_in_out + 1e-6:
                jobs.append(self._window(self._next_hop))
                self._next_hop += HOP
            return jobs

    def _window(self, end: int) -> WindowJob:
        start = max(0, end - WINDOW)
        first = self._n_out - len(self._audio)  # stream index of self._audio[0]
        audio = self._audio[start - first:min(end, self._n_out) - first]  # a view of the buffer
        if end > self._n_out:  # the resampler still holds these samples back
            audio = np.concatenate([audio, self._resampler.provisional(self._n_out, end - self._n_out)])
        else:
            audio = audio.copy()  # the buffer is overwritten later
        speech_s = self._speech_chunks(start, end) * VAD_CHUNK / SAMPLE_RATE
        t0, t1 = start / SAMPLE_RATE, end / SAMPLE_RATE
        self._last_end = end
        centre, share = self.session_centre()
        return WindowJob(round(t0, 4), round(t1, 4), speech_s >= min(MIN_SPEECH_S, 0.5 * (t1 - t0)),
                         audio, self.profile, centre, share)

    def _speech_chunks(self, start: int, end: int) -> int:
        """How many VAD chunks judged speech lie within samples [start, end]."""
        if not self._speech:
            return 0
        k_first, k_last = self._speech[0][0] // VAD_CHUNK, self._speech[-1][0] // VAD_CHUNK  # chunk k ends at k x 512
        lo, hi = max(-(-start // VAD_CHUNK) + 1, k_first), min(end // VAD_CHUNK, k_last)
        if hi < lo:
            return 0
        (_, flag, before), (_, _, upto) = self._speech[lo - k_first], self._speech[hi - k_first]
        return upto - before + flag

    @property
    def centre(self) -> np.ndarray | None:
        """The mean statistics of this stream's speech windows so far, once they cover
        ``SESSION_MIN_SPEECH_S`` of speech (one hop each); None before, or for a model without them."""
        centre, share = self.session_centre()
        return centre if share >= 1 else None

    def session_centre(self) -> tuple[np.ndarray | None, float]:
        """The next window's centre and the session head's share of its answer: the mean statistics
        of the speech so far and 1 from ``SESSION_MIN_SPEECH_S`` of it on, SESSION_BLEND_SHARE from
        ``SESSION_BLEND_S`` on (the hand-over), (None, 1.0) before or for a model without them."""
        stats = self._stats  # one read: the worker thread replaces the tuple, never changes it
        share = None if stats is None else session_share(stats[1] * HOP_S)
        if share is None:
            return None, 1.0
        return (stats[0] / stats[1]).astype(np.float32), share

    def apply(self, job: WindowJob, probs: np.ndarray | None, stats: np.ndarray | None = None) -> dict:
        """Record a window's class probabilities (None for a window without speech: the model
        need not run) and statistics (a model with a session head); returns the smoothed
        ``emotion`` event."""
        if job.speech and probs is None:
            raise ValueError("a speech window needs its probabilities")
        session = job.centre is not None and job.profile is None and job.session_share >= 1  # blended: not yet
        with self._lock:
            if job.speech and stats is not None:
                total = np.asarray(stats, dtype=np.float64)
                self._stats = (total, 1) if self._stats is None else (self._stats[0] + total, self._stats[1] + 1)
            if job.speech:
                probs = np.asarray(probs, dtype=np.float64)
            self._segments.append({"start": job.t0, "end": job.t1, "speech": job.speech,
                                   "label": self.labels[int(probs.argmax())] if job.speech else None,
                                   "probabilities": self._as_dict(probs) if job.speech else None})
            if not job.speech:
                self._silent_hops += 1
                if self._silent_hops * HOP_S >= RESET_AFTER_SILENCE_S:
                    self._ema, self._shown, self._leader, self._leader_hops = None, None, None, 0
                return {"t0": job.t0, "t1": job.t1, "speech": False, "label": None,
                        "confidence": None, "probabilities": None, "uncertain": False,
                        "adapted": job.profile is not None, "session": session}
            self._silent_hops = 0
            self._speech_probs.append(probs)
            self._ema = probs if self._ema is None else SMOOTHING * probs + (1 - SMOOTHING) * self._ema
            self._update_label()
            confidence = float(self._ema[self._shown])
            return {"t0": job.t0, "t1": job.t1, "speech": True, "label": self.labels[self._shown],
                    "confidence": round(confidence, 5), "probabilities": self._as_dict(self._ema),
                    "uncertain": self._uncertain(confidence, job.profile is not None, session),
                    "adapted": job.profile is not None, "session": session}

    def _uncertain(self, confidence: float, adapted: bool = False, session: bool = False) -> bool:
        threshold = self.uncertain_below
        if adapted and self.uncertain_below_adapted is not None:
            threshold = self.uncertain_below_adapted
        elif session and self.uncertain_below_session is not None:
            threshold = self.uncertain_below_session
        return threshold is not None and confidence < threshold

    def _update_label(self):
        """Hysteresis: switch the shown label only on a clear or lasting lead."""
        top = int(self._ema.argmax())
        self._leader_hops = self._leader_hops + 1 if top == self._leader else 1
        self._leader = top
        if self._shown is None or (top != self._shown and (
                self._ema[top] - self._ema[self._shown] >= LABEL_MARGIN
                or self._leader_hops >= LABEL_PERSIST_HOPS)):
            self._shown = top

    def summary(self) -> dict:
        """The ``summary`` event: mean probabilities over the speech hops heard so far."""
        with self._lock:
            segments = list(self._segments)
            if not self._speech_probs:
                return {"duration": round(self.duration, 3), "label": None, "confidence": None,
                        "probabilities": None, "speech_detected": False, "segments": segments,
                        "uncertain": False}
            mean = np.mean(self._speech_probs, axis=0)
        best = int(mean.argmax())
        return {"duration": round(self.duration, 3), "label": self.labels[best],
                "confidence": round(float(mean[best]), 5), "probabilities": self._as_dict(mean),
                "speech_detected": True, "segments": segments, "uncertain": self._uncertain(float(mean[best]))}

    def _as_dict(self, probs: np.ndarray) -> dict[str, float]:
        return {label: round(float(p), 5) for label, p in zip(self.labels, probs)}


def advance(sessions: list[StreamSession]) -> list[list[WindowJob]]:
    """Judge the audio each session received since the last call with the VAD, all sessions in the
    same model calls, and return each one's windows that became due (in the sessions' order).
    One thread at a time per session; ``receive`` may run meanwhile."""
    taken = [s._take_unjudged() for s in sessions]
    flags = judge_streams([s._vad for s in sessions], [audio for audio, _ in taken])
    return [s._judged(f, n_in_out) for s, f, (_, n_in_out) in zip(sessions, flags, taken)]
