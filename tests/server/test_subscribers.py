"""A subscriber that stops reading slows nobody down, and learns what it missed."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

from websockets.asyncio.client import connect

from streamer.evaluation.synth import conversation
from streamer.events import Event
from tests.server.conftest import SR, Client, daemon, http_get, metric, reference, run, url_of

QUEUE = 16


def stalled_socket(server) -> socket.socket:
    """A connected TCP socket whose tiny receive buffer fills after a few messages."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    return sock


def flood(n: int, start: int = 0) -> list[Event]:
    """Events of a busy stream nobody but the stalled subscriber listens to."""
    return [
        Event("speaker", "flood", i * 0.2, i * 0.2, i * 0.2, label="alice", score=0.9)
        for i in range(start, start + n)
    ]


def test_a_stalled_subscriber_does_not_delay_others_nor_the_audio(make_engine, store_of):
    store = store_of("alice", "bob")
    audio, _ = conversation([("alice", 4.0), ("bob", 3.5)], gap_s=0.5, seed=41)

    async def scenario():
        async with daemon(make_engine(), store, subscriber_queue_events=QUEUE) as server:
            # The stalled subscriber: says hello, then never reads again (max_queue=1 stops
            # its client reading the socket; the kernel buffers fill next).
            stalled = Client(
                await connect(url_of(server), sock=stalled_socket(server), max_queue=1)
            )
            await stalled.hello("subscribe")
            healthy = await Client.open(server, "subscribe", listen=True, streams=["live"])
            talker = await Client.open(server, stream="live")

            async def keep_flooding():
                n = 0
                while True:
                    server.hub.publish(flood(200, n))
                    n += 200
                    await asyncio.sleep(0.1)  # a steady stream of events, 2000 a second

            flooding = asyncio.create_task(keep_flooding())
            sent = await talker.send_audio(audio, realtime=True)
            ended_at = time.monotonic()
            await talker.end()
            end_latency = time.monotonic() - ended_at
            await healthy.next("stream_ended")
            flooding.cancel()
            _, metrics = await http_get(server, "/metrics")
            # Reading again, the stalled subscriber learns how many events it missed (in
            # one or more notices), each notice followed by a snapshot of where things
            # stand now.
            total = metric(metrics, "streamer_dropped_events_total")
            notices = []
            while sum(n["count"] for n in notices) < total:
                notices.append(await stalled.next("dropped"))
                assert (await stalled.next())["type"] == "snapshot"
            stalled.ws.transport.abort()  # it would not read the closing handshake either
            for client in (healthy, talker):
                await client.close()
            return sent, healthy, end_latency, metrics, notices, total

    sent, healthy, end_latency, metrics, notices, total = run(scenario())
    assert total > 5000  # most of the flood
    assert sum(n["count"] for n in notices) == total
    # The healthy subscriber got every event, in order, and none was dropped for it.
    events = healthy.events()
    assert events == reference(make_engine, store, audio, "live")
    assert not [m for _, m in healthy.received if m["type"] == "dropped"]
    # Each event reached it soon after the audio that decided it was sent: the chunk
    # holding the sample at its emitted_at. (Closing events are decided by "end".)
    latencies = []
    for received_at, event in healthy.received:
        if "v" not in event or event["emitted_at"] >= len(audio) / SR - 0.01:
            continue
        sample = round(event["emitted_at"] * SR)
        sent_at = next(t for end, t in sent if end >= sample)
        latencies.append(received_at - sent_at)
    assert len(latencies) >= 4
    assert statistics.median(latencies) < 0.5 and max(latencies) < 1.5, latencies
    # The audio path kept up: the last events came right after the end of the audio.
    assert end_latency < 1.5
    assert metric(metrics, "streamer_backlog_seconds") < 0.5
