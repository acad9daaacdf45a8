"""The inference path computes features without librosa (a 2-3 s import and JIT on a cold start):
its mel filterbank, power STFT and silence trimming must give librosa's numbers."""
import numpy as np
import pytest

from ser_model import features as F

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("n_mels, n_fft, fmin, fmax", [(64, 512, 50.0, 8000.0), (40, 400, 0.0, 8000.0),
                                                      (80, 400, 0.0, 8000.0), (128, 512, 50.0, 8000.0)])
def test_mel_filterbank_is_librosas(n_mels, n_fft, fmin, fmax):
    ours = F.mel_filterbank(n_mels, n_fft, fmin, fmax)
    theirs = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


def signals(n: int = 60, seed: int = 0):
    """Noise bursts of random length, level and envelope; every third with a near-silent start."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        length = int(rng.integers(400, 50000))
        envelope = np.abs(np.sin(np.linspace(0, rng.uniform(1, 20), length))) ** 3
        y = (rng.standard_normal(length) * rng.uniform(0.001, 1) * envelope).astype(np.float32)
        if i % 3 == 0:
            y[:length // 3] *= 1e-4
        yield y


@pytest.mark.parametrize("n_fft, win_length", [(512, 400), (400, 400)])
def test_power_spectrogram_is_librosas(n_fft, win_length):
    for y in signals():
        spec = librosa.stft(y, n_fft=n_fft, hop_length=F.HOP_LENGTH, win_length=win_length, center=True,
                            pad_mode="constant")
        theirs = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        ours = F.power_spectrogram(y, n_fft, win_length)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7 * float(theirs.max()))


def test_trim_silence_cuts_where_librosa_does():
    margin = int(F.TRIM_MARGIN_S * 16000)
    for y in signals(200, seed=1):
        if len(y) < F.N_FFT:
            continue
        _, (start, end) = librosa.effects.trim(y, top_db=F.TRIM_TOP_DB, frame_length=F.WIN_LENGTH,
                                               hop_length=F.HOP_LENGTH)
        np.testing.assert_array_equal(F.trim_silence(y), y[max(0, start - margin):min(len(y), end + margin)])


def test_the_inference_path_does_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from ser_model.features import log_mel, encoder_log_mel, trim_silence; "
            "w = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1; "
            "log_mel(trim_silence(w)); encoder_log_mel(w); print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
