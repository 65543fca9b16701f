"""Checkpoints that say what they hold: config, qualities, identity and provenance.

Loaded with ``torch.load(weights_only=True)``: a checkpoint is plain tensors,
numbers and strings, never pickled code.
"""
from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.configs import MAX_NAME, ModelConfig
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


#: Keys every checkpoint has (``metadata`` is optional).
REQUIRED_KEYS = ("format", "format_version", "name", "hash", "config", "state_dict")
#: Stored dtypes a floating-point weight may have (loaded back as float32).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def load_checkpoint(path: str | Path | None = None) -> dict[str, Any]:
    """The raw checkpoint dictionary (``None``: the packaged default model), validated:
    its keys, name, hash, config (``ModelConfig.from_dict``: types and sane widths) and
    that ``state_dict`` maps names to tensors. Any problem is one ``CheckpointError``
    line naming the file and what is wrong; nothing is built before these checks."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        hint = " (the packaged default model is missing: train one, see README)" if path == DEFAULT_MODEL else ""
        raise CheckpointError(f"no checkpoint at {path}{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False, i.e. running the file's code: never repeat it.
        text = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found or "Unsupported global" in text:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"{path}: refused: it holds pickled code or objects{what}, which a checkpoint "
                                  "never does (nothing in it was run)") from None
        detail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(detail)})") from None
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ParaHydra checkpoint")
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {checkpoint.get('format_version')!r} unsupported "
                              f"(this version reads {FORMAT_VERSION})")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    name, digest = checkpoint["name"], checkpoint["hash"]
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME:
        raise CheckpointError(f"{path}: model name must be a string of 1..{MAX_NAME} bytes")
    if not isinstance(digest, str) or len(digest) != 16 or any(c not in "0123456789abcdef" for c in digest):
        raise CheckpointError(f"{path}: hash must be 16 lowercase hex digits")
    try:
        checkpoint["config"] = ModelConfig.from_dict(checkpoint["config"]).to_dict()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: state_dict is not a mapping of names to tensors")
    if not isinstance(checkpoint.get("metadata", {}), dict):
        raise CheckpointError(f"{path}: metadata is not a mapping")
    return checkpoint


def load_model(path: str | Path | None = None) -> tuple[ParaHydra, ModelIdentity, dict[str, Any]]:
    """Build the model a checkpoint describes, in eval mode with CDF tables ready.

    The weights must be the ones the config describes: every name, shape and dtype is
    compared with the model before any is loaded, and their hash with the recorded one.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL
    checkpoint = load_checkpoint(path)
    state = checkpoint["state_dict"]
    identity = ModelIdentity(name=checkpoint["name"], hash=checkpoint["hash"])
    try:
        digest = state_hash(state)
    except (RuntimeError, TypeError, ValueError) as error:  # e.g. a sparse or quantised tensor
        raise CheckpointError(f"{path}: weights of a kind a checkpoint never holds ({_first_line(error)})") from None
    if digest != identity.hash:
        raise CheckpointError(f"{path}: weights do not match their recorded hash (corrupted file?)")
    try:
        model = ParaHydra(ModelConfig.from_dict(checkpoint["config"]))
    except (ValueError, RuntimeError, AssertionError, TypeError) as error:
        raise CheckpointError(f"{path}: its config builds no model ({_first_line(error)})") from None
    try:
        check_state(model, state)
        apply_state(model, state)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    model.eval()
    model.update(force=True)
    return model, identity, checkpoint.get("metadata", {})


def check_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise ``CheckpointError`` unless ``state`` holds exactly ``model``'s weights (CDF
    tables aside): the same names, shapes and kinds of dtype, all finite."""
    own = {k: v for k, v in model.state_dict().items() if not _is_cdf_buffer(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not _is_cdf_buffer(k))
    if missing or unexpected:
        raise CheckpointError(
            f"weights are not those of the model its config describes ({len(missing)} missing"
            f"{': ' + ', '.join(missing[:2]) if missing else ''}; {len(unexpected)} unexpected"
            f"{': ' + ', '.join(unexpected[:2]) if unexpected else ''}) - another architecture?")
    for key, expected in own.items():
        stored = state[key]
        if stored.shape != expected.shape:
            raise CheckpointError(f"weight {key} has shape {tuple(stored.shape)}, the model's is "
                                  f"{tuple(expected.shape)}")
        if expected.is_floating_point():
            if stored.dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"weight {key} is {stored.dtype}, not a floating-point dtype")
            if not bool(torch.isfinite(stored).all()):
                raise CheckpointError(f"weight {key} holds NaN or infinite values")
        elif stored.dtype != expected.dtype:
            raise CheckpointError(f"weight {key} is {stored.dtype}, the model's is {expected.dtype}")


def _first_line(error: BaseException | str) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


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
