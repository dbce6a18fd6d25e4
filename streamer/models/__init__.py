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
        to_mlx: builds the MLX twin of a loaded torch encoder: a function from
            ``(batch, frames, features)`` float32 to ``(batch, dim)`` unit vectors, sharing
            the torch module's weights (``None``: no MLX twin).
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
    to_mlx: Callable[[torch.nn.Module], Callable[[np.ndarray], np.ndarray]] | None = None

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


def _wespeaker_resnet34() -> ModelSpec:
    from ..features.fbank import KaldiFbank
    from .wespeaker_resnet34 import EMBEDDING_DIM, load_resnet34, to_mlx

    # 2 s windows: WeSpeaker trains ResNet34 on 200-frame segments, the middle of the
    # 100-300 frames its MLX card names. Hop 0.25 s: a window costs ~5x a GE2E one on CPU
    # (55 vs 12 ms), so one stream takes ~0.25 of a core, and a change is confirmed (two
    # windows) within 0.5 s, near GE2E's 0.4 s.
    return ModelSpec(
        name="wespeaker-resnet34",
        sample_rate=16_000,
        frame_hop_samples=160,
        window_frames=200,
        hop_s=0.25,
        embedding_dim=EMBEDDING_DIM,
        frontend=KaldiFbank,
        load=load_resnet34,
        to_mlx=to_mlx,
    )


MODELS: dict[str, Callable[[], ModelSpec]] = {
    "ge2e": _ge2e,
    "wespeaker-resnet34": _wespeaker_resnet34,
}


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
