"""Capacity: keepalive under backpressure, admission control, lagging streams."""

from __future__ import annotations

from streamer.evaluation.synth import conversation
from streamer.worker import WorkerOptions
from tests.server.conftest import SR, Client, daemon, run


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
