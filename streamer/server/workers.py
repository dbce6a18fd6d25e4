"""Engine workers in processes of their own: streams sharded over every core (or GPU).

One engine thread uses one core. :class:`WorkerPool` starts ``N`` worker processes
(``streamer serve --workers N``), each building its own engine (one torch thread, or
its own GPU) and running it with the same :class:`~streamer.server.runner.EngineRunner`
as the single-process daemon. The websocket front end stays in the main process: it
decodes frames and fans out events; a stream lives on one worker for its life (the
least loaded when it opens); profile changes go to every worker.

Each worker is joined to the front end by one ``multiprocessing`` pipe, carrying
pickled tuples: the front end sends ``("audio", stream, pcm bytes)`` (float32 at the
model's rate) and jobs ``(job id, operation, args)``; the worker answers each job with
``("done", job id, result, error)`` and sends ``("events", [...])`` and, after every
step, ``("stepped", {stream: samples processed}, cpu seconds)``. Sends come from one
thread per side at a time (a lock guards the front end's side, where a microphone's
audio thread sends too); a reader thread per side turns what arrives into calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable

import numpy as np

from ..errors import AudioError, StreamerError
from ..events import Event
from ..models import ModelSpec
from .metrics import Metrics
from .runner import EngineRunner, EnrollProgress, Load, bound_native_memory

log = logging.getLogger("streamer.server")

START_TIMEOUT_S = 300.0
"""How long a worker may take to load its model."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cuda_count() -> int:
    """CUDA GPUs torch sees here (0 without torch's CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class RemoteStream:
    """The front end's handle on a stream that lives in a worker process: what was
    pushed and what the worker has processed (the same fields as an engine stream)."""

    def __init__(self, worker: WorkerProcess, stream_id: str, capacity: int) -> None:
        self.id = stream_id
        self.sample_rate = worker.spec.sample_rate
        self.capacity = capacity
        self.pushed = 0
        self.processed = 0
        self._worker = worker

    @property
    def pending_samples(self) -> int:
        return self.pushed - self.processed

    @property
    def time_s(self) -> float:
        return self.processed / self.sample_rate

    def push(self, samples: np.ndarray) -> None:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if self.pending_samples + len(samples) > self.capacity:
            raise AudioError(
                f"stream {self.id!r}: the worker is {self.pending_samples / self.sample_rate:.1f}"
                " s behind and the buffer is full; send audio no faster than it is processed"
            )
        self.pushed += len(samples)
        self._worker.send(("audio", self.id, samples.tobytes()))


class WorkerProcess:
    """One engine worker process, seen from the front end; it offers the operations of
    an :class:`~streamer.server.runner.EngineRunner` (each a future on the loop)."""

    def __init__(self, index: int, spec: ModelSpec, buffer_s: float, pipeline, delay_s: float):
        self.index = index
        self.spec = spec
        self.failure: BaseException | None = None
        self.stopping = False  # a worker told to stop closes its pipe: no failure
        self.load = Load()
        self.stepped = asyncio.Event()
        self.streams: dict[str, RemoteStream] = {}
        self._capacity = int(buffer_s * spec.sample_rate)
        self._jobs: dict[int, asyncio.Future] = {}
        self._callbacks: dict[str, tuple[Callable, Callable]] = {}  # enrollments
        self._ids = itertools.count()
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")  # no forked torch or threads
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=worker_main,
            args=(child, pipeline, delay_s),
            name=f"streamer-worker-{index}",
            daemon=True,
        )
        self._child = child
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_events: Callable[[list[Event]], None] | None = None
        self._on_failure: Callable[[BaseException], None] | None = None
        self._metrics: Metrics | None = None

    # Life

    def start(self, loop, on_events, on_failure, metrics: Metrics) -> None:
        self._loop, self._on_events, self._on_failure = loop, on_events, on_failure
        self._metrics = metrics
        self.process.start()
        self._child.close()
        threading.Thread(target=self._read, name=f"{self.process.name}-reader", daemon=True).start()

    async def ready(self) -> None:
        """Until the worker has loaded its model."""
        await asyncio.wait_for(self._job("ping"), START_TIMEOUT_S)

    async def stop(self) -> None:
        if self.process.pid is None:  # never started
            return
        self.stopping = True
        if self.process.is_alive():
            with contextlib.suppress(StreamerError, asyncio.TimeoutError, OSError, EOFError):
                await asyncio.wait_for(self._job("stop"), 30)
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
        self._conn.close()

    # The runner's operations

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    def wake(self) -> None:
        """Audio goes out as it is pushed: nothing to wake."""

    async def until_stepped(self) -> None:
        await self.stepped.wait()

    async def open_stream(self, stream_id: str) -> RemoteStream:
        await self._job("open_stream", stream_id)
        stream = self.streams[stream_id] = RemoteStream(self, stream_id, self._capacity)
        return stream

    async def end_stream(self, stream_id: str) -> list[Event]:
        try:
            return await self._job("end_stream", stream_id)
        finally:
            self.streams.pop(stream_id, None)
            self._callbacks.pop(stream_id, None)

    def set_profiles(self, profiles: dict) -> asyncio.Future:
        return self._job("set_profiles", profiles)

    def settle(self, stream_id: str, label: str) -> asyncio.Future:
        return self._job("settle", stream_id, label)

    def adopt(self, stream_id: str, label: str, profiles: dict) -> asyncio.Future:
        return self._job("adopt", stream_id, label, profiles)

    def enroll(self, stream_id, start_s, seconds, on_progress, on_done) -> asyncio.Future:
        self._callbacks[stream_id] = (on_progress, on_done)
        return self._job("enroll", stream_id, start_s, seconds)

    def cancel(self, stream_id: str) -> asyncio.Future:
        self._callbacks.pop(stream_id, None)
        return self._job("cancel", stream_id)

    def calibrate(self) -> asyncio.Future:
        return self._job("calibrate")

    # The pipe

    def send(self, message: tuple) -> None:
        with self._lock:
            self._conn.send(message)

    def _job(self, operation: str, *args) -> asyncio.Future:
        future = self._loop.create_future()
        if self.failure is not None:
            future.set_exception(
                StreamerError(f"engine worker {self.index} failed: {self.failure}")
            )
            return future
        job = next(self._ids)
        self._jobs[job] = future
        self.send((job, operation, args))
        return future

    def _read(self) -> None:
        """The reader thread: each message from the worker becomes a call on the loop."""
        try:
            while True:
                self._loop.call_soon_threadsafe(self._handle, self._conn.recv())
        except (EOFError, OSError) as exc:
            if self.failure is None and not self.stopping and not self._conn.closed:
                self._loop.call_soon_threadsafe(self._fail, exc)
        except RuntimeError:  # the loop has closed
            pass

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "stepped":
            for stream_id, processed in message[1].items():
                if stream_id in self.streams:
                    self.streams[stream_id].processed = processed
            self.load.add(message[2])
            self._metrics.engine_cpu_s.inc(message[2])
            self._metrics.step_s.observe(message[3])
            self._metrics.windows.inc(message[4])
            stepped, self.stepped = self.stepped, asyncio.Event()
            stepped.set()
        elif kind == "events":
            self._on_events(message[1])
        elif kind == "done":
            _, job, result, error = message
            future = self._jobs.pop(job)
            if not future.cancelled():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
        elif kind == "progress":
            on_progress, _ = self._callbacks.get(message[1], (None, None))
            if on_progress is not None:
                on_progress(message[2])
        elif kind == "enrolled":
            _, on_done = self._callbacks.pop(message[1], (None, None))
            if on_done is not None:
                on_done(message[2], message[3])
        elif kind == "failed":
            self._fail(RuntimeError(message[1]))

    def _fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = exc
        log.error("engine worker %d failed: %s", self.index, exc)
        for future in self._jobs.values():
            if not future.done():
                future.set_exception(StreamerError(f"engine worker {self.index} failed: {exc}"))
        self._jobs.clear()
        self.stepped.set()
        self._on_failure(exc)


class WorkerPool:
    """``count`` engine worker processes built from ``pipeline`` (a
    :class:`~streamer.pipeline.PipelineOptions`); with a CUDA device and no index, one
    per GPU (``cuda:0``, ``cuda:1``, ...)."""

    def __init__(self, pipeline, count: int, batch_delay_s: float, gpus: int = 0) -> None:
        from dataclasses import replace

        from ..models import get_spec

        self.spec = get_spec(pipeline.model)
        self.buffer_s = pipeline.worker.buffer_s
        self.workers = []
        for index in range(count):
            options = pipeline
            if gpus:
                options = replace(pipeline, device=f"cuda:{index % gpus}")
            self.workers.append(
                WorkerProcess(index, self.spec, self.buffer_s, options, batch_delay_s)
            )

    async def start(self, on_events, on_failure, metrics: Metrics) -> None:
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            worker.start(loop, on_events, on_failure, metrics)
        await asyncio.gather(*(worker.ready() for worker in self.workers))


# The worker process


def worker_main(conn, pipeline, batch_delay_s: float) -> None:
    """A worker process: build the engine, run it, answer the front end until told to stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front end's to handle
    bound_native_memory()
    from ..pipeline import build_engine

    engine = build_engine(pipeline)
    asyncio.run(_Worker(conn, engine, batch_delay_s).run())


