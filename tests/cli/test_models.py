"""``--model``, ``--weights`` and ``--backend`` through the commands: rf5-gru and
wespeaker-resnet34 with (random) weights in their published layouts, profiles kept to their
model, the MLX backend with every model, and what a wrong choice says."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf

from streamer.evaluation.scoring import read_rttm
from streamer.evaluation.synth import conversation, speech
from streamer.events import EVENT_TYPES, SCHEMA_VERSION
from streamer.models import MODELS, get_spec
from streamer.models.backends import choose_backend, mlx_device_name
from streamer.models.ge2e_lstm import default_weights_path


@pytest.fixture(scope="module")
def short_talk(tmp_path_factory) -> Path:
    audio, _ = conversation([("alice", 3.0), ("bob", 3.0)], gap_s=0.6, seed=11)
    path = tmp_path_factory.mktemp("short") / "short.wav"
    sf.write(path, audio, 16000)
    return path


@pytest.fixture(scope="module")
def tiny_talk(tmp_path_factory) -> Path:
    """2.5 s of one voice: one full window and one voice onset (MLX is slow on a CPU)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.wav"
    sf.write(path, speech("alice", 2.5, seed=12), 16000)
    return path


def model_options(request, model: str) -> list:
    """``--model MODEL --weights PATH`` for a model that ships no weights (random ones)."""
    if model == "rf5-gru":
        weights = request.getfixturevalue("rf5_checkpoint")
    else:
        weights = request.getfixturevalue("wespeaker_checkpoints")["npz"]
    return ["--model", model, "--weights", weights]


def auto_note() -> str:
    backend = choose_backend("auto", None)
    where = "cpu" if backend == "torch" else mlx_device_name()
    return f"streamer: backend: {backend} on {where} (auto)\n"


