"""Every bad message gets one JSON error and breaks nothing; tokens, origins, limits, timeouts;
a client vanishing mid-frame; /healthz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from streamer.evaluation.synth import conversation, speech
from tests.server.conftest import SR, Client, daemon, http_get, metric, run, url_of

TOKEN = "s3cret-token-for-tests"


async def expect_error(client: Client, message, code: str) -> dict:
    """Send ``message``; the reply must be exactly one error with ``code``, after which the
    connection still answers (a status request's reply comes next, nothing in between)."""
    await client.send(message)
    error = await client.next()
    assert error["type"] == "error" and error["code"] == code, error
    assert error["message"] and "\n" not in error["message"]
    status = await client.request({"type": "status"} if client.ready else "{}")
    assert status["type"] == ("status" if client.ready else "error"), status
    return error


def test_every_bad_message_gets_one_error_and_the_stream_goes_on(make_engine, store_of):
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 3.0), ("bob", 3.0)], gap_s=0.5, seed=51)

    async def scenario():
        async with daemon(make_engine(), store, max_frame_bytes=64_000) as server:
            client = await Client.connect(server)
            client.ready = False
            errors = [
                await expect_error(client, "this is not json", "bad_json"),
                await expect_error(client, "[1, 2]", "bad_json"),
                await expect_error(client, b"\x00\x01" * 160, "not_ready"),  # audio before hello
                await expect_error(client, {"type": "status"}, "not_ready"),
                await expect_error(client, {"type": "hello", "role": "boss"}, "bad_message"),
            ]
            hello = {"type": "hello", "role": "stream", "sample_rate": SR}
            bad_hellos = [
                ({**hello, "format": "int24"}, "bad_format"),
                ({**hello, "format": "float64"}, "bad_format"),
                ({**hello, "sample_rate": 1_000_000_000}, "bad_sample_rate"),
                ({**hello, "sample_rate": 0}, "bad_sample_rate"),
                ({**hello, "sample_rate": "16k"}, "bad_sample_rate"),
                ({**hello, "channels": 0}, "bad_channels"),
                ({**hello, "stream": "../etc"}, "bad_message"),
                ({**hello, "protocol": 2}, "bad_message"),
            ]
            for message, code in bad_hellos:
                errors.append(await expect_error(client, message, code))
            await client.hello(stream="s", format="int16")
            client.ready = True
            errors += [
                await expect_error(client, {"type": "dance"}, "unknown_type"),
                await expect_error(client, {"kind": "status"}, "unknown_type"),
                await expect_error(client, {"type": "hello", "role": "control"}, "bad_message"),
                await expect_error(client, b"\x00\x01\x02", "bad_frame"),  # half a sample
                await expect_error(client, bytes(100_000), "frame_too_large"),
                await expect_error(client, "x" * 70_000, "frame_too_large"),
                await expect_error(
                    client, {"type": "enroll", "name": "x", "stream": "no"}, "unknown_stream"
                ),
                await expect_error(client, {"type": "enroll", "name": "a/b"}, "profile"),
                await expect_error(
                    client, {"type": "enroll", "name": "x", "seconds": 0}, "bad_message"
                ),
                await expect_error(client, {"type": "cancel"}, "not_enrolling"),
                await expect_error(
                    client, {"type": "rename", "name": "zed", "new_name": "z"}, "profile"
                ),
                await expect_error(client, {"type": "remove"}, "bad_message"),
            ]
            # Request ids come back on errors too.
            await client.send({"type": "remove", "name": "nobody", "id": 7})
            assert (await client.next())["id"] == 7
            # After all that, the stream works as if nothing happened.
            await client.send_audio(audio, fmt="int16")
            await client.end()
            labels = {e["label"] for e in client.events() if e["type"] == "segment"}
            await expect_error(client, b"\x00\x00", "no_stream")  # audio after the end
            await client.close()
            return errors, labels

    errors, labels = run(scenario())
    by_code = {e["code"]: e["message"] for e in errors}
    assert "hello first" in by_code["not_ready"]
    assert "'int16' or 'float32'" in by_code["bad_format"]
    assert "whole number of samples" in by_code["bad_frame"]
    assert "over the limit of 64000" in by_code["frame_too_large"]
    assert labels == set()  # events: false on this connection


def test_float32_frames_with_nan_are_refused(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of()) as server:
            client = await Client.open(server)
            client.ready = True
            frame = np.array([0.1, np.nan, 0.2, 0.3], "<f4").tobytes()
            error = await expect_error(client, frame, "bad_frame")
            await client.close()
            return error

    assert "NaN" in run(scenario())["message"]


