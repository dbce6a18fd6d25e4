"""The GE2E encoder on onnxruntime: int8 (``--precision int8``) or fp32 (``fp32-onnx``).

int8: dynamic quantisation, per channel, of LSTM layers 2 and 3 and the Linear readout;
LSTM layer 1 stays fp32: it reads raw power mel features, whose range one scale cannot
hold (quantising it drops the cosine to fp32 to about 0.6; README: Cheaper encoder
passes). fp32: the same graph unquantised, the torch encoder's arithmetic (embeddings
within 1e-6) on onnxruntime's kernels, which cost less per call than torch's at the
worker's batch sizes. Inference runs on onnxruntime's CPU kernels with one thread.

The graph is built from the loaded weights once and cached on disk (atomic
write) under the user's cache folder, keyed by a hash of the weights and the versions of
torch, onnx and onnxruntime; :class:`OnnxInt8GE2E` is built at start-up, never on the
engine's thread. A cache file that does not load is rebuilt. onnxruntime and onnx are
dependencies; where they are missing ``--precision auto`` runs torch fp32.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .ge2e_lstm import HIDDEN, LAYERS, GE2EEncoder

INSTALL = "pip install onnxruntime onnx"
FORMAT = 1
"""Bump when the exported graph changes: the cache key includes it."""

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streamer`` (default ``~/.cache/streamer``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer"


def _import():
    """``(onnxruntime, onnx)``, or a :class:`ConfigError` that says what to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"--precision int8 and fp32-onnx need onnxruntime and onnx ({exc.name} is not "
            f"installed): {INSTALL}"
        ) from exc
    return onnxruntime, onnx


class _Graph(nn.Module):
    """What is exported: mels and the LSTM state in; the embeddings after the frames in
    ``index`` and the state after the last frame out."""

    def __init__(self, encoder: GE2EEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, mels, h0, c0, index):
        outputs, (h, c) = self.encoder.lstm(mels, (h0, c0))
        return self.encoder.readout(outputs[:, index]), h, c


def cache_key(encoder: GE2EEncoder) -> str:
    """A hash of the weights and of the versions that shape the quantised graph."""
    ort, onnx = _import()
    digest = hashlib.sha256(
        f"{FORMAT} {torch.__version__} {onnx.__version__} {ort.__version__}".encode()
    )
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def build(encoder: GE2EEncoder, path: Path, quantise: bool = True) -> None:
    """Export ``encoder`` (and quantise it) into ``path`` (written whole or not at all)."""
    _, onnx = _import()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's tracer warnings and the quantiser's advice are about other models.
    with (
        tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp,
        warnings.catch_warnings(),
        _quiet_root_logger(),
    ):
        warnings.simplefilter("ignore")
        fp32 = Path(tmp) / "fp32.onnx"
        state = torch.zeros(LAYERS, 2, HIDDEN)
        batch = {1: "batch"}
        torch.onnx.export(
            _Graph(encoder).eval(),
            (torch.zeros(2, 160, encoder.lstm.input_size), state, state, torch.tensor([159])),
            fp32,
            dynamo=False,
            input_names=["mels", "h0", "c0", "index"],
            output_names=["vectors", "h", "c"],
            dynamic_axes={
                "mels": {0: "batch", 1: "frames"},
                "h0": batch,
                "c0": batch,
                "index": {0: "readouts"},
                "vectors": {0: "batch", 1: "readouts"},
                "h": batch,
                "c": batch,
            },
        )
        if not quantise:
            os.replace(fp32, path)
            return
        first = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "LSTM"][:1]
        quantised = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            fp32, quantised, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=first
        )
        os.replace(quantised, path)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser logs its advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class OnnxInt8GE2E:
    """A :class:`GE2EEncoder` on onnxruntime, quantised to int8 unless ``quantise`` is
    false: call it with ``(batch, frames, 40)`` for ``(batch, 256)`` unit vectors;
    :meth:`resume` as the torch module's, on numpy arrays (the same state layout)."""

    def __init__(self, encoder: GE2EEncoder, quantise: bool = True) -> None:
        ort, _ = _import()
        kind = "int8" if quantise else "fp32"
        self.path = cache_dir() / f"ge2e-{kind}-{cache_key(encoder)}.onnx"
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = settings.inter_op_num_threads = 1
        settings.log_severity_level = 3

        def open_session():
            return ort.InferenceSession(
                str(self.path), settings, providers=["CPUExecutionProvider"]
            )

        self.built = False  # whether this start built the cache file
        if self.path.is_file():
            try:
                self.session = open_session()
                return
            except Exception as exc:  # onnxruntime raises its own types for a bad file
                log.warning("rebuilding the %s encoder cache %s: %s", kind, self.path, exc)
        try:
            build(encoder, self.path, quantise)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the {kind} encoder's cache {self.path} ({exc.strerror}); "
                "set XDG_CACHE_HOME to a writable folder"
            ) from exc
        self.built = True
        self.session = open_session()

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        zeros = np.zeros((LAYERS, len(mels), HIDDEN), np.float32)
        index = np.array([mels.shape[1] - 1], np.int64)
        feeds = {"mels": mels, "h0": zeros, "c0": zeros, "index": index}
        return self.session.run(["vectors"], feeds)[0][:, 0]

    def resume(
        self, mels: np.ndarray, state: np.ndarray | None, readouts: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings after each of ``readouts`` frames ``(batch, len(readouts), 256)``, and
        the state after the last frame ``(batch, 2 * 3 * 256)``."""
        batch = len(mels)
        if state is None:
            h0 = c0 = np.zeros((LAYERS, batch, HIDDEN), np.float32)
        else:
            hc = state.reshape(batch, 2, LAYERS, HIDDEN).transpose(1, 2, 0, 3)
            h0, c0 = np.ascontiguousarray(hc[0]), np.ascontiguousarray(hc[1])
        index = np.array([r - 1 for r in readouts], np.int64)
        vectors, h, c = self.session.run(None, {"mels": mels, "h0": h0, "c0": c0, "index": index})
        new_state = np.stack((h, c)).transpose(2, 0, 1, 3).reshape(batch, -1)
        return vectors, np.ascontiguousarray(new_state)
