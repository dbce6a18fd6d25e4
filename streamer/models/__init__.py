"""Speaker embedding models: each a frontend, an encoder and a window definition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..features import Frontend


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline needs to know about one embedding model.

    Attributes:
        name: the id stored in profiles and given to ``--model``.
        sample_rate: audio rate the frontend takes.
        frame_hop_samples: samples between feature frames.
        window_frames: feature frames per embedding window (the model's training length).
        hop_s: default seconds between consecutive windows.
        embedding_dim: size of the unit-length output.
        frontend: builds a fresh streaming frontend (one per stream).
        load: builds the torch encoder; takes an optional weights path.
        target_level_dbfs: windows are scaled to this RMS level before encoding, or
            left alone when ``None``.
    """

    name: str
    sample_rate: int
    frame_hop_samples: int
    window_frames: int
    hop_s: float
    embedding_dim: int
    frontend: Callable[[], Frontend]
    load: Callable[[str | Path | None], torch.nn.Module]
    target_level_dbfs: float | None = None
    level_power: float = 2.0
    """How features scale with amplitude: 2 for power spectra, 1 for magnitudes."""

    @property
    def frame_s(self) -> float:
        return self.frame_hop_samples / self.sample_rate

    @property
    def window_s(self) -> float:
        return self.window_frames * self.frame_s


def _ge2e() -> ModelSpec:
    from ..features.ge2e_mel import GE2EMel
    from .ge2e_lstm import EMBEDDING_DIM, load_ge2e

    return ModelSpec(
        name="ge2e",
        sample_rate=16_000,
        frame_hop_samples=160,
        window_frames=160,
        hop_s=0.2,
        embedding_dim=EMBEDDING_DIM,
        frontend=GE2EMel,
        load=load_ge2e,
        target_level_dbfs=-30.0,
    )


MODELS: dict[str, Callable[[], ModelSpec]] = {"ge2e": _ge2e}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]()


class Embedder:
    """A loaded model: batched windows of features in, unit embeddings out."""

    def __init__(self, spec: ModelSpec, weights: str | Path | None = None, device: str = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        self.module = spec.load(weights).to(self.device).eval()

    @torch.inference_mode()
    def embed(self, windows: np.ndarray, levels_dbfs: np.ndarray | None = None) -> np.ndarray:
        """``(batch, frames, features)`` -> ``(batch, dim)`` float32 unit vectors.

        ``levels_dbfs`` (the RMS level of each window's audio) lets the model's level
        normalisation apply; the features are scaled in place.
        """
        if self.spec.target_level_dbfs is not None and levels_dbfs is not None:
            gain_db = self.spec.target_level_dbfs - levels_dbfs
            scale = 10.0 ** (gain_db * self.spec.level_power / 20.0)
            windows *= scale.astype(np.float32)[:, None, None]
        x = torch.from_numpy(windows).to(self.device)
        return self.module(x).float().cpu().numpy()
