"""The pretrained speech encoder and the head trained on top of it.

Resemblyzer's voice encoder (a 3-layer LSTM trained for speaker verification on
LibriSpeech and VoxCeleb 1 and 2, thousands of speakers; Apache-2.0) ships its
weights inside its pip wheel. We read the first two LSTM layers from there, freeze
them, and fit a linear head on the mean and spread over time of the second
layer's states. That layer carries how a voice sounds across far more speakers
than our sixteen training actors; nested cross-validation on RAVDESS picks it, or
it with the third layer at no measurable gain (``scripts/encoder_probe.py``).

Only training needs the wheel (``pip install --no-deps resemblyzer==0.1.4``;
its own dependencies are for code we do not run). The checkpoint then carries
the frozen layers, so loading a model needs neither the wheel nor a network.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import FeatureBank, balanced_weights
from .features import FRAMES_PER_SECOND
from .inference import WINDOW_S
from .labels import NUM_CLASSES
from .model import EncoderHead, ModelConfig

WHEEL = "resemblyzer==0.1.4"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # its pretrained.pt


class EncoderMissing(RuntimeError):
    """The resemblyzer wheel (the pretrained weights) is not installed, or holds other weights."""


def pretrained_file() -> Path:
    """Path of ``pretrained.pt`` inside the installed resemblyzer package (found without importing
    it: its ``__init__`` needs webrtcvad, which we do not)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderMissing(f"training an encoder head needs the pretrained weights: pip install --no-deps {WHEEL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != WEIGHTS_SHA256:
        raise EncoderMissing(f"{path} is not the {WHEEL} encoder this project was measured with")
    return path


def pretrained_state() -> dict[str, torch.Tensor]:
    """The wheel's encoder weights: ``lstm.weight_ih_l0`` ... ``lstm.bias_hh_l2``, ``linear.*``."""
    return torch.load(pretrained_file(), map_location="cpu", weights_only=True)["model_state"]


def load_pretrained(head: EncoderHead) -> EncoderHead:
    """Copy the wheel's first ENCODER_LAYERS LSTM layers into ``head.lstm`` (frozen)."""
    state = pretrained_state()
    head.lstm.load_state_dict({k: state[f"lstm.{k}"] for k in head.lstm.state_dict()})  # layers 0..L-1 only
    head.lstm.requires_grad_(False)
    return head


@torch.inference_mode()
def embed_bank(head: EncoderHead, bank: FeatureBank, idx: list[int], n_variants: int | None = None,
               progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encoder statistics of the clean and the first ``n_variants`` augmented variants (default:
    all cached) of files ``idx``, each centre-cropped to one analysis window; returns
    (statistics (N, 512), file index per row)."""
    frames = int(WINDOW_S * FRAMES_PER_SECOND) + 1
    rows, owner = [], []
    for i in tqdm(idx, desc="encoder", unit="file", disable=not progress, leave=False):
        for mel in bank.encmel[i][:None if n_variants is None else n_variants + 1]:
            start = max(0, (mel.shape[1] - frames) // 2)
            x = torch.from_numpy(mel[:, start:start + frames].astype(np.float32))[None]
            rows.append(head.embed(x)[0].numpy())
            owner.append(i)
    return np.stack(rows), np.array(owner)


def fit_linear(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, c: float) -> tuple[torch.nn.Linear, list[float]]:
    """Multinomial logistic regression by L-BFGS: weighted mean cross-entropy plus
    ||W||^2 / (2 c n), the optimum of scikit-learn's ``LogisticRegression(C=c)`` up to the weights.
    Returns the fitted layer and the loss at each evaluation."""
    w = w / w.sum()
    l2 = 1.0 / (2 * c * len(y))
    linear = torch.nn.Linear(x.shape[1], NUM_CLASSES)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=500, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")
    losses = []

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(linear(x), y, reduction="none") * w).sum() + l2 * linear.weight.pow(2).sum()
        loss.backward()
        losses.append(loss.item())
        return loss

    opt.step(closure)
    return linear.eval(), losses


def fit_encoder_head(bank: FeatureBank, train_idx: list[int], cfg, progress: bool = True):
    """Train an EncoderHead on ``train_idx``: pretrained LSTM frozen, linear layer fitted by L-BFGS
    to class-and-corpus-balanced cross-entropy plus an L2 penalty (``cfg.head_c``, as
    scikit-learn's C), on the clean and ``cfg.encoder_variants`` augmented copies of each file.
    Returns (head, ModelConfig, history)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    mcfg = ModelConfig(arch="encoder_head")
    head = load_pretrained(EncoderHead(mcfg)).eval()
    stats, owner = embed_bank(head, bank, train_idx, cfg.encoder_variants, progress)
    mean, std = stats.mean(0), stats.std(0) + 1e-5
    x = torch.from_numpy((stats - mean) / std).float()
    y = torch.from_numpy(bank.labels[owner])
    per_file = dict(zip(train_idx, balanced_weights([bank.records[i] for i in train_idx])))
    w = torch.tensor([per_file[i] for i in owner], dtype=torch.float32)
    linear, losses = fit_linear(x, y, w, cfg.head_c)
    with torch.no_grad():
        head.norm.mean.copy_(torch.from_numpy(mean))
        head.norm.std.copy_(torch.from_numpy(std))
        head.head.load_state_dict(linear.state_dict())
        acc = (linear(x).argmax(1) == y).float().mean().item()
    return head.eval(), mcfg, {"train_loss": losses, "final_train_acc": acc}  # loss per L-BFGS evaluation
