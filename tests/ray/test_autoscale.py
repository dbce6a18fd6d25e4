"""Autoscaling on a real Ray cluster: an engine replica is added when the open streams
reach the per-replica capacity, and removed when they end; the replica removed drains,
so the stream it holds runs on to its end, untouched."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from streamer.evaluation.synth import speech
from streamer.ray.deploy import ClusterOptions
from streamer.ray.hub import HEAD_RESOURCE
from tests.conftest import label_share
from tests.server.conftest import run

from .conftest import deployed, open_stream, replica_states

# Two streams fill an engine replica (the target is 0.8 × 2 streams per replica); Serve
# reacts within seconds, not the defaults' 10 s and 5 min. One ingress replica.
AUTOSCALED = ClusterOptions(
    min_replicas=1,
    max_replicas=2,
    streams_per_replica=2,
    upscale_delay_s=1.0,
    downscale_delay_s=2.0,
    metrics_interval_s=0.5,
    look_back_s=1.0,
    ingress_replicas=1,
)


@pytest.fixture(scope="module")
def autoscaled(ray_cluster):
    with deployed(ray_cluster, AUTOSCALED, 1) as cluster:
        yield cluster


async def states_become(wanted: dict, timeout_s: float) -> float:
    """Wait until the deployment's replicas are in ``wanted`` states; seconds it took."""
    started = time.monotonic()
    while (states := await asyncio.to_thread(replica_states)) != wanted:
        assert time.monotonic() - started < timeout_s, f"replicas stayed {states}, not {wanted}"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def test_replicas_follow_the_streams_and_a_replica_scaled_down_drains(autoscaled):
    voice = speech("alice", 6.0, seed=41)
    head = next(n["NodeID"] for n in ray.nodes() if HEAD_RESOURCE in n["Resources"])

    async def scenario():
        # Two streams fill the one engine replica: Serve adds a second.
        first = [await open_stream(autoscaled) for _ in range(2)]
        up_s = await states_become({"RUNNING": 2}, 60)
        third = await open_stream(autoscaled)  # the router: the new replica, fewest streams
        opened = [*first, third]
        # Serve removes the replica that is not on the head node: keep one stream there.
        kept = next(o for o in reversed(opened) if o[4] != head)
        for other in opened:
            if other is not kept:
                await other[0].end()
                await other[0].close()
        down_s = await states_become({"RUNNING": 1, "STOPPING": 1}, 30)
        # The draining replica takes no new stream; its stream runs on.
        newcomer = await open_stream(autoscaled)
        await newcomer[0].end()
        await newcomer[0].close()
        client, stream_id, _, engine, _ = kept
        await client.send_audio(voice, realtime=True)
        ended = await client.end()
        await client.close()
        gone_s = await states_become({"RUNNING": 1}, 30)  # drained, then stopped
        return (
            first,
            third,
            up_s,
            down_s,
            newcomer[3],
            engine,
            ended,
            gone_s,
            client.events(stream_id),
        )

    first, third, up_s, down_s, newcomer_replica, replica, ended, gone_s, events = run(
        scenario(), 150
    )
    assert first[0][3] == first[1][3] != third[3]  # the third stream went to the new replica
    assert newcomer_replica != replica
    assert ended["reason"] == "ended by its client" and ended["audio_s"] == 6.0, ended
    assert label_share(events, 0.0, 6.0).get("alice", 0) > 4.5
    print(f"added in {up_s:.1f} s, scale-down began in {down_s:.1f} s, stopped {gone_s:.1f} s")
