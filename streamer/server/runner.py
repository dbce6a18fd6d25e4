"""The engine's own thread: the one place where ``Engine`` runs, so the event loop never waits.

The engine is synchronous and CPU-bound, and not thread-safe beyond ``Stream.push``.
:class:`EngineRunner` owns it in one thread. The event loop

- pushes audio into streams (``Stream.push`` is safe from any thread) and calls
  :meth:`EngineRunner.wake` — a ``threading.Event``, no polling;
- hands every other engine operation (open or close a stream, new profiles, live
  enrollment, promote) to :meth:`EngineRunner.call`, which runs it in the thread
  between two steps and resolves an asyncio future with its result.

The thread sleeps until woken, then steps the engine while any stream has audio
waiting. Each step takes the new audio of all streams at once, so their windows go to
the encoder in one batch; audio that arrives during a step is taken by the next one.
After each step the events go back to the loop with ``loop.call_soon_threadsafe``, in
order, followed by a "stepped" signal that releases clients paused by backpressure.

Once a stream has closed and the thread has nothing to do, it hands the memory malloc
keeps free back to the OS (glibc's ``malloc_trim``, at most every :data:`TRIM_EVERY_S`,
well under a millisecond): a burst's working memory (the backlog's steps, their encoder
batches) would otherwise stay resident after its streams ended.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ..enroll import Collector, EnrollOptions, variant_steps
from ..errors import EngineError
from ..events import Event
from ..vad import GateUpdate
from ..worker import Engine, StreamTracker, Window
from .metrics import Metrics

log = logging.getLogger("streamer.server")

ENROLL_TAIL_S = 0.1
"""Audio past an enrollment span to process before it is complete (its last windows and
VAD chunk need a few ms beyond it)."""

PROGRESS_EVERY_S = 0.5
TRIM_EVERY_S = 1.0
"""Least time between two hand-backs of free memory (each follows a stream's close)."""


ONEDNN_CACHE_CAPACITY = 128
"""Kernels oneDNN keeps for torch's encoder: one per input shape met (batch size x window
length; a burst of 16 streams meets about 70 shapes, 2 kernels each, about 0.4 MB a
shape). Its default, 1024, let a long run keep up to about 400 MB; 128 bounds it at about
50 MB and cost that burst no measurable time (64 cost it 5-8 %)."""
MALLOC_ARENAS = 2
"""Most glibc malloc arenas (default: 8 per core): each thread that allocates gets one,
and each keeps its own free memory, so a burst left several arenas' worth behind."""


def bound_native_memory() -> None:
    """Bound what torch's kernel cache and malloc keep in this process; call it before
    the engine is built (before torch's first kernel and before the engine's threads).
    Also reaches worker processes started after it (through the environment)."""
    import os

    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))
    os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc
        return
    m_arena_max = -8
    mallopt(m_arena_max, int(os.environ["MALLOC_ARENA_MAX"]))


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)`` (free heap pages back to the OS), or a no-op elsewhere."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


malloc_trim = _malloc_trim()


@dataclass
class EnrollProgress:
    """Where a live enrollment stands (sent to the client as ``enroll_progress``)."""

    recorded_s: float
    speech_s: float
    windows: int
    level_dbfs: float | None


class EnrollTap:
    """A stream's :class:`~streamer.worker.StreamTracker` while the stream is enrolled.

    Everything goes on to the stream's own tracker (events do not change), and a
    :class:`~streamer.enroll.Collector` keeps the speech windows of ``[start_s, end_s]``.
    """

    def __init__(
        self,
        tracker: StreamTracker,
        start_s: float,
        end_s: float,
        on_progress: Callable[[EnrollProgress], None],
        on_done: Callable[[Collector, float], None],
        recorded_from_s: float,
    ) -> None:
        """``recorded_from_s``: where the stream's worker is, from which :attr:`audio`
        keeps what it takes (the span's channel variants need the span's audio)."""
        self.tracker = tracker
        self.collector = Collector(start_s, end_s)
        self.audio: list[np.ndarray] = []
        self.recorded_from_s = recorded_from_s
        self.start_s = start_s
        self.end_s = end_s
        self.on_progress = on_progress
        self.on_done = on_done
        self._reported_s = start_s

    def gate(self, update: GateUpdate, now_s: float) -> list[Event]:
        self.collector.gate(update, now_s)
        return self.tracker.gate(update, now_s)

    def window(self, window: Window, now_s: float) -> list[Event]:
        self.collector.window(window, now_s)
        return self.tracker.window(window, now_s)

    def close(self, update: GateUpdate, now_s: float) -> list[Event]:
        self.collector.close(update, now_s)
        return self.tracker.close(update, now_s)

    def confident(self) -> bool:
        return False  # the profile takes every window

    def span_audio(self, sample_rate: int) -> np.ndarray:
        """The audio of ``[start_s, end_s]`` (as far as the stream got)."""
        audio = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        first = round((self.start_s - self.recorded_from_s) * sample_rate)
        return audio[first : first + round((self.end_s - self.start_s) * sample_rate)]

    def progress(self, now_s: float) -> EnrollProgress:
        c = self.collector
        return EnrollProgress(
            recorded_s=max(0.0, min(now_s, self.end_s) - self.start_s),
            speech_s=c.speech_until(min(now_s, self.end_s)),
            windows=len(c.embeddings),
            level_dbfs=c.level_dbfs,
        )


