"""The session head (issue 12): once a voice has spoken SESSION_MIN_SPEECH_S, windows are judged
beside the mean statistics of that voice's speech so far: for files (their own speech), live
streams (the speech before each window) and the model lanes in between."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_model import Recognizer
from ser_model.audio import load_audio
from ser_model.checkpoint import register, save_checkpoint
from ser_model.inference import HOP_S, SESSION_BLEND_S, SESSION_BLEND_SHARE, SESSION_MIN_SPEECH_S
from ser_model.model import ModelConfig, build_model
from ser_model.streaming import StreamSession, WindowJob

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
NS = "/stream"


@pytest.fixture(scope="module")
def session_weights(tmp_path_factory):
    """A small random Whisper head with all three heads (plain, session, calm voice)."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), adaptation=True, session=True)
    model = build_model(cfg)
    with torch.no_grad():
        for head in (model.head, model.session_head, model.adapted_head):
            head.weight.mul_(50)  # random statistics are small: make the heads' answers differ visibly
    folder = tmp_path_factory.mktemp("session_weights")
    register(folder, "s", save_checkpoint(folder / "s.pt", model, cfg,
                                          {"uncertain_below": 0.5, "uncertain_below_session": 0.2}))
    return folder


@pytest.fixture(scope="module")
def recognizer(session_weights):
    return Recognizer.load(session_weights)


def long_speech(espeak_wav, seconds: float) -> np.ndarray:
    wave = load_audio(espeak_wav)
    return np.tile(wave, int(np.ceil(seconds * 16000 / len(wave))))[:int(seconds * 16000)]


def test_analyse_returns_statistics_and_each_window_gets_its_own_head(recognizer, espeak_wav):
    wave = load_audio(espeak_wav)
    windows = [wave[:48000], wave[8000:40000], wave[:24000]]
    plain, stats = recognizer.analyse(windows)
    assert stats.shape == (3, recognizer.model.stats_size)
    np.testing.assert_allclose(plain, recognizer.predict_proba(windows), atol=1e-5)
    centre = stats.mean(axis=0)
    mixed, _ = recognizer.analyse(windows, centres=[centre, None, centre])
    alone = [recognizer.analyse([w], centres=[c])[0][0] for w, c in zip(windows, [centre, None, centre])]
    np.testing.assert_allclose(mixed, np.stack(alone), atol=1e-4)
    np.testing.assert_allclose(mixed[1], plain[1], atol=1e-5)  # no centre: the plain head
    assert np.abs(mixed[0] - plain[0]).max() > 1e-3  # a centre: another head, another answer
    profiled, _ = recognizer.analyse(windows, profiles=[centre, None, None], centres=[centre, None, centre])
    np.testing.assert_allclose(profiled[0], recognizer.predict_proba(windows[:1], [centre])[0], atol=1e-4)  # a profile wins


def test_each_head_reads_its_own_layers_from_one_encoder_pass(tmp_path):
    """Plain head on block 1, session head on blocks 1+2: the encoder runs to block 2 once, the
    plain head answers as a block-1-only model with the same weights would, and the session head
    reads block 2 as well; the split survives a checkpoint."""
    torch.manual_seed(1)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), session=True, session_layers=(1, 2))
    split = build_model(cfg).eval()
    alone = build_model(ModelConfig(arch="whisper_head", whisper_layers=(1,))).eval()
    alone.load_state_dict({k: v for k, v in split.state_dict().items() if k in alone.state_dict()})
    assert split.encoder.layers == (1, 2) and split.stats_size == 2 * 768
    wave = 0.1 * torch.randn(2, 48000)
    with torch.no_grad():
        stats = split.embed(wave)
        torch.testing.assert_close(split(wave), alone(wave), atol=1e-5, rtol=1e-5)
        centre = stats.mean(0, keepdim=True).expand_as(stats)
        block2 = stats.clone()
        block2[:, 768:] += 1.0  # only block 2's statistics move
        assert torch.equal(split.plain(block2), split.plain(stats))
        assert not torch.allclose(split.in_session(block2, centre), split.in_session(stats, centre))
    register(tmp_path, "split", save_checkpoint(tmp_path / "split.pt", split, cfg))
    rec = Recognizer.load(tmp_path, precision="float32")
    assert rec.config.session_layers == (1, 2)
    probs, got = rec.analyse([wave[0].numpy()])
    np.testing.assert_allclose(got, stats[:1].numpy(), atol=2e-3)  # the checkpoint keeps the encoder in float16


