"""Speaker embedding models: each a frontend, an encoder and a window definition."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..catalog import PRECISIONS
from ..errors import ConfigError
from ..features import Frontend
from .backends import check_device, choose_backend, import_mlx, mlx_device_name

log = logging.getLogger(__name__)


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
        to_mlx: given the loaded torch encoder, its MLX twin (weights converted once): a
            callable from ``(batch, frames, features)`` float32 to ``(batch, dim)`` unit
            vectors (with ``resume`` for recurrent models); ``None`` when the model has no
            MLX version.
        to_onnx: given the loaded torch encoder (and ``quantise``: int8 or fp32), its
            version on onnxruntime (called and resumed as the MLX twin is); ``None`` when
            the model has none.
        untrained: builds the torch encoder with random weights (tests, benchmarks).
        target_level_dbfs: windows are scaled to this RMS level before encoding, or
            left alone when ``None`` (only for linear power or magnitude features).
        recurrent: the encoder reads frames in order and its embedding is a readout of
            its state (``resume`` and ``readout`` on the torch module and the MLX twin), so
            windows that share a start share one pass: see :meth:`Embedder.resume`.
    """

    name: str
    sample_rate: int
    frame_hop_samples: int
    window_frames: int
    hop_s: float
    embedding_dim: int
    frontend: Callable[[], Frontend]
    load: Callable[[str | Path | None], torch.nn.Module]
    to_mlx: Callable[[torch.nn.Module], Callable[[np.ndarray], np.ndarray]] | None = None
    to_onnx: Callable[..., Callable[[np.ndarray], np.ndarray]] | None = None
    untrained: Callable[[], torch.nn.Module] | None = None
    target_level_dbfs: float | None = None
    level_power: float = 2.0
    """How features scale with amplitude: 2 for power spectra, 1 for magnitudes."""
    recurrent: bool = False

    @property
    def frame_s(self) -> float:
        return self.frame_hop_samples / self.sample_rate

    @property
    def window_s(self) -> float:
        return self.window_frames * self.frame_s


def _ge2e() -> ModelSpec:
    """GE2E d-vectors: 1.6 s windows (160 frames), the length it was trained on."""
    from ..features.ge2e_mel import GE2EMel
    from .ge2e_lstm import EMBEDDING_DIM, GE2EEncoder, ge2e_to_mlx, ge2e_to_onnx, load_ge2e

    return ModelSpec(
        name="ge2e",
        sample_rate=16_000,
        frame_hop_samples=160,
        window_frames=160,
        hop_s=0.2,
        embedding_dim=EMBEDDING_DIM,
        frontend=GE2EMel,
        load=load_ge2e,
        to_mlx=ge2e_to_mlx,
        to_onnx=ge2e_to_onnx,
        untrained=GE2EEncoder,
        target_level_dbfs=-30.0,
        recurrent=True,
    )


def _rf5_gru() -> ModelSpec:
    """RF5's GRU embedder: 2.0 s windows (172 frames of 11.6 ms) every 17 frames (0.197 s).

    It was trained with GE2E on random crops of 96 to 288 frames (1.1 to 3.3 s; its
    training notebook), so windows in that range are what it knows; 2 s sits in the middle,
    is long enough to be stable and short enough to fit inside most conversational turns
    (the card's 5-10 s suits whole utterances, not live tracking). The hop is the whole
    number of frames closest to ge2e's 0.2 s. Log features: no level normalisation.
    """
    from ..features.tacotron_mel import HOP, SAMPLE_RATE, TacotronMel
    from .rf5_gru import EMBEDDING_DIM, RF5GRUEncoder, load_rf5_gru, rf5_gru_to_mlx

    return ModelSpec(
        name="rf5-gru",
        sample_rate=SAMPLE_RATE,
        frame_hop_samples=HOP,
        window_frames=172,
        hop_s=17 * HOP / SAMPLE_RATE,
        embedding_dim=EMBEDDING_DIM,
        frontend=TacotronMel,
        load=load_rf5_gru,
        to_mlx=rf5_gru_to_mlx,
        untrained=RF5GRUEncoder,
        recurrent=True,
    )


def _wespeaker_resnet34() -> ModelSpec:
    """WeSpeaker ResNet34-LM: 2 s windows every 0.25 s.

    WeSpeaker trains ResNet34 on 200-frame segments, the middle of the 100-300 frames its
    MLX card names. Hop 0.25 s: a window costs ~7x a GE2E one on CPU (59 vs 8 ms at batch
    1, ``benchmarks/models.py``), so one stream takes about a third of a core (real-time
    factor 0.33), and a change is confirmed (two windows) within 0.5 s.
    """
    from ..features.fbank import KaldiFbank
    from .wespeaker_resnet34 import EMBEDDING_DIM, ResNet34Encoder, load_resnet34, to_mlx

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
        untrained=ResNet34Encoder,
    )


MODELS: dict[str, Callable[[], ModelSpec]] = {
    "ge2e": _ge2e,
    "rf5-gru": _rf5_gru,
    "wespeaker-resnet34": _wespeaker_resnet34,
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]()


