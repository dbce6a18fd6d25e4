"""The ingress's side of a stream on an engine replica, without a cluster: a stream's
frames go to its engine replica in batches, at most one per batch interval, a job at
once, and the feed ends after the stream's end."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamer.models import get_spec
from streamer.ray.remote import EngineStream, RemoteEngines
from tests.server.conftest import run

BATCH_S = 0.2
FRAME = np.zeros(320, dtype=np.float32)  # 20 ms at 16 kHz


def test_a_streams_frames_go_to_its_engine_in_batches_and_jobs_at_once():
    async def scenario():
        engines = RemoteEngines(None, "ingress-1", get_spec("ge2e"), 10.0, BATCH_S)
        stream = engines.streams["s"] = EngineStream(engines, "s", engines._capacity)
        feed = engines.feed("s")
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
        rest = [batch async for batch in feed]
        ending.cancel()
        return first, second, waited_s, job, job_s, stream, last, rest

    first, second, waited_s, job, job_s, stream, last, rest = run(scenario(), 10)
    assert [m[0] for m in first] == [m[0] for m in second] == ["audio"] * 5
    assert b"".join(m[1] for m in first + second) == FRAME.tobytes() * 10
    assert waited_s >= BATCH_S * 0.9  # the next batch waited for its interval
    assert job == [(0, "settle", ("s", "speaker-1"))] and job_s < BATCH_S / 2
    assert stream.pushed == 3200 and stream.pending_samples == 3200
    assert last == [(1, "end_stream", ("s",))] and rest == []  # the feed ends with the stream


def test_the_feed_of_a_stream_this_ingress_does_not_hold_is_empty():
    engines = RemoteEngines(None, "ingress-1", get_spec("ge2e"), 10.0, BATCH_S)

    async def batches():
        return [batch async for batch in engines.feed("gone")]

    assert run(batches(), 5) == []
