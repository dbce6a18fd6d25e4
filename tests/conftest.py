"""Shared fixtures: the real GE2E model and silero VAD, loaded once per test session, and
random rf5-gru weights in that model's published checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.enroll import collect
from streamer.models import Embedder, get_spec
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
