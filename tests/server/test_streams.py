"""Audio in, events out: concurrent streams, resampling, backpressure, snapshots."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamer.evaluation.synth import conversation
from streamer.worker import WorkerOptions
from tests.conftest import label_share
from tests.server.conftest import (
    SR,
    Client,
    daemon,
    http_get,
    metric,
    reference,
    run,
)

ENROLLED = ("alice", "bob", "carol")
TALK_A = [("alice", 4.0), ("bob", 3.0), ("carol", 3.5)]
TALK_B = [("carol", 3.0), ("dave", 3.0), ("alice", 3.0)]  # dave is a stranger
TALK_C = [("bob", 3.5), ("alice", 3.0)]


def test_concurrent_streams_each_get_their_own_events_in_order(make_engine, store_of):
    """Three clients stream at once, as fast as the daemon takes it (backpressure):
    two send float32 at 16 kHz in different frame sizes, one int16 stereo at 44.1 kHz."""
    store = store_of(*ENROLLED)
    a, _ = conversation(TALK_A, gap_s=0.6, seed=11)
    c, _ = conversation(TALK_C, gap_s=0.6, seed=13)
    b, b_turns = conversation(TALK_B, gap_s=0.6, seed=12, sample_rate=44_100)
    b_stereo = np.stack([b, 0.5 * b], axis=1)

    async def scenario():
        async with daemon(make_engine(), store, max_backlog_s=1.0) as server:
            watcher = await Client.open(server, "subscribe")
            assert (await watcher.next())["type"] == "snapshot"
            clients = {}
            for stream in ("a", "b", "c"):
                clients[stream] = await Client.connect(server)
            await clients["a"].hello(stream="a", events=True)
            await clients["b"].hello(
                stream="b", events=True, sample_rate=44_100, format="int16", channels=2
            )
            await clients["c"].hello(stream="c", events=True)

            async def send(stream, audio, **kw):
                client = clients[stream]
                await client.send_audio(audio, **kw)
                return await client.end()

            await asyncio.gather(
                send("a", a, chunk=320),
                send("b", b_stereo, chunk=882, fmt="int16", rate=44_100),
                send("c", c, chunk=4000),
            )
            for _ in range(3):
                await watcher.next("stream_ended")
            _, body = await http_get(server, "/metrics")
            for client in clients.values():
                await client.close()
            await watcher.close()
            return clients, watcher, body

    clients, watcher, metrics = run(scenario())
    # Exactly the engine's own events, for the streams sent unchanged (float32, 16 kHz).
    for stream, audio in (("a", a), ("c", c)):
        expected = reference(make_engine, store, audio, stream)
        assert clients[stream].events() == expected
        assert watcher.events(stream) == expected
    # Each stream client got only its own stream's events.
    assert {e["stream"] for e in clients["b"].events()} == {"b"}
    # The resampled, down-mixed stream is tracked right too.
    b_events = clients["b"].events()
    assert watcher.events("b") == b_events
    for start, end, speaker in b_turns:
        shares = label_share(b_events, start, end)
        expected = speaker if speaker in ENROLLED else "speaker-1"  # the one stranger
        assert shares.get(expected, 0) >= 0.8 * (end - start), (speaker, shares)
    for stream in ("a", "b", "c"):
        emitted = [e["emitted_at"] for e in watcher.events(stream)]
        assert emitted == sorted(emitted)
        types = [e["type"] for e in watcher.events(stream)]
        assert types.count("speech_start") == types.count("speech_end") >= 1
    # Nobody was refused for sending too fast: the daemon paused them instead.
    assert not [m for c in clients.values() for _, m in c.received if m["type"] == "error"]
    assert metric(metrics, "streamer_backpressure_waits_total") > 0
    assert metric(metrics, "streamer_windows_embedded_total") > 100
    assert metric(metrics, 'streamer_events_total{type="change"}') >= 4


def test_a_subscriber_joining_mid_stream_gets_a_snapshot_first(make_engine, store_of):
    store = store_of(*ENROLLED)
    audio, _ = conversation([("alice", 4.0), ("bob", 3.0)], gap_s=0.6, seed=21)
    first, rest = audio[: int(3.0 * SR)], audio[int(3.0 * SR) :]

    async def scenario():
        async with daemon(make_engine(), store) as server:
            talker = await Client.open(server, stream="desk", events=True)
            await talker.send_audio(first)
            speaker = await talker.next("speaker")  # alice, decided while she talks
            late = await Client.connect(server)
            ready = await late.hello("subscribe", streams=["desk"])
            snapshot = await late.next()
            await talker.send_audio(rest)
            await talker.end()
            await late.next("stream_ended")
            return speaker, ready, snapshot, late, talker

    speaker, ready, snapshot, late, talker = run(scenario())
    assert speaker["label"] == "alice"
    assert ready["streams"] == ["desk"]
    assert snapshot["type"] == "snapshot"
    assert [p["name"] for p in snapshot["profiles"]] == list(ENROLLED)
    (state,) = snapshot["streams"]
    assert state["stream"] == "desk" and state["in_speech"] is True
    assert state["speaker"]["label"] == "alice"
    # After the snapshot, the late subscriber gets every later event, in order.
    later = late.events()
    everything = talker.events()
    assert later == everything[len(everything) - len(later) :]
    assert any(e["type"] == "change" and e["label"] == "bob" for e in later)


def test_a_file_sent_all_at_once_is_paced_by_the_worker_not_refused(make_engine, store_of):
    """Backpressure: 20 s of audio in frames of 1.5 s into a stream whose ring buffer
    holds 4 s — pushing it all at once would overflow it — with a 1 s backlog limit."""
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 5.0), ("bob", 5.0)] * 2, gap_s=0.5, seed=31)

    async def scenario():
        engine = make_engine(options=WorkerOptions(buffer_s=4.0))
        async with daemon(engine, store, max_backlog_s=1.0) as server:
            client = await Client.open(server, stream="file", events=True)
            await client.send_audio(audio, chunk=24_000)
            ended = await client.end()
            _, metrics = await http_get(server, "/metrics")
            return client, ended, metrics

    client, ended, metrics = run(scenario())
    assert ended["audio_s"] == round(len(audio) / SR, 3)
    assert not [m for _, m in client.received if m["type"] == "error"]
    assert metric(metrics, "streamer_backpressure_waits_total") >= 10
    assert client.events() == reference(make_engine, store, audio, "file")


def test_closing_a_stream_leaves_the_others_audio_waiting(make_engine):
    engine = make_engine()
    audio = conversation(TALK_C, gap_s=0.5, seed=41)[0]
    closing, other = engine.open_stream("closing"), engine.open_stream("other")
    closing.push(audio[: 2 * SR])
    other.push(audio[: 3 * SR])
    engine.close_stream("closing")
    assert other.pending_samples == 3 * SR  # not processed on the closing stream's time
    assert "closing" not in engine.streams


def test_ending_one_stream_does_not_stall_the_others(make_engine, store_of):
    """Four real-time streams in 10 ms frames; one ends after 3 s while the others go on.
    Its ``end`` is answered promptly and the others' events keep flowing. (Closing used to
    step every stream until none had audio waiting — with live streams, until they all
    stopped — publishing nothing meanwhile.)"""
    store = store_of(*ENROLLED)
    talks = [TALK_A, TALK_B, TALK_C, TALK_A]
    audios = [
        conversation(t * 2, gap_s=0.5, seed=40 + i)[0][: 15 * SR] for i, t in enumerate(talks)
    ]
    short = audios[0][: 3 * SR]

    async def scenario():
        async with daemon(make_engine(), store) as server:
            clients = [
                await Client.open(server, stream=f"s{i}", events=True, listen=True)
                for i in range(len(audios))
            ]

            async def stream(i, audio):
                await clients[i].send_audio(audio, chunk=160, realtime=True)
                asked = time.monotonic()
                await clients[i].end()
                return asked, time.monotonic()

            times = await asyncio.gather(
                stream(0, short), *(stream(i, a) for i, a in enumerate(audios) if i)
            )
            for client in clients:
                await client.close()
            return clients, times

    clients, times = run(scenario())
    (asked, answered), *others = times
    last_sent = min(a for a, _ in others)
    # Before, the end waited until the others stopped sending (12 s later).
    assert answered < last_sent - 3.0, f"ending the short stream took {answered - asked:.1f} s"
    events_meanwhile = [
        t for c in clients[1:] for t, m in c.received if "v" in m and asked < t < last_sent
    ]
    assert events_meanwhile  # published while the short stream was closed, not held back
