"""End-to-end event latency through the daemon, with 1, 8 and 32 real-time streams.

    python benchmarks/daemon_latency.py                     # 1, 8, 32 streams, 30 s each
    python benchmarks/daemon_latency.py --streams 4 --seconds 20 --json

Starts ``streamer serve`` as a separate process (port 0, a temporary profile store with
three synthetic voices), then for each stream count: one subscriber for all streams, and
that many clients each sending its own synthetic conversation (3 enrolled voices and a
stranger, turns of 2-5 s) in real time — 20 ms int16 frames at 16 kHz, paced by the
wall clock, starts staggered over the first 0.5 s. The clients run in this process, on
the same machine as the daemon.

Latency of an event = the wall time the subscriber received it − the wall time its
*decisive audio* was sent. The decisive audio is the frame holding the sample at the
event's ``emitted_at``: the tracker could not decide the event before hearing that
sample, so the latency is what the daemon adds (waiting for the worker, the encoder, the
event fan-out, both sockets) on top of the algorithmic latency ``emitted_at − start_s``.
Events decided by the end of a stream (``emitted_at`` at its last sample) are left out.
"engine CPU" is the CPU time of the daemon's engine thread over the round's wall time
(``streamer_engine_cpu_seconds_total``): how much of one core the streams need.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import ServedDaemon
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
CHUNK = 320  # 20 ms
ENROLLED = ("alice", "bob", "carol")


def make_store(folder: Path) -> None:
    """Profiles of the synthetic voices, from speech the conversations do not use."""
    from streamer.enroll import enroll
    from streamer.evaluation.synth import speech
    from streamer.pipeline import PipelineOptions, build_engine
    from streamer.profiles import ProfileStore

    store = ProfileStore(folder)
    engine = build_engine(PipelineOptions())
    for name in ENROLLED:
        enroll(store, name, [(name, speech(name, 8.0, seed=101))], engine)


def conversations(count: int, seconds: float) -> list[np.ndarray]:
    """``count`` different conversations of about ``seconds`` each, as int16."""
    from streamer.evaluation.synth import conversation

    voices = (*ENROLLED, "dave")
    out = []
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        turns, total, previous = [], 0.0, None
        while total < seconds:
            speaker = rng.choice([v for v in voices if v != previous])
            length = float(rng.uniform(2.0, 5.0))
            turns.append((str(speaker), length))
            total += length + 0.5
            previous = speaker
        audio, _ = conversation(turns, gap_s=0.5, seed=2000 + i)
        audio = audio[: int(seconds * SR)]
        out.append((np.clip(audio, -1, 1) * 32767).astype("<i2"))
    return out


class Daemon(ServedDaemon):
    def __init__(self, store: Path, streams: int, extra: list[str]) -> None:
        super().__init__(
            ["--profiles", str(store), "--max-streams", str(max(64, streams))]
            + ["--max-connections", str(streams + 16)]
            + ["--max-pending-per-address", str(streams + 16), *extra]
        )

    async def metric(self, name: str) -> float:
        """The value of a metric of the daemon's ``/metrics``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = (await reader.read()).decode()
        writer.close()
        # Ray's /metrics has one series per replica (labelled replica=...): their sum.
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith((name + " ", name + "{"))
        ]
        if not values:
            raise KeyError(name)
        return sum(values)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def send_stream(
    url: str, stream_id: str, audio: np.ndarray, delay_s: float, sent: list, lags: list
):
    """Send ``audio`` in real time; ``sent`` gets (end sample, time handed to the socket)
    per frame, ``lags`` how late this client was on its schedule. Returns ``"ok"``, or
    the error code of a refusal (``busy``: the daemon is at its capacity), or
    ``"closed"`` if the connection was closed under it."""
    try:
        return await _send_stream(url, stream_id, audio, delay_s, sent, lags)
    except ConnectionClosed as exc:
        print(f"{stream_id}: the connection was closed ({exc})", file=sys.stderr)
        return "closed"


