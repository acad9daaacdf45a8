"""The optimized model's CPU arithmetic: float32, bfloat16, and ``auto``'s choice between them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_model import Recognizer
from ser_model import inference
from ser_model.checkpoint import save_checkpoint
from ser_model.inference import BF16_MIN_SPEEDUP, bfloat16_kernels, choose_precision
from ser_model.model import ModelConfig, build_model

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
needs_bf16 = pytest.mark.skipif(not bfloat16_kernels(), reason="this CPU has no bfloat16 kernels")


def test_auto_takes_bfloat16_only_when_it_is_clearly_faster():
    assert choose_precision(20.0, 11.0) == "bfloat16"  # an AVX-512 BF16 core: 1.8x
    assert choose_precision(20.0, 20.0 / BF16_MIN_SPEEDUP) == "bfloat16"
    assert choose_precision(20.0, 18.0) == "float32"  # 1.1x is not worth the rounding
    assert choose_precision(10.0, 30.0) == "float32"  # emulated bfloat16 is slower
    assert choose_precision(20.0, None) == "float32"  # no bfloat16 copy


def test_an_unknown_precision_is_refused(tmp_path):
    cfg = ModelConfig(channels=(8, 16, 32, 64), members=1)
    path = save_checkpoint(tmp_path / "m", build_model(cfg).eval(), cfg)
    for optimize in (True, False):
        with pytest.raises(ValueError, match="precision"):
            Recognizer.load(path, optimize=optimize, precision="float16")


@pytest.mark.parametrize("choice", ["float32", "bfloat16"])
def test_auto_runs_the_copy_its_timing_chose(tmp_path, monkeypatch, choice):
    if choice == "bfloat16" and not bfloat16_kernels():
        pytest.skip("this CPU has no bfloat16 kernels")
    timed = []
    monkeypatch.setattr(inference, "choose_precision", lambda fp32, bf16: timed.append((fp32, bf16)) or choice)
    cfg = ModelConfig(channels=(8, 16, 32, 64), members=1)
    path = save_checkpoint(tmp_path / f"m_{choice}", build_model(cfg).eval(), cfg)
    rec = Recognizer.load(path)
    assert rec.precision == choice
    if bfloat16_kernels():
        assert len(timed) == 1 and all(ms > 0 for ms in timed[0])  # both copies were timed here
    pinned = Recognizer.load(path, precision=choice)
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (48000, 19200)]
    np.testing.assert_allclose(rec.predict_proba(windows), pinned.predict_proba(windows), atol=1e-6)


@needs_bf16
def test_the_shipped_model_in_bfloat16_answers_as_in_float32_within_a_hundredth(espeak_wav):
    from ser_model.audio import load_audio

    fp32 = Recognizer.load(WEIGHTS, precision="float32")
    bf16 = Recognizer.load(WEIGHTS, precision="bfloat16")
    assert (fp32.precision, bf16.precision) == ("float32", "bfloat16")
    wave = load_audio(espeak_wav)
    windows = [wave[:48000], wave[8000:56000], wave[:20800], wave[16000:56000]]
    a, b = fp32.predict_proba(windows), bf16.predict_proba(windows)
    assert 0 < np.abs(a - b).max() < 0.02  # it does compute differently, and barely
    clear = np.diff(np.sort(a, axis=1)[:, -2:], axis=1)[:, 0] > 0.04  # no near-tie between the top two
    assert clear.any() and (a.argmax(1) == b.argmax(1))[clear].all()
    if fp32.sessions:  # the session head's statistics too
        (_, sa), (_, sb) = fp32.analyse(windows), bf16.analyse(windows)
        assert np.abs(sa - sb).max() < 0.05 * np.abs(sa).max()


def test_bfloat16_asked_of_a_cpu_without_it_runs_the_traced_float32_copy(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(inference, "bfloat16_kernels", lambda: False)
    cfg = ModelConfig(channels=(8, 16, 32, 64), members=1)
    path = save_checkpoint(tmp_path / "m", build_model(cfg).eval(), cfg)
    for asked in ("bfloat16", "auto"):
        rec = Recognizer.load(path, precision=asked)
        assert rec.precision == "float32" and isinstance(rec.runner, torch.jit.ScriptModule), asked
