"""GE2E d-vector encoder (Wan et al. 2018) with the weights that ship in ``resemblyzer``.

3-layer LSTM (40 -> 256) over a 1.6 s window of power mel frames; the last layer's
final hidden state goes through Linear(256, 256) and ReLU and is L2-normalised.
The weights are read from ``pretrained.pt`` inside the installed ``resemblyzer``
package, found on ``sys.path`` without importing that package. :func:`ge2e_to_mlx` builds
the MLX twin from the loaded module.
"""

from __future__ import annotations

import importlib.util
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
        return self.readout(hidden[-1])

    def resume(
        self, mels: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on from ``state`` (``(batch, 2 * 3 * 256)``, ``None``: the start): the last
        layer's output at every frame, and the state after the last frame."""
        hc = None
        if state is not None:
            h, c = state.view(-1, 2, LAYERS, HIDDEN).permute(1, 2, 0, 3).contiguous()
            hc = (h, c)
        outputs, (h, c) = self.lstm(mels, hc)
        return outputs, torch.stack((h, c)).permute(2, 0, 1, 3).reshape(len(mels), -1)

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """Last-layer outputs ``(..., 256)`` -> unit-length embeddings."""
        raw = torch.relu(self.linear(outputs))
        return raw / torch.linalg.vector_norm(raw, dim=-1, keepdim=True).clamp_min(1e-12)


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


class GE2EMLX:
    """The MLX twin of a :class:`GE2EEncoder` (weights converted once): call it with
    ``(batch, frames, 40)`` for ``(batch, 256)`` unit vectors; :meth:`resume` as the torch
    module's, on numpy arrays."""

    def __init__(self, module: GE2EEncoder) -> None:
        self.mx = import_mlx()
        self.layers, self.linear = mlx_lstm(module.lstm), mlx_linear(module.linear)

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        x = self.mx.array(mels)
        for layer in self.layers:
            x, _ = layer(x)
        return mlx_unit_numpy(self.mx.maximum(self.linear(x[:, -1]), 0.0))

    def resume(
        self, mels: np.ndarray, state: np.ndarray | None, readouts: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings after each of ``readouts`` frames ``(batch, len(readouts), 256)``, and
        the state after the last frame (the torch module's layout)."""
        mx = self.mx
        x = mx.array(mels)
        previous = None if state is None else mx.array(state).reshape(-1, 2, LAYERS, HIDDEN)
        ends = []
        for i, layer in enumerate(self.layers):
            if previous is None:
                x, cell = layer(x)
            else:
                x, cell = layer(x, hidden=previous[:, 0, i], cell=previous[:, 1, i])
            ends.append((x[:, -1], cell[:, -1]))
        h = mx.stack([end[0] for end in ends], axis=1)
        c = mx.stack([end[1] for end in ends], axis=1)
        raw = mx.maximum(self.linear(x[:, [r - 1 for r in readouts]]), 0.0)
        new_state = mx.stack([h, c], axis=1).reshape(len(mels), -1)
        return mlx_unit_numpy(raw), np.array(new_state, dtype=np.float32)


def ge2e_to_mlx(module: GE2EEncoder) -> GE2EMLX:
    """The MLX twin of ``module``."""
    return GE2EMLX(module)


def ge2e_to_onnx(module: GE2EEncoder, quantise: bool = True):
    """``module`` on onnxruntime, quantised to int8 unless ``quantise`` is false
    (:mod:`.onnx_int8`, cached on disk)."""
    from .onnx_int8 import OnnxInt8GE2E

    return OnnxInt8GE2E(module, quantise)