async def _send_stream(url, stream_id, audio, delay_s, sent, lags) -> str:
    async with connect(url) as ws:
        hello = {
            "type": "hello",
            "role": "stream",
            "stream": stream_id,
            "sample_rate": SR,
            "format": "int16",
        }
        await ws.send(json.dumps(hello))
        reply = json.loads(await ws.recv())
        if reply["type"] != "ready":
            return reply.get("code", reply["type"])
        loop = asyncio.get_running_loop()
        start = loop.time() + delay_s
        for begin in range(0, len(audio), CHUNK):
            due = start + (begin + CHUNK) / SR  # when a live source would have the frame
            await asyncio.sleep(max(0.0, due - loop.time()))
            handed = time.monotonic()
            lags.append(loop.time() - due)
            await ws.send(audio[begin : begin + CHUNK].tobytes())
            sent.append((min(begin + CHUNK, len(audio)), handed))
        await ws.send(json.dumps({"type": "end"}))
        while json.loads(await ws.recv())["type"] != "ended":
            pass
    return "ok"


async def one_round(daemon: Daemon, audios: list[np.ndarray]) -> dict:
    received: list[tuple[float, dict]] = []
    ended = 0
    all_ended = asyncio.Event()
    async with connect(daemon.url, max_size=2**22) as subscriber:
        await subscriber.send(json.dumps({"type": "hello", "role": "subscribe"}))

        async def listen():
            nonlocal ended
            async for raw in subscriber:
                message = json.loads(raw)
                received.append((time.monotonic(), message))
                if message["type"] == "stream_ended":
                    ended += 1
                    all_ended.set()

        listening = asyncio.create_task(listen())
        busy_before = await daemon.metric("streamer_engine_cpu_seconds_total")
        started = time.monotonic()
        sent = {f"s{i}": [] for i in range(len(audios))}
        lags: list[float] = []
        outcomes = await asyncio.gather(
            *(
                send_stream(daemon.url, f"s{i}", audio, 0.5 * i / len(audios), sent[f"s{i}"], lags)
                for i, audio in enumerate(audios)
            )
        )
        admitted = sum(o == "ok" for o in outcomes)
        with contextlib.suppress(asyncio.TimeoutError):  # refused streams never end
            await asyncio.wait_for(until(lambda: ended >= admitted, all_ended), 60)
        wall = time.monotonic() - started
        busy = (await daemon.metric("streamer_engine_cpu_seconds_total") - busy_before) / wall
        listening.cancel()
    latencies = []
    for received_at, event in received:
        if "v" not in event:
            continue
        frames = sent[event["stream"]]
        sample = round(event["emitted_at"] * SR)
        if sample >= frames[-1][0] - 1:
            continue  # decided by the end of the stream, not by audio
        index = int(np.searchsorted([end for end, _ in frames], sample))
        latencies.append(received_at - frames[index][1])
    events = len(latencies)
    latencies = np.array(latencies or [np.nan])
    return {
        "streams": len(audios),
        "refused": sum(o not in ("ok", "closed") for o in outcomes),
        "closed": outcomes.count("closed"),
        "events": events,
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "max_ms": round(1000 * float(latencies.max()), 1),
        "engine_cpu": round(busy, 3),
        "sender_lag_p95_ms": round(1000 * float(np.percentile(lags, 95)), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


async def until(done, changed: asyncio.Event) -> None:
    """Wait until ``done()``, looking again each time ``changed`` is set."""
    while not done():
        await changed.wait()
        changed.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--daemon-args", nargs=argparse.REMAINDER, default=[], help="passed to streamer serve"
    )
    args = parser.parse_args(argv)

    audios = conversations(max(args.streams), args.seconds)
    results = []
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as folder:
        make_store(Path(folder))
        daemon = Daemon(Path(folder), max(args.streams), args.daemon_args)
        try:
            for count in args.streams:
                results.append(asyncio.run(one_round(daemon, audios[:count])))
                if not args.json:
                    print(f"{count} streams done", file=sys.stderr)
        finally:
            daemon.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    cpus = os.cpu_count()
    print(f"\nend-to-end event latency, real-time streams of {args.seconds:g} s, {cpus} CPUs")
    print(
        "| streams | refused busy | closed | events | p50 | p95 | max | engine CPU "
        "| sender lag p95 | load avg |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['streams']} | {r['refused']} | {r['closed']} | {r['events']} "
            f"| {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms "
            f"| {r['max_ms']:.0f} ms | {100 * r['engine_cpu']:.0f} % "
            f"| {r['sender_lag_p95_ms']:.0f} ms | {r['load_average_1min']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
