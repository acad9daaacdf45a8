"""The pretrained speaker encoder: its input features, its weights, and the head trained on it."""
from __future__ import annotations

import importlib.util

import librosa
import numpy as np
import pytest
import torch

from ser_model import EMOTIONS, Recognizer
from ser_model.checkpoint import load_checkpoint, save_checkpoint, sha256
from ser_model.corpora import scan
from ser_model.data import FeatureBank
from ser_model.encoder import EncoderMissing, load_pretrained, pretrained_file
from ser_model.features import ENCODER_BANDS, N_MELS, encoder_log_mel, log_mel
from ser_model.labels import LABEL_TO_INDEX
from ser_model.model import EncoderHead, Ensemble, ModelConfig
from ser_model.train import TrainConfig, train

from test_model import make_tone_corpus


@pytest.fixture(scope="module")
def split_tone_bank(tmp_path_factory):
    """Tones spoken by six fake actors, with the encoder's features: actors 1-4 train, 5-6 test."""
    root = make_tone_corpus(tmp_path_factory.mktemp("tones"), actors=(1, 2, 3, 4, 5, 6), reps=2, seed=1)
    bank = FeatureBank(scan(root).records, workers=1, cache_dir=tmp_path_factory.mktemp("cache"), with_encoder=True)
    train_idx = [i for i, r in enumerate(bank.records) if r.speaker not in ("ravdess-05", "ravdess-06")]
    test = [r for r in bank.records if r.speaker in ("ravdess-05", "ravdess-06")]
    return bank, train_idx, test


def noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def test_encoder_features_are_the_encoders_own_mel_and_line_up_with_ours():
    wave = noise(2.0, 0.3)  # -10 dBFS: louder than the encoder's -30 dBFS target, so not rescaled
    theirs = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    ours = encoder_log_mel(wave)
    assert ours.shape == (ENCODER_BANDS, log_mel(wave).shape[1])
    assert np.allclose(np.exp(ours), theirs + 1e-10, rtol=1e-4)


def test_quiet_audio_is_raised_to_the_encoders_level_and_loud_audio_is_left_alone():
    quiet = noise(1.0, 0.001)
    assert np.allclose(encoder_log_mel(quiet), encoder_log_mel(4 * quiet), atol=1e-4)  # both raised to -30 dBFS
    loud = noise(1.0, 0.2)
    assert np.allclose(encoder_log_mel(2 * loud) - encoder_log_mel(loud), np.log(4), atol=1e-3)
    assert np.isfinite(encoder_log_mel(np.zeros(8000, np.float32))).all()  # digital silence: no division by 0


def test_pretrained_weights_come_from_the_wheel_frozen():
    head = load_pretrained(EncoderHead(ModelConfig(arch="encoder_head")))
    wheel = torch.load(pretrained_file(), map_location="cpu", weights_only=True)["model_state"]
    for name, tensor in head.lstm.state_dict().items():
        assert torch.equal(tensor, wheel[f"lstm.{name}"]), name
    assert not any(p.requires_grad for p in head.lstm.parameters())


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderMissing, match="pip install --no-deps resemblyzer"):
        pretrained_file()


def test_encoder_head_learns_pitch_coded_tones_of_unseen_actors(split_tone_bank):
    bank, train_idx, test = split_tone_bank
    head, mcfg, history = train(bank, train_idx, None, TrainConfig(arch="encoder_head", threads=1), progress=False)
    assert mcfg.arch == "encoder_head" and isinstance(head, EncoderHead)
    assert history["train_loss"][-1] < history["train_loss"][0]
    rec = Recognizer(head, mcfg)
    correct = [rec.predict_file(r.path).label == r.label for r in test]
    assert np.mean(correct) > 0.6, np.mean(correct)  # chance: 1/7
    # the head's lstm never moved: still the wheel's weights
    assert torch.equal(head.lstm.weight_hh_l1, load_pretrained(EncoderHead(mcfg)).lstm.weight_hh_l1)


def test_a_cnn_with_the_encoder_is_an_ensemble_with_the_head_as_one_more_member(split_tone_bank, tmp_path):
    bank, train_idx, test = split_tone_bank
    tiny = dict(channels=(8, 16, 32, 64), epochs=1, steps_per_epoch=2, batch_size=8, crop_s=0.6, threads=1)
    model, mcfg, history = train(bank, train_idx, None, TrainConfig(encoder=True, **tiny), progress=False)
    assert isinstance(model, Ensemble) and len(model.members) == 2 and isinstance(model.members[-1], EncoderHead)
    assert mcfg.encoder and mcfg.input_bands == N_MELS + ENCODER_BANDS
    assert 0 <= history["encoder_head_train_acc"] <= 1
    x = torch.cat([torch.randn(2, N_MELS, 150), torch.randn(2, ENCODER_BANDS, 150) - 8], dim=1)
    with torch.inference_mode():
        cnn, head = (torch.softmax(m(x), -1) for m in model.members)
        assert torch.allclose(torch.softmax(model(x), -1), (cnn + head) / 2, atol=1e-6)
        assert torch.allclose(cnn, torch.softmax(model.members[0](x[:, :N_MELS]), -1))  # the CNN reads its bands only
    path = save_checkpoint(tmp_path / "fused", model, mcfg)
    loaded, lcfg, _ = load_checkpoint(path)
    with torch.inference_mode():
        assert lcfg.encoder and torch.allclose(loaded(x), model(x), atol=1e-6)
    fast, eager = Recognizer.load(path, precision="float32"), Recognizer.load(path, optimize=False)
    assert isinstance(fast.runner, torch.jit.ScriptModule)  # the LSTM traces too
    windows = [noise(s, 0.1, seed=i) for i, s in enumerate((0.7, 3.0, 3.0, 1.3))]
    assert np.allclose(fast.predict_proba(windows), eager.predict_proba(windows), atol=1e-5)
    result = fast.predict_file(test[0].path)
    assert result.label in EMOTIONS and abs(sum(result.probabilities.values()) - 1) < 1e-3


