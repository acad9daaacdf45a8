"""Training loop: one function from cached features to a trained model.

Log-mel models see random 2 s crops of a random variant (clean or augmented)
per step, with random gain, SpecAugment and mixup; the 1D-CNN sees the
hand-crafted vector of a random variant. Batches are drawn so that every corpus
and every class within it weigh the same. The encoder head is not trained by
steps: its linear layer is fitted once on all variants (``ser_model.encoder``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import N_VARIANTS, FeatureBank, balanced_weights, crop, spec_augment
from .features import FRAMES_PER_SECOND, N_HANDCRAFTED, N_MELS
from .labels import NUM_CLASSES
from .model import Ensemble, ModelConfig, build_model, count_parameters


@dataclass
class TrainConfig:
    arch: str = "attn_cnn"
    epochs: int = 50
    steps_per_epoch: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    crop_s: float = 2.0
    p_clean: float = 0.4  # chance of the clean variant instead of an augmented copy
    gain_db: float = 10.0  # random gain range (+/-) applied to log-mel
    mixup_alpha: float = 0.4
    label_smoothing: float = 0.1
    patience: int = 10  # cnn1d early stopping, in epochs without a better validation UA
    seed: int = 0
    threads: int = 2
    channels: tuple = ModelConfig.channels  # attn_cnn widths; one default, in model.py
    utterance_norm: bool = ModelConfig.utterance_norm
    tdnn_width: int = ModelConfig.tdnn_width
    members: int = 1  # networks trained with seeds seed, seed+1, ... and averaged (an ensemble)
    bf16: bool = False  # bfloat16 autocast in training (1.7x faster on CPUs with AVX512-BF16); weights stay fp32
    variants: int = N_VARIANTS  # augmented copies cached per training file (the bank is built with these)
    device: str = "cpu"  # where the network trains ("cuda" on a GPU machine); the model comes back on the CPU
    encoder: bool = False  # attn_cnn: add a head on the pretrained speaker encoder as one more ensemble member
    head_c: float = 0.003  # the encoder head's inverse L2 strength (scikit-learn's C; 0.003-0.03 score alike)
    head_variants: int = 0  # augmented copies per file the encoder head is fitted on (0: ``variants``)

    def __post_init__(self):
        if self.encoder and self.arch != "attn_cnn":
            raise ValueError(f"the encoder head joins attn_cnn models only, not {self.arch!r}")
        if self.arch == "encoder_head" and self.members > 1:
            raise ValueError("--arch encoder_head fits one head: --members does not apply")

    @property
    def uses_encoder(self) -> bool:
        """Whether training needs the speaker encoder's features (``FeatureBank(with_encoder=...)``)."""
        return self.encoder or self.arch == "encoder_head"

    @property
    def encoder_variants(self) -> int:
        """Augmented copies per file the encoder head is fitted on."""
        return self.head_variants or self.variants

    @property
    def bank_variants(self) -> int:
        """Augmented copies per file the FeatureBank must hold (the networks use the first ``variants``)."""
        return max(self.variants, self.encoder_variants) if self.uses_encoder else self.variants

    @classmethod
    def for_arch(cls, arch: str, **overrides) -> "TrainConfig":
        """Per-architecture defaults: the reference recipes use Adam at 1e-3 and no mixup;
        cnn_lstm gets 1200 steps, cnn1d at most 1800 (it stops early)."""
        base = {"attn_cnn": {}, "tdnn": {},
                "cnn_lstm": {"lr": 1e-3, "mixup_alpha": 0.0, "epochs": 40, "steps_per_epoch": 30},
                "cnn1d": {"lr": 1e-3, "mixup_alpha": 0.0, "epochs": 60, "steps_per_epoch": 30},
                "encoder_head": {}}[arch]
        return cls(arch=arch, **{**base, **overrides})


