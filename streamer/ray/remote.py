"""The engine deployment as the ingress's daemon sees it: one runner for every stream.

:class:`RemoteEngines` has the operations of an
:class:`~streamer.server.runner.EngineRunner` (the daemon's
:class:`~streamer.server.app.Server` drives it as one of its engine workers); each
stream it opens is an :class:`EngineStream` on the engine replica Serve's router chose
(:mod:`~streamer.ray.engine` has the messages). The stream's own Serve call is its
placement and lifetime only; its data rides the channel of its (ingress replica,
engine replica) pair, shared by all of the pair's streams. Audio waits in the stream's
mailbox and goes to its engine replica at most every ``batch_s`` (jobs at once), with
every other stream's of the pair, as one item of one long-running call the engine
replica makes (:meth:`RemoteEngines.feed`); what the engine replica sends back comes
the same way, one call per turn of its loop for all of the pair's streams
(:meth:`RemoteEngines.deliver`). The Ray cost is per pair and batch, not per stream.

A stream whose call fails (its engine replica died) is *lost*: its jobs fail, its
audio is dropped, its pair's feed ends, and ``on_lost`` tells the daemon, which ends it
with :data:`ENGINE_DIED`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable

from ..errors import ProtocolError, StreamerError
from ..events import Event
from ..models import ModelSpec
from ..server.metrics import Metrics
from ..server.runner import Load
from ..server.runner import _settle as settle
from ..server.workers import RemoteStream, WorkerPool

log = logging.getLogger("streamer.ray")

ENGINE_DIED = "its engine replica died; reconnect to get a new one"
OPEN_TIMEOUT_S = 60.0
"""How long a new stream waits for an engine replica with room (Serve queues it while
every replica is full and autoscaling adds one)."""


class EngineStream(RemoteStream):
    """A stream on an engine replica: the fields of an engine stream (what was pushed,
    what the replica has processed), its mailbox and its jobs."""

    def __init__(self, engines: RemoteEngines, stream_id: str, capacity: int) -> None:
        super().__init__(engines, stream_id, capacity)
        self.replica: str | None = None  # the engine replica, once opened
        self.node: str | None = None
        self.lost = False
        self.ending = False  # its end_stream job was sent
        self.jobs: dict[int, asyncio.Future] = {}
        self.early: list[tuple] = []  # jobs for it while it opens (its replica is unknown)
        self.callbacks: tuple[Callable, Callable] | None = None  # an enrollment's


class Pair:
    """The ingress side of one engine replica's channel: the mailboxes of this ingress
    replica's streams on it, taken all at once. No I/O: :meth:`RemoteEngines.feed` is
    the adapter."""

    def __init__(self) -> None:
        self.mailboxes: dict[str, list[tuple]] = {}  # stream id: its messages, in order
        self.audio_only = True
        self.arrived = asyncio.Event()
        self.taken_at = 0.0  # monotonic time of the last batch
        self.feed: object | None = None  # the feed that takes from it (a newer one wins)

    def post(self, stream_id: str, message: tuple) -> None:
        self.mailboxes.setdefault(stream_id, []).append(message)
        self.audio_only = self.audio_only and message[0] == "audio"
        self.arrived.set()

    def due(self, batch_s: float, now: float) -> float:
        """Seconds until the next batch may go: jobs at once, audio ``batch_s`` after the
        last batch."""
        return max(0.0, self.taken_at + batch_s - now) if self.audio_only else 0.0

    def take(self, now: float) -> dict[str, list[tuple]]:
        """Every stream's messages, each stream's audio in one piece where adjacent."""
        batch = {}
        for stream_id, messages in self.mailboxes.items():
            merged: list[tuple] = []
            for message in messages:
                if message[0] == "audio" and merged and merged[-1][0] == "audio":
                    merged[-1] = ("audio", merged[-1][1] + message[1])
                else:
                    merged.append(message)
            batch[stream_id] = merged
        self.mailboxes, self.audio_only, self.taken_at = {}, True, now
        self.arrived.clear()
        return batch


class RemoteEngines:
    """The engine deployment (a Serve handle), as one runner of the daemon; see the
    module docstring."""

    def __init__(self, handle, ingress: str, spec: ModelSpec, buffer_s: float, batch_s: float):
        self.handle = handle
        self.ingress = ingress
        self.spec = spec
        self.batch_s = batch_s
        self.buffer_s = buffer_s
        self.streams: dict[str, EngineStream] = {}
        self.load = Load()
        self.failure: BaseException | None = None  # the deployment's never fails as a whole
        self.stepped = asyncio.Event()
        self._capacity = int(buffer_s * spec.sample_rate)
        self._profiles: dict = {}
        self._numbers = itertools.count()
        self._receivers: set[asyncio.Task] = set()
        self._pairs: dict[str, Pair] = {}  # engine replica: its channel
        self._on_events: Callable[[list[Event]], None] = lambda events: None
        self._metrics = Metrics()
        self.on_lost: Callable[[str], None] = lambda stream_id: None

    def start(self, on_events: Callable[[list[Event]], None], metrics: Metrics) -> None:
        self._on_events, self._metrics = on_events, metrics

    # The runner's operations

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    def wake(self) -> None:
        """Audio goes to the mailbox as it is pushed: nothing to wake."""

    async def until_stepped(self) -> None:
        await self.stepped.wait()

    async def open_stream(self, stream_id: str) -> EngineStream:
        stream = EngineStream(self, stream_id, self._capacity)
        self.streams[stream_id] = stream
        call = self.handle.options(stream=True).session.remote(
            stream_id, self.ingress, self._profiles
        )
        try:
            first = await asyncio.wait_for(anext(call), OPEN_TIMEOUT_S)
        except BaseException as exc:
            call.cancel()
            del self.streams[stream_id]
            if isinstance(exc, asyncio.TimeoutError):
                raise ProtocolError(
                    "busy",
                    f"no engine replica took the stream within {OPEN_TIMEOUT_S:g} s: every "
                    "one is full and the cluster has no room for another; try again later",
                ) from None
            raise
        _, stream.replica, stream.node = first[0]
        for message in stream.early:
            self._post(stream, message)
        stream.early.clear()
        task = asyncio.create_task(self._receive(stream, call))
        self._receivers.add(task)
        task.add_done_callback(self._receivers.discard)
        return stream

    async def end_stream(self, stream_id: str) -> list[Event]:
        stream = self.streams.get(stream_id)
        try:
            if stream is None or stream.lost:
                return []
            stream.ending = True
            return await self._job(stream, "end_stream", stream_id)
        except StreamerError:
            if stream.lost:
                return []
            raise
        finally:
            self.streams.pop(stream_id, None)

    def set_profiles(self, profiles: dict) -> asyncio.Future:
        """New profiles: kept for new streams, and sent to every engine replica that
        holds one of this ingress's streams (once each)."""
        self._profiles = profiles
        replicas = {s.replica: s for s in self.streams.values() if not s.lost}
        jobs = (self._job(s, "set_profiles", profiles) for s in replicas.values())
        return asyncio.gather(*jobs, return_exceptions=True)  # a lost stream's replica is gone

    def settle(self, stream_id: str, label: str) -> asyncio.Future:
        return self._job(self.streams[stream_id], "settle", stream_id, label)

    def adopt(self, stream_id: str, label: str, profiles: dict) -> asyncio.Future:
        """The stream's replica adopts the voice; the others get the new profiles."""
        stream = self.streams[stream_id]
        self._profiles = profiles
        others = {s.replica: s for s in self.streams.values() if s.replica != stream.replica}
        return asyncio.gather(
            self._job(stream, "adopt", stream_id, label, profiles),
            *(self._job(s, "set_profiles", profiles) for s in others.values() if not s.lost),
        )

    def enroll(self, stream_id, start_s, seconds, on_progress, on_done) -> asyncio.Future:
        stream = self.streams[stream_id]
        stream.callbacks = (on_progress, on_done)
        return self._job(stream, "enroll", stream_id, start_s, seconds)

    def cancel(self, stream_id: str) -> asyncio.Future:
        stream = self.streams[stream_id]
        stream.callbacks = None
        return self._job(stream, "cancel", stream_id)

    async def calibrate(self) -> float:
        return await self.handle.calibrate.remote()

    async def stop(self) -> None:
        for task in list(self._receivers):
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)

    # The streams' calls

    def send(self, message: tuple) -> None:
        """A stream's audio (``("audio", stream id, bytes)``, from its push): to its mailbox."""
        stream = self.streams.get(message[1])
        if stream is not None and not stream.lost:
            self._post(stream, ("audio", message[2]))

    def _post(self, stream: EngineStream, message: tuple) -> None:
        if stream.replica is None:
            stream.early.append(message)
        else:
            self._pair(stream.replica).post(stream.id, message)

    def _pair(self, engine: str) -> Pair:
        pair = self._pairs.get(engine)
        if pair is None:
            pair = self._pairs[engine] = Pair()
        return pair

    def _job(self, stream: EngineStream, operation: str, *args) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if stream.lost:
            future.set_exception(StreamerError(f"stream {stream.id!r}: {ENGINE_DIED}"))
            return future
        number = next(self._numbers)
        stream.jobs[number] = future
        self._post(stream, (number, operation, args))
        return future

    async def feed(self, engine: str) -> AsyncIterator[dict[str, list[tuple]]]:
        """The audio and jobs of this ingress replica's streams on the ``engine`` replica,
        ``{stream id: messages}`` a batch at a time; first an empty batch, once this feed
        has taken the pair over from any older one (which then ends)."""
        pair = self._pair(engine)
        pair.feed = token = object()
        pair.arrived.set()  # an older feed wakes, and ends
        try:
            yield {}
            while True:
                await pair.arrived.wait()
                await asyncio.sleep(pair.due(self.batch_s, time.monotonic()))
                if pair.feed is not token:
                    return
                batch = pair.take(time.monotonic())
                if batch:
                    yield batch
        finally:
            if pair.feed is token and not pair.mailboxes and self._pairs.get(engine) is pair:
                del self._pairs[engine]

    def deliver(self, batch: dict[str, list[tuple]]) -> None:
        """What an engine replica sends about this ingress replica's streams on it,
        ``{stream id: messages}``, in order."""
        for stream_id, messages in batch.items():
            stream = self.streams.get(stream_id)
            if stream is not None and not stream.lost:
                for message in messages:
                    self._handle(stream, message)

    async def _receive(self, stream: EngineStream, call) -> None:
        """The stream's call to its engine replica, which ends with the stream (or fails,
        when the replica dies); its data comes through :meth:`deliver`."""
        try:
            async for _ in call:
                pass
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:
            self._lose(stream, exc)
        else:
            if not stream.ending:
                self._lose(stream, ConnectionError("the engine replica closed the stream"))

    def _handle(self, stream: EngineStream, message: tuple) -> None:
        kind = message[0]
        if kind == "events":
            self._on_events(message[1])
        elif kind == "stepped":
            stream.processed = message[1]
            self.load.add(message[2])
            self._metrics.engine_cpu_s.inc(message[2])
            if message[3] is not None:  # a step is timed once, with one of its streams
                self._metrics.step_s.observe(message[3])
            self._metrics.windows.inc(message[4])
            self._release()
        elif kind == "done":
            _, number, result, error = message
            settle(stream.jobs.pop(number), result, error)
        elif kind == "progress" and stream.callbacks is not None:
            stream.callbacks[0](message[1])
        elif kind == "enrolled" and stream.callbacks is not None:
            on_done = stream.callbacks[1]
            stream.callbacks = None
            on_done(message[1], message[2])

    def _release(self) -> None:
        stepped, self.stepped = self.stepped, asyncio.Event()
        stepped.set()

    def _lose(self, stream: EngineStream, exc: BaseException) -> None:
        log.error("stream %r lost its engine replica %s: %r", stream.id, stream.replica, exc)
        stream.lost = True
        pair = self._pairs.pop(stream.replica, None)  # the replica's, or its channel, is gone
        if pair is not None:
            pair.feed = None  # its feed ends (else Serve would wait for it when draining)
            pair.arrived.set()
        stream.processed = stream.pushed  # nothing is waiting for it any more
        for future in stream.jobs.values():
            if not future.done():
                future.set_exception(StreamerError(f"stream {stream.id!r}: {ENGINE_DIED}"))
        stream.jobs.clear()
        self._release()
        self.on_lost(stream.id)


class EnginePool(WorkerPool):
    """The daemon's engine workers, on an ingress replica: the one :class:`RemoteEngines`."""

    def __init__(self, engines: RemoteEngines) -> None:
        self.spec = engines.spec
        self.buffer_s = engines.buffer_s
        self.workers = [engines]

    async def start(self, on_events, on_failure, metrics: Metrics) -> None:
        self.workers[0].start(on_events, metrics)
