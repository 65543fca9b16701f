"""Checkpoints that say what they hold: config, qualities, identity and provenance.

Loaded with ``torch.load(weights_only=True)``: a checkpoint is plain tensors,
numbers and strings, never pickled code.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.configs import ModelConfig
from ..model.parahydra import ParaHydra
from .errors import CheckpointError

FORMAT = "parahydra-checkpoint"
FORMAT_VERSION = 1
#: The model shipped in the package and loaded when no checkpoint is named.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "parahydra_small.pt"


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights coded a payload: a readable name and a short hash of their state."""

    name: str
    hash: str  # 16 hex digits


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """First 16 hex digits of the SHA-256 over the (sorted) names and tensor bytes."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | Path, model: ParaHydra, name: str, half: bool = False,
                    **metadata: Any) -> ModelIdentity:
    """Write the model's learned state (not its CDF tables) with its config and metadata.

    ``half`` stores floating tensors as float16 (a shipped model's size halves; they
    are loaded back as float32). Extra ``metadata`` (training state, command, data)
    must be plain Python values or tensors.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not _is_cdf_buffer(k)}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    identity = ModelIdentity(name=name, hash=state_hash(state))
    checkpoint = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "hash": identity.hash,
        "config": model.cfg.to_dict(), "state_dict": state, "metadata": metadata,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return identity


def load_checkpoint(path: str | Path | None = None) -> dict[str, Any]:
    """The raw checkpoint dictionary (``None``: the packaged default model), validated."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        hint = " (the packaged default model is missing: train one, see README)" if path == DEFAULT_MODEL else ""
        raise CheckpointError(f"no checkpoint at {path}{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ParaHydra checkpoint")
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {checkpoint.get('format_version')} unsupported")
    return checkpoint


def load_model(path: str | Path | None = None) -> tuple[ParaHydra, ModelIdentity, dict[str, Any]]:
    """Build the model a checkpoint describes, in eval mode with CDF tables ready."""
    checkpoint = load_checkpoint(path)
    state = checkpoint["state_dict"]
    identity = ModelIdentity(name=checkpoint["name"], hash=checkpoint["hash"])
    if state_hash(state) != identity.hash:
        raise CheckpointError(f"{path}: weights do not match their recorded hash (corrupted file?)")
    model = ParaHydra(ModelConfig.from_dict(checkpoint["config"]))
    try:
        apply_state(model, state)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    model.eval()
    model.update(force=True)
    return model, identity, checkpoint.get("metadata", {})


def apply_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> list[str]:
    """Load stored weights (float32 again) into ``model``; returns the names loaded.

    CDF tables are not stored (``update()`` rebuilds them). ``strict=False`` loads only
    the tensors whose name and shape match (e.g. single-view pretraining into a model
    with other fusion modules).
    """
    own = model.state_dict()
    if not strict:
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    result = nn.Module.load_state_dict(
        model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not _is_cdf_buffer(k)]
    if strict and (missing or result.unexpected_keys):
        raise CheckpointError(f"weights do not fit the model they declare "
                              f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    return list(state)


def _is_cdf_buffer(key: str) -> bool:
    """CDF tables are rebuilt by ``update()`` at load time, so they are not stored."""
    return key.rsplit(".", 1)[-1] in {"_quantized_cdf", "_offset", "_cdf_length", "scale_table"}