def test_the_encoder_joins_attn_cnn_only():
    with pytest.raises(ValueError, match="attn_cnn"):
        train(None, [], None, TrainConfig(arch="tdnn", encoder=True), progress=False)


def test_banks_with_the_encoder_keep_their_own_cache_entries(split_tone_bank, tmp_path):
    bank, _, _ = split_tone_bank
    records = bank.records[:3]
    plain = FeatureBank(records, workers=1, cache_dir=tmp_path)
    with_encoder = FeatureBank(records, workers=1, cache_dir=tmp_path, with_encoder=True)
    assert plain.encmel == [] and len(with_encoder.encmel[0]) == len(plain.logmel[0])
    assert len(list(tmp_path.rglob("*.npz"))) == 6  # two entries per file
    from ser_model.data import _feature_version
    assert _feature_version(2) == "v1-64-512-160-35.0-2"  # the default keys every existing cache holds
    for a, b in zip(plain.logmel[0], with_encoder.logmel[0]):
        assert np.array_equal(a, b)  # same seeded augmentation either way
    assert LABEL_TO_INDEX[records[0].label] == with_encoder.labels[0]


def test_train_cli_adds_a_head_to_a_saved_model_without_retraining_its_networks(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from test_model import REPO

    corpus = make_tone_corpus(tmp_path / "tones", actors=(1, 2), reps=2)
    cfg = ModelConfig(channels=(8, 16, 32, 64), members=2)
    meta = {"train_config": {**TrainConfig(channels=(8, 16, 32, 64), members=2, seed=7).__dict__},
            "history": {"train_loss": [1.0, 0.5]}, "data": {"ravdess": {"files": 2 * 7 * 2, "speakers": 2}}}
    networks = save_checkpoint(tmp_path / "cnn", build_model_seeded(cfg), cfg, meta)
    other = save_checkpoint(tmp_path / "other", build_model_seeded(cfg), cfg, {**meta, "data": {"tess": {"files": 9}}})
    env = {**os.environ, "SER_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "ser_model", "train", "--data", str(corpus), "--out", str(tmp_path / "w" / "fused"),
            "--networks-from", str(networks), "--threads", "1", "--workers", "1"]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert refused.returncode != 0 and "--encoder" in refused.stderr
    elsewhere = [*base, "--encoder"]
    elsewhere[elsewhere.index(str(networks))] = str(other)
    refused = subprocess.run(elsewhere, capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert refused.returncode != 0 and "own training data" in refused.stderr and "Traceback" not in refused.stderr
    out = subprocess.run(base + ["--encoder"], capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    fused, fcfg, meta = load_checkpoint(tmp_path / "w")
    original, _, _ = load_checkpoint(networks)
    assert fcfg.encoder and fcfg.members == 2 and len(fused.members) == 3
    for a, b in zip(original.members, fused.members[:2]):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert meta["train_config"]["seed"] == 7 and meta["train_config"]["encoder"]  # the saved model's settings
    assert meta["history"]["train_loss"] == [1.0, 0.5] and "encoder_head_train_acc" in meta["history"]
    card = (tmp_path / "w" / "fused.md").read_text()
    assert "+ encoder head" in card and "Apache License 2.0" in card
    assert "The networks are those of `cnn.pt`" in card and meta["networks_from"]["sha256"] == sha256(networks)
    assert json.loads((tmp_path / "w" / "registry.json").read_text())["default"] == "fused"


def build_model_seeded(cfg: ModelConfig, seed: int = 0):
    from ser_model.model import build_model

    torch.manual_seed(seed)
    return build_model(cfg).eval()


def test_the_head_can_see_more_augmented_copies_than_the_networks(split_tone_bank, tmp_path):
    from ser_model.encoder import embed_bank
    from ser_model.modelcard import _model_label
    from ser_model.train import BatchMaker

    bank, train_idx, _ = split_tone_bank
    records = [bank.records[i] for i in train_idx[:4]]
    cfg = TrainConfig(encoder=True, variants=2, head_variants=4)
    assert (cfg.encoder_variants, cfg.bank_variants) == (4, 4)
    big = FeatureBank(records, workers=1, cache_dir=tmp_path, n_variants=cfg.bank_variants, with_encoder=True)
    assert len(big.logmel[0]) == 5
    batches = BatchMaker(big, list(range(4)), cfg, "logmel")
    drawn = {batches._variant(0, train=True) for _ in range(300)}
    assert drawn == {0, 1, 2}  # the networks keep to their own two copies
    head = load_pretrained(EncoderHead(ModelConfig(arch="encoder_head")))
    rows, owner = embed_bank(head, big, [0, 1], cfg.encoder_variants, progress=False)
    assert rows.shape == (10, 512) and owner.tolist() == [0] * 5 + [1] * 5
    assert _model_label("attn_cnn", (32, 64), 2, 2, True, 8) == "attn_cnn 32-64 x2 + encoder head (8 aug. copies)"
    assert _model_label("attn_cnn", (32, 64), 2, 2, True, 0) == "attn_cnn 32-64 x2 + encoder head"