def _fit_standardizer(bank: FeatureBank, idx: list[int], kind: str) -> tuple[list, list]:
    if kind == "handcrafted":
        x = np.stack([bank.handcrafted[i][0] for i in idx])
        return x.mean(0).tolist(), (x.std(0) + 1e-5).tolist()
    x = np.concatenate([bank.logmel[i][0].astype(np.float32) for i in idx], axis=1)
    return x.mean(1).tolist(), (x.std(1) + 1e-5).tolist()


class BatchMaker:
    """Draws training batches (and plain evaluation batches) from a FeatureBank."""

    def __init__(self, bank: FeatureBank, idx: list[int], cfg: TrainConfig, kind: str):
        self.bank, self.idx, self.cfg, self.kind = bank, np.asarray(idx), cfg, kind
        self.p = balanced_weights([bank.records[i] for i in idx])
        self.rng = np.random.default_rng(cfg.seed)
        self.frames = int(cfg.crop_s * FRAMES_PER_SECOND) + 1

    def _variant(self, i: int, train: bool) -> int:
        if not train or self.rng.random() < self.cfg.p_clean:
            return 0
        return int(self.rng.integers(1, min(len(self.bank.logmel[i]), self.cfg.variants + 1)))

    def features(self, idx, train: bool) -> torch.Tensor:
        if self.kind == "handcrafted":
            return torch.from_numpy(np.stack([self.bank.handcrafted[i][self._variant(i, train)] for i in idx]))
        rng = self.rng if train else None
        if self.cfg.uses_encoder and not train:  # evaluation batches carry its bands; centre crops line up
            x = np.stack([np.concatenate([crop(self.bank.logmel[i][0], self.frames, None),
                                          crop(self.bank.encmel[i][0], self.frames, None)]) for i in idx])
            return torch.from_numpy(x.astype(np.float32))
        x = np.stack([crop(self.bank.logmel[i][self._variant(i, train)], self.frames, rng) for i in idx])
        x = torch.from_numpy(x.astype(np.float32))  # (B, N_MELS, T)
        if train:
            gain = torch.from_numpy(self.rng.uniform(-1, 1, (len(idx), 1, 1)).astype(np.float32))
            x = spec_augment(x + gain * self.cfg.gain_db * np.log(10) / 10, self.rng)
        return x

    def train_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(self.idx, size=self.cfg.batch_size, p=self.p)
        return self.features(idx, train=True), torch.from_numpy(self.bank.labels[idx])


def train(bank: FeatureBank, train_idx: list[int], val_idx: list[int] | None = None,
          cfg: TrainConfig | None = None, progress: bool = True):
    """Train a model (an Ensemble of ``cfg.members`` networks, each with its own seed, joined by
    an encoder head with ``cfg.encoder``).

    Returns (model, ModelConfig, history dict of per-epoch curves; for an ensemble, each
    curve is the mean over members).
    """
    from .encoder import fit_encoder_head

    cfg = cfg or TrainConfig()
    if cfg.arch == "encoder_head":
        return fit_encoder_head(bank, train_idx, cfg, progress)
    if cfg.members <= 1 and not cfg.encoder:
        return _train_one(bank, train_idx, val_idx, cfg, progress)
    runs = [_train_one(bank, train_idx, val_idx, replace(cfg, seed=cfg.seed + i, members=1), progress)
            for i in range(cfg.members)]
    mcfg = replace(runs[0][1], members=cfg.members)
    members = [m for m, _, _ in runs]
    history = {k: np.mean([h[k] for _, _, h in runs], axis=0).tolist() for k in runs[0][2]
               if all(len(h.get(k, ())) == len(runs[0][2][k]) for _, _, h in runs)}
    if cfg.encoder:
        return join_encoder_head(members, mcfg, history, bank, train_idx, cfg, progress)
    return Ensemble(members).eval(), mcfg, history


def join_encoder_head(networks: list, mcfg: ModelConfig, history: dict, bank: FeatureBank, train_idx: list[int],
                      cfg: TrainConfig, progress: bool = True):
    """Trained attn_cnn ``networks`` plus an encoder head fitted on ``train_idx``, as one Ensemble
    (also how ``train --networks-from`` adds a head to a saved model)."""
    from .encoder import fit_encoder_head

    head, _, head_history = fit_encoder_head(bank, train_idx, cfg, progress)
    history = {**history, "encoder_head_train_acc": head_history["final_train_acc"]}
    return Ensemble(list(networks) + [head]).eval(), replace(mcfg, encoder=True), history


