"""Capacity: keepalive under backpressure, admission control, lagging streams."""

from __future__ import annotations

import asyncio
from collections import Counter

from streamer.cohort import shipped
from streamer.evaluation.synth import conversation
from streamer.worker import WorkerOptions
from tests.server.conftest import SR, Client, daemon, reference, run


def test_keepalive_never_drops_a_client_paused_for_backpressure(make_engine, store_of):
    """A file sent as fast as the socket takes it, with pings every 0.2 s and 0.3 s to
    answer: its pongs wait unread behind its audio while the daemon holds it back, which
    used to close it with 1011 (keepalive ping timeout) and lose the rest of its audio."""
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 5.0), ("bob", 5.0)] * 2, gap_s=0.5, seed=61)

    async def scenario():
        engine = make_engine(options=WorkerOptions(buffer_s=4.0))
        limits = dict(max_backlog_s=1.0, ping_interval_s=0.2, ping_timeout_s=0.3)
        async with daemon(engine, store, **limits) as server:
            client = await Client.open(server, stream="file", events=True, listen=True)
            await client.send_audio(audio, chunk=8000)
            ended = await client.end()
            await client.close()
            return client, ended

    client, ended = run(scenario())
    assert ended["audio_s"] == round(len(audio) / SR, 3)
    assert not [m for _, m in client.received if m["type"] == "error"]
    assert client.ws.close_code == 1000


def test_a_stream_beyond_the_capacity_is_refused_busy_and_the_admitted_go_on(make_engine, store_of):
    """A hop of one frame makes every stream cost about 16 times the default: the daemon
    measures it at start-up and holds only a few. The stream one past them is refused
    with ``busy`` (1013) naming that capacity; the admitted streams lose nothing."""
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 1.5), ("bob", 1.5)], gap_s=0.3, seed=62)

    async def scenario():
        engine = make_engine(options=WorkerOptions(hop_s=0.01))
        async with daemon(engine, store) as server:
            capacity = server.admission.capacity()
            admitted = [await Client.open(server, stream=f"s{i}") for i in range(capacity)]
            refused = await Client.connect(server)
            await refused.send({"type": "hello", "role": "stream", "sample_rate": SR})
            error = await refused.next()
            await refused.ws.wait_closed()
            ended = []
            for client in admitted:
                await client.send_audio(audio)
                ended.append(await client.end())
                await client.close()
            return capacity, error, refused.ws.close_code, ended

    capacity, error, close_code, ended = run(scenario(), timeout_s=300)
    assert 1 <= capacity <= 40
    assert error["code"] == "busy" and close_code == 1013
    assert f"capacity of about {capacity} real-time streams" in error["message"]
    assert [e["audio_s"] for e in ended] == [round(len(audio) / SR, 3)] * capacity


def test_a_streams_events_are_the_same_on_one_and_two_workers(make_engine, store_of):
    """Two engine worker processes: each stream lives on one of them, and its events are
    exactly what the engine alone gives (the profiles reached both workers)."""
    from streamer.pipeline import PipelineOptions
    from streamer.server.workers import WorkerPool

    store = store_of("alice", "bob", "carol")
    talks = {"a": [("alice", 3.0), ("bob", 3.0)], "b": [("carol", 3.0), ("dave", 2.5)]}
    audios = {k: conversation(t, gap_s=0.5, seed=63)[0] for k, t in talks.items()}

    async def scenario():
        async with daemon(WorkerPool(PipelineOptions(), 2, 0.05), store) as server:
            clients = {k: await Client.open(server, stream=k, events=True) for k in audios}
            homes = {s.runner.index for s in server.sessions.values()}
            # a burst: streams opened at once are spread too (they all went to worker 0)
            burst = await asyncio.gather(*(Client.open(server, stream=f"x{i}") for i in range(6)))
            spread = Counter(server.sessions[f"x{i}"].runner.index for i in range(6))
            for client in burst:
                await client.close()
            for k, client in clients.items():
                await client.send_audio(audios[k], chunk=1600)
            ended = {k: await c.end() for k, c in clients.items()}
            for client in clients.values():
                await client.close()
            return clients, homes, spread, ended

    clients, homes, spread, ended = run(scenario(), timeout_s=400)
    assert homes == {0, 1}
    assert spread == {0: 3, 1: 3}
    for k, client in clients.items():
        assert ended[k]["audio_s"] == round(len(audios[k]) / SR, 3)
        assert client.events() == reference(make_engine, store, audios[k], k, shipped("ge2e"))


def test_streams_that_fall_behind_get_lagging_and_the_daemon_takes_no_new_one(
    make_engine, store_of
):
    """A hop of one frame makes every stream cost about 16 times the default; six of them
    in real time (admitted with admission control off) are more than the engine's core
    can do. Their clients are told ``lagging`` (with the lag), the gauge counts them, a
    new stream meanwhile gets ``busy`` naming one (admission back on), and the slow
    streams lose no audio."""
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 2.5), ("bob", 2.5)], gap_s=0.3, seed=64)

    async def scenario():
        engine = make_engine(options=WorkerOptions(hop_s=0.01))
        async with daemon(engine, store) as server:
            server.admission.enabled = False
            slow = [
                await Client.open(server, stream=f"slow{i}", events=True, listen=True)
                for i in range(6)
            ]
            await asyncio.gather(*(c.send_audio(audio, chunk=1600, realtime=True) for c in slow))
            notice = await slow[0].next("lagging", timeout_s=60)
            gauge = server.metrics.lagging._value.get()
            server.admission.enabled = True
            refused = await Client.connect(server)
            await refused.send({"type": "hello", "role": "stream", "sample_rate": SR})
            error = await refused.next()
            ended = [await c.end() for c in slow]
            for client in slow:
                await client.close()
            return notice, gauge, error, ended

    notice, gauge, error, ended = run(scenario(), timeout_s=300)
    assert notice["stream"] == "slow0" and notice["lag_s"] > 1.0
    assert gauge >= 1
    assert error["code"] == "busy" and "is lagging" in error["message"]
    assert [e["audio_s"] for e in ended] == [round(len(audio) / SR, 3)] * 6