def test_tokens(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), token=TOKEN) as server:
            wrong = await Client.connect(server)
            await wrong.send({"type": "hello", "role": "control", "token": "guess"})
            error = await wrong.next()
            await wrong.ws.wait_closed()
            in_hello = await Client.open(server, "control", token=TOKEN)
            in_query = await Client.connect(server, f"?token={TOKEN}")
            await in_query.hello("subscribe")
            in_header = await Client.connect(
                server, additional_headers={"Authorization": f"Bearer {TOKEN}"}
            )
            await in_header.hello("stream")
            unauthorised = await http_get(server, "/metrics")
            authorised = await http_get(server, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
            health = await http_get(server, "/healthz")
            for client in (in_hello, in_query, in_header):
                await client.close()
            return error, wrong.ws.close_code, unauthorised, authorised, health

    error, close_code, unauthorised, authorised, health = run(scenario())
    assert error["code"] == "unauthorized" and "token" in error["message"]
    assert close_code == 1008
    assert unauthorised[0] == 401
    assert authorised[0] == 200 and "streamer_streams 1.0" in authorised[1]
    assert health[0] == 200 and json.loads(health[1])["status"] == "ok"


def test_browser_origins_are_refused_unless_allowed(make_engine, store_of):
    async def scenario():
        allowed = "http://localhost:3000"
        async with daemon(make_engine(), store_of(), origins=[allowed]) as server:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url_of(server), origin="http://evil.example")
            ok = Client(await connect(url_of(server), origin=allowed))
            await ok.hello("control")
            await ok.close()
            return refused.value.response.status_code

    assert run(scenario()) == 403


def test_limits_on_streams_and_subscribers_close_with_try_later(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), max_streams=1, max_subscribers=1) as server:
            first = await Client.open(server)
            second = await Client.connect(server)
            await second.send({"type": "hello", "role": "stream", "sample_rate": SR})
            stream_error = await second.next()
            await second.ws.wait_closed()
            watcher = await Client.open(server, "subscribe")
            another = await Client.connect(server)
            await another.send({"type": "hello", "role": "subscribe"})
            subscriber_error = await another.next()
            await another.ws.wait_closed()
            await first.close()
            await watcher.close()
            return stream_error, second.ws.close_code, subscriber_error, another.ws.close_code

    stream_error, code1, subscriber_error, code2 = run(scenario())
    assert stream_error["code"] == "limit" and "1 streams open" in stream_error["message"]
    assert subscriber_error["code"] == "limit"
    assert code1 == code2 == 1013


def test_message_rate_is_limited_by_slowing_down(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), max_messages_per_s=50) as server:
            client = await Client.open(server, "control")
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(120):
                await client.send({"type": "status"})
            replies = [await client.next() for _ in range(120)]
            elapsed = loop.time() - started
            await client.close()
            return replies, elapsed

    replies, elapsed = run(scenario())
    assert all(r["type"] == "status" for r in replies)  # slowed down, never refused
    assert elapsed > 1.0  # 120 messages at 50/s after a burst of 50


def test_hello_and_idle_timeouts(make_engine, store_of):
    async def scenario():
        limits = {"hello_timeout_s": 0.3, "idle_timeout_s": 0.5}
        async with daemon(make_engine(), store_of(), **limits) as server:
            watcher = await Client.connect(server)
            await watcher.hello("subscribe")  # subscribers only listen: never idle
            silent = await Client.connect(server)
            hello_error = await silent.next()
            await silent.ws.wait_closed()
            idle = await Client.open(server, stream="idle")
            idle_error = await idle.next()
            await idle.ws.wait_closed()
            ended = await watcher.next("stream_ended")
            status = await watcher.request({"type": "status"})
            await watcher.close()
            return hello_error, silent.ws.close_code, idle_error, ended, status

    hello_error, hello_code, idle_error, ended, status = run(scenario())
    assert hello_error["code"] == "hello_timeout" and hello_code == 1008
    assert idle_error["code"] == "idle_timeout"
    assert ended["stream"] == "idle" and status["streams"] == []


