"""The example clients against a real daemon, in-process (their command lines are run as
processes in tests/cli/test_serve.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from clients.common import ClientError, describe, open_connection
from clients.stream import main as stream_main
from clients.stream import stream_file
from clients.subscribe import main as subscribe_main
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_files_and_no_daemon_get_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 100)
    silent = tmp_path / "none.wav"
    sf.write(silent, np.zeros(0, np.int16), 16_000)
    talk = tmp_path / "talk.wav"
    sf.write(talk, np.zeros(1600, np.int16), 16_000)
    url = f"ws://127.0.0.1:{_free_port()}/"
    cases = [
        (str(tmp_path / "missing.wav"), "missing.wav: no such file"),
        (str(empty), "empty.wav is empty"),
        (str(text), "notes.wav is not audio soundfile can read"),
        (str(silent), "none.wav holds no audio"),
        (str(tmp_path), "is not a file"),
        (str(talk), f"no daemon at {url}; start it with `streamer serve`"),
    ]
    for path, expected in cases:
        assert stream_main([path, "--url", url]) == 1
        err = capsys.readouterr().err
        assert err.startswith("clients.stream: error: ") and expected in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert subscribe_main(["--url", url]) == 1
    err = capsys.readouterr().err
    assert f"no daemon at {url}" in err and err.count("\n") == 1


def test_a_wrong_token_names_the_token_flag(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), token="right-token-123") as server:
            for token in ("wrong-token-456", None):
                with pytest.raises(ClientError) as refused:
                    await open_connection(
                        url_of(server), {"type": "hello", "role": "subscribe"}, token
                    )
                message = str(refused.value)
                assert "--token" in message, message
            return message

    assert "refused no token" in run(scenario())
