"""RF5's simple-speaker-embedding GRU embedder (torch.hub ``RF5/simple-speaker-embedding``,
``gru_embedder``), its checkpoint loader and its MLX twin.

Tacotron log mel (``features/tacotron_mel.py``) -> ``(x + 5.76) / 5.76``, the reference's
normalisation with ``min_log_value = -11.52`` (5.76 = 11.52 / 2) -> 3-layer GRU (80 -> 768)
-> output at the last frame -> Linear(768, 256) -> L2-normalised.

The published checkpoint (``gru-wrapped-f1f850.pth`` of the repository's release 0.1) is
the state dict of the hub wrapper, whose network is its ``model`` attribute::

    model.rnn_stack.{weight_ih,weight_hh,bias_ih,bias_hh}_l{0,1,2}   the GRU
    model.projection.{weight,bias}                                  Linear(768, 256)

:class:`RF5GRUEncoder` has exactly these keys. No weights ship with streamer and none can
be downloaded here, so ``--weights PATH`` to that file is required.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .backends import import_mlx, mlx_gru, mlx_linear, mlx_unit_numpy
from .checkpoints import load_state, read_checkpoint

N_MELS = 80
HIDDEN = 768
LAYERS = 3
EMBEDDING_DIM = 256
MIN_LOG_VALUE = -11.52
NORMALISER = -MIN_LOG_VALUE / 2
CHECKPOINT = "gru-wrapped-f1f850.pth"
CHECKPOINT_URL = (
    "https://github.com/RF5/simple-speaker-embedding/releases/download/0.1/" + CHECKPOINT
)


class GRUStack(nn.Module):
    """The reference's network: GRU stack and projection (its attribute names)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn_stack = nn.GRU(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.projection = nn.Linear(HIDDEN, EMBEDDING_DIM)


class RF5GRUEncoder(nn.Module):
    """``(batch, frames, 80)`` Tacotron log mel -> ``(batch, 256)`` unit-length embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.model = GRUStack()

    def forward(self, log_mels: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.resume(log_mels, None)
        return self.readout(outputs[:, -1])

    def resume(
        self, log_mels: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on from ``state`` (``(batch, 3 * 768)``, ``None``: the start): the last
        layer's output at every frame, and the state after the last frame."""
        x = (log_mels + NORMALISER) / NORMALISER
        h = None if state is None else state.view(-1, LAYERS, HIDDEN).transpose(0, 1).contiguous()
        outputs, h = self.model.rnn_stack(x, h)
        return outputs, h.transpose(0, 1).reshape(len(log_mels), -1)

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """Last-layer outputs ``(..., 768)`` -> unit-length embeddings."""
        raw = self.model.projection(outputs)
        return raw / torch.linalg.vector_norm(raw, dim=-1, keepdim=True).clamp_min(1e-12)


def load_rf5_gru(path: str | Path | None = None) -> RF5GRUEncoder:
    """The encoder with the published weights from ``path`` (required: none ship)."""
    if path is None:
        raise ModelError(
            f"rf5-gru has no bundled weights; pass --weights PATH to the published {CHECKPOINT} "
            f"({CHECKPOINT_URL})"
        )
    path = Path(path)
    state = read_checkpoint(path, "rf5-gru", f"the published {CHECKPOINT}")
    return load_state(RF5GRUEncoder(), state, path, "rf5-gru")


class RF5GRUMLX:
    """The MLX twin of an :class:`RF5GRUEncoder` (weights converted once): call it with
    ``(batch, frames, 80)`` for ``(batch, 256)`` unit vectors; :meth:`resume` as the torch
    module's, on numpy arrays."""

    def __init__(self, module: RF5GRUEncoder) -> None:
        self.mx = import_mlx()
        self.layers = mlx_gru(module.model.rnn_stack)
        self.projection = mlx_linear(module.model.projection)

    def __call__(self, log_mels: np.ndarray) -> np.ndarray:
        x = (self.mx.array(log_mels) + NORMALISER) / NORMALISER
        for layer in self.layers:
            x = layer(x)
        return mlx_unit_numpy(self.projection(x[:, -1]))

    def resume(
        self, log_mels: np.ndarray, state: np.ndarray | None, readouts: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings after each of ``readouts`` frames ``(batch, len(readouts), 256)``, and
        the state after the last frame (the torch module's layout)."""
        mx = self.mx
        x = (mx.array(log_mels) + NORMALISER) / NORMALISER
        previous = None if state is None else mx.array(state).reshape(-1, LAYERS, HIDDEN)
        ends = []
        for i, layer in enumerate(self.layers):
            x = layer(x) if previous is None else layer(x, hidden=previous[:, i])
            ends.append(x[:, -1])
        raw = self.projection(x[:, [r - 1 for r in readouts]])
        new_state = mx.stack(ends, axis=1).reshape(len(log_mels), -1)
        return mlx_unit_numpy(raw), np.array(new_state, dtype=np.float32)


def rf5_gru_to_mlx(module: RF5GRUEncoder) -> RF5GRUMLX:
    """The MLX twin of ``module``."""
    return RF5GRUMLX(module)
