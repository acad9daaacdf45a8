"""The framework-free stream logic: validation, resampling continuity, hops, VAD, parity, smoothing."""
import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_model.inference import HOP_S, WINDOW_S, Recognizer
from ser_model.labels import EMOTIONS
from ser_model.streaming import (LABEL_PERSIST_HOPS, RESET_AFTER_SILENCE_S, StreamError, StreamingVAD,
                                 StreamSession, WindowJob, advance, judge_streams)


def noise_pcm(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).randn(int(seconds * rate)) * 3000).astype("<i2")


def feed_all(session: StreamSession, pcm: np.ndarray, frame_sizes) -> list[WindowJob]:
    """Feed ``pcm`` in frames of the given sizes (cycled), then flush."""
    jobs, i, k = [], 0, 0
    while i < len(pcm):
        n = frame_sizes[k % len(frame_sizes)]
        jobs += session.feed(pcm[i:i + n].tobytes())
        i, k = i + n, k + 1
    return jobs + session.flush()


@pytest.fixture(scope="module")
def recognizer(random_weights):
    return Recognizer.load(random_weights)


@pytest.mark.parametrize("rate", [7999, 48001, 0, -16000, "16000", 16000.0, None, True])
def test_rejects_bad_sample_rates(rate):
    with pytest.raises(ValueError):
        StreamSession(rate)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_accepts_rate_limits(rate):
    assert StreamSession(rate).sample_rate == rate


def test_frame_validation():
    s = StreamSession(16000)
    assert s.feed(b"") == []
    for payload, code in [(b"\x00\x01\x02", "bad_audio"), ("text", "bad_audio"), ({"a": 1}, "bad_audio"),
                          (bytes(2 * 16000 + 2), "frame_too_long")]:
        with pytest.raises(StreamError) as err:
            s.feed(payload)
        assert err.value.code == code
    assert len(s.feed(bytes(2 * 16000))) == 2  # exactly 1 s is fine: two hops
    s.flush()
    with pytest.raises(StreamError):
        s.feed(bytes(2))


