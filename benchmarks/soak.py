"""Soak: hours of audio through the daemon, faster than real time; does memory stay put?

    python benchmarks/soak.py                              # 4 streams x 15 min at 10x: 1 h
    python benchmarks/soak.py --streams 3 --minutes 2 --json
    python benchmarks/soak.py --burst                      # overload: 24 streams at once
    python benchmarks/soak.py --per-stream                 # memory per real-time stream

Starts ``streamer serve`` as a separate process (as benchmarks/daemon_latency.py does)
and sends each of ``--streams`` clients its own synthetic conversation (a minute of it,
looped) for ``--minutes`` of audio, paced at ``--speed`` times real time (0: as fast as
the daemon reads), each client receiving its own stream's events. Frames are 100 ms of
int16: at 10x that is 100 messages a second, within the daemon's default
``max_messages_per_s`` of 200 (20 ms frames were held to 4x by it).
The resident memory (``VmRSS``) of the daemon and of each of its engine worker
processes is sampled every 0.5 s. Reported: the audio sent and how fast it went
(backpressure slows a client the engine cannot keep up with); the memory of all the
daemon's processes together once it listens (idle), after the warm-up, at its peak, at
the end of the audio and after every stream ended; its growth from warm-up to end
(target < 5 %) and to after; the same per process; and whether every event arrived:
each stream got its ``ended`` for all of its audio, no ``dropped`` notice, and a
``speech_end`` for every ``speech_start``.

The soak's warm-up is its first 10 %. ``--burst`` is the overload that issue 20 saw keep
memory: a 20 s stream on each engine worker as the warm-up, then ``--streams`` (default
24) streams at once, of lengths spread over 25-100 % of ``--minutes`` (default 1), sent
as fast as the daemon reads them, admission control off (so all are taken); then all
end. What the daemon gives back after that is the point. ``--per-stream`` has the same
warm-up, then ``--streams`` (default 16) real-time streams of ``--minutes`` (default
0.6: past a 30 s ring's first wrap); ``per_stream_mb`` is the memory of all the daemon's
processes with them all open (2 s before their end), less the warm figure, per stream;
``per_stream_anon_mb`` the same of their anonymous memory (what the processes hold of
their own, without the code pages of shared libraries that RSS counts in each process)
and ``per_stream_pss_mb`` of their proportional set size (shared pages counted once).
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
from daemon_latency import SR, Daemon, conversations, make_store
from websockets.asyncio.client import connect

CHUNK = SR // 10  # 100 ms frames
SAMPLE_EVERY_S = 0.5
SETTLE_S = 5.0
"""How long after the last stream ended the memory is read again."""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def split_mb(pid: int) -> dict[str, float]:
    """``anon`` (the process's own memory: heap, arenas, mappings of its own) and
    ``pss`` (its share of every page, a library's code pages shared by the daemon's
    processes counted once among them) of one process, in MB. RSS also counts the pages
    of shared libraries a process has touched, in full in each process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            out["anon"] = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["pss"] = int(line.split()[1]) / 1024
    return out


def processes(pid: int) -> dict[str, int]:
    """The daemon (``daemon``) and its engine worker processes (``worker-0``, ...): pids."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        if path.exists():
            children += [int(p) for p in path.read_text().split()]
    workers = [
        p
        for p in sorted(children)
        if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    return {"daemon": pid, **{f"worker-{i}": p for i, p in enumerate(workers)}}


class Memory:
    """RSS of each of the daemon's processes, sampled in the background; ``mark(name)``
    keeps the current reading under that name."""

    def __init__(self, pid: int) -> None:
        self.pids = processes(pid)
        self.marks: dict[str, dict[str, float]] = {}
        self.splits: dict[str, dict[str, dict[str, float]]] = {}  # mark -> process -> split
        self.peak = dict.fromkeys(self.pids, 0.0)
        self.peak_total = 0.0

    def read(self) -> dict[str, float]:
        now = {name: rss_mb(pid) for name, pid in self.pids.items()}
        for name, mb in now.items():
            self.peak[name] = max(self.peak[name], mb)
        self.peak_total = max(self.peak_total, sum(now.values()))
        return now

    def mark(self, name: str) -> None:
        self.marks[name] = self.read()
        self.splits[name] = {process: split_mb(pid) for process, pid in self.pids.items()}

    def total(self, mark: str, kind: str) -> float:
        """``anon`` or ``pss`` of all the daemon's processes together at ``mark``."""
        return sum(split[kind] for split in self.splits[mark].values())

    async def sample(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(SAMPLE_EVERY_S)


async def send_stream(url: str, stream_id: str, audio: np.ndarray, seconds: float, speed: float):
    """Send ``seconds`` of ``audio`` (looped) at ``speed``x (0: unpaced); returns what
    came back."""
    counts = {"events": 0, "speech_start": 0, "speech_end": 0, "dropped": 0}
    # No client pings: a client paused by backpressure would wait for its own pong
    # behind the audio the daemon has not read yet; the daemon keeps the connection alive.
    async with connect(url, max_size=2**22, ping_interval=None) as ws:
        hello = {"type": "hello", "role": "stream", "stream": stream_id, "sample_rate": SR}
        await ws.send(json.dumps({**hello, "format": "int16", "events": True}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "ready", reply
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
            if speed > 0:
                due = start + begin / SR / speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            frame = np.arange(begin, min(begin + CHUNK, total)) % len(audio)  # loops around
            await ws.send(audio[frame].tobytes())
        await ws.send(json.dumps({"type": "end"}))
        message = await asyncio.wait_for(ended, 600)
        await receiving
    return {**counts, "stream": stream_id, "audio_s": message["audio_s"], "sent_s": total / SR}


def missing(results: list[dict]) -> list[str]:
    """What did not arrive, per stream (empty: every event arrived)."""
    problems = []
    for r in results:
        if r["dropped"]:
            problems.append(f"{r['stream']}: {r['dropped']} dropped notices")
        if r["speech_start"] != r["speech_end"]:
            problems.append(
                f"{r['stream']}: {r['speech_start']} speech_start, {r['speech_end']} speech_end"
            )
        if r["audio_s"] < r["sent_s"] - 0.001:  # ended: the audio it took, to 1 ms
            problems.append(f"{r['stream']}: ended at {r['audio_s']} s of {r['sent_s']} s sent")
    return problems


async def soak(daemon: Daemon, audios: list[np.ndarray], lengths_s, speed: float, mode: str):
    memory = Memory(daemon.process.pid)
    memory.mark("idle")
    sampler = asyncio.create_task(memory.sample())
    burst = mode != "soak"
    if burst:  # warm-up: one stream, so the figures after it hold what normal use keeps
        workers = max(1, len(memory.pids) - 1)  # one each: streams opened at once spread
        await asyncio.gather(
            *(send_stream(daemon.url, f"warm-up-{i}", audios[0], 20.0, 0.0) for i in range(workers))
        )
        await asyncio.sleep(SETTLE_S)
        memory.mark("warm")
    started = time.monotonic()

    async def marked_warm() -> None:  # the soak's warm-up: its first 10 %
        await asyncio.sleep(0.1 * max(lengths_s) / (speed or 10.0))
        memory.mark("warm")

    async def marked_open() -> None:  # every stream open, 2 s before the first ends
        await asyncio.sleep(max(0.0, min(lengths_s) / (speed or 10.0) - 2.0))
        memory.mark("open")

    warming = None if burst else asyncio.create_task(marked_warm())
    opened = asyncio.create_task(marked_open()) if mode == "per-stream" else None
    results = await asyncio.gather(
        *(
            send_stream(daemon.url, f"soak-{i}", audio, seconds, speed)
            for i, (audio, seconds) in enumerate(zip(audios, lengths_s, strict=True))
        )
    )
    wall = time.monotonic() - started
    if warming is not None and not warming.done():
        warming.cancel()
        memory.mark("warm")
    if opened is not None and not opened.done():
        raise SystemExit("the streams ended before their memory was read; raise --minutes")
    memory.mark("end")
    await asyncio.sleep(SETTLE_S)  # every stream has ended: what is given back
    memory.mark("after")
    sampler.cancel()
    audio_s = sum(r["audio_s"] for r in results)
    total = {name: sum(mark.values()) for name, mark in memory.marks.items()}
    warm = total["warm"]
    return {
        "mode": mode,
        "streams": len(audios),
        "audio_min": round(audio_s / 60, 1),
        "wall_s": round(wall, 1),
        "speed_x_per_stream": round(audio_s / len(audios) / wall, 1),
        "events": sum(r["events"] for r in results),
        "every_event_arrived": not missing(results),
        "missing": missing(results),
        "rss_idle_mb": round(total["idle"], 1),
        "rss_warm_mb": round(warm, 1),
        "rss_peak_mb": round(memory.peak_total, 1),
        "rss_end_mb": round(total["end"], 1),
        "rss_after_mb": round(total["after"], 1),
        "growth_pct": round(100 * (total["end"] - warm) / warm, 1),
        "growth_after_pct": round(100 * (total["after"] - warm) / warm, 1),
        **(
            {
                "per_stream_mb": round((total["open"] - warm) / len(audios), 2),
                **{
                    f"per_stream_{kind}_mb": round(
                        (memory.total("open", kind) - memory.total("warm", kind)) / len(audios),
                        2,
                    )
                    for kind in ("anon", "pss")
                },
            }
            if mode == "per-stream"
            else {}
        ),
        "per_process_mb": {
            name: {
                **{
                    mark: round(memory.marks[mark][name], 1)
                    for mark in ("idle", "warm", "open")
                    if mark in memory.marks
                },
                "peak": round(memory.peak[name], 1),
                **{mark: round(memory.marks[mark][name], 1) for mark in ("end", "after")},
            }
            for name in memory.pids
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, help="default: 4 (--burst: 24, --per-stream: 16)")
    parser.add_argument(
        "--minutes",
        type=float,
        help="audio per stream (default: 15; --burst: 1, --per-stream: 0.6)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="times real time (default: 10; --burst: 0, unpaced; --per-stream: 1)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--burst", action="store_true", help="the overload burst (see above)")
    group.add_argument("--per-stream", action="store_true", help="memory per real-time stream")
    parser.add_argument("--workers", type=int, help="the daemon's --workers (default: its own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    mode = "burst" if args.burst else "per-stream" if args.per_stream else "soak"
    streams = args.streams or {"burst": 24, "per-stream": 16, "soak": 4}[mode]
    seconds = 60 * (args.minutes or {"burst": 1.0, "per-stream": 0.6, "soak": 15.0}[mode])
    default_speed = {"burst": 0.0, "per-stream": 1.0, "soak": 10.0}[mode]
    speed = args.speed if args.speed is not None else default_speed
    lengths = [seconds] * streams
    if args.burst:  # varied lengths: streams end one by one, batches of every size
        lengths = [
            round(seconds * (0.25 + 0.75 * i / max(1, streams - 1)), 2) for i in range(streams)
        ]
    audios = conversations(streams, 60.0)
    extra = ["--admission", "off"] if mode != "soak" else []
    if args.workers:
        extra += ["--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as folder:
        make_store(Path(folder))
        daemon = Daemon(Path(folder), streams, extra)
        try:
            result = asyncio.run(soak(daemon, audios, lengths, speed, mode))
        finally:
            daemon.stop()
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            if key == "per_process_mb":
                for name, marks in value.items():
                    figures = "  ".join(f"{mark} {mb}" for mark, mb in marks.items())
                    print(f"{'rss ' + name:<{width}}  {figures}")
            else:
                print(f"{key:<{width}}  {value}")
    return 0 if result["every_event_arrived"] else 1


if __name__ == "__main__":
    sys.exit(main())
