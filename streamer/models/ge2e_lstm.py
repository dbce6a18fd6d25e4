"""GE2E d-vector encoder (Wan et al. 2018) with the weights that ship in ``resemblyzer``.

3-layer LSTM (40 -> 256) over a 1.6 s window of power mel frames; the last layer's
final hidden state goes through Linear(256, 256) and ReLU and is L2-normalised.
The weights are read from ``pretrained.pt`` inside the installed ``resemblyzer``
package, found on ``sys.path`` without importing that package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

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
    if not path.is_file():
        raise ModelError(
            f"GE2E weights not found at {path}; pass --weights PATH to a pretrained.pt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(
            f"cannot read GE2E weights {path}: {exc}; is it a torch checkpoint?"
        ) from exc
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds no state dict; expected resemblyzer's pretrained.pt layout")
    model = GE2EEncoder()
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ModelError(f"{path} is not a GE2E checkpoint: missing {', '.join(missing[:4])}")
    for key, tensor in wanted.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            got, need = tuple(state[key].shape), tuple(tensor.shape)
            raise ModelError(f"{path}: {key} has shape {got}, GE2E needs {need}")
    model.load_state_dict({k: state[k] for k in wanted})
    return model.eval()
