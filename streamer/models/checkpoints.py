"""Reading a published checkpoint into a module, with one-line errors that say what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError


def read_checkpoint(path: Path, label: str, expected: str) -> object:
    """What ``torch.load`` finds in ``path`` (tensors only, on the CPU).

    ``label`` names the model in messages, ``expected`` the file to pass instead.
    """
    if not path.is_file():
        raise ModelError(f"{label} weights not found at {path}; pass --weights PATH to {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or truncated file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"cannot read {label} weights {path}: {reason}; is it a torch checkpoint "
            f"(complete, not truncated)? expected {expected}"
        ) from exc


def _some(names: list[str], n: int) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def load_state(model: nn.Module, state: object, path: Path, label: str) -> nn.Module:
    """Copy ``state`` into ``model`` after checking every key and shape; ``model`` in eval mode."""
    if not isinstance(state, Mapping):
        raise ModelError(f"{path} holds no state dict, so it is not a {label} checkpoint")
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        held = sorted(map(str, state))
        holds = f"; it holds {_some(held, 3)}" if held else ""
        raise ModelError(f"{path} is not a {label} checkpoint: missing {_some(missing, 4)}{holds}")
    for key, tensor in wanted.items():
        value = state[key]
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        if got != tuple(tensor.shape):
            raise ModelError(f"{path}: {key} has shape {got}, {label} needs {tuple(tensor.shape)}")
    model.load_state_dict({key: state[key] for key in wanted})
    return model.eval()
