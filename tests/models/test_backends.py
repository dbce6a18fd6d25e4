"""Backend choice, device checks and the torch -> MLX layer converters."""

import sys

import numpy as np
import pytest
import torch

from streamer.errors import ConfigError, ModelError
from streamer.models import Embedder, backends, get_spec
from streamer.models.backends import check_device, choose_backend


@pytest.mark.parametrize(
    ("apple", "installed", "device", "expected"),
    [
        (True, True, None, "mlx"),
        (True, True, "mps", "torch"),  # naming a torch device selects torch
        (True, False, None, "torch"),
        (False, True, None, "torch"),  # MLX on Linux works but is slow: not by default
    ],
)
def test_auto_picks_mlx_only_on_apple_silicon(monkeypatch, apple, installed, device, expected):
    monkeypatch.setattr(backends, "apple_silicon", lambda: apple)
    monkeypatch.setattr(backends, "mlx_installed", lambda: installed)
    assert choose_backend("auto", device) == expected


def test_explicit_backends():
    assert choose_backend("torch", "cpu") == "torch"
    assert choose_backend("mlx", None) == "mlx"
    with pytest.raises(ConfigError, match="--device cpu is for the torch backend"):
        choose_backend("mlx", "cpu")
    with pytest.raises(ConfigError, match="unknown backend 'jax'"):
        choose_backend("jax", None)


def test_devices_are_checked():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'toaster'"):
        check_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU here; use --device cpu"):
            check_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS is not available here"):
            check_device("mps")


def test_missing_mlx_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx", None)
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    with pytest.raises(ConfigError, match=r'pip install "mlx\[cpu\]".*or use --backend torch'):
        Embedder(get_spec("ge2e"), backend="mlx")


def run_mlx(layers, x: np.ndarray) -> np.ndarray:
    mx = pytest.importorskip("mlx.core")
    h = mx.array(x)
    for layer in layers:
        h = layer(h)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (hidden, cell)
    return np.array(h)


@pytest.mark.parametrize("kind", [torch.nn.GRU, torch.nn.LSTM])
def test_rnn_twins_match_torch_at_every_step(kind):
    pytest.importorskip("mlx.core")
    torch.manual_seed(0)
    rnn = kind(12, 16, 2, batch_first=True)
    with torch.no_grad():  # distinct, clearly non-zero biases: each must land in its place
        for name, param in rnn.named_parameters():
            if name.startswith("bias"):
                param.uniform_(-1, 1)
    x = np.random.default_rng(0).standard_normal((3, 30, 12)).astype(np.float32)
    convert = backends.mlx_gru if kind is torch.nn.GRU else backends.mlx_lstm
    with torch.no_grad():
        expected = rnn(torch.from_numpy(x))[0].numpy()
    assert np.abs(run_mlx(convert(rnn), x) - expected).max() <= 1e-5


def test_only_one_way_batch_first_rnns_convert():
    pytest.importorskip("mlx.core")
    with pytest.raises(ModelError, match="batch-first, one-way GRU"):
        backends.mlx_gru(torch.nn.GRU(4, 4, bidirectional=True, batch_first=True))
    with pytest.raises(ModelError, match="batch-first"):
        backends.mlx_lstm(torch.nn.LSTM(4, 4))
