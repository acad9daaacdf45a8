"""Silero VAD's 16 kHz network in PyTorch, batched over streams *and* over chunks.

The wheel's ONNX model judges one 32 ms chunk (512 samples and 64 of context) per row and call,
so a server that judges many streams calls it once per chunk position. Most of its arithmetic,
the STFT and four convolutions, does not depend on the recurrent state: here it runs once for
every chunk of every stream, and only the LSTM cell goes chunk by chunk. In the VAD batcher's
rounds of 16-32 streams that costs a fifth to a half less CPU per chunk than the ONNX calls, by CPU
(``python bench/vad_bench.py``, docs/benchmarks.md).
The weights are the wheel's own (its TorchScript file); the probabilities equal the ONNX
model's to about 1e-5 (tests/test_streaming.py).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

ENCODE_ROWS = 2048  # chunks through the convolutions at once: bounds a round's working memory (~40 MB)
CHUNK = 512  # samples at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk each chunk is judged with
STATE = 128  # LSTM width: a stream's state is (2, 128), hidden and cell


@lru_cache(maxsize=1)
def _weights() -> dict:
    """The 16 kHz network's tensors from the wheel's TorchScript file, read once."""
    import warnings
    from importlib import resources

    import torch

    path = resources.files("silero_vad.data").joinpath("silero_vad.jit")
    with warnings.catch_warnings():  # torch 2.13 deprecates jit.load; the wheel ships only this and ONNX
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    state = {k[len("_model."):]: v.detach().float().contiguous()
             for k, v in scripted.state_dict().items() if k.startswith("_model.")}
    return {
        "basis": state["stft.forward_basis_buffer"][:, 0, :].T.contiguous(),  # (256, 258): real | imaginary
        "convs": [(state[f"encoder.{i}.reparam_conv.weight"], state[f"encoder.{i}.reparam_conv.bias"], stride)
                  for i, stride in enumerate((1, 2, 2, 1))],
        "w_ih": state["decoder.rnn.weight_ih"].T.contiguous(),  # (128, 512): gates i, f, g, o
        "w_hh": state["decoder.rnn.weight_hh"].T.contiguous(),
        "b": state["decoder.rnn.bias_ih"] + state["decoder.rnn.bias_hh"],
        "w_out": state["decoder.decoder.2.weight"][:, :, 0].T.contiguous(),  # (128, 1)
        "b_out": state["decoder.decoder.2.bias"],
    }


def _encode(x):
    """(n, 576) chunks with their context -> (n, 128): the network before its LSTM."""
    import torch
    from torch.nn import functional as F

    w = _weights()
    x = F.pad(x[:, None, :], (0, CONTEXT), mode="reflect")[:, 0]  # (n, 640), as Silero pads
    spectrum = x.unfold(1, 256, 128) @ w["basis"]  # (n, 4 frames, 258)
    half = spectrum.shape[-1] // 2
    h = torch.sqrt(spectrum[..., :half] ** 2 + spectrum[..., half:] ** 2).transpose(1, 2)  # (n, 129, 4)
    for weight, bias, stride in w["convs"]:
        h = torch.relu(F.conv1d(h, weight, bias, stride=stride, padding=1))
    return h[:, :, 0]


def speech_probabilities(chunks: np.ndarray, rows: list[int], state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Judge chunk positions 0..K-1 of S streams in one pass.

    ``chunks``: (sum(rows), 576) float32, position by position, the streams of each position in
    the same order; ``rows[k]``: how many streams have a chunk at position k (never increasing, so
    position k's rows are the first ``rows[k]`` streams). ``state``: (2, S, 128), updated in place.
    Returns (sum(rows),) probabilities in ``chunks``' order, and ``state``.
    """
    import torch

    w = _weights()
    with torch.inference_mode():
        x = torch.from_numpy(chunks)
        gates_in = torch.cat([torch.addmm(w["b"], _encode(x[i:i + ENCODE_ROWS]), w["w_ih"])
                              for i in range(0, len(x), ENCODE_ROWS)])  # (rows, 512): 2 KB a chunk
        h, c = torch.from_numpy(state[0]), torch.from_numpy(state[1])  # views: updated in place
        out, first = [], 0
        for r in rows:
            gates = gates_in[first:first + r] + h[:r] @ w["w_hh"]
            first += r
            i, f, g, o = gates.chunk(4, dim=1)
            c[:r] = torch.sigmoid(f) * c[:r] + torch.sigmoid(i) * torch.tanh(g)
            h[:r] = torch.sigmoid(o) * torch.tanh(c[:r])
            out.append(torch.relu(h[:r]) @ w["w_out"])
        probs = torch.sigmoid(torch.cat(out)[:, 0] + w["b_out"])
    return probs.numpy(), state
