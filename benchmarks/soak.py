"""Soak: hours of audio through the daemon, faster than real time; does memory stay put?

    python benchmarks/soak.py                              # 4 streams x 15 min at 10x: 1 h
    python benchmarks/soak.py --streams 3 --minutes 2 --json

Starts ``streamer serve`` as a separate process (as benchmarks/daemon_latency.py does)
and sends each of ``--streams`` clients its own synthetic conversation (a minute of it,
looped) for ``--minutes`` of audio, paced at ``--speed`` times real time (20 ms int16
frames), each client receiving its own stream's events. The daemon's resident memory
(``VmRSS``) is sampled every second. Reported: the audio sent and how fast it went
(backpressure slows a client the engine cannot keep up with), RSS after the warm-up
(the first 10 % of the run), at the end of the audio and after every stream ended,
its growth from warm-up to end (target < 5 %), and whether every event arrived: each
stream got its ``ended``, no ``dropped`` notice, and a ``speech_end`` for every
``speech_start``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from daemon_latency import CHUNK, SR, Daemon, conversations, make_store
from websockets.asyncio.client import connect


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def send_stream(url: str, stream_id: str, audio: np.ndarray, seconds: float, speed: float):
    """Send ``seconds`` of ``audio`` (looped) at ``speed``x; returns what came back."""
    counts = {"events": 0, "speech_start": 0, "speech_end": 0, "dropped": 0}
    # No client pings: a client paused by backpressure would wait for its own pong
    # behind the audio the daemon has not read yet; the daemon keeps the connection alive.
    async with connect(url, max_size=2**22, ping_interval=None) as ws:
        hello = {"type": "hello", "role": "stream", "stream": stream_id, "sample_rate": SR}
        await ws.send(json.dumps({**hello, "format": "int16", "events": True}))
        assert json.loads(await ws.recv())["type"] == "ready"
        ended = asyncio.get_running_loop().create_future()

        async def receive() -> None:
            async for raw in ws:
                message = json.loads(raw)
                kind = message["type"]
                counts["events"] += "v" in message
                if kind in counts:
                    counts[kind] += 1
                if kind == "ended":
                    ended.set_result(message)
                    return

        receiving = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        start, total = loop.time(), int(seconds * SR)
        for begin in range(0, total, CHUNK):
            due = start + begin / SR / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
            at = begin % len(audio)
            await ws.send(audio[at : at + CHUNK].tobytes())
        await ws.send(json.dumps({"type": "end"}))
        message = await asyncio.wait_for(ended, 300)
        await receiving
    return {**counts, "audio_s": message["audio_s"]}


async def soak(daemon: Daemon, audios: list[np.ndarray], seconds: float, speed: float) -> dict:
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, rss_mb(daemon.process.pid)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(
        *(send_stream(daemon.url, f"soak-{i}", a, seconds, speed) for i, a in enumerate(audios))
    )
    wall = time.monotonic() - started
    at_end = rss_mb(daemon.process.pid)
    await asyncio.sleep(3.0)  # every stream has ended: what is given back
    after = rss_mb(daemon.process.pid)
    sampler.cancel()
    warm = [rss for t, rss in samples if t >= 0.1 * wall] or [at_end]
    audio_s = sum(r["audio_s"] for r in results)
    complete = all(
        r["dropped"] == 0 and r["speech_start"] == r["speech_end"] and r["audio_s"] >= seconds - 1
        for r in results
    )
    return {
        "streams": len(audios),
        "audio_min": round(audio_s / 60, 1),
        "wall_s": round(wall, 1),
        "speed_x_per_stream": round(audio_s / len(audios) / wall, 1),
        "events": sum(r["events"] for r in results),
        "every_event_arrived": complete,
        "rss_warm_mb": round(warm[0], 1),
        "rss_peak_mb": round(max(rss for _, rss in samples), 1),
        "rss_end_mb": round(at_end, 1),
        "rss_after_mb": round(after, 1),
        "growth_pct": round(100 * (at_end - warm[0]) / warm[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=15.0, help="audio per stream")
    parser.add_argument("--speed", type=float, default=10.0, help="times real time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    audios = conversations(args.streams, 60.0)
    with tempfile.TemporaryDirectory() as folder:
        make_store(Path(folder))
        daemon = Daemon(Path(folder), args.streams, [])
        try:
            result = asyncio.run(soak(daemon, audios, args.minutes * 60, args.speed))
        finally:
            daemon.stop()
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0 if result["every_event_arrived"] else 1


if __name__ == "__main__":
    sys.exit(main())
