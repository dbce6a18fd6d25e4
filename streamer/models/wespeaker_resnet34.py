"""WeSpeaker ResNet34-LM (pyannote/wespeaker-voxceleb-resnet34-LM), in torch and MLX.

The network is pyannote's ``WeSpeakerResNet34``: 80-bin Kaldi fbank frames, mean-subtracted
over the window (CMN), as a one-channel image (frequency x time) -> 3x3 conv (32) + BN +
ReLU -> basic residual blocks [3, 4, 6, 3] of widths 32, 64, 128, 256 (strides 1, 2, 2, 2;
1x1 conv + BN shortcuts where the shape changes) -> (256 channels x 10 bands, T/8 frames) ->
temporal statistics pooling: per (channel, band) row, channel-major, the mean and then the
unbiased standard deviation over time (5120 values) -> Linear 5120 -> 256 (``seg_1``; pyannote
builds it with ``two_emb_layer=False``, so there is no ``seg_2``). The reference returns that
raw vector; streamer L2-normalises it (cosine scores are unchanged, profiles are unit means).
Every BatchNorm uses eps 1e-5 and its running statistics.

Weights (none ship with streamer; pass ``--weights PATH``):

- ``pytorch_model.bin`` (pyannote's layout): a Lightning checkpoint whose ``state_dict`` has
  ``resnet.conv1.weight``, ``resnet.bn1.{weight,bias,running_mean,running_var}``,
  ``resnet.layer{1-4}.{i}.{conv1,bn1,conv2,bn2}.*``, ``resnet.layer{2-4}.0.shortcut.{0,1}.*``
  (conv, BN) and ``resnet.seg_1.{weight,bias}``; conv kernels are (out, in, kh, kw). Its
  pyannote metadata (task specifications) is read as opaque stubs, so pyannote need not be
  installed and nothing in the file is executed. A bare state dict with those keys works too.
- ``weights.npz`` (the MLX card's layout): the same keys, with conv kernels stored
  (out, kh, kw, in); everything else as in torch, ``seg_1.weight`` (256, 5120) included.

A ``.npz`` suffix selects the MLX layout, anything else the torch one; ``num_batches_tracked``
entries are optional (eval mode does not use them).

MLX twin (:func:`to_mlx`): the same computation on NHWC arrays, driven from the loaded
torch module; it agrees with torch to ~1e-6 on the unit embedding. On a Linux CPU it is
~45x slower than torch (MLX's CPU convolutions; MLX is built for Apple GPUs).

The card's port reached only 0.17 max abs difference. Reading its code: (1) it pools the
biased variance + 1e-7 where pyannote's StatsPool takes the unbiased std, a sqrt(T'/(T'-1))
scale error on half the pooled statistics (2.7% at 150 frames), the likely cause; (2) it
flattens the statistics band-major with mean and std interleaved per band, pyannote's order
only if ``seg_1``'s columns were permuted in conversion; (3) its usage example feeds
librosa dB mels (Slaney scale, no CMN) instead of CMN'd Kaldi fbank, which the model never
saw in training.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .backends import import_mlx, mlx_unit_numpy

N_MELS = 80
EMBEDDING_DIM = 256
CHANNELS = 32
BLOCKS = (3, 4, 6, 3)
BN_EPS = 1e-5
USAGE = (
    "pass --weights PATH to pyannote's pytorch_model.bin (pyannote/wespeaker-voxceleb-"
    "resnet34-LM) or the MLX card's weights.npz"
)


class _BasicBlock(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, width, 1, stride, bias=False), nn.BatchNorm2d(width, eps=BN_EPS)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNet(nn.Module):
    """pyannote's ``resnet`` submodule: ``(batch, frames, 80)`` -> raw ``(batch, 256)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, CHANNELS, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(CHANNELS, eps=BN_EPS)
        inputs = CHANNELS
        for i, (count, stride) in enumerate(zip(BLOCKS, (1, 2, 2, 2)), start=1):
            width = CHANNELS * 2 ** (i - 1)
            blocks = [_BasicBlock(inputs, width, stride)]
            blocks += [_BasicBlock(width, width, 1) for _ in range(count - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            inputs = width
        self.seg_1 = nn.Linear(inputs * (N_MELS // 8) * 2, EMBEDDING_DIM)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(feats.transpose(1, 2).unsqueeze(1))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.flatten(1, 2)  # (batch, channel * band, frames), channel-major
        return self.seg_1(torch.cat([x.mean(dim=-1), x.std(dim=-1, correction=1)], dim=-1))


class ResNet34Encoder(nn.Module):
    """``(batch, frames, 80)`` Kaldi fbank -> ``(batch, 256)`` unit-length embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = _ResNet()
        self.to(memory_format=torch.channels_last)  # ~30% faster convolutions on CPU

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        raw = self.resnet(feats - feats.mean(dim=1, keepdim=True))  # CMN; input left intact
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


# Loading


class _Opaque:
    """Stands in for a non-tensor object in a checkpoint's metadata; runs nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


def _read_torch(path: Path) -> dict[str, object]:
    try:
        # pyannote's file pickles its task metadata: read those objects as inert stubs.
        unsafe = (
            torch.serialization.get_unsafe_globals_in_checkpoint(path)
            if zipfile.is_zipfile(path)
            else []
        )
        with torch.serialization.safe_globals([(_Opaque, name) for name in unsafe]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(
            f"cannot read ResNet34 weights {path}: {exc}; is it a complete torch checkpoint?"
        ) from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{path} holds no state dict; {USAGE}")
    return checkpoint


def _read_npz(path: Path) -> dict[str, object]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # zipfile and numpy raise many types for a bad file
        raise ModelError(
            f"cannot read ResNet34 weights {path}: {exc}; is it a complete .npz?"
        ) from exc
    # MLX keeps conv kernels as (out, kh, kw, in); torch wants (out, in, kh, kw).
    return {
        key: torch.from_numpy(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a)
        for key, a in arrays.items()
    }


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")


def _check(state: dict[str, object], known: dict[str, torch.Tensor], path: Path, npz: bool):
    """Raise a ModelError naming what in ``state`` does not fit the encoder's ``known`` keys."""
    wanted = {k: v for k, v in known.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in wanted if k not in state]
    if len(missing) == len(wanted):
        raise ModelError(
            f"{path} is not a WeSpeaker ResNet34 checkpoint (it holds {_some(list(state))}); "
            + USAGE
        )
    if missing:
        raise ModelError(
            f"{path} is not a complete WeSpeaker ResNet34 checkpoint: missing {_some(missing)} "
            f"({len(missing)} keys)"
        )
    extra = [k for k in state if k.startswith("resnet.") and k not in known]
    if extra:
        raise ModelError(
            f"{path} has layers pyannote's ResNet34 does not ({_some(extra)}); "
            "it is another WeSpeaker model"
        )
    for key, tensor in wanted.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{path}: {key} is not a tensor; {USAGE}")
        if value.shape != tensor.shape:
            got, need = tuple(value.shape), tuple(tensor.shape)
            if npz and tensor.ndim == 4:  # report shapes in the file's own layout
                got, need = (got[0], *got[2:], got[1]), (need[0], *need[2:], need[1])
            raise ModelError(f"{path}: {key} has shape {got}, ResNet34 needs {need}")


def load_resnet34(path: str | Path | None = None) -> ResNet34Encoder:
    """Build the encoder from a ``pytorch_model.bin`` (pyannote) or ``weights.npz`` (MLX card)."""
    if path is None:
        raise ModelError(f"no WeSpeaker ResNet34 weights ship with streamer; {USAGE}")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ResNet34 weights not found at {path}; {USAGE}")
    npz = path.suffix == ".npz"
    state = _read_npz(path) if npz else _read_torch(path)
    model = ResNet34Encoder()
    known = model.state_dict()
    _check(state, known, path, npz)
    model.load_state_dict({k: v for k, v in state.items() if k in known}, strict=False)
    return model.eval()


# MLX


def to_mlx(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The MLX twin of a loaded :class:`ResNet34Encoder`, sharing its weights.

    Returns a function from ``(batch, frames, 80)`` float32 fbank to ``(batch, 256)``
    float32 unit vectors; arrays are NHWC with H = frequency, W = time.
    """
    mx = import_mlx()

    def conv(layer: nn.Conv2d) -> Callable:
        kernel = mx.array(layer.weight.detach().cpu().numpy().transpose(0, 2, 3, 1))
        stride, padding = layer.stride[0], layer.padding[0]
        return lambda x: mx.conv2d(x, kernel, stride=stride, padding=padding)

    def batch_norm(layer: nn.BatchNorm2d) -> Callable:
        # Eval-mode BN as torch computes it on CPU: x * scale + shift from the running stats.
        scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
        shift = layer.bias - layer.running_mean * scale
        scale, shift = (mx.array(t.detach().cpu().numpy()) for t in (scale, shift))
        return lambda x: x * scale + shift

    def relu(x: mx.array) -> mx.array:
        return mx.maximum(x, 0)

    def chain(*ops: Callable) -> Callable:
        def run(x: mx.array) -> mx.array:
            for op in ops:
                x = op(x)
            return x

        return run

    def block(b: _BasicBlock) -> Callable:
        main = chain(conv(b.conv1), batch_norm(b.bn1), relu, conv(b.conv2), batch_norm(b.bn2))
        side = (
            chain()
            if isinstance(b.shortcut, nn.Identity)
            else chain(conv(b.shortcut[0]), batch_norm(b.shortcut[1]))
        )
        return lambda x: relu(main(x) + side(x))

    net = module.resnet
    layers = (net.layer1, net.layer2, net.layer3, net.layer4)
    blocks = (block(b) for layer in layers for b in layer)
    body = chain(conv(net.conv1), batch_norm(net.bn1), relu, *blocks)
    seg_w = mx.array(net.seg_1.weight.detach().cpu().numpy().T)
    seg_b = mx.array(net.seg_1.bias.detach().cpu().numpy())

    def embed(feats: np.ndarray) -> np.ndarray:
        x = mx.array(feats, dtype=mx.float32)
        x = x - mx.mean(x, axis=1, keepdims=True)  # CMN over the window
        x = body(x.transpose(0, 2, 1)[..., None])  # NHWC: (batch, bands, frames, 1)
        batch, bands, frames, channels = x.shape
        x = x.transpose(0, 2, 3, 1).reshape(batch, frames, channels * bands)  # channel-major
        stats = mx.concatenate([mx.mean(x, axis=1), mx.sqrt(mx.var(x, axis=1, ddof=1))], axis=1)
        raw = stats @ seg_w + seg_b
        return mlx_unit_numpy(raw)

    return embed
