"""The engine deployment: each replica runs one engine (a core, or a GPU) and the
streams the ingress opens on it, each for its whole life.

A stream is one long-running Serve streaming call, :meth:`EngineReplica.session`.
Serve's router gives it to the replica with the fewest streams (every stream is one
ongoing request: what ``max_ongoing_requests`` caps and autoscaling counts), and it
stays there. The call is the stream's placement and lifetime: it answers
``("opened", replica, node)`` and then holds the stream until it ends (or fails, when
the replica dies). The stream's data rides the channel of its (ingress replica, engine
replica) *pair*, shared by all the streams of that ingress replica here: their audio
and operations come in one batch per interval, as items of one long-running call this
replica makes to the ingress replica (:meth:`~streamer.ray.ingress.Ingress.feed`,
pinned to it, open while the pair has streams); what they do goes back in one call per
turn of the loop (:meth:`~streamer.ray.ingress.Ingress.deliver`, pinned, one at a
time, so in order). A channel batch is ``{stream id: messages}``. Everything is routed
once per pair, so a replica that Serve scales down serves its streams to their end.

Messages, ingress to engine: ``("audio", float32 bytes)`` and jobs ``(number,
operation, args)`` (the operations of :class:`~streamer.server.runner.EngineRunner`);
engine to ingress: ``("events", [Event])``,
``("stepped", processed samples, cpu s, step s, windows)`` (the step's CPU and
windows shared among its streams, its time sent with one of them), ``("done", number,
result, error)``, ``("progress", EnrollProgress)`` and ``("enrolled", Collector,
recorded s)``. The engine side of the worker pipe (:mod:`~streamer.server.workers`),
per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import ray
from ray import serve
from ray.serve.config import RequestRouterConfig

from ..events import Event
from ..pipeline import PipelineOptions, build_engine
from ..server.metrics import Metrics
from ..server.runner import EngineRunner, bound_native_memory
from ..server.workers import _portable
from .routing import PINNED, SpreadRouter

log = logging.getLogger("streamer.ray")

INGRESS = "ingress"
ENGINE = "engine"


Batch = dict[str, list[tuple]]
"""What a pair's channel carries each time: ``{stream id: its messages, in order}``."""


class EnginePair:
    """This engine replica's side of its channel with one ingress replica: what goes
    back about that ingress's streams here, sent by ``deliver`` one call at a time, each
    carrying everything queued meanwhile (so in order, and at most one call per turn of
    the loop for all of the pair's streams)."""

    def __init__(self, ingress: str, deliver: Callable[[EnginePair, Batch], Awaitable]) -> None:
        self.ingress = ingress
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()  # feed took
        self.puller: asyncio.Task | None = None  # takes the ingress's audio and jobs
        self._deliver = deliver
        self._outgoing: Batch = {}
        self._newest: asyncio.Future | None = None  # resolved when the newest batch has gone
        self._sender: asyncio.Task | None = None

    def send(self, stream_id: str, message: tuple) -> None:
        if not self._outgoing:
            self._newest = asyncio.get_running_loop().create_future()
        self._outgoing.setdefault(stream_id, []).append(message)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())

    async def delivered(self) -> None:
        """Once everything sent so far has reached the ingress replica (or failed to)."""
        if self._newest is not None:
            await asyncio.shield(self._newest)

    async def _send_all(self) -> None:
        try:
            while self._outgoing:
                batch, gone, self._outgoing = self._outgoing, self._newest, {}
                try:
                    await self._deliver(self, batch)
                except Exception as exc:  # it is gone: its feed ends its streams here
                    log.warning("delivering to ingress replica %s failed: %r", self.ingress, exc)
                finally:
                    gone.set_result(None)
        finally:
            self._sender = None


