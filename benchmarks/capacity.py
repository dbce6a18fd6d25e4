"""How many real-time streams of real speech the daemon holds, and what each costs.

    python benchmarks/capacity.py ../shared/data/librispeech-train-clean-100
    python benchmarks/capacity.py DATA --configs workers-1 --seconds 10 --json

For each configuration the daemon (``streamer serve``, its own process) is started with
admission control off, and rounds of N streams are run, N doubling from ``--start``
and then bisected: the largest N for which every stream's p95 event lag stays under
``--max-lag-s`` (1 s) is what it holds. The configurations, in one run, so the ratios
compare like with like:

- ``default``: ``streamer serve`` as it starts by default (one engine worker per core,
  the encoder in fp32 on onnxruntime: ``--precision auto``);
- ``workers-1``: one engine, in the daemon's process;
- ``naive``: one worker, batching off (``--max-batch 1``: one encoder call per window),
  torch fp32: the per-stream loop the others are compared with;
- ``torch-fp32``: the default with the encoder on torch (``--precision fp32``);
- ``int8``: the default with ``--precision int8`` (the encoder quantised, onnxruntime).

Each stream is a different sequence of LibriSpeech utterances (real read speech, 16 kHz
mono), sent as 100 ms int16 frames paced by the wall clock, starts staggered over the
first second, by clients in a separate process. Each stream asks for its own events;
the lag of an event is when it arrived minus when the frame holding its decisive
sample (``emitted_at``) was sent. Events decided by a stream's end are left out.

Each daemon first gets one uncounted round of ``--start`` streams (warming up: the
encoder's first batches of each shape are slow). Also: the daemon's memory (resident set
of its process and its workers) idle and per extra stream (at the largest N held), and
the capacity the daemon itself estimated at start-up (``/healthz``). The machine's load
average is printed: on a shared machine the figures drop with other programs' load; the
ratios, taken in one run, hold better.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import ServedDaemon

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
FRAME = 1600  # 100 ms
CONFIGS = {
    "default": [],
    "workers-1": ["--workers", "1"],
    "naive": ["--workers", "1", "--max-batch", "1", "--precision", "fp32"],
    "torch-fp32": ["--precision", "fp32"],
    "int8": ["--precision", "int8"],
}


def speech_streams(folder: Path, count: int, seconds: float) -> list[np.ndarray]:
    """``count`` streams of ``seconds`` each: utterances joined with 0.3 s pauses, each
    stream starting at another utterance (int16)."""
    import soundfile

    files = sorted(folder.glob("*.flac"))
    if not files:
        raise SystemExit(f"no .flac files in {folder}")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    cache: dict[int, np.ndarray] = {}
    gap = np.zeros(int(0.3 * SR), np.float32)
    streams = []
    for i in range(count):
        pieces, total, k = [], 0, i * 7
        while total < seconds * SR:
            index = int(order[k % len(files)])
            if index not in cache:
                audio, rate = soundfile.read(files[index], dtype="float32")
                assert rate == SR, files[index]
                cache[index] = audio
            pieces += [cache[index], gap]
            total += len(cache[index]) + len(gap)
            k += 1
        audio = np.concatenate(pieces)[: int(seconds * SR)]
        streams.append((np.clip(audio, -1, 1) * 32767).astype("<i2"))
    return streams


# The clients (a process of their own)


async def one_stream(url: str, name: str, audio: np.ndarray, start: float) -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    received: list[tuple[float, dict]] = []
    sent: list[tuple[int, float]] = []
    try:
        async with connect(url, max_size=2**22) as ws:
            hello = {"type": "hello", "role": "stream", "stream": name, "sample_rate": SR}
            await ws.send(json.dumps({**hello, "format": "int16", "events": True}))
            ready = json.loads(await ws.recv())
            if ready["type"] != "ready":
                return {"refused": ready.get("code", ready["type"])}

            async def read():
                async for raw in ws:
                    message = json.loads(raw)
                    received.append((time.time(), message))
                    if message["type"] == "ended":
                        return

            reader = asyncio.create_task(read())
            for begin in range(0, len(audio), FRAME):
                due = start + (begin + FRAME) / SR
                await asyncio.sleep(max(0.0, due - time.time()))
                await ws.send(audio[begin : begin + FRAME].tobytes())
                sent.append((min(begin + FRAME, len(audio)), time.time()))
            await ws.send(json.dumps({"type": "end"}))
            await asyncio.wait_for(reader, 120)
    except (ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    ends = np.array([end for end, _ in sent])
    lags = []
    for at, event in received:
        if "v" not in event:
            continue
        index = int(np.searchsorted(ends, round(event["emitted_at"] * SR)))
        if index < len(sent) - 1:
            lags.append(at - sent[index][1])
    return {"lags": lags}


async def all_streams(url: str, audios: dict[int, np.ndarray], count: int, start: float):
    return await asyncio.gather(
        *(one_stream(url, f"s{i}", audio, start + i / count) for i, audio in audios.items())
    )


def clients_main(url: str, audios: dict[int, np.ndarray], count: int, start: float, out) -> None:
    out.send(asyncio.run(all_streams(url, audios, count, start)))


# The daemon


class Daemon(ServedDaemon):
    def __init__(self, store: Path, args: list[str]) -> None:
        super().__init__(
            ["--profiles", str(store), "--admission", "off", "--max-streams", "10000"]
            + ["--max-connections", "10000", "--max-pending-connections", "10000"]
            + ["--max-pending-per-address", "10000", *args]
        )

    def rss_mb(self) -> float:
        """Resident memory of the daemon and its worker processes."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def health(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz") as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def one_round(daemon: Daemon, audios: list[np.ndarray], max_lag_s: float, processes: int):
    """N streams from ``processes`` client processes; the daemon's RSS mid-way."""
    context = multiprocessing.get_context("spawn")
    start = time.time() + 3.0 + 0.002 * len(audios)  # once every client process is up
    pipes, clients = [], []
    for k in range(processes):
        here, there = context.Pipe()
        share = {i: a for i, a in enumerate(audios) if i % processes == k}
        args = (daemon.url, share, len(audios), start, there)
        clients.append(context.Process(target=clients_main, args=args))
        clients[-1].start()
        pipes.append(here)
    seconds = len(audios[0]) / SR
    time.sleep(max(0.0, start - time.time()) + 1.0 + seconds * 0.6)
    rss = daemon.rss_mb()
    results = [r for here in pipes for r in here.recv()]
    for process in clients:
        process.join()
    refused = [r for r in results if "refused" in r or "error" in r]
    p95s = [float(np.percentile(r["lags"], 95)) for r in results if r.get("lags")]
    worst = max(p95s, default=float("inf"))
    return {
        "streams": len(audios),
        "held": not refused and len(p95s) == len(audios) and worst < max_lag_s,
        "worst_p95_s": round(worst, 3),
        "median_p95_s": round(float(np.median(p95s)), 3) if p95s else None,
        "failed": len(refused),
        "failures": sorted({r.get("refused") or r.get("error") for r in refused})[:3],
        "rss_mb": round(rss, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def largest_held(daemon, audios, start, most, max_lag_s, processes, log) -> tuple:
    """(The largest N held, its round, every round): doubling, then bisecting."""
    rounds, best, low, high = [], None, 0, None
    n = start
    while n <= most and high is None:
        result = one_round(daemon, audios[:n], max_lag_s, processes)
        rounds.append(result)
        log(result)
        if result["held"]:
            best, low, n = result, n, n * 2
        else:
            high = n
    high = high or most + 1
    while high - low > max(2, low // 8):
        n = (low + high) // 2
        result = one_round(daemon, audios[:n], max_lag_s, processes)
        rounds.append(result)
        log(result)
        if result["held"]:
            best, low = result, n
        else:
            high = n
    return low, best, rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder of 16 kHz .flac speech (LibriSpeech)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--start", type=int, default=8, help="streams in the first round")
    parser.add_argument("--most", type=int, default=512, help="most streams tried")
    parser.add_argument("--max-lag-s", type=float, default=1.0)
    parser.add_argument(
        "--client-processes", type=int, default=1, help="processes the clients run in"
    )
    parser.add_argument("--daemon-args", nargs=argparse.REMAINDER, default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    audios = speech_streams(args.data, args.most, args.seconds)
    table = []
    with tempfile.TemporaryDirectory(prefix="streamer-capacity-") as folder:
        for name in args.configs:
            daemon = Daemon(Path(folder), CONFIGS[name] + args.daemon_args)
            try:
                time.sleep(2.0)
                idle_mb, estimate = daemon.rss_mb(), daemon.health().get("capacity")
                # Not counted: the engines' first batches of each shape are slow (oneDNN
                # builds its kernels), which is start-up, not capacity.
                one_round(daemon, audios[: args.start], args.max_lag_s, args.client_processes)
                log = lambda r, name=name: print(name, json.dumps(r), file=sys.stderr)  # noqa: E731
                held, best, rounds = largest_held(
                    daemon,
                    audios,
                    args.start,
                    args.most,
                    args.max_lag_s,
                    args.client_processes,
                    log,
                )
            finally:
                daemon.stop()
            per_stream = (best["rss_mb"] - idle_mb) / held if best and held else None
            table.append(
                {
                    "config": name,
                    "args": " ".join(CONFIGS[name] + args.daemon_args) or "(defaults)",
                    "held": held,
                    "worst_p95_s": best["worst_p95_s"] if best else None,
                    "estimate": estimate,
                    "idle_mb": round(idle_mb, 1),
                    "per_stream_mb": round(per_stream, 2) if per_stream is not None else None,
                    "load_average": round(np.mean([r["load_average"] for r in rounds]), 2),
                    "rounds": rounds,
                }
            )
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    cores = os.cpu_count()
    print(
        f"\nreal-time streams held (every stream's p95 event lag < {args.max_lag_s:g} s), "
        f"{args.seconds:g} s of LibriSpeech each, {cores} CPUs"
    )
    print(
        "| daemon | streams held | worst p95 lag | daemon's own estimate | RSS idle "
        "| RSS per stream | load avg |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in table:
        p95 = f"{row['worst_p95_s']:.2f} s" if row["worst_p95_s"] is not None else "-"
        per = f"{row['per_stream_mb']:.2f} MB" if row["per_stream_mb"] is not None else "-"
        print(
            f"| `{row['args']}` | {row['held']} | {p95} | {row['estimate']} "
            f"| {row['idle_mb']:.0f} MB | {per} | {row['load_average']:.1f} |"
        )
    by = {row["config"]: row["held"] for row in table}
    if by.get("workers-1") and by.get("default"):
        print(f"\nall workers / one worker: {by['default'] / by['workers-1']:.2f}x")
    if by.get("naive") and by.get("workers-1"):
        print(f"one worker / naive (batched, onnxruntime): {by['workers-1'] / by['naive']:.2f}x")
    if by.get("naive") and by.get("default"):
        print(f"the default / naive (the issue's target: 5x): {by['default'] / by['naive']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