def _train_one(bank: FeatureBank, train_idx: list[int], val_idx: list[int] | None, cfg: TrainConfig,
               progress: bool = True):
    """Train one network; see ``train``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    kind = "handcrafted" if cfg.arch == "cnn1d" else "logmel"
    mean, std = _fit_standardizer(bank, train_idx, kind)
    mcfg = ModelConfig(arch=cfg.arch, channels=tuple(cfg.channels), utterance_norm=cfg.utterance_norm,
                       tdnn_width=cfg.tdnn_width, feature_mean=mean, feature_std=std,
                       n_mels=N_MELS, n_features=N_HANDCRAFTED)
    device = torch.device(cfg.device)
    model = build_model(mcfg).to(device)
    batches = BatchMaker(bank, train_idx, cfg, kind)
    total = cfg.epochs * cfg.steps_per_epoch
    if cfg.arch == "cnn1d":  # the reference recipe: Adam, reduce-LR-on-plateau, early stopping
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=3)
        sched = None
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2)
        plateau = None
    history: dict[str, list[float]] = {"train_loss": [], "train_acc": []}
    # cnn1d keeps the epoch with the best validation UA: the validation set is two actors, and
    # their loss is so noisy that stopping on it picked epoch 0 or 1 on three of five folds
    best = (-1.0, None, 0)  # (val UA, state, epoch)
    bar = tqdm(range(cfg.epochs), desc=f"train {cfg.arch} ({count_parameters(model) / 1e3:.0f}k params)",
               unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        losses, correct, seen = [], 0, 0
        for _ in range(cfg.steps_per_epoch):
            x, y = (t.to(device) for t in batches.train_batch())
            target = F.one_hot(y, NUM_CLASSES).float()
            if cfg.mixup_alpha > 0:
                lam = float(batches.rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                perm = torch.randperm(len(y)).to(device)  # drawn on the CPU: same draws on any device
                x, target = lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x).float()
            loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if sched:
                sched.step()
            losses.append(loss.item())
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        history["train_loss"].append(float(np.mean(losses)))
        history["train_acc"].append(correct / seen)
        postfix = {"loss": f"{history['train_loss'][-1]:.3f}", "acc": f"{history['train_acc'][-1]:.3f}"}
        if val_idx:
            val_loss, val_acc, val_ua = evaluate_bank(model, batches, val_idx)
            for k, v in (("val_loss", val_loss), ("val_acc", val_acc), ("val_ua", val_ua)):
                history.setdefault(k, []).append(v)
            postfix.update(val_ua=f"{val_ua:.3f}")
            if plateau:
                plateau.step(val_ua)
            if val_ua > best[0]:
                best = (val_ua, copy.deepcopy(model.state_dict()), epoch)
            elif cfg.arch == "cnn1d" and epoch - best[2] >= cfg.patience:
                break
        bar.set_postfix(postfix)
    if val_idx and cfg.arch == "cnn1d" and best[1] is not None:
        model.load_state_dict(best[1])  # early stopping restores the best epoch
        history["best_epoch"] = [best[2]]
    return model.cpu().eval(), mcfg, history


@torch.inference_mode()
def evaluate_bank(model, batches: BatchMaker, idx: list[int]) -> tuple[float, float, float]:
    """Loss, accuracy and UA on clean cached features (centre crops); a quick validation check."""
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(batches.features(idx[i:i + 64], train=False).to(device))
                        for i in range(0, len(idx), 64)]).cpu()
    y = torch.from_numpy(batches.bank.labels[idx])
    model.train()
    pred = logits.argmax(1)
    recalls = [(pred[y == c] == c).float().mean().item() for c in range(NUM_CLASSES) if (y == c).any()]
    return F.cross_entropy(logits, y).item(), (pred == y).float().mean().item(), float(np.mean(recalls))


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