@serve.deployment(
    name=ENGINE,
    graceful_shutdown_timeout_s=3600,  # a replica scaled down serves its streams to their end
    request_router_config=RequestRouterConfig(request_router_class=SpreadRouter),
)
class EngineReplica:
    """One engine; ``ray_actor_options``, replicas and autoscaling come from
    :func:`~streamer.ray.deploy.build`."""

    async def __init__(self, pipeline: PipelineOptions, batch_delay_s: float) -> None:
        bound_native_memory()
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self._ingress = serve.get_deployment_handle(INGRESS, context.app_name)
        engine = await asyncio.to_thread(build_engine, pipeline)
        self._pairs: dict[str, EnginePair] = {}  # ingress replica: its channel
        self._sessions: dict[str, tuple[EnginePair, asyncio.Event]] = {}  # stream: (pair, ended)
        self._ending: set[str] = set()  # streams whose end_stream job runs
        self._windows = 0  # windows embedded as of the last step
        self._processed: dict[str, int] = {}  # samples each stream was last told
        self.runner = EngineRunner(
            engine,
            asyncio.get_running_loop(),
            self._on_events,
            self._on_failure,
            Metrics(),  # what the ingress needs goes to it with each step
            batch_delay_s,
            on_stepped=self._stepped,
        )
        self.runner.start()
        log.info("engine replica %s ready (model %s)", self.replica, pipeline.model)

    async def calibrate(self) -> float:
        """Engine seconds per second of one stream's speech (admission's estimate)."""
        return await self.runner.calibrate()

    async def session(
        self, stream_id: str, ingress: str, profiles: dict
    ) -> AsyncIterator[list[tuple]]:
        """Open ``stream_id`` with ``profiles``; yield ``("opened", ...)`` and hold the
        stream until its ``end_stream`` job (or until ``ingress``, the replica holding its
        connection, lets go of it). Its data rides the ingress replica's channel."""
        ended = asyncio.Event()
        pair = self._pairs.get(ingress)
        if pair is None or pair.puller.done():
            pair = self._pairs[ingress] = EnginePair(ingress, self._deliver)
            pair.puller = asyncio.create_task(self._pull(pair))
        self._sessions[stream_id] = (pair, ended)
        try:
            await self.runner.set_profiles(profiles)
            await self.runner.open_stream(stream_id)
            await asyncio.shield(pair.ready)  # the ingress sends its audio only after this
            yield [("opened", self.replica, self.node)]
            await ended.wait()
            await pair.delivered()
        finally:
            del self._sessions[stream_id]
            self._processed.pop(stream_id, None)
            if not any(p is pair for p, _ in self._sessions.values()):
                pair.puller.cancel()  # the pair's last stream: its feed ends
                if self._pairs.get(ingress) is pair:
                    del self._pairs[ingress]
            if stream_id in self.runner.engine.streams:  # its ingress went away
                await self.runner.end_stream(stream_id)

    async def _pull(self, pair: EnginePair) -> None:
        """Take the audio and jobs of the streams of ``pair``'s ingress replica, until it
        has none here; if the ingress replica goes away, its streams here end."""
        feed = self._ingress.options(stream=True).feed.remote(
            self.replica, **{PINNED: pair.ingress}
        )
        try:
            await anext(feed)  # the ingress took the pair
            pair.ready.set_result(None)
            async for batch in feed:
                for stream_id, messages in batch.items():
                    self._take(pair, stream_id, messages)
        except asyncio.CancelledError:
            feed.cancel()
            raise
        except ray.exceptions.RayError as exc:
            log.warning("ingress replica %s is gone (%r)", pair.ingress, exc)
        except Exception:
            log.exception("taking the audio of ingress %s failed; closing", pair.ingress)
        if not pair.ready.done():
            pair.ready.set_exception(ConnectionError(f"ingress replica {pair.ingress} is gone"))
        for stream_id, (owner, ended) in self._sessions.items():
            if owner is pair and stream_id not in self._ending:  # the ingress let go of it
                ended.set()

    def _take(self, pair: EnginePair, stream_id: str, messages: list[tuple]) -> None:
        stream = self.runner.engine.streams.get(stream_id)
        if stream is None or self._sessions.get(stream_id, (None,))[0] is not pair:
            return  # ended meanwhile
        for message in messages:
            if message[0] == "audio":
                stream.push(np.frombuffer(message[1], dtype=np.float32))
                self.runner.wake()
            else:
                self._job(stream_id, *message)

    def _send(self, stream_id: str, message: tuple) -> None:
        entry = self._sessions.get(stream_id)
        if entry is not None:
            entry[0].send(stream_id, message)

    async def _deliver(self, pair: EnginePair, batch: Batch) -> None:
        await self._ingress.deliver.remote(self.replica, batch, **{PINNED: pair.ingress})

    def _job(self, stream_id: str, number: int, operation: str, args: tuple) -> None:
        runner = self.runner
        if operation == "end_stream":
            self._ending.add(stream_id)
        if operation == "enroll":
            future = runner.enroll(
                *args,
                lambda progress: self._send(stream_id, ("progress", progress)),
                lambda collector, recorded_s: self._send(
                    stream_id, ("enrolled", collector, recorded_s)
                ),
            )
            log.info("enrolling from stream %r", stream_id)
        else:
            future = getattr(runner, operation)(*args)

        def done(future: asyncio.Future) -> None:
            error = future.exception()
            result = None if error is not None else future.result()
            portable = None if error is None else _portable(error)
            self._send(stream_id, ("done", number, result, portable))
            if operation == "end_stream":
                self._ending.discard(stream_id)
                entry = self._sessions.get(stream_id)
                if entry is not None:
                    entry[1].set()

        future.add_done_callback(done)

    def _on_events(self, events: list[Event]) -> None:
        by_stream: dict[str, list[Event]] = {}
        for event in events:
            by_stream.setdefault(event.stream, []).append(event)
        for stream_id, mine in by_stream.items():
            self._send(stream_id, ("events", mine))

    def _stepped(self, cpu_s: float, step_s: float, windows: int) -> None:
        """Each stream the step moved on learns how far it is processed, with its share of
        the step (its time goes with one of them)."""
        new, self._windows = windows - self._windows, windows
        moved = []
        for stream_id in self._sessions:
            stream = self.runner.engine.streams.get(stream_id)
            processed = None if stream is None else round(stream.time_s * stream.sample_rate)
            if processed is not None and processed != self._processed.get(stream_id):
                self._processed[stream_id] = processed
                moved.append((stream_id, processed))
        for stream_id, processed in moved:
            share = 1.0 / len(moved)
            self._send(stream_id, ("stepped", processed, cpu_s * share, step_s, new * share))
            step_s = None

    def _on_failure(self, exc: BaseException) -> None:
        log.error("engine replica %s failed: %r", self.replica, exc)

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine failed is replaced."""
        if self.runner.failure is not None:
            raise RuntimeError(f"engine replica {self.replica} failed: {self.runner.failure!r}")

    async def __del__(self) -> None:
        await self.runner.stop()
