"""``--model``, ``--weights`` and ``--backend`` through the commands: rf5-gru with weights in
its published layout, the MLX backend, and what a wrong choice says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from streamer.events import EVENT_TYPES, SCHEMA_VERSION
from streamer.models.backends import choose_backend, mlx_device_name
from streamer.models.ge2e_lstm import default_weights_path
from streamer.scoring import read_rttm
from streamer.synth import conversation


@pytest.fixture(scope="module")
def short_talk(tmp_path_factory) -> Path:
    audio, _ = conversation([("alice", 3.0), ("bob", 3.0)], gap_s=0.6, seed=11)
    path = tmp_path_factory.mktemp("short") / "short.wav"
    sf.write(path, audio, 16000)
    return path


def auto_note() -> str:
    backend = choose_backend("auto", None)
    where = "cpu" if backend == "torch" else mlx_device_name()
    return f"streamer: backend: {backend} on {where} (auto)\n"


def check_events(path: Path) -> list[dict]:
    """The JSON lines are well-formed events of one stream, in decision order."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert events
    assert {e["v"] for e in events} == {SCHEMA_VERSION}
    assert {e["stream"] for e in events} == {"short"}
    assert {e["type"] for e in events} <= set(EVENT_TYPES)
    assert [e["emitted_at"] for e in events] == sorted(e["emitted_at"] for e in events)
    starts = [e for e in events if e["type"] == "speech_start"]
    assert len(starts) == len([e for e in events if e["type"] == "speech_end"]) >= 1
    assert any(e["type"] == "segment" for e in events)
    return events


def test_track_with_rf5_gru(cli, short_talk, rf5_checkpoint, tmp_path):
    jsonl, rttm = tmp_path / "out.jsonl", tmp_path / "out.rttm"
    result = cli(
        "track", short_talk, "--model", "rf5-gru", "--weights", rf5_checkpoint,
        "--profiles", tmp_path / "store", "--jsonl", jsonl, "--rttm", rttm,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.startswith(f"tracking {short_talk} (6.6 s) with rf5-gru")
    assert result.backend == auto_note()
    assert "no rf5-gru profiles" in result.err
    events = check_events(jsonl)
    # No profiles: every voice is unknown or an automatic unknown-voice label.
    labels = {e["label"] for e in events if e["type"] == "segment"}
    assert labels and all(label == "unknown" or label.startswith("speaker-") for label in labels)
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
    assert {e["label"] for e in events if e["type"] == "segment"} == {"alice", "bob"}
    assert events == check_events(runs["torch"])


def test_enroll_with_rf5_gru_keeps_the_profile_to_that_model(
    cli, audio, short_talk, rf5_checkpoint, tmp_path
):
    store = tmp_path / "store"
    model = ["--model", "rf5-gru", "--weights", rf5_checkpoint, "--profiles", store]
    result = cli("enroll", "alice", audio["alice.wav"], *model)
    assert result.code == 0, result.err
    assert "saved profile 'alice'" in result.out
    data = json.loads((store / "alice.json").read_text())
    assert data["model"] == "rf5-gru" and len(data["total"]) == 256
    result = cli("track", short_talk, "--profiles", store, "--hop-s", "0.4", "-q")  # ge2e
    assert "ignoring profiles made with another model: alice (rf5-gru)" in result.err


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
