"""Fixtures for the command-line tests: synthetic recordings and a store with two voices.

The CLI loads the model itself on each command that needs it (about 0.15 s once the
files are cached), so the store is enrolled once per session and copied per test.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import streamer.cli
from streamer.cli import main
from streamer.evaluation.synth import conversation, speech

SR = 16_000
TURNS = [("alice", 6.0), ("bob", 6.0), ("alice", 5.0)]


@pytest.fixture(autouse=True)
def private_default_store(tmp_path, monkeypatch):
    """No test may touch the checkout's or the user's profile store by accident."""
    monkeypatch.setenv("STREAMER_PROFILES", str(tmp_path / "default-store"))


@pytest.fixture(scope="session")
def audio(tmp_path_factory) -> dict[str, Path]:
    """Recordings: enrollment clips, a three-turn conversation, silence and bad files."""
    folder = tmp_path_factory.mktemp("audio")
    clips = {
        "alice.wav": speech("alice", 8.0, seed=201),
        "alice-more.wav": speech("alice", 6.0, seed=202),
        "bob.wav": speech("bob", 8.0, seed=203),
        "short.wav": speech("carol", 2.0, seed=204),
        "carol.wav": speech("carol", 8.0, seed=205),
        "silence.wav": np.zeros(4 * SR, np.float32),
    }
    for name, samples in clips.items():
        sf.write(folder / name, samples, SR)
    talk, _ = conversation(TURNS, gap_s=0.6, seed=7)
    sf.write(folder / "talk.wav", talk, SR)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    return {name: folder / name for name in [*clips, "talk.wav", "empty.wav", "corrupt.wav"]}


@pytest.fixture(scope="session")
def enrolled_store(tmp_path_factory, audio) -> Path:
    """A store with ``alice`` and ``bob``, enrolled through the CLI (read-only: copy it)."""
    folder = tmp_path_factory.mktemp("enrolled") / "profiles"
    for name in ("alice", "bob"):
        assert main(["enroll", name, str(audio[f"{name}.wav"]), "--profiles", str(folder)]) == 0
    return folder


@pytest.fixture
def store(tmp_path, enrolled_store) -> Path:
    """A fresh copy of the enrolled store for one test."""
    return Path(shutil.copytree(enrolled_store, tmp_path / "profiles"))


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command gets as far as loading the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    for module in ("streamer.cli.track", "streamer.cli.enroll"):
        monkeypatch.setattr(f"{module}.load_engine", refuse)
    monkeypatch.setattr(streamer.cli, "load_engine", refuse)
    monkeypatch.setattr("streamer.server.workers.WorkerPool", refuse)


BACKEND_NOTE = re.compile(r"^streamer: backend: .*\n", re.MULTILINE)


@dataclass
class Result:
    """What one ``streamer`` command did; ``backend`` is the line ``--backend auto`` prints
    to stderr, kept out of ``err``."""

    code: int
    out: str
    err: str
    backend: str = ""

    @property
    def error(self) -> str:
        """The message of a failed command, after checking it is one line and no traceback."""
        assert self.code != 0, self.out
        assert self.err.startswith("streamer: error: "), self.err
        assert self.err.count("\n") == 1 and self.err.endswith("\n"), self.err
        return self.err[len("streamer: error: ") : -1]


@pytest.fixture
def cli(capsys):
    """``cli(*args)``: run ``streamer ARGS`` in-process and capture its output."""

    def run(*args: object) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        backend = "".join(BACKEND_NOTE.findall(captured.err))
        return Result(code, captured.out, BACKEND_NOTE.sub("", captured.err), backend)

    return run
