"""The example clients against a real daemon, in-process (their command lines are run as
processes in tests/cli/test_serve.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import soundfile as sf

from clients.common import describe
from clients.stream import main as stream_main
from clients.stream import stream_file
from clients.subscribe import subscribe
from streamer.evaluation.synth import conversation
from tests.server.conftest import daemon, run, url_of


def test_stream_a_stereo_file_and_watch_it(make_engine, store_of, tmp_path):
    store = store_of("alice", "bob")
    talk, _ = conversation([("bob", 3.0), ("alice", 3.0)], gap_s=0.6, seed=95, sample_rate=48_000)
    path = tmp_path / "talk.flac"
    sf.write(path, np.stack([talk, talk], axis=1), 48_000)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            watched: list[dict] = []
            subscribed = asyncio.Event()

            def watch(message: dict) -> bool:
                watched.append(message)
                if message["type"] == "snapshot":
                    subscribed.set()
                return message["type"] == "stream_ended"

            watching = asyncio.create_task(subscribe(url_of(server), watch, streams=["talk"]))
            await subscribed.wait()
            heard: list[dict] = []
            ended = await stream_file(
                url_of(server), str(path), stream_id="talk", on_message=heard.append
            )
            await asyncio.wait_for(watching, 10)
            return ended, heard, watched

    ended, heard, watched = run(scenario())
    assert ended["stream"] == "talk" and abs(ended["audio_s"] - len(talk) / 48_000) < 0.01
    segments = [m["label"] for m in heard if m["type"] == "segment"]
    assert segments == ["bob", "alice"]
    assert [m for m in watched if "v" in m] == [m for m in heard if "v" in m]
    lines = [describe(m) for m in heard if m["type"] in ("speaker", "change", "segment")]
    assert lines[0].startswith("[talk]") and " speaker  bob " in lines[0]


def test_usage_errors(capsys):
    try:
        stream_main([])
    except SystemExit as exc:
        assert exc.code == 2
    assert "pass a FILE or --mic" in capsys.readouterr().err