def test_a_plain_network_averages_its_probabilities_with_the_linear_plain_head(tmp_path):
    """With ``plain_network`` the plain answer is the mean of the linear head's probabilities (block 1)
    and a network's (blocks 1+2, from the same encoder pass); the session head is untouched, and
    the network survives a checkpoint."""
    torch.manual_seed(3)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), session=True, session_layers=(1, 2),
                      plain_network=16, plain_network_layers=(1, 2))
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.head.weight.mul_(50)
        model.network[2].weight.mul_(50)
        stats = model.embed(0.1 * torch.randn(2, 48000))
        linear = torch.softmax(model.head(model.norm(stats[:, :768])), dim=1)
        network = torch.softmax(model.network(model.network_norm(stats)), dim=1)
        torch.testing.assert_close(torch.softmax(model.plain(stats), dim=1), 0.5 * linear + 0.5 * network)
        assert (linear - network).abs().max() > 1e-2  # two heads, two answers: the mean is not either
        block2 = stats.clone()
        block2[:, 768:] += 1.0  # the network reads block 2, the linear head does not
        assert not torch.allclose(model.plain(block2), model.plain(stats))
        torch.testing.assert_close(model.head(model.norm(block2[:, :768])), model.head(model.norm(stats[:, :768])))
    register(tmp_path, "net", save_checkpoint(tmp_path / "net.pt", model, cfg))
    rec = Recognizer.load(tmp_path, precision="float32")
    assert rec.config.plain_network == 16
    wave = (0.1 * torch.randn(48000)).numpy()
    with torch.no_grad():
        expected = torch.softmax(model.plain(model.embed(torch.from_numpy(wave)[None])), dim=1).numpy()
    np.testing.assert_allclose(rec.predict_proba([wave]), expected, atol=2e-3)  # float16 encoder in the checkpoint
    with pytest.raises(ValueError, match="session_mix"):
        build_model(ModelConfig(arch="whisper_head", adaptation=True, session=True, session_mix=True, plain_network=8))


def test_the_plain_prior_weighs_the_plain_probabilities_and_survives_a_checkpoint(tmp_path):
    """``plain_prior`` multiplies the plain head's probabilities (the network mix's too) by a weight
    per label and renormalises, and the calibration temperature then divides the log of that (the
    heads' weights are not tempered); the session head ignores both; a wrong length is refused."""
    torch.manual_seed(4)
    prior = (1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), session=True, plain_network=8, plain_prior=prior,
                      temperature=2.0)
    model = build_model(cfg).eval()
    bare = build_model(replace(cfg, plain_prior=(), temperature=1.0))
    bare.load_state_dict(model.state_dict())
    bare.eval()
    with torch.no_grad():
        model.head.weight.mul_(50)
        bare.head.weight.mul_(50)
        stats = model.embed(0.1 * torch.randn(3, 48000))
        mix = torch.softmax(bare.plain(stats), dim=1)
        weighted = (mix * torch.tensor(prior)) ** 0.5  # temperature 2
        torch.testing.assert_close(torch.softmax(model.plain(stats), dim=1), weighted / weighted.sum(1, keepdim=True))
        assert (torch.softmax(model.plain(stats), dim=1) - mix).abs().max() > 1e-3  # the prior moved them
        centre = stats.mean(0, keepdim=True).expand_as(stats)
        torch.testing.assert_close(model.in_session(stats, centre), bare.in_session(stats, centre))
    rec = Recognizer.load(Path(save_checkpoint(tmp_path / "prior.pt", model, cfg)), precision="float32")
    assert rec.config.plain_prior == prior
    wave = (0.1 * torch.randn(48000)).numpy()
    with torch.no_grad():
        expected = torch.softmax(model.plain(model.embed(torch.from_numpy(wave)[None])), dim=1).numpy()
    np.testing.assert_allclose(rec.predict_proba([wave]), expected, atol=2e-3)
    with pytest.raises(ValueError, match="one weight per label"):
        build_model(ModelConfig(arch="whisper_head", plain_prior=(1.0, 0.5)))


