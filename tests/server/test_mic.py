"""``streamer serve --mic``: the local microphone, through a REAL PortAudio device, as a stream."""

from __future__ import annotations

import asyncio

import numpy as np

from streamer.evaluation.synth import conversation
from streamer.sources.mic import Microphone
from tests.server.conftest import SR, Client, daemon, run


def test_the_microphone_is_tracked_like_any_stream(make_engine, store_of, pulse_mic):
    store = store_of("alice", "bob")
    talk, _ = conversation([("alice", 3.0), ("bob", 3.0)], gap_s=0.6, seed=81)

    async def scenario():
        microphone = Microphone(pulse_mic.device, target_rate=SR)
        async with daemon(make_engine(), store, microphone=microphone) as server:
            watcher = await Client.open(server, "subscribe", streams=["mic"])
            snapshot = await watcher.next()
            watcher.listen()
            # Speech, then a second of silence so the speech region ends.
            feeding = pulse_mic.feed(np.concatenate([talk, np.zeros(SR, np.float32)]))
            await watcher.next("speech_end")
            await asyncio.to_thread(feeding.join)
            await watcher.send({"type": "status"})
            status = await watcher.next("status")
        await watcher.next("stream_ended")  # the daemon stopped
        await watcher.close()
        return snapshot, watcher, status

    snapshot, watcher, status = run(scenario())
    (mic,) = snapshot["streams"]
    assert mic["stream"] == "mic" and mic["source"] == "microphone"
    assert mic["audio"].endswith("Hz float32 x1")
    segments = [e["label"] for e in watcher.events("mic") if e["type"] == "segment"]
    assert segments == ["alice", "bob"]
    assert status["microphone"]["device"].startswith("device ")
    assert status["streams"][0]["dropped_s"] == 0
