"""Shared fixtures: the real GE2E model and silero VAD, loaded once per test session, and
random weights for the models that ship none, in their published checkpoint layouts."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.enroll import collect
from streamer.features.fbank import KaldiFbank
from streamer.models import Embedder, get_spec
from streamer.models.wespeaker_resnet34 import ResNet34Encoder
from streamer.synth import speech
from streamer.vad import SileroVAD
from streamer.worker import Engine

torch.set_num_threads(1)

ENROLLED = ("alice", "bob", "carol")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(get_spec("ge2e"))


@pytest.fixture(scope="session")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="session")
def make_engine(embedder, vad):
    """``make_engine(profiles=None, **options)``: a fresh engine sharing the loaded models."""

    def make(profiles=None, **options) -> Engine:
        return Engine(embedder, vad, profiles=profiles, **options)

    return make


@pytest.fixture(scope="session")
def voice_profiles(make_engine) -> dict[str, np.ndarray]:
    """Profiles of the synthetic voices, from speech not used in any test conversation."""
    profiles = {}
    for name in (*ENROLLED, "dave", "erin"):
        collector = collect(make_engine(), speech(name, 8.0, seed=101))
        mean = np.mean(collector.embeddings, axis=0)
        profiles[name] = mean / np.linalg.norm(mean)
    return profiles


def run_stream(engine: Engine, audio: np.ndarray, chunk: int = 320, step_every: int = 1):
    """Push ``audio`` in ``chunk``-sample pieces, stepping every ``step_every`` pushes."""
    stream = engine.open_stream("test")
    events = []
    for i, start in enumerate(range(0, len(audio), chunk)):
        stream.push(audio[start : start + chunk])
        if (i + 1) % step_every == 0:
            events += engine.step()
    return events + engine.close_stream("test")


@pytest.fixture(scope="session")
def rf5_checkpoint(tmp_path_factory) -> Path:
    """rf5-gru weights in the published layout (the hub wrapper's state dict), random."""
    torch.manual_seed(5)
    gru = torch.nn.GRU(80, 768, 3, batch_first=True)
    projection = torch.nn.Linear(768, 256)
    state = {f"model.rnn_stack.{k}": v for k, v in gru.state_dict().items()}
    state |= {f"model.projection.{k}": v for k, v in projection.state_dict().items()}
    path = tmp_path_factory.mktemp("rf5") / "gru-wrapped-f1f850.pth"
    torch.save(state, path)
    return path


# WeSpeaker ResNet34


def random_resnet34(windows: np.ndarray) -> ResNet34Encoder:
    """Random weights with non-trivial BatchNorm: random affine terms and running
    statistics measured on ``windows`` of real features (one train-mode pass)."""
    torch.manual_seed(0)
    model = ResNet34Encoder()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running stats = this pass's batch stats
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.2)
    with torch.no_grad():
        model.train()(torch.from_numpy(windows))
    return model.eval()


def as_npz(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The MLX card's layout: conv kernels (out, kh, kw, in), the rest as in torch."""
    return {
        k: v.numpy().transpose(0, 2, 3, 1) if v.ndim == 4 else v.numpy()
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


@contextlib.contextmanager
def pyannote_task_classes() -> Iterator[object]:
    """Stand-ins for pyannote's task classes, importable only inside the block (as when the
    published checkpoint, whose metadata pickles pyannote objects, was saved); yields the
    ``Specifications`` such a checkpoint holds."""
    task = types.ModuleType("pyannote.audio.core.task")

    class Problem(enum.Enum):
        REPRESENTATION = 4

    class Resolution(enum.Enum):
        CHUNK = 2

    @dataclasses.dataclass
    class Specifications:
        problem: Problem
        resolution: Resolution
        duration: float

    for cls in (Problem, Resolution, Specifications):
        cls.__module__, cls.__qualname__ = task.__name__, cls.__name__
        setattr(task, cls.__name__, cls)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("pyannote", "pyannote.audio", "pyannote.audio.core"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setitem(sys.modules, task.__name__, task)
        yield Specifications(Problem.REPRESENTATION, Resolution.CHUNK, 5.0)


def save_pyannote(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` as pyannote's ``pytorch_model.bin``: a Lightning checkpoint with metadata."""
    with pyannote_task_classes() as specifications:
        checkpoint = {
            "state_dict": state,
            "pyannote.audio": {
                "versions": {"pyannote.audio": "3.1.0"},
                "architecture": {
                    "module": "pyannote.audio.models.embedding.wespeaker",
                    "class": "WeSpeakerResNet34",
                },
                "specifications": specifications,
            },
            "pytorch-lightning_version": "2.1.0",
        }
        torch.save(checkpoint, path)


@pytest.fixture(scope="session")
def wespeaker_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The same random ResNet34 weights in both published layouts: ``pyannote`` (its
    ``pytorch_model.bin``) and ``npz`` (the MLX card's ``weights.npz``)."""
    feats = KaldiFbank().push(speech("erin", 3.2, seed=11))
    model = random_resnet34(np.stack([feats[s : s + 200] for s in (0, 60, 117)]))
    folder = tmp_path_factory.mktemp("wespeaker")
    paths = {"pyannote": folder / "pytorch_model.bin", "npz": folder / "weights.npz"}
    save_pyannote(model.state_dict(), paths["pyannote"])
    np.savez(paths["npz"], **as_npz(model.state_dict()))
    return paths