def test_the_daemon_survives_a_client_vanishing_mid_frame(make_engine, store_of):
    store = store_of("alice")
    talk = speech("alice", 3.0, seed=61)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            watcher = await Client.open(server, "subscribe")
            doomed = await Client.open(server, stream="doomed")
            await doomed.send_audio(talk)
            # Half of a 64 kB binary frame, then the TCP connection is gone.
            frame = Frame(Opcode.BINARY, talk[:16_000].astype("<f4").tobytes()).serialize(mask=True)
            doomed.ws.transport.write(frame[: len(frame) // 2])
            doomed.ws.transport.abort()
            ended = await watcher.next("stream_ended")
            # Everything else still works: a new stream with the same id, health, metrics.
            again = await Client.open(server, stream="doomed", events=True)
            await again.send_audio(talk)
            await again.end()
            health = await http_get(server, "/healthz")
            _, metrics = await http_get(server, "/metrics")
            await again.close()
            await watcher.close()
            return watcher, ended, again, health, metrics

    watcher, ended, again, health, metrics = run(scenario())
    assert ended["reason"].startswith("its client disconnected (the connection was lost")
    assert ended["audio_s"] == pytest.approx(3.0, abs=0.02)
    first = watcher.events("doomed")
    # The vanished stream still got its closing events: every speech_start has its end.
    types = [e["type"] for e in first]
    assert types.count("speech_start") == types.count("speech_end") >= 1
    assert [e["label"] for e in first if e["type"] == "segment"] == ["alice"]
    assert [e["label"] for e in again.events() if e["type"] == "segment"] == ["alice"]
    assert health[0] == 200
    assert metric(metrics, "streamer_streams") == 0
    assert metric(metrics, "streamer_connections") == 2  # the watcher and "again", not "doomed"


def test_http_paths(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of()) as server:
            return await http_get(server, "/nope"), await http_get(server, "/metrics")

    (missing, _), (status, body) = run(scenario())
    assert missing == 404
    assert status == 200
    for name in (
        "streamer_windows_per_second",
        "streamer_encoder_seconds_count",
        "streamer_event_latency_seconds_count",
        "streamer_dropped_events_total",
    ):
        assert name in body


def test_deep_json_and_wrong_types_in_a_hello_get_one_error_and_keep_the_connection(
    make_engine, store_of
):
    async def scenario():
        async with daemon(make_engine(), store_of()) as server:
            client = await Client.connect(server)
            client.ready = False
            hello = {"type": "hello", "role": "stream", "sample_rate": SR}
            errors = [
                await expect_error(client, "[" * 5_000 + "]" * 5_000, "bad_json"),
                await expect_error(client, '{"a":' * 5_000 + "1" + "}" * 5_000, "bad_json"),
                await expect_error(client, {**hello, "format": ["int16"]}, "bad_format"),
                await expect_error(client, {**hello, "channels": [1]}, "bad_channels"),
                await expect_error(client, {"type": ["hello"]}, "unknown_type"),
                await expect_error(client, {**hello, "role": {"r": 1}}, "bad_message"),
            ]
            ready = await client.hello(format="int16")  # the same connection still works
            await client.close()
            return errors, ready

    errors, ready = run(scenario())
    assert "nested too deeply" in errors[0]["message"]
    assert ready["type"] == "ready"


def test_an_idle_connection_flood_locks_nobody_out(make_engine, store_of, caplog):
    limits = {
        "max_connections": 20,
        "max_pending_connections": 16,
        "max_pending_per_address": 16,
        "hello_timeout_s": 3.0,
    }

    async def scenario():
        async with daemon(make_engine(), store_of(), token=TOKEN, **limits) as server:
            idle = [await connect(url_of(server)) for _ in range(60)]  # never say hello
            stop = asyncio.Event()

            async def reconnect() -> int:  # and one that reconnects as fast as it can
                opened = 0
                while not stop.is_set():
                    async with connect(url_of(server)) as ws:
                        opened += 1
                        with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                            await asyncio.wait_for(ws.wait_closed(), 0.05)
                return opened

            flood = asyncio.gather(*(reconnect() for _ in range(4)))
            replies, loop = [], asyncio.get_running_loop()
            until = loop.time() + 2.0
            while loop.time() < until:  # a well-behaved client, again and again meanwhile
                client = await Client.connect(server)
                await client.send({"type": "hello", "role": "control", "token": TOKEN})
                replies.append(await client.next())
                await client.close()
                await asyncio.sleep(0.1)
            in_url = await Client.connect(server, f"?token={TOKEN}")
            stream = await in_url.hello("stream")
            await in_url.end()
            await in_url.close()
            stop.set()
            reconnects = sum(await flood)
            health = await http_get(server, "/healthz")
            for ws in idle:
                await ws.close()
            return replies, stream, reconnects, health

    with caplog.at_level("INFO", logger="streamer.server"):
        replies, stream, reconnects, health = run(scenario())
    assert len(replies) >= 5 and all(r["type"] == "ready" for r in replies), replies
    assert stream["type"] == "ready"
    assert reconnects >= 8 and health[0] == 200
    refusals = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(refusals) <= 4, [r.getMessage() for r in refusals]  # one line per kind per 10 s
