"""The engine deployment: each replica runs one engine (a core, or a GPU) and the
streams the ingress opens on it, each for its whole life.

A stream is one long-running Serve streaming call, :meth:`EngineReplica.session`.
Serve's router gives it to the replica with the fewest streams (every stream is one
ongoing request: what ``max_ongoing_requests`` caps and autoscaling counts), and it
stays there. Through it the replica sends the stream's messages as they come; the
stream's audio and operations come, in batches, through one long-running call it makes
to the ingress replica that holds the stream's connection
(:meth:`~streamer.ray.ingress.Ingress.feed`, pinned to that replica). Everything a
stream needs rides these two calls, routed once, so a replica that Serve scales down
serves its streams to their end.

Messages, ingress to engine: ``("audio", float32 bytes)`` and jobs ``(number,
operation, args)`` (the operations of :class:`~streamer.server.runner.EngineRunner`);
engine to ingress, in lists: ``("opened", replica, node)``, ``("events", [Event])``,
``("stepped", processed samples, cpu s, step s, windows)`` (the step's CPU and
windows shared among its streams, its time sent with one of them), ``("done", number,
result, error)``, ``("progress", EnrollProgress)`` and ``("enrolled", Collector,
recorded s)``. The engine side of the worker pipe (:mod:`~streamer.server.workers`),
per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

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
        self._outboxes: dict[str, asyncio.Queue] = {}
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
        """Open ``stream_id`` with ``profiles``, serve it until its ``end_stream`` job (or
        until ``ingress``, the replica holding its connection, lets go of it)."""
        outbox: asyncio.Queue = asyncio.Queue()
        self._outboxes[stream_id] = outbox
        puller = None
        try:
            await self.runner.set_profiles(profiles)
            await self.runner.open_stream(stream_id)
            puller = asyncio.create_task(self._pull(stream_id, ingress, outbox))
            yield [("opened", self.replica, self.node)]
            while True:
                batch = [await outbox.get()]
                while not outbox.empty():
                    batch.append(outbox.get_nowait())
                if batch[-1] is None:  # the stream has ended
                    if len(batch) > 1:
                        yield batch[:-1]
                    return
                yield batch
        finally:
            if puller is not None:
                puller.cancel()
            del self._outboxes[stream_id]
            self._processed.pop(stream_id, None)
            if stream_id in self.runner.engine.streams:  # its ingress went away
                await self.runner.end_stream(stream_id)

    async def _pull(self, stream_id: str, ingress: str, outbox: asyncio.Queue) -> None:
        """Take the stream's audio and jobs from its ingress replica until it ends."""
        stream = self.runner.engine.streams[stream_id]
        ending = False
        feed = self._ingress.options(stream=True).feed.remote(stream_id, **{PINNED: ingress})
        try:
            async for messages in feed:
                for message in messages:
                    if message[0] == "audio":
                        stream.push(np.frombuffer(message[1], dtype=np.float32))
                        self.runner.wake()
                    else:
                        self._job(outbox, *message)
                        ending = ending or message[1] == "end_stream"
        except asyncio.CancelledError:
            feed.cancel()
            raise
        except ray.exceptions.RayError as exc:
            log.warning("stream %r: its ingress replica is gone (%r)", stream_id, exc)
        except Exception:
            log.exception("stream %r: taking its audio failed; closing it", stream_id)
        if not ending:  # the ingress let go of it
            outbox.put_nowait(None)

    def _job(self, outbox: asyncio.Queue, number: int, operation: str, args: tuple) -> None:
        runner = self.runner
        if operation == "enroll":
            stream_id = args[0]
            future = runner.enroll(
                *args,
                lambda progress: outbox.put_nowait(("progress", progress)),
                lambda collector, recorded_s: outbox.put_nowait(
                    ("enrolled", collector, recorded_s)
                ),
            )
            log.info("enrolling from stream %r", stream_id)
        else:
            future = getattr(runner, operation)(*args)

        def done(future: asyncio.Future) -> None:
            error = future.exception()
            result = None if error is not None else future.result()
            portable = None if error is None else _portable(error)
            outbox.put_nowait(("done", number, result, portable))
            if operation == "end_stream":
                outbox.put_nowait(None)

        future.add_done_callback(done)

    def _on_events(self, events: list[Event]) -> None:
        by_stream: dict[str, list[Event]] = {}
        for event in events:
            by_stream.setdefault(event.stream, []).append(event)
        for stream_id, mine in by_stream.items():
            outbox = self._outboxes.get(stream_id)
            if outbox is not None:
                outbox.put_nowait(("events", mine))

    def _stepped(self, cpu_s: float, step_s: float, windows: int) -> None:
        """Each stream the step moved on learns how far it is processed, with its share of
        the step (its time goes with one of them)."""
        new, self._windows = windows - self._windows, windows
        moved = []
        for stream_id, outbox in self._outboxes.items():
            stream = self.runner.engine.streams.get(stream_id)
            processed = None if stream is None else round(stream.time_s * stream.sample_rate)
            if processed is not None and processed != self._processed.get(stream_id):
                self._processed[stream_id] = processed
                moved.append((outbox, processed))
        for outbox, processed in moved:
            share = 1.0 / len(moved)
            outbox.put_nowait(("stepped", processed, cpu_s * share, step_s, new * share))
            step_s = None

    def _on_failure(self, exc: BaseException) -> None:
        log.error("engine replica %s failed: %r", self.replica, exc)

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine failed is replaced."""
        if self.runner.failure is not None:
            raise RuntimeError(f"engine replica {self.replica} failed: {self.runner.failure!r}")

    async def __del__(self) -> None:
        await self.runner.stop()
