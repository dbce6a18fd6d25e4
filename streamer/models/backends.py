"""Where an encoder runs: torch (cpu, cuda, mps) or MLX, and torch -> MLX weight conversion.

``--backend auto`` picks MLX on Apple Silicon when ``mlx`` is installed (it targets Apple
GPUs) and torch everywhere else: MLX also runs on Linux CPUs (``pip install "mlx[cpu]"``),
but there it is tens of times slower than torch. ``--device`` chooses a torch device, so
naming one selects torch.

MLX is an optional dependency, imported only when the MLX backend is used. The converters
below copy a torch layer's weights into the equivalent ``mlx.nn`` layer once; MLX's LSTM
and GRU use torch's gate order (i, f, g, o and r, z, n) and differ only in how the two
torch bias vectors are stored.
"""

from __future__ import annotations

import importlib.util
import platform
import sys

import numpy as np
import torch

from ..catalog import BACKENDS
from ..errors import ConfigError, ModelError

MLX_INSTALL = 'pip install "mlx[cpu]" (plain "mlx" on Apple Silicon)'


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def mlx_installed() -> bool:
    return importlib.util.find_spec("mlx") is not None


def choose_backend(backend: str, device: str | None) -> str:
    """``torch`` or ``mlx`` for the requested ``backend`` (``auto`` decides here)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "mlx" if device is None and apple_silicon() and mlx_installed() else "torch"
    if backend == "mlx" and device is not None:
        raise ConfigError(
            f"--device {device} is for the torch backend; MLX runs on its own default "
            "device (the GPU on Apple Silicon): drop --device or use --backend torch"
        )
    return backend


def check_device(device: str) -> torch.device:
    """The torch device ``device``, or a :class:`ConfigError` if torch cannot use it here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {device}: torch sees no CUDA GPU here; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(
                f"--device {device}: there are only {count} CUDA GPU(s) (0-{count - 1})"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: streamer runs on cpu, cuda or mps")
    return parsed


def import_mlx():
    """``mlx.core``, or a :class:`ConfigError` that says what to install."""
    try:
        import mlx.core as mx
    except ImportError as exc:
        raise ConfigError(
            f"the MLX backend needs mlx, which is not installed: {MLX_INSTALL}; "
            "or use --backend torch"
        ) from exc
    return mx


def mlx_device_name() -> str:
    """``gpu`` or ``cpu``: where MLX computes by default."""
    return import_mlx().default_device().type.name


# torch -> MLX layers (weights copied once)


def _mx(tensor: torch.Tensor):
    return import_mlx().array(tensor.detach().float().cpu().numpy())


def _stacked_layers(rnn: torch.nn.RNNBase, kind: str) -> list:
    if not rnn.batch_first or rnn.bidirectional or not rnn.bias or rnn.proj_size:
        raise ModelError(f"only batch-first, one-way {kind} layers with biases convert to MLX")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [{n: getattr(rnn, f"{n}_l{i}") for n in names} for i in range(rnn.num_layers)]


def mlx_lstm(lstm: torch.nn.LSTM) -> list:
    """One ``mlx.nn.LSTM`` per layer of ``lstm``; MLX keeps a single bias (ih + hh)."""
    from mlx import nn

    layers = []
    for p in _stacked_layers(lstm, "LSTM"):
        layer = nn.LSTM(p["weight_ih"].shape[1], lstm.hidden_size)
        layer.Wx, layer.Wh = _mx(p["weight_ih"]), _mx(p["weight_hh"])
        layer.bias = _mx(p["bias_ih"] + p["bias_hh"])
        layers.append(layer)
    return layers


def mlx_gru(gru: torch.nn.GRU) -> list:
    """One ``mlx.nn.GRU`` per layer of ``gru``.

    torch's new-gate hidden bias sits inside the reset product, ``n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn))``; MLX keeps it apart as ``bhn`` and folds the r and z hidden
    biases into ``b``.
    """
    from mlx import nn

    hidden = gru.hidden_size
    layers = []
    for p in _stacked_layers(gru, "GRU"):
        layer = nn.GRU(p["weight_ih"].shape[1], hidden)
        layer.Wx, layer.Wh = _mx(p["weight_ih"]), _mx(p["weight_hh"])
        folded = p["bias_ih"].detach().clone()
        folded[: 2 * hidden] += p["bias_hh"][: 2 * hidden]
        layer.b, layer.bhn = _mx(folded), _mx(p["bias_hh"][2 * hidden :])
        layers.append(layer)
    return layers


def mlx_linear(linear: torch.nn.Linear):
    """``linear`` as an ``mlx.nn.Linear``."""
    from mlx import nn

    layer = nn.Linear(linear.in_features, linear.out_features)
    layer.weight, layer.bias = _mx(linear.weight), _mx(linear.bias)
    return layer


def mlx_unit_numpy(x) -> np.ndarray:
    """The MLX array ``x`` with its vectors (the last axis) scaled to unit length, as
    float32 numpy."""
    mx = import_mlx()
    norm = mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return np.array(x / norm, dtype=np.float32)