def test_the_ship_scripts_calibration_computes_what_the_model_does():
    """``scripts/ship_whisper_head.py`` chooses the temperature and the ``uncertain`` threshold on
    held-out probabilities it computes itself from the heads' logits: they must be the model's."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import ship_whisper_head as ship

    torch.manual_seed(5)
    prior = (1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5)
    for extra in ({"plain_network": 8, "plain_prior": prior}, {"plain_network": 8}, {"plain_prior": prior}, {}):
        cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), temperature=2.5, **extra)
        model = build_model(cfg).eval()
        with torch.no_grad():
            model.head.weight.mul_(30)
            stats = model.embed(0.1 * torch.randn(4, 48000))
            logits = model.head(model.norm(stats[:, model.plain_columns]))
            if extra.get("plain_network"):
                logits = torch.stack([logits, model.network(model.network_norm(stats[:, model.network_columns]))], 1)
            expected = torch.softmax(model.plain(stats), dim=1).numpy()
        # a linear head alone has the temperature folded into its weights by the script: T = 1 here
        temperature = cfg.temperature if extra else 1.0
        files = np.arange(4)
        got = ship.file_probs(logits.numpy(), files, files, temperature, np.array(prior) if "plain_prior" in extra else None)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=str(extra))


def test_the_session_mix_averages_the_session_head_and_the_calm_head_on_a_found_reference(tmp_path, espeak_wav):
    """With ``session_mix`` a session accumulates the statistics, the plain columns weighted by
    the plain head's uncalibrated P(neutral) and that weight; its answer is the mean of the session
    head's probabilities and the calm-voice head's against the weighted mean (the calm reference)."""
    from ser_model.labels import EMOTIONS

    torch.manual_seed(2)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), adaptation=True, session=True, session_mix=True,
                      temperature=2.0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for head in (model.head, model.session_head, model.adapted_head):
            head.weight.mul_(50)
        stats = model.embed(0.1 * torch.randn(3, 48000))
        contributions = model.session_statistics(stats)
        weight = torch.softmax(model.plain(stats) * 2.0, dim=1)[:, EMOTIONS.index("neutral")]
        assert contributions.shape == (3, 2 * 768 + 1)
        torch.testing.assert_close(contributions[:, -1], weight)
        centre = contributions.mean(0, keepdim=True).expand(3, -1)
        calm = ((weight[:, None] * stats).sum(0) / weight.sum()).expand(3, -1)
        session = model.session_head(model.session_norm(torch.cat([stats, stats - stats.mean(0)], dim=1)))
        expected = 0.5 * torch.softmax(session, dim=1) + 0.5 * torch.softmax(model.adapted(stats, calm), dim=1)
        torch.testing.assert_close(torch.softmax(model.in_session(stats, centre), dim=1), expected)
    register(tmp_path, "mix", save_checkpoint(tmp_path / "mix.pt", model, cfg))
    rec = Recognizer.load(tmp_path)
    wave = long_speech(espeak_wav, SESSION_MIN_SPEECH_S + 4)
    result = rec.predict(wave)
    assert result.session and result.speech_detected
    probs, contributions = rec.analyse([wave[:48000]], centres=[None])
    assert contributions.shape == (1, 2 * 768 + 1) and np.isclose(probs.sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("mix", [False, True])
def test_the_session_spread_divides_the_centred_statistics_by_the_shrunk_session_spread(tmp_path, espeak_wav, mix):
    """With ``session_spread`` a session also accumulates the squares of the session columns; the
    session head reads (x - mean) / sqrt(w * session variance + (1 - w) * pool), the pool travels
    in the checkpoint, and the session mix still finds its parts behind the squares."""
    torch.manual_seed(3)
    cfg = ModelConfig(arch="whisper_head", whisper_layers=(1,), session=True, session_layers=(1, 2),
                      session_spread=0.4, adaptation=mix, session_mix=mix)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.session_head.weight.mul_(50)
        model.session_pool.copy_(torch.rand(2 * 768) + 0.5)
        stats = model.embed(0.1 * torch.randn(4, 48000))
        contributions = model.session_statistics(stats)
        assert contributions.shape == (4, 2 * 768 + 2 * 768 + (768 + 1 if mix else 0))
        centre = contributions.mean(0, keepdim=True).expand(4, -1)
        variance = stats.var(0, unbiased=False)
        centred = (stats - stats.mean(0)) / torch.sqrt(0.4 * variance + 0.6 * model.session_pool)
        session = model.session_head(model.session_norm(torch.cat([stats, centred], dim=1)))
        if mix:
            expected = 0.5 * torch.softmax(session, 1) + 0.5 * torch.softmax(
                model.adapted(stats, (contributions[:, -769:-1].sum(0) / contributions[:, -1].sum()).expand(4, -1)), 1)
            torch.testing.assert_close(torch.softmax(model.in_session(stats, centre), 1), expected, atol=1e-5, rtol=1e-4)
        else:
            torch.testing.assert_close(model.in_session(stats, centre), session, atol=1e-4, rtol=1e-4)
            plain_centred = model.session_head(model.session_norm(torch.cat([stats, stats - stats.mean(0)], 1)))
            assert not torch.allclose(session, plain_centred, atol=1e-3)  # the spread changes the answer
    register(tmp_path, "spread", save_checkpoint(tmp_path / "spread.pt", model, cfg))
    rec = Recognizer.load(tmp_path)
    assert rec.config.session_spread == 0.4
    torch.testing.assert_close(rec.model.session_pool.float().cpu(), model.session_pool)
    result = rec.predict(long_speech(espeak_wav, SESSION_MIN_SPEECH_S + 4))
    assert result.session and np.isclose(sum(result.to_dict()["probabilities"].values()), 1.0, atol=1e-4)


def test_a_file_uses_the_session_head_only_with_enough_speech(recognizer, espeak_wav):
    short = recognizer.predict(long_speech(espeak_wav, 4.0))
    assert short.session is False and short.to_dict()["session"] is False
    long = recognizer.predict(long_speech(espeak_wav, 14.0))
    assert long.session is True and long.to_dict()["session"] is True
    adapted = recognizer.predict(long_speech(espeak_wav, 14.0), profile=recognizer.voice_profile(load_audio(espeak_wav)))
    assert adapted.adapted and not adapted.session  # a calm-voice profile takes precedence


def test_stream_windows_carry_the_mean_of_the_speech_so_far():
    session = StreamSession(16000)
    needed = int(np.ceil(SESSION_MIN_SPEECH_S / HOP_S))
    rng = np.random.default_rng(0)
    stats = rng.standard_normal((needed + 1, 8))
    silent = WindowJob(0.0, 0.5, False, np.zeros(8000, np.float32))
    for k in range(needed):
        assert session.centre is None
        job = WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32))
        assert session.apply(job, np.full(7, 1 / 7), stats[k])["session"] is False
        session.apply(silent, None, None)  # silence adds nothing
    np.testing.assert_allclose(session.centre, stats[:needed].mean(axis=0), rtol=1e-5)
    job = WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32), centre=session.centre)
    event = session.apply(job, np.full(7, 1 / 7), stats[needed])
    assert event["session"] is True and event["adapted"] is False
    assert session.apply(WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32), profile=np.zeros(8), centre=session.centre),
                         np.full(7, 1 / 7))["session"] is False  # judged by the calm-voice head


def test_a_share_below_one_blends_the_session_and_plain_heads(recognizer, espeak_wav):
    wave = load_audio(espeak_wav)
    windows = [wave[:48000], wave[8000:40000], wave[:24000]]
    plain, stats = recognizer.analyse(windows)
    centre = stats.mean(axis=0)
    session, _ = recognizer.analyse(windows, centres=[centre] * 3)
    got, _ = recognizer.analyse(windows, profiles=[None, None, centre], centres=[centre] * 3, shares=[0.5, None, 0.5])
    np.testing.assert_allclose(got[0], 0.5 * session[0] + 0.5 * plain[0], atol=1e-5)  # the hand-over
    np.testing.assert_allclose(got[1], session[1], atol=1e-5)  # no share: the session head alone
    np.testing.assert_allclose(got[2], recognizer.predict_proba(windows[2:], [centre])[0], atol=1e-4)  # a profile wins
    assert np.abs(session[0] - plain[0]).max() > 1e-3  # so the blend is neither head alone


def test_a_file_between_the_two_thresholds_gets_the_mean_of_both_heads(recognizer, espeak_wav):
    from ser_model import vad

    wave = long_speech(espeak_wav, 0.5 * (SESSION_BLEND_S + SESSION_MIN_SPEECH_S) + 1)
    heard = sum(e - s for s, e in vad.speech_intervals(wave))
    assert SESSION_BLEND_S <= heard < SESSION_MIN_SPEECH_S, heard
    result = recognizer.predict(wave)
    assert result.session is False  # not yet the session head alone
    spans, windows, is_speech, _ = recognizer._windows(wave)
    plain, stats = recognizer.analyse(windows)
    session = recognizer.heads(stats[:, :recognizer.model.stats_size], centres=[stats[is_speech].mean(axis=0)] * len(stats))
    expected = SESSION_BLEND_SHARE * session + (1 - SESSION_BLEND_SHARE) * plain
    got = np.array([[seg.probabilities[k] for k in recognizer.labels] for seg in result.segments if seg.speech])
    np.testing.assert_allclose(got, expected[is_speech], atol=1e-4)


def test_stream_windows_blend_the_heads_between_the_two_thresholds():
    session = StreamSession(16000)
    rng = np.random.default_rng(0)
    stats = rng.standard_normal((int(SESSION_MIN_SPEECH_S / HOP_S) + 1, 8))
    shares = []
    for k, row in enumerate(stats):
        centre, share = session.session_centre()
        shares.append(share)
        if centre is not None:
            np.testing.assert_allclose(centre, stats[:k].mean(axis=0), rtol=1e-5)
        assert (centre is None) == (k * HOP_S < SESSION_BLEND_S)
        assert (session.centre is None) == (k * HOP_S < SESSION_MIN_SPEECH_S)  # the session head alone
        event = session.apply(WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32), centre=centre,
                                        session_share=share), np.full(7, 1 / 7), row)
        assert event["session"] is (centre is not None and share == 1)
    blend_hops = int((SESSION_MIN_SPEECH_S - SESSION_BLEND_S) / HOP_S)
    assert shares.count(SESSION_BLEND_SHARE) == blend_hops and shares[-1] == 1.0


def test_a_model_process_blends_as_the_model_does(session_weights, recognizer, espeak_wav):
    from webapp.pool import ProcessPredictor

    wave = load_audio(espeak_wav)
    windows = [wave[:48000], wave[8000:40000]]
    _, stats = recognizer.analyse(windows)
    centres, shares = [stats.mean(axis=0)] * 2, [SESSION_BLEND_SHARE, None]
    lane = ProcessPredictor(str(session_weights), precision=recognizer.precision)  # the same arithmetic
    try:
        probs, *_ = lane.submit(windows, centres=centres, shares=shares)()
    finally:
        lane.close()
    np.testing.assert_allclose(probs, recognizer.analyse(windows, centres=centres, shares=shares)[0], atol=1e-4)


def test_session_events_use_the_session_threshold():
    session = StreamSession(16000, uncertain_below=0.9, uncertain_below_session=0.1)
    job = WindowJob(0.0, 0.5, True, np.zeros(8000, np.float32), centre=np.zeros(8, np.float32))
    assert session.apply(job, np.full(7, 1 / 7))["uncertain"] is False  # 0.14 >= 0.1
    assert session.apply(WindowJob(0.5, 1.0, True, np.zeros(8000, np.float32)), np.full(7, 1 / 7))["uncertain"] is True


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_live_stream_switches_to_the_session_head(base_config, session_weights, espeak_wav, mode):
    from webapp import create_app, socketio

    app = create_app({**base_config, "WEIGHTS": str(session_weights), "INFERENCE_MODE": mode})
    try:
        client = socketio.test_client(app, namespace=NS)
        assert client.emit("start", {"sample_rate": 16000}, callback=True, namespace=NS)["ok"]
        pcm = (long_speech(espeak_wav, SESSION_MIN_SPEECH_S + 5) * 20000).astype("<i2")
        got = []
        for i in range(0, len(pcm), 4000):  # twice real time: no hop is skipped as stale on a busy machine
            client.emit("audio", pcm[i:i + 4000].tobytes(), namespace=NS)
            time.sleep(0.125)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(m["name"] == "emotion" and m["args"][0]["session"] for m in got):
            got += client.get_received(NS)
            time.sleep(0.1)
        events = [m["args"][0] for m in got if m["name"] == "emotion"]
        speech = [e for e in events if e["speech"]]
        assert speech and speech[0]["session"] is False  # the first windows: not enough speech yet
        first = next(i for i, e in enumerate(speech) if e["session"])
        assert first * HOP_S >= SESSION_MIN_SPEECH_S  # only after that much speech was analysed
    finally:
        app.extensions["ser_stream"].stop_background()


def test_the_shipped_model_has_a_calibrated_session_head():
    rec = Recognizer.load(WEIGHTS)
    if not rec.sessions:
        pytest.skip("the shipped model has no session head")
    assert rec.meta["session_min_speech_s"] == SESSION_MIN_SPEECH_S
    assert 0 < rec.uncertain_threshold(session=True) < 1
    assert rec.meta["loco_session_mean_ua"] > 0.25  # held-out corpora, well above chance (0.18)