class EngineRunner:
    """Runs ``engine`` in a thread of its own; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[list[Event]], None],
        on_failure: Callable[[BaseException], None],
        metrics: Metrics,
        batch_delay_s: float = 0.0,
        on_stepped: Callable[[float, float, int], None] | None = None,
        variant_weight: float = EnrollOptions().variant_weight,
    ) -> None:
        """``variant_weight``: live enrollment's channel variants (``EnrollOptions``)."""
        self.engine = engine
        self._on_stepped = on_stepped  # (cpu s, wall s, windows embedded), on the loop
        self.batch_delay_s = batch_delay_s
        self._loop = loop
        self._on_events = on_events
        self._on_failure = on_failure
        self._metrics = metrics
        self._wake = threading.Event()
        self._job_waiting = threading.Event()  # cuts a batching delay short
        self._last_step = 0.0  # perf_counter() when the last step began
        self._step_clocks = (0.0, 0.0)  # perf_counter() and thread_time() before a step
        self._jobs: deque[tuple[Callable, tuple, asyncio.Future]] = deque()
        self._taps: dict[str, EnrollTap] = {}
        self.variant_weight = variant_weight
        # Finished enrollments whose channel variants are being embedded, a step at a time.
        self._variants: deque[tuple[Generator, EnrollTap, float]] = deque()
        self._scratch_engine: Engine | None = None
        self._trim_due = False  # a stream closed since memory was last handed back
        self._trimmed_at = 0.0  # perf_counter() then
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="streamer-engine", daemon=True)
        self.failure: BaseException | None = None
        self.load = Load()
        self.stepped = asyncio.Event()  # set (and replaced) after every step, on the loop

    # The loop's side

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Finish the jobs already asked for, then end the thread."""
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)

    def wake(self) -> None:
        """New audio: step soon (safe from any thread)."""
        self._wake.set()

    def call(self, fn: Callable, *args) -> asyncio.Future:
        """Run ``fn(*args)`` in the engine's thread between steps; a future of its result."""
        future = self._loop.create_future()
        if self.failure is not None:
            future.set_exception(EngineError(f"the engine thread failed: {self.failure!r}"))
            return future
        self._jobs.append((fn, args, future))
        self._job_waiting.set()
        self._wake.set()
        return future

    async def until_stepped(self) -> None:
        """Wait until the engine has next processed audio (a step, or a job)."""
        await self.stepped.wait()

    # The operations the server asks of an engine (the same on a worker process)

    def open_stream(self, stream_id: str) -> asyncio.Future:
        return self.call(self.engine.open_stream, stream_id)

    def end_stream(self, stream_id: str) -> asyncio.Future:
        return self.call(self.close_stream, stream_id)

    def set_profiles(self, profiles: dict) -> asyncio.Future:
        return self.call(self.engine.set_profiles, profiles)

    def settle(self, stream_id: str, label: str) -> asyncio.Future:
        return self.call(self.engine.settle, stream_id, label)

    def adopt(self, stream_id: str, label: str, profiles: dict) -> asyncio.Future:
        return self.call(self.engine.adopt, stream_id, label, profiles)

    def enroll(self, stream_id: str, start_s: float, seconds: float, on_progress, on_done):
        return self.call(self.start_enroll, stream_id, start_s, seconds, on_progress, on_done)

    def cancel(self, stream_id: str) -> asyncio.Future:
        return self.call(self.cancel_enroll, stream_id)

    def calibrate(self) -> asyncio.Future:
        """Seconds of engine time per second of one stream's speech (:func:`stream_cost_s`)."""
        return self.call(stream_cost_s, self.engine)

    @property
    def stream_count(self) -> int:
        return len(self.engine.streams)

    # Jobs for call() (they run in the engine's thread)

    def close_stream(self, stream_id: str) -> list[Event]:
        """Process what is left of the stream and close it; its events are published first."""
        stream = self.engine.streams[stream_id]
        events = self.engine.close_stream(stream_id)
        self._publish(events)
        self._finish_tap(stream_id, stream.time_s, cancelled=False)
        self._trim_due = True
        return events

    def start_enroll(
        self,
        stream_id: str,
        start_s: float,
        seconds: float,
        on_progress: Callable[[EnrollProgress], None],
        on_done: Callable[[Collector, float], None],
    ) -> float:
        """Collect ``seconds`` of the stream from ``start_s`` (or from where the worker is,
        if it is past that); returns the actual start. ``on_progress`` and ``on_done`` are
        called on the loop."""
        stream = self.engine.streams[stream_id]
        start_s = max(start_s, stream.time_s)
        tap = EnrollTap(
            stream.tracker, start_s, start_s + seconds, on_progress, on_done, stream.time_s
        )
        stream.tracker, stream.recording = tap, tap.audio
        self._taps[stream_id] = tap
        return start_s

    def cancel_enroll(self, stream_id: str) -> bool:
        """Stop collecting; whether there was an enrollment to stop."""
        return self._finish_tap(stream_id, self.engine.streams[stream_id].time_s, cancelled=True)

    # The thread

    def _run(self) -> None:
        try:
            self.engine.vad.warm_batched()  # its code pages: memory of the daemon, not a stream's
            while True:
                if not self._variants:
                    self._wake.wait(self._until_trim())
                self._wake.clear()
                self._run_jobs()
                self._step_variants()
                self._before_step()
                for events in self.engine.run():
                    self._stepped_engine(events)
                    self._step_variants()
                    self._run_jobs()
                    if self._stopping:
                        break
                    self._before_step()
                if self._stopping and not self._jobs:
                    return
                self._trim_if_due()
        except BaseException as exc:  # a bug in the engine: report it, stop stepping
            self.failure = exc
            log.exception("the engine thread failed")
            self._loop.call_soon_threadsafe(self._fail, exc)

    def _until_trim(self) -> float | None:
        """How long the idle thread may sleep before it owes a trim (None: no trim due)."""
        if not self._trim_due:
            return None
        return max(0.0, self._trimmed_at + TRIM_EVERY_S - time.perf_counter())

    def _trim_if_due(self) -> None:
        """Idle (no audio waiting, no job): hand free memory back if a stream closed."""
        idle = not self._jobs and not self.engine.pending()
        if self._trim_due and idle and not self._until_trim():
            malloc_trim()
            self._trim_due = False
            self._trimmed_at = time.perf_counter()

    def _before_step(self) -> None:
        """With several streams, let ``batch_delay_s`` pass between step starts, so that
        the audio of the streams arriving within it shares one step (one VAD batch, one
        encoder batch, one pass of per-step overhead) instead of each frame of each stream
        getting a step of its own. One stream steps at once. A job cuts the wait short.
        Then the clocks start for the step's metrics."""
        if len(self.engine.streams) >= 2 and self.engine.pending():
            wait = self._last_step + self.batch_delay_s - time.perf_counter()
            if wait > 0:
                self._job_waiting.wait(wait)
        self._step_clocks = (time.perf_counter(), time.thread_time())

    def _run_jobs(self) -> None:
        self._job_waiting.clear()
        if not self._jobs:
            return
        while self._jobs:
            fn, args, future = self._jobs.popleft()
            try:
                result = fn(*args)
            except Exception as exc:
                self._loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self._loop.call_soon_threadsafe(_settle, future, result, None)
        # A job may have processed audio (closing a stream drains every stream): clients
        # paused by backpressure look again, or they could wait for a step that never comes.
        self._loop.call_soon_threadsafe(self._stepped)

    def _stepped_engine(self, events: list[Event]) -> None:
        """After a step (timed from :meth:`_before_step`): metrics, events, enrollments."""
        self._last_step, cpu = self._step_clocks
        cpu_s = time.thread_time() - cpu
        wall_s = time.perf_counter() - self._last_step
        self._metrics.step_s.observe(wall_s)
        self._metrics.engine_cpu_s.inc(cpu_s)
        self.load.add(cpu_s)
        if self._on_stepped is not None:
            windows = self.engine.windows_embedded
            self._loop.call_soon_threadsafe(self._on_stepped, cpu_s, wall_s, windows)
        self._publish(events)
        for stream_id, tap in list(self._taps.items()):
            stream = self.engine.streams[stream_id]
            if stream.time_s >= tap.end_s + ENROLL_TAIL_S:
                self._finish_tap(stream_id, stream.time_s, cancelled=False)
            elif stream.time_s - tap._reported_s >= PROGRESS_EVERY_S:
                tap._reported_s = stream.time_s
                self._loop.call_soon_threadsafe(tap.on_progress, tap.progress(stream.time_s))
        self._loop.call_soon_threadsafe(self._stepped)

    def _publish(self, events: list[Event]) -> None:
        if events:
            self._loop.call_soon_threadsafe(self._on_events, events)

    def _finish_tap(self, stream_id: str, now_s: float, cancelled: bool) -> bool:
        """Give the stream its tracker back and, unless cancelled, hand over what was collected."""
        tap = self._taps.pop(stream_id, None)
        if tap is None:
            return False
        stream = self.engine.streams.get(stream_id)
        if stream is not None:
            stream.tracker, stream.recording = tap.tracker, None
        if not cancelled:
            recorded_s = tap.progress(now_s).recorded_s
            tap.collector.finish(min(now_s, tap.end_s))
            span = tap.span_audio(self.engine.embedder.spec.sample_rate)
            steps = variant_steps(self._scratch(), span, tap.collector, self.variant_weight)
            self._variants.append((steps, tap, recorded_s))
        return True

    def _scratch(self) -> Engine:
        """An engine of its own for the channel variants of enrollments (no stream of a
        client is in it), sharing the model and the VAD."""
        if self._scratch_engine is None:
            e = self.engine
            self._scratch_engine = Engine(e.embedder, e.vad, e.options, e.gate_options)
        return self._scratch_engine

    def _step_variants(self) -> None:
        """One step of the oldest finished enrollment's channel variants (about
        ``step_s`` of audio, between two steps of the streams); once they are all in,
        hand the collector over."""
        if not self._variants:
            return
        steps, tap, recorded_s = self._variants[0]
        try:
            next(steps)
        except StopIteration as done:
            self._variants.popleft()
            tap.collector.variant_total = done.value
            self._loop.call_soon_threadsafe(tap.on_done, tap.collector, recorded_s)

    # Back on the loop

    def _stepped(self) -> None:
        stepped, self.stepped = self.stepped, asyncio.Event()
        stepped.set()

    def _fail(self, exc: BaseException) -> None:
        self._stepped()
        self._on_failure(exc)


