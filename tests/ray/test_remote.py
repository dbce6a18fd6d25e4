"""The ingress's side of an (ingress, engine) pair's channel, without a cluster: the
frames of all the pair's streams go to their engine replica in one batch per batch
interval, a job at once; a newer feed takes the pair over; what the engine replica
sends back reaches each stream."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamer.models import get_spec
from streamer.ray.remote import EngineStream, RemoteEngines
from tests.server.conftest import run

BATCH_S = 0.2
FRAME = np.zeros(320, dtype=np.float32)  # 20 ms at 16 kHz


def engines_with(streams: dict[str, str]) -> RemoteEngines:
    """Engines holding ``{stream id: its engine replica}``, opened."""
    engines = RemoteEngines(None, "ingress-1", get_spec("ge2e"), 10.0, BATCH_S)
    for stream_id, replica in streams.items():
        stream = engines.streams[stream_id] = EngineStream(engines, stream_id, engines._capacity)
        stream.replica = replica
    return engines


def test_a_streams_frames_go_to_its_engine_in_batches_and_jobs_at_once():
    async def scenario():
        engines = engines_with({"s": "engine-1"})
        stream = engines.streams["s"]
        feed = engines.feed("engine-1")
        took = await anext(feed)  # the feed has the pair
        for _ in range(5):
            stream.push(FRAME)
        first = await anext(feed)  # the first batch waits for no interval
        started = time.monotonic()
        for _ in range(5):
            stream.push(FRAME)
        second = await anext(feed)
        waited_s = time.monotonic() - started
        engines.settle("s", "speaker-1")
        started = time.monotonic()
        job = await anext(feed)
        job_s = time.monotonic() - started
        ending = asyncio.ensure_future(engines.end_stream("s"))
        last = await anext(feed)
        ending.cancel()
        await feed.aclose()
        return took, first, second, waited_s, job, job_s, stream, last

    took, first, second, waited_s, job, job_s, stream, last = run(scenario(), 10)
    assert took == {}
    assert first == second == {"s": [("audio", FRAME.tobytes() * 5)]}  # the frames in one piece
    assert waited_s >= BATCH_S * 0.9  # the next batch waited for its interval
    assert job == {"s": [(0, "settle", ("s", "speaker-1"))]} and job_s < BATCH_S / 2
    assert stream.pushed == 3200 and stream.pending_samples == 3200
    assert last == {"s": [(1, "end_stream", ("s",))]}


def test_the_streams_of_one_pair_share_one_item_per_batch():
    ours = [f"s{i}" for i in range(8)]
    engines = engines_with({**{s: "engine-1" for s in ours}, "other": "engine-2"})

    async def scenario():
        feed = engines.feed("engine-1")
        await anext(feed)
        items = []
        for _ in range(3):
            for stream_id in [*ours, "other"]:
                engines.streams[stream_id].push(FRAME)
                engines.streams[stream_id].push(FRAME)
            items.append(await anext(feed))
        await feed.aclose()
        return items

    items = run(scenario(), 10)
    assert len(items) == 3  # one item per batch interval, not one per stream
    for item in items:
        assert sorted(item) == ours  # every stream of the pair, and only those
        assert all(item[s] == [("audio", FRAME.tobytes() * 2)] for s in ours)
    assert engines._pairs["engine-2"].mailboxes == {"other": [("audio", FRAME.tobytes())] * 6}


def test_a_newer_feed_takes_the_pair_over_and_the_older_one_ends_taking_nothing():
    engines = engines_with({"s": "engine-1"})

    async def scenario():
        older = engines.feed("engine-1")
        await anext(older)
        waiting = asyncio.ensure_future(anext(older))
        await asyncio.sleep(0.01)
        newer = engines.feed("engine-1")
        await anext(newer)
        engines.streams["s"].push(FRAME)
        ended = await asyncio.gather(waiting, return_exceptions=True)
        taken = await anext(newer)
        await newer.aclose()
        return ended, taken

    ended, taken = run(scenario(), 10)
    assert isinstance(ended[0], StopAsyncIteration)
    assert taken == {"s": [("audio", FRAME.tobytes())]}
    assert engines._pairs == {}  # the pair's last feed ended with nothing waiting


def test_what_the_engine_sends_back_reaches_each_stream_of_the_pair():
    engines = engines_with({"a": "engine-1", "b": "engine-1"})
    received = []
    engines.start(received.extend, engines._metrics)

    async def scenario():
        done = engines.settle("b", "speaker-1")
        engines.deliver(
            {
                "a": [("stepped", 1600, 0.01, 0.02, 1.0)],
                "b": [("stepped", 3200, 0.01, None, 1.0), ("done", 0, "ok", None)],
            }
        )
        return await done

    assert run(scenario(), 5) == "ok"
    assert engines.streams["a"].processed == 1600 and engines.streams["b"].processed == 3200


def test_a_stream_losing_its_engine_replica_ends_the_pairs_feed():
    engines = engines_with({"a": "engine-1", "b": "engine-1"})
    lost = []
    engines.on_lost = lost.append

    async def scenario():
        feed = engines.feed("engine-1")
        await anext(feed)
        waiting = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0.01)
        engines._lose(engines.streams["a"], ConnectionError("gone"))
        return await asyncio.gather(waiting, return_exceptions=True)

    ended = run(scenario(), 5)
    assert isinstance(ended[0], StopAsyncIteration) and lost == ["a"]
    assert engines._pairs == {}


def test_the_engine_side_sends_a_pairs_messages_in_one_call_per_turn_in_order():
    from streamer.ray.engine import EnginePair

    async def scenario():
        calls, release = [], asyncio.Event()

        async def deliver(pair, batch):
            calls.append(batch)
            await release.wait()

        pair = EnginePair("ingress-1", deliver)
        for i in range(8):
            pair.send(f"s{i}", ("events", i))
        pair.send("s0", ("stepped", 1))
        await asyncio.sleep(0)
        pair.send("s0", ("done", 2))  # while the first call is on its way: the next call
        first = asyncio.ensure_future(pair.delivered())
        await asyncio.sleep(0.01)
        waited = not first.done()
        release.set()
        await first
        await pair.delivered()
        return calls, waited

    calls, waited = run(scenario(), 5)
    assert len(calls) == 2 and waited
    assert calls[0] == {
        **{f"s{i}": [("events", i)] for i in range(8)},
        "s0": [("events", 0), ("stepped", 1)],
    }
    assert calls[1] == {"s0": [("done", 2)]}
