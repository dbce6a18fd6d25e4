"""The daemon with every model and both backends: same protocol, its events."""

from __future__ import annotations

import pytest

from streamer.evaluation.synth import conversation
from streamer.models import Embedder, get_spec
from streamer.profiles import ProfileStore
from streamer.vad import SileroVAD
from streamer.worker import Engine
from tests.server.conftest import Client, daemon, run


@pytest.mark.parametrize(
    "model,backend",
    [("rf5-gru", "torch"), ("wespeaker-resnet34", "torch"), ("ge2e", "mlx")],
)
def test_serve_streams_with_each_model_and_backend(
    model, backend, rf5_checkpoint, wespeaker_checkpoints, tmp_path
):
    if backend == "mlx":
        pytest.importorskip("mlx.core")
    weights = {"rf5-gru": rf5_checkpoint, "wespeaker-resnet34": wespeaker_checkpoints["npz"]}
    spec = get_spec(model)
    engine = Engine(Embedder(spec, weights.get(model), backend=backend), SileroVAD())
    audio, _ = conversation([("alice", 2.5)], sample_rate=spec.sample_rate, seed=41)

    async def scenario():
        async with daemon(engine, ProfileStore(tmp_path / "profiles")) as server:
            talker = await Client.open(
                server, stream="s", events=True, sample_rate=spec.sample_rate
            )
            await talker.send_audio(audio)
            await talker.end()
            await talker.close()
            return talker

    talker = run(scenario())
    types = [e["type"] for e in talker.events()]
    assert types[0] == "speech_start" and types[-1] == "speech_end"
    assert "segment" in types
    assert engine.embedder.backend == backend