class _Worker:
    def __init__(self, conn, engine, batch_delay_s: float) -> None:
        self.conn = conn
        self.engine = engine
        self.batch_delay_s = batch_delay_s
        self.windows = 0  # windows embedded as of the last step reported
        self.done = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.runner = EngineRunner(
            self.engine,
            loop,
            lambda events: self.conn.send(("events", events)),
            lambda exc: self.conn.send(("failed", repr(exc))),
            Metrics(),  # what the front end needs goes to it with each step
            self.batch_delay_s,
            on_stepped=self._stepped,
        )
        self.runner.start()
        threading.Thread(target=self._read, name="streamer-worker-reader", daemon=True).start()
        await self.done.wait()
        await self.runner.stop()

    def _stepped(self, cpu_s: float, wall_s: float, windows: int) -> None:
        processed = {s.id: s._read for s in self.engine.streams.values()}
        new, self.windows = windows - self.windows, windows
        self.conn.send(("stepped", processed, cpu_s, wall_s, new))

    def _read(self) -> None:
        try:
            while True:
                message = self.conn.recv()
                if message[0] == "audio":
                    stream = self.engine.streams.get(message[1])
                    if stream is not None:
                        stream.push(np.frombuffer(message[2], dtype=np.float32))
                        self.runner.wake()
                else:
                    self.loop.call_soon_threadsafe(self._job, *message)
        except (EOFError, OSError):  # the front end has gone
            self.loop.call_soon_threadsafe(self.done.set)

    def _job(self, job: int, operation: str, args: tuple) -> None:
        asyncio.ensure_future(self._answer(job, operation, args))

    async def _answer(self, job: int, operation: str, args: tuple) -> None:
        result = error = None
        try:
            result = await self._do(operation, *args)
        except Exception as exc:
            error = _portable(exc)
        self.conn.send(("done", job, result, error))
        if operation == "stop":
            self.done.set()

    async def _do(self, operation: str, *args):
        runner = self.runner
        if operation in ("ping", "stop"):
            return None
        if operation == "open_stream":
            await runner.open_stream(*args)
            return None
        if operation == "enroll":
            stream_id = args[0]

            def progress(p: EnrollProgress) -> None:
                self.conn.send(("progress", stream_id, p))

            def done(collector, recorded_s: float) -> None:
                self.conn.send(("enrolled", stream_id, collector, recorded_s))

            return await runner.enroll(*args, progress, done)
        return await getattr(runner, operation)(*args)


def _portable(exc: Exception) -> Exception:
    """``exc``, or one like it that survives the pipe (an error whose constructor takes
    other arguments than its message, or a bug, is sent as its message)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        kind = StreamerError if isinstance(exc, StreamerError) else RuntimeError
        return kind(str(exc) if isinstance(exc, StreamerError) else repr(exc))
