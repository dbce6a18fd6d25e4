"""GE2E d-vector encoder (Wan et al. 2018) with the weights that ship in ``resemblyzer``.

3-layer LSTM (40 -> 256) over a 1.6 s window of power mel frames; the last layer's
final hidden state goes through Linear(256, 256) and ReLU and is L2-normalised.
The weights are read from ``pretrained.pt`` inside the installed ``resemblyzer``
package, found on ``sys.path`` without importing that package. :func:`ge2e_to_mlx` builds
the MLX twin from the loaded module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .backends import import_mlx, mlx_linear, mlx_lstm, mlx_unit_numpy
from .checkpoints import load_state, read_checkpoint

N_MELS = 40
HIDDEN = 256
EMBEDDING_DIM = 256
LAYERS = 3


class GE2EEncoder(nn.Module):
    """``(batch, frames, 40)`` power mel -> ``(batch, 256)`` unit-length embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


def default_weights_path() -> Path:
    """Where the installed ``resemblyzer`` package keeps ``pretrained.pt``."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the GE2E weights come with the 'resemblyzer' package, which is not installed; "
            "run: pip install resemblyzer (or pass --weights PATH to a pretrained.pt)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def load_ge2e(path: str | Path | None = None) -> GE2EEncoder:
    """Build the encoder and load resemblyzer-layout weights (``{"model_state": ...}``)."""
    path = Path(path) if path is not None else default_weights_path()
    checkpoint = read_checkpoint(path, "GE2E", "a pretrained.pt")
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    return load_state(GE2EEncoder(), state, path, "GE2E")


def ge2e_to_mlx(module: GE2EEncoder) -> Callable[[np.ndarray], np.ndarray]:
    """The MLX twin of ``module``: ``(batch, frames, 40)`` -> ``(batch, 256)`` unit vectors."""
    mx = import_mlx()
    layers, linear = mlx_lstm(module.lstm), mlx_linear(module.linear)

    def embed(mels: np.ndarray) -> np.ndarray:
        x = mx.array(mels)
        for layer in layers:
            x, _ = layer(x)
        return mlx_unit_numpy(mx.maximum(linear(x[:, -1]), 0.0))

    return embed