class Embedder:
    """A loaded model on a backend: batched windows of features in, unit embeddings out.

    ``backend`` is ``auto``, ``torch`` or ``mlx`` (:mod:`.backends` says how ``auto``
    decides); ``device`` is a torch device (``None``: cpu). ``module`` replaces the loaded
    weights with an already built encoder (e.g. ``spec.untrained()``). ``precision``
    ``int8`` runs the encoder quantised on onnxruntime's CPU kernels instead, ``fp32-onnx``
    unquantised there (:mod:`.onnx_int8`; ``auto`` then means torch's CPU for the rest).
    ``precision`` ``auto`` is ``fp32-onnx`` where it runs (a model with an onnxruntime
    version, on torch's CPU) and ``fp32`` elsewhere, and falls back to ``fp32`` with a
    one-line note when the onnxruntime encoder cannot be built.
    """

    def __init__(
        self,
        spec: ModelSpec,
        weights: str | Path | None = None,
        device: str | None = None,
        backend: str = "auto",
        module: torch.nn.Module | None = None,
        precision: str = "fp32",
    ) -> None:
        self.spec = spec
        self.device: torch.device | None = None
        self._twin = None  # the MLX or onnxruntime encoder that runs instead of the torch one
        # Options are checked before the weights load.
        if precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )
        fallback = precision == "auto"
        if fallback:
            on_cpu = device is None or check_device(device).type == "cpu"
            torch_cpu = on_cpu and choose_backend(backend, device) == "torch"
            precision = "fp32-onnx" if spec.to_onnx is not None and torch_cpu else "fp32"
        self.precision = precision
        if precision != "fp32":
            if spec.to_onnx is None:
                raise ConfigError(
                    f"model {spec.name} has no {precision} version; use --precision fp32"
                )
            if backend == "mlx" or (device is not None and check_device(device).type != "cpu"):
                raise ConfigError(
                    f"--precision {precision} runs on the CPU (onnxruntime): drop --backend "
                    "mlx and --device, or use --precision fp32"
                )
            backend = "torch"
        self.backend = choose_backend(backend, device)
        if self.backend == "torch":
            self.device = check_device(device or "cpu")
        elif spec.to_mlx is None:
            raise ConfigError(f"model {spec.name} has no MLX version; use --backend torch")
        else:
            import_mlx()
        self.module = (module if module is not None else spec.load(weights)).eval()
        if self.backend == "mlx":
            self._twin = spec.to_mlx(self.module)
        elif precision != "fp32":
            self._twin = self._onnx(fallback)
        if self._twin is None:
            self.module.to(self.device)

    def _onnx(self, fallback: bool):
        """The encoder on onnxruntime; with ``fallback``, ``None`` (torch fp32) and a
        one-line note on stderr when it cannot be built here."""
        try:
            return self.spec.to_onnx(self.module, quantise=self.precision == "int8")
        except Exception as exc:  # any failure to build or load it: torch still runs
            if not fallback:
                raise
            log.warning("streamer: the onnxruntime encoder cannot run here (%s); torch fp32", exc)
            self.precision = "fp32"
            return None

    def describe(self) -> str:
        """Where the encoder runs, e.g. ``torch on cpu``."""
        if self.precision != "fp32":
            return f"onnxruntime {self.precision.removesuffix('-onnx')} on cpu"
        where = str(self.device) if self.backend == "torch" else mlx_device_name()
        return f"{self.backend} on {where}"

    @torch.inference_mode()
    def embed(self, windows: np.ndarray, levels_dbfs: np.ndarray | None = None) -> np.ndarray:
        """``(batch, frames, features)`` -> ``(batch, dim)`` float32 unit vectors.

        ``levels_dbfs`` (the RMS level of each window's audio) lets the model's level
        normalisation apply; the features are scaled in place.
        """
        self._normalise(windows, levels_dbfs)
        if self._twin is not None:
            return self._twin(windows)
        x = torch.from_numpy(windows).to(self.device)
        return self.module(x).float().cpu().numpy()

    @torch.inference_mode()
    def resume(
        self,
        frames: np.ndarray,
        states: np.ndarray | None,
        readouts: list[int],
        levels_dbfs: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed a recurrent encoder ``(batch, frames, features)`` more frames from
        ``states`` (``(batch, state size)`` from the previous call, ``None``: the start).

        Returns the embeddings after each of ``readouts`` frames of this call,
        ``(batch, len(readouts), dim)``, exactly those of windows ending there, and the
        states to carry on from. Pass the same ``levels_dbfs`` on every call of a run.
        """
        if not self.spec.recurrent:
            raise ConfigError(f"model {self.spec.name} is not recurrent; it cannot resume")
        self._normalise(frames, levels_dbfs)
        if self._twin is not None:
            return self._twin.resume(frames, states, readouts)
        x = torch.from_numpy(frames).to(self.device)
        state = None if states is None else torch.from_numpy(states).to(self.device)
        outputs, state = self.module.resume(x, state)
        index = torch.tensor([r - 1 for r in readouts], device=outputs.device)
        vectors = self.module.readout(outputs[:, index])
        return vectors.float().cpu().numpy(), state.float().cpu().numpy()

    def _normalise(self, windows: np.ndarray, levels_dbfs: np.ndarray | None) -> None:
        """Scale features in place to the model's target level."""
        if self.spec.target_level_dbfs is not None and levels_dbfs is not None:
            gain_db = self.spec.target_level_dbfs - levels_dbfs
            scale = 10.0 ** (gain_db * self.spec.level_power / 20.0)
            windows *= scale.astype(np.float32)[:, None, None]