def test_stream_length_limit():
    s = StreamSession(8000, max_duration_s=1.0)
    s.feed(bytes(2 * 8000))
    with pytest.raises(StreamError) as err:
        s.feed(bytes(2))
    assert err.value.code == "stream_too_long"


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_resampling_is_continuous_across_frames(rate):
    """Windows cut from the stream equal the whole signal resampled at once, up to their last
    ~10 ms when soxr still held those back as the window fell due (they are approximated then).
    12 s: the stream's audio buffer wraps twice, and no window changes after it was cut."""
    pcm = noise_pcm(12.2, rate)
    jobs = feed_all(StreamSession(rate), pcm, [rate // 4, 333, rate // 10, 1])
    whole = soxr.resample(pcm.astype(np.float32) / 32768, rate, 16000, quality="HQ") if rate != 16000 \
        else pcm.astype(np.float32) / 32768
    assert len(jobs) == 25
    for job in jobs:
        ref = whole[round(job.t0 * 16000):round(job.t1 * 16000)]
        assert len(job.audio) == len(ref)
        settled = len(ref) - 256  # 16 ms
        np.testing.assert_allclose(job.audio[:settled], ref[:settled], atol=1e-6)
        tail_error = np.sqrt(np.mean((job.audio[settled:] - ref[settled:]) ** 2))
        assert tail_error < 0.5 * np.sqrt(np.mean(ref[settled:] ** 2))


@pytest.mark.parametrize("rate", [16000, 44100])
def test_hops_and_windows(rate):
    jobs = feed_all(StreamSession(rate), noise_pcm(7.3, rate), [rate // 4])
    t1 = [j.t1 for j in jobs]
    assert t1 == [0.5 * k for k in range(1, 15)] + [7.3]  # one per hop, then the partial last hop
    assert all(0 < b - a <= HOP_S for a, b in zip(t1, t1[1:]))
    for job in jobs:
        assert job.t0 == max(0.0, round(job.t1 - WINDOW_S, 4))
        assert len(job.audio) == round((job.t1 - job.t0) * 16000)
        assert job.audio.dtype == np.float32


def test_windows_are_due_as_soon_as_the_audio_is_in():
    """A window ends exactly at the input received, even while the resampler holds samples back."""
    s = StreamSession(48000)
    assert s.feed(noise_pcm(0.25, 48000).tobytes()) == []
    jobs = s.feed(noise_pcm(0.25, 48000, seed=1).tobytes())
    assert [(j.t0, j.t1) for j in jobs] == [(0.0, 0.5)]
    assert len(jobs[0].audio) == 8000


def test_streaming_vad_matches_silero(espeak_wav):
    from ser_model import vad
    import torch

    wave, _ = sf.read(espeak_wav, dtype="float32")
    wave = soxr.resample(wave, 22050, 16000)[:16000 * 3]
    model = vad.load_vad_model()
    model.reset_states()
    ours = StreamingVAD()
    for i in range(0, len(wave) - 511, 512):
        chunk = wave[i:i + 512]
        assert ours.probability(chunk) == pytest.approx(model(torch.from_numpy(chunk), 16000).item(), abs=1e-4)


@pytest.mark.parametrize("encode_rows", [2048, 5])
def test_one_pass_over_ragged_streams_gives_the_onnx_models_probabilities(espeak_wav, monkeypatch, encode_rows):
    # ser_model.silero runs every chunk of every stream through the network at once (in slices of
    # ENCODE_ROWS chunks, here also 5, so that a round's slices split positions): streams with
    # 0 to 9 new chunks a round, over three rounds (each starting from the states and contexts the
    # last left, a stream with none in between), against the wheel's ONNX model judging each
    # stream chunk by chunk.
    from ser_model import silero, vad
    import torch

    from ser_model.streaming import _probabilities

    monkeypatch.setattr(silero, "ENCODE_ROWS", encode_rows)

    waves = [speech_like(espeak_wav, 2.0, shift) for shift in (0, 5000, 11000, 23000)]
    rounds = [[0, 1, 3, 9], [2, 0, 3, 9], [1, 4, 0, 9]]  # chunks per stream per round
    ours = [StreamingVAD() for _ in waves]
    onnx = vad.load_vad_model()
    expected, got = [], [[] for _ in waves]
    for i, wave in enumerate(waves):
        onnx.reset_states()
        expected.append([onnx(torch.from_numpy(wave[k * 512:(k + 1) * 512]), 16000).item()
                         for k in range(sum(r[i] for r in rounds))])
    done = [0] * len(waves)
    for sizes in rounds:
        chunks = [w[d * 512:(d + n) * 512].reshape(n, 512) for w, d, n in zip(waves, done, sizes)]
        for i, p in enumerate(_probabilities(ours, chunks)):
            got[i] += list(p)
        done = [d + n for d, n in zip(done, sizes)]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-4)
    flat = sum(expected, [])
    assert max(flat) > 0.5 > min(flat)  # speech and silence both judged


def speech_like(espeak_wav, seconds: float, shift: int) -> np.ndarray:
    """16 kHz float audio of ``seconds``: the espeak clip between silences, rotated by ``shift``."""
    wave, rate = sf.read(espeak_wav, dtype="float32")
    wave = soxr.resample(wave, rate, 16000)
    wave = np.concatenate([np.zeros(8000, np.float32), wave, np.zeros(12000, np.float32)])
    return np.roll(np.resize(wave, int(seconds * 16000)), shift)


def test_streams_judged_together_match_each_judged_alone(espeak_wav):
    # Four streams of different audio, frames of different lengths (so a call holds 1 to 4 streams):
    # the same flags, and the same probabilities, as each stream's own VAD alone.
    waves = [speech_like(espeak_wav, 4.0, shift) for shift in (0, 7000, 19000, 31000)]
    frames = [4000, 1000, 8000, 2730]
    alone = [StreamingVAD() for _ in waves]
    together = [StreamingVAD() for _ in waves]
    flags_alone, flags_together = [[] for _ in waves], [[] for _ in waves]
    for k in range(0, 64000, 8000):
        parts = [w[k:k + 8000] for w in waves]
        for i, (vad, part) in enumerate(zip(alone, parts)):
            for j in range(0, len(part), frames[i]):
                flags_alone[i] += vad.push(part[j:j + frames[i]])
        for i, flags in enumerate(judge_streams(together, parts)):
            flags_together[i] += flags
    assert flags_together == flags_alone
    assert sum(map(sum, flags_alone)) > 0 and sum(len(f) - sum(f) for f in flags_alone) > 0  # both kinds occur
    for a, t in zip(alone, together):
        np.testing.assert_allclose(t._state, a._state, rtol=1e-4, atol=1e-5)  # the cell grows to ~25: relative


def test_sessions_advanced_together_cut_the_same_windows(espeak_wav):
    # receive() on three streams (two rates), then one advance() for all: the windows feed() gives.
    rates = [16000, 48000, 16000]
    pcms = [(soxr.resample(np.concatenate([np.zeros(24000, np.float32), speech_like(espeak_wav, 2.0, 5000 * i)]),
                           16000, r) * 20000).astype("<i2") for i, r in enumerate(rates)]  # 1.5 s of silence first
    alone = [feed_all(StreamSession(r), pcm, [r // 4]) for r, pcm in zip(rates, pcms)]
    sessions = [StreamSession(r) for r in rates]
    together = [[] for _ in rates]
    for k in range(0, 15):  # quarter seconds
        for s, r, pcm in zip(sessions, rates, pcms):
            s.receive(pcm[k * r // 4:(k + 1) * r // 4].tobytes())
        if k % 3 == 2:  # judged every three frames, as a busy batcher would
            for jobs, got in zip(advance(sessions), together):
                got += jobs
    for s, got in zip(sessions, together):
        got += advance([s])[0] + s.flush()
    for a, t in zip(alone, together):
        assert [(j.t0, j.t1, j.speech) for j in t] == [(j.t0, j.t1, j.speech) for j in a]
        assert any(j.speech for j in a) and not all(j.speech for j in a)
        for ja, jt in zip(a, t):  # judged later, a 48 kHz window ends in resampled audio where feed()
            np.testing.assert_allclose(jt.audio, ja.audio, atol=1e-3)  # had to approximate the held-back tail


def test_audio_waiting_for_the_vad_is_bounded():
    s = StreamSession(16000, max_unjudged_s=1.0)
    s.receive(bytes(2 * 12000))
    with pytest.raises(StreamError) as err:
        s.receive(bytes(2 * 8000))  # 1.25 s would wait
    assert err.value.code == "server_busy"
    assert [(j.t0, j.t1) for j in advance([s])[0]] == [(0.0, 0.5)]  # judged: room again
    s.receive(bytes(2 * 8000))
    assert s.duration == pytest.approx(20000 / 16000)


def test_speech_flag_follows_the_voice(espeak_wav):
    pcm, rate = sf.read(espeak_wav, dtype="int16")
    pcm = np.concatenate([np.zeros(rate, np.int16), pcm, np.zeros(5 * rate, np.int16)])
    jobs = feed_all(StreamSession(rate), pcm, [rate // 4])
    flags = [j.speech for j in jobs]
    assert flags[:2] == [False, False]  # the first second is silent
    assert all(flags[3:10])
    assert flags[-1] is False  # the last 3 s are silent


def test_silence_is_not_speech():
    jobs = feed_all(StreamSession(16000), np.zeros(16000 * 3, np.int16), [4000])
    assert jobs and not any(j.speech for j in jobs)


def test_stream_probabilities_equal_predict_proba(recognizer, espeak_wav):
    """Parity: windows batched across the stream give the same probabilities as one by one."""
    pcm, rate = sf.read(espeak_wav, dtype="int16")
    jobs = feed_all(StreamSession(rate), pcm, [rate // 4])
    batched = recognizer.predict_proba([j.audio for j in jobs])
    for job, probs in zip(jobs, batched):
        np.testing.assert_allclose(probs, recognizer.predict_proba([job.audio])[0], atol=1e-5)


def test_stream_windows_match_file_prediction(recognizer, espeak_wav):
    """At 16 kHz a stream window is the very audio the file path analyses, so the same probabilities."""
    wave, rate = sf.read(espeak_wav, dtype="float32")
    wave = soxr.resample(wave, rate, 16000)
    pcm = (wave * 32768).clip(-32768, 32767).astype("<i2")
    segments = recognizer.predict(pcm.astype(np.float32) / 32768).segments
    jobs = [j for j in feed_all(StreamSession(16000), pcm, [4000]) if j.t1 - j.t0 == WINDOW_S]
    assert len(jobs) >= 3
    for job in jobs:
        seg = min(segments, key=lambda s: abs(s.start - job.t0))  # the file's windows start on the same grid
        assert seg.start == pytest.approx(job.t0, abs=1e-3) and seg.end == pytest.approx(job.t1, abs=1e-3)
        probs = recognizer.predict_proba([job.audio])[0]
        if seg.probabilities is not None:
            # the file's probabilities are rounded to 5 decimals, and one window through the
            # network differs from the same window in a batch by float noise (~1e-5)
            np.testing.assert_allclose(probs, [seg.probabilities[k] for k in EMOTIONS], atol=5e-5)


def one_hot(i: int, p: float = 0.9) -> np.ndarray:
    probs = np.full(len(EMOTIONS), (1 - p) / (len(EMOTIONS) - 1))
    probs[i] = p
    return probs


def job(t1: float, speech: bool = True) -> WindowJob:
    return WindowJob(max(0.0, t1 - 3), t1, speech, np.zeros(0, np.float32))


def test_smoothing_ignores_a_one_hop_blip_and_follows_a_lasting_change():
    s = StreamSession(16000)
    labels = []
    sequence = [0, 0, 0, 3, 0, 0, 1, 1, 1, 1]  # neutral, a one-hop 'angry' blip, then 'happy' for good
    for k, cls in enumerate(sequence):
        event = s.apply(job(0.5 * (k + 1)), one_hot(cls, 0.6))
        labels.append(event["label"])
        assert event["speech"] is True
        assert sum(event["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert event["confidence"] == event["probabilities"][event["label"]]
    assert "angry" not in labels
    assert labels[:6] == ["neutral"] * 6 and labels[-1] == "happy"
    assert labels.index("happy") <= 6 + LABEL_PERSIST_HOPS


def test_no_speech_hop_has_null_label_and_long_silence_resets():
    s = StreamSession(16000)
    s.apply(job(0.5), one_hot(2))
    event = s.apply(job(1.0, speech=False), None)
    assert event == {"t0": 0.0, "t1": 1.0, "speech": False, "label": None, "confidence": None,
                     "probabilities": None, "uncertain": False, "adapted": False, "session": False}
    for k in range(int(RESET_AFTER_SILENCE_S / HOP_S)):
        s.apply(job(1.5 + 0.5 * k, speech=False), None)
    assert s.apply(job(9.0), one_hot(4))["label"] == "fearful"  # no memory of 'sad'
    with pytest.raises(ValueError):
        s.apply(job(9.5), None)


def test_summary_is_the_mean_over_speech_hops():
    s = StreamSession(16000)
    assert s.summary()["label"] is None and s.summary()["probabilities"] is None
    s.feed(bytes(2 * 16000))
    s.apply(job(0.5), one_hot(1, 0.5))
    s.apply(job(1.0, speech=False), None)
    s.apply(job(1.5), one_hot(1, 0.7))
    summary = s.summary()
    assert summary["label"] == "happy" and summary["duration"] == 1.0
    assert summary["probabilities"]["happy"] == pytest.approx(0.6)
    assert [seg["speech"] for seg in summary["segments"]] == [True, False, True]
    assert set(summary["segments"][0]) == {"start", "end", "speech", "label", "probabilities"}


def test_emotion_events_say_uncertain_below_the_threshold():
    import numpy as np

    from ser_model.streaming import StreamSession, WindowJob

    sure, unsure = StreamSession(16000, uncertain_below=0.5), StreamSession(16000, uncertain_below=0.5)
    job = WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32))
    confident = np.array([0.9, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01])
    flat = np.full(7, 1 / 7)
    assert sure.apply(job, confident)["uncertain"] is False
    assert unsure.apply(job, flat)["uncertain"] is True
    assert unsure.summary()["uncertain"] is True
    assert StreamSession(16000).apply(job, flat)["uncertain"] is False  # no threshold: never
