"""The hub's logic without a cluster: batches relayed in order, a dead replica's streams ended."""

from __future__ import annotations

import asyncio

import pytest

from streamer.ray.hub import REPLICA_DIED, ClusterHub
from streamer.server.hub import StreamState
from tests.server.conftest import run


def event(stream: str, emitted_at: float) -> dict:
    return {"v": 1, "type": "speech_start", "stream": stream, "start_s": 0.0,
            "end_s": emitted_at, "emitted_at": emitted_at}  # fmt: skip


def test_the_hub_relays_batches_in_order_and_ends_the_streams_of_a_dead_replica(tmp_path):
    async def scenario():
        hub = ClusterHub(str(tmp_path / "profiles"))
        loop = asyncio.get_running_loop()
        held = {r: loop.create_future() for r in "ab"}
        feeds = {r: hub.attach(r, [held[r]]) for r in "ab"}
        first = {r: await anext(feed) for r, feed in feeds.items()}
        assert await hub.claim("a", "s1") and not await hub.claim("b", "s1")
        await hub.relay("a", 1, [("events", [event("s1", 0.5)])])  # overtook batch 0
        await hub.relay("a", 0, [started_message("s1")])
        to_b = await anext(feeds["b"])
        cluster = await hub.cluster()
        held["a"].set_exception(RuntimeError("the replica's process died"))
        ended = await anext(feeds["b"])
        rest_of_a = [batch async for batch in feeds["a"]]
        return first, to_b, cluster, ended, rest_of_a, await hub.claim("b", "s1")

    first, to_b, cluster, ended, rest_of_a, reclaimed = run(scenario(), 10)
    assert first["a"] == first["b"] == [("profiles", 0, {})]
    assert to_b == [started_message("s1"), ("events", [event("s1", 0.5)])]
    assert cluster == {"replicas": 2, "streams": {"a": 1, "b": 0}}
    assert ended == [("ended", "s1", 0.5, REPLICA_DIED)]
    assert rest_of_a == []  # the dead replica's feed is closed
    assert reclaimed  # its stream id is free again


def started_message(stream: str) -> tuple:
    return ("started", StreamState(stream, "websocket", "16000 Hz", 0.0).to_dict())


def test_serve_run_arguments_are_checked_before_anything_starts():
    from streamer.errors import ConfigError
    from streamer.ray.deploy import build_app

    with pytest.raises(ConfigError, match=r"unknown argument\(s\) replica; known: replicas"):
        build_app({"replica": "2"})