def check_events(path: Path, stream: str = "short") -> list[dict]:
    """The JSON lines are well-formed events of one stream, in decision order."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert events
    assert {e["v"] for e in events} == {SCHEMA_VERSION}
    assert {e["stream"] for e in events} == {stream}
    assert {e["type"] for e in events} <= set(EVENT_TYPES)
    assert [e["emitted_at"] for e in events] == sorted(e["emitted_at"] for e in events)
    starts = [e for e in events if e["type"] == "speech_start"]
    assert len(starts) == len([e for e in events if e["type"] == "speech_end"]) >= 1
    assert any(e["type"] == "segment" for e in events)
    return events


def labels(events: list[dict]) -> set[str]:
    return {e["label"] for e in events if e["type"] == "segment"}


def test_track_with_rf5_gru(cli, short_talk, rf5_checkpoint, tmp_path):
    jsonl, rttm = tmp_path / "out.jsonl", tmp_path / "out.rttm"
    result = cli(
        "track", short_talk, "--model", "rf5-gru", "--weights", rf5_checkpoint,
        "--hop-s", "0.2",  # 17.2 frames of 11.6 ms: rounded to 17
        "--profiles", tmp_path / "store", "--jsonl", jsonl, "--rttm", rttm,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.startswith(f"tracking {short_talk} (6.6 s) with rf5-gru")
    assert result.backend == auto_note()
    assert "no rf5-gru profiles" in result.err
    events = check_events(jsonl)
    # No profiles: every voice is unknown or an automatic unknown-voice label.
    found = labels(events)
    assert found and all(label == "unknown" or label.startswith("speaker-") for label in found)
    assert len(read_rttm(rttm)["short"]) == sum(e["type"] == "segment" for e in events)


def test_track_with_the_mlx_backend_gives_the_torch_events(cli, short_talk, store, tmp_path):
    pytest.importorskip("mlx.core")
    runs = {}
    for backend in ("mlx", "torch"):
        runs[backend] = tmp_path / f"{backend}.jsonl"
        result = cli(
            "track", short_talk, "--backend", backend, "--hop-s", "0.4", "--profiles", store,
            "--jsonl", runs[backend], "-q",
        )  # fmt: skip
        assert result.code == 0, result.err
        assert result.backend == ""  # said only when auto picks
    events = check_events(runs["mlx"])
    assert labels(events) == {"alice", "bob"}
    assert events == check_events(runs["torch"])


def test_track_with_wespeaker_weights_in_either_published_layout(
    cli, short_talk, wespeaker_checkpoints, tmp_path
):
    runs = {}
    for layout, weights in wespeaker_checkpoints.items():  # the same weights in each
        runs[layout] = tmp_path / f"{layout}.jsonl"
        result = cli(
            "track", short_talk, "--model", "wespeaker-resnet34", "--weights", weights,
            "--profiles", tmp_path / "store", "--jsonl", runs[layout],
        )  # fmt: skip
        assert result.code == 0, result.err
        assert result.out.startswith(f"tracking {short_talk} (6.6 s) with wespeaker-resnet34")
        assert result.backend == auto_note()
        assert "no wespeaker-resnet34 profiles" in result.err
    events = check_events(runs["pyannote"])
    assert events == check_events(runs["npz"])
    assert any(e["type"] == "speaker" for e in events)  # windows were embedded


@pytest.mark.parametrize("model", ["rf5-gru", "wespeaker-resnet34"])
def test_the_mlx_backend_gives_the_torch_events_with_every_model(
    cli, tiny_talk, model, request, tmp_path, monkeypatch
):
    pytest.importorskip("mlx.core")
    spec, mlx_batches = get_spec(model), []

    class Counted:  # the model's MLX twin, counting its batches
        def __init__(self, module):
            self.twin = spec.to_mlx(module)

        def __call__(self, windows):
            mlx_batches.append(len(windows))
            return self.twin(windows)

        def resume(self, frames, states, readouts):
            mlx_batches.append(len(frames))
            return self.twin.resume(frames, states, readouts)

    monkeypatch.setitem(MODELS, model, lambda: replace(spec, to_mlx=Counted))
    options = [*model_options(request, model), "--profiles", tmp_path / "store"]
    # A profile (made on torch) so that the events carry scores computed from embeddings.
    result = cli("enroll", "alice", tiny_talk, *options, "--backend", "torch", "--min-speech-s", 2)
    assert result.code == 0, result.err
    runs = {}
    for backend in ("mlx", "torch"):
        runs[backend] = tmp_path / f"{backend}.jsonl"
        result = cli(
            "track", tiny_talk, *options, "--backend", backend, "--hop-s", 1,
            "--jsonl", runs[backend], "-q",
        )  # fmt: skip
        assert result.code == 0, result.err
        assert bool(mlx_batches) == (backend == "mlx")  # the MLX twin ran for mlx only
        mlx_batches.clear()
    events = check_events(runs["mlx"], "tiny")
    assert events == check_events(runs["torch"], "tiny")
    scores = [e["score"] for e in events if e["type"] == "speaker"]
    assert scores and 0 < min(scores) < 1  # windows were embedded and scored
    assert labels(events) == {"alice"}


@pytest.mark.parametrize("model", ["rf5-gru", "wespeaker-resnet34"])
def test_enroll_keeps_the_profile_to_its_model(
    cli, audio, short_talk, store, model, request, tmp_path
):
    options = [*model_options(request, model), "--profiles", store]
    result = cli("enroll", "carol", audio["carol.wav"], *options)
    assert result.code == 0, result.err
    assert "saved profile 'carol'" in result.out
    data = json.loads((store / "carol.json").read_text())
    assert data["model"] == model and len(data["total"]) == 256  # as long as ge2e's

    def track(*args: object) -> tuple[str, set[str]]:
        jsonl = tmp_path / "out.jsonl"
        result = cli("track", short_talk, *args, "--jsonl", jsonl)
        assert result.code == 0, result.err
        return result.err, labels(check_events(jsonl))

    # Each model matches its own profiles only. (With random weights every voice is
    # close to carol's profile, so it is matched wherever it is used.)
    warnings, found = track(*options)
    assert "ignoring profiles made with another model: alice (ge2e), bob (ge2e)" in warnings
    assert "carol" in found and not found & {"alice", "bob"}
    warnings, found = track("--profiles", store, "--hop-s", 0.4)  # ge2e
    assert f"ignoring profiles made with another model: carol ({model})" in warnings
    assert found == {"alice", "bob"}
    # The same vectors filed as a ge2e profile are never matched by this model.
    data["model"] = "ge2e"
    (store / "carol.json").write_text(json.dumps(data))
    warnings, found = track(*options)
    assert "ignoring profiles made with another model: alice (ge2e), bob (ge2e), carol (ge2e)" in (
        warnings
    )
    assert f"no {model} profiles" in warnings
    assert "carol" not in found


def test_model_choices_that_cannot_work(cli, short_talk, monkeypatch):
    rf5 = ("track", short_talk, "--model", "rf5-gru")
    message = cli(*rf5).error
    assert "rf5-gru has no bundled weights; pass --weights PATH" in message
    assert "gru-wrapped-f1f850.pth" in message
    assert "not a rf5-gru checkpoint" in cli(*rf5, "--weights", default_weights_path()).error
    assert "is for the torch backend" in cli(*rf5, "--backend", "mlx", "--device", "cpu").error
    assert cli("track", short_talk, "--backend", "jax").code == 2  # usage error
    monkeypatch.setitem(sys.modules, "mlx", None)
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    message = cli("track", short_talk, "--backend", "mlx").error
    assert message.startswith("the MLX backend needs mlx, which is not installed")
    assert 'pip install "mlx[cpu]"' in message