class Load:
    """How busy an engine is: the share of a core its steps used over the last ``span_s``
    (CPU time, so that other programs on the machine do not count; a machine too busy to
    give the engine its time shows as streams lagging instead)."""

    def __init__(self, span_s: float = 5.0) -> None:
        self.span_s = span_s
        self._steps: deque[tuple[float, float]] = deque()  # (monotonic time, cpu seconds)
        self._lock = threading.Lock()
        self._since = time.monotonic()

    def add(self, cpu_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._steps.append((now, cpu_s))
            while self._steps[0][0] < now - self.span_s:
                self._steps.popleft()

    def utilisation(self) -> float:
        now = time.monotonic()
        with self._lock:
            busy = sum(cpu for at, cpu in self._steps if at >= now - self.span_s)
        return busy / max(1e-3, min(self.span_s, now - self._since))


FULL_WINDOW_SHARE = 0.55
"""Full windows' share of an engine's time on continuous speech (profiled on 32 streams:
5.0 s of 9.0 s; onset windows, the VAD and features are the rest)."""


def stream_cost_s(engine: Engine, repeats: int = 1, most_batch: int = 8) -> float:
    """Engine seconds one stream of continuous speech costs per second of audio, timed
    here: a batch of full windows (at most ``most_batch``, so that it is quick; smaller
    batches cost a little more per window, so the estimate errs low) through the
    encoder, scaled by the windows a second holds and by :data:`FULL_WINDOW_SHARE`."""
    import numpy as np

    spec = engine.embedder.spec
    batch = min(engine.options.max_batch, most_batch)
    frames = np.random.default_rng(0).standard_normal(
        (batch, spec.window_frames, spec.frontend().n_features), dtype=np.float32
    )
    levels = np.full(batch, -25.0)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        started = time.thread_time()
        engine.embedder.embed(frames, levels)
        best = min(best, time.thread_time() - started)
    windows_per_s = 1.0 / (engine.hop_frames * spec.frame_s)
    return best / batch * windows_per_s / FULL_WINDOW_SHARE


def _settle(future: asyncio.Future, result, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
