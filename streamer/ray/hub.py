"""The cluster's hub: one named Ray actor that relays events and owns the profile store.

Every replica holds one link to it (:mod:`~streamer.ray.link`):

- **Events.** A replica sends what its streams did — event batches, stream started,
  stream ended — as numbered batches (:meth:`ClusterHub.relay`); the hub puts each
  batch, in order, in the queue of every other replica, and each replica receives its
  queue as one long-running Ray streaming generator (:meth:`ClusterHub.attach`). Push,
  never polling: a batch reaches the other replicas within milliseconds. A stream's
  events come from its one replica and keep their order on the way.
- **Profiles.** The store's files live on the hub's node (pinned to the head node by
  :func:`~streamer.ray.deploy.start_hub`). Writes — enroll, promote, rename, remove —
  come here, run one at a time in the store's own thread, and after each the hub sends
  every replica the whole new set of profiles with a version number. Consistency rule:
  writes are serialised here and atomic on disk (``ProfileStore.save``); a replica reads
  its own write at once and every other replica has it as soon as the broadcast arrives
  (milliseconds, well within a second); two writes to one profile: the later wins.
  Files changed behind the hub's back (``streamer enroll`` into the same folder) are
  seen after the next write or a restart of the hub.
- **Requests about another replica's stream.** ``enroll``, ``cancel`` and ``promote``
  may name a stream held by another replica (the web page's control connection lands
  on any replica): :meth:`ClusterHub.forward` hands the request to the stream's replica,
  which does it as its own and sends each reply back (:meth:`ClusterHub.reply`) to the
  asking client's replica.
- **Questions.** :meth:`ClusterHub.ask` puts one question (``health``, ``metrics``) in
  every replica's queue and gathers their answers (:meth:`ClusterHub.answer`), so
  ``/healthz`` and ``/metrics`` on any replica cover the whole cluster.
- **Replica deaths.** Each replica hands the hub the result of a call it owns that never
  returns (:meth:`ClusterHub.hold`); when the replica's process dies Ray fails that
  object with ``OwnerDiedError``, and the hub ends the replica's streams for every
  subscriber with the reason :data:`REPLICA_DIED`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import ProfileError
from ..profiles import Profile, ProfileStore
from ..server.hub import StreamState

log = logging.getLogger("streamer.ray")

HUB_NAME = "streamer-hub"
NAMESPACE = "streamer"
REPLICA_DIED = "its replica died; reconnect to get another one"
HEAD_RESOURCE = "node:__internal_head__"

Message = tuple
"""What travels between replicas and the hub: ``("events", [event dicts])``,
``("started", state dict)``, ``("ended", stream, audio_s, reason)``,
``("profiles", version, {name: Profile})``, ``("ask", number, question)``,
``("request", replica, connection, Request)`` (do it; the replies go to that replica's
connection) and ``("reply", connection, message)``."""
ANSWER_TIMEOUT_S = 2.0


class ClusterHub:
    """The body of the hub actor (``ray.remote`` is applied in :mod:`~streamer.ray.deploy`)."""

    def __init__(self, profiles_path: str) -> None:
        self.store = ProfileStore(profiles_path)
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="streamer-store")
        self._queues: dict[str, asyncio.Queue] = {}
        self._holds: dict[str, asyncio.Event] = {}
        self._expected: dict[str, int] = {}  # the next batch number from each replica
        self._early: dict[str, dict[int, list[Message]]] = {}
        self.streams: dict[str, tuple[str, StreamState, float]] = {}  # id: (replica, state, s)
        self.version = 0
        self.profiles: dict[str, Profile] = {}
        self._loaded = False
        self._questions = itertools.count()
        self._answers: dict[int, tuple[dict, asyncio.Event]] = {}

    # Replicas

    async def hold(self, replica: str) -> None:
        """Never returns while the replica lives (see the module docstring)."""
        self._holds.setdefault(replica, asyncio.Event())
        await self._holds[replica].wait()

    async def attach(self, replica: str, held: list):
        """A replica's feed: the open streams first, then every batch of the others."""
        await self._load()
        queue: asyncio.Queue = asyncio.Queue()  # from here on, nothing is missed
        self._queues[replica] = queue
        self._expected[replica] = 0
        self._early[replica] = {}
        asyncio.get_running_loop().create_task(self._watch(replica, held[0]))
        yield [("profiles", self.version, self.profiles)] + [
            ("started", state.to_dict()) for _, state, _ in self.streams.values()
        ]
        while True:
            batch = await queue.get()
            if batch is None:
                return
            while not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    return
                batch = batch + more
            yield batch

    async def _watch(self, replica: str, held) -> None:
        try:
            await held
        except Exception as exc:
            log.warning("replica %s is gone (%s)", replica, type(exc).__name__)
        self._detach(replica)

    def _detach(self, replica: str) -> None:
        queue = self._queues.pop(replica, None)
        if queue is not None:
            queue.put_nowait(None)
        hold = self._holds.pop(replica, None)
        if hold is not None:
            hold.set()
        self._expected.pop(replica, None)
        self._early.pop(replica, None)
        orphans = [s for s, (owner, _, _) in self.streams.items() if owner == replica]
        if orphans:
            self._fan_out(None, [("ended", s, self.streams[s][2], REPLICA_DIED) for s in orphans])
            for stream_id in orphans:
                del self.streams[stream_id]

    # Events

    async def claim(self, replica: str, stream_id: str) -> bool:
        """Reserve a stream id for a replica; False if a stream has it already."""
        if stream_id in self.streams:
            return False
        self.streams[stream_id] = (replica, StreamState(stream_id, "", "", time.time()), 0.0)
        return True

    async def release(self, stream_id: str) -> None:
        """Give back a claimed id whose stream never started."""
        self.streams.pop(stream_id, None)

    async def relay(self, replica: str, number: int, batch: list[Message]) -> None:
        """Batch ``number`` of a replica's messages: to every other replica, in order."""
        if replica not in self._expected:
            return  # from a replica already declared dead
        early = self._early[replica]
        early[number] = batch
        while self._expected[replica] in early:
            batch = early.pop(self._expected[replica])
            self._expected[replica] += 1
            self._track(replica, batch)
            self._fan_out(replica, batch)

    def _track(self, replica: str, batch: list[Message]) -> None:
        """Keep every stream's state, for replicas that attach later."""
        for message in batch:
            kind = message[0]
            if kind == "events":
                for event in message[1]:
                    entry = self.streams.get(event["stream"])
                    if entry is not None:
                        entry[1].update(event)
                        self.streams[event["stream"]] = (replica, entry[1], event["emitted_at"])
            elif kind == "started":
                state = StreamState(**message[1])
                self.streams[state.stream] = (replica, state, 0.0)
            elif kind == "ended":
                self.streams.pop(message[1], None)

    def _fan_out(self, origin: str | None, batch: list[Message]) -> None:
        for replica, queue in self._queues.items():
            if replica != origin:
                queue.put_nowait(batch)

    # Requests about another replica's stream

    async def forward(self, origin: str, connection: int, request) -> bool:
        """A client's request about a stream of another replica (a
        :class:`~streamer.server.protocol.Request` naming it): to that replica; False if
        no replica holds the stream."""
        entry = self.streams.get(request.stream)
        queue = self._queues.get(entry[0]) if entry is not None else None
        if queue is None or entry[0] == origin:
            return False
        queue.put_nowait([("request", origin, connection, request)])
        return True

    async def reply(self, origin: str, connection: int, message: dict) -> None:
        """A reply to a forwarded request: to the asking client's replica."""
        queue = self._queues.get(origin)
        if queue is not None:
            queue.put_nowait([("reply", connection, message)])

    async def cluster(self) -> dict:
        """Replicas and their open streams (``/healthz``)."""
        per_replica = {replica: 0 for replica in self._queues}
        for owner, _, _ in self.streams.values():
            per_replica[owner] = per_replica.get(owner, 0) + 1
        return {"replicas": len(self._queues), "streams": per_replica}

    async def ask(self, question: str) -> dict:
        """Every replica's answer to ``question``, by replica; one that has not answered
        within :data:`ANSWER_TIMEOUT_S` is left out."""
        number = next(self._questions)
        answers: dict = {}
        done = asyncio.Event()
        self._answers[number] = (answers, done)
        self._fan_out(None, [("ask", number, question)])
        if self._queues:
            try:
                await asyncio.wait_for(done.wait(), ANSWER_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("no answer to %r from %s", question, set(self._queues) - set(answers))
        del self._answers[number]
        return answers

    async def answer(self, number: int, replica: str, value) -> None:
        """A replica's answer to question ``number``."""
        entry = self._answers.get(number)
        if entry is not None:
            entry[0][replica] = value
            if set(self._queues) <= set(entry[0]):
                entry[1].set()

    # Profiles

    async def _in_store(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, fn, *args)

    def _read_all(self) -> dict[str, Profile]:
        profiles = {}
        for name in self.store.names():
            try:
                profiles[name] = self.store.get(name)
            except ProfileError as exc:
                log.warning("skipping a profile: %s", exc)
        return profiles

    async def _load(self) -> None:
        if not self._loaded:
            await self._in_store(self.store.remove_orphans)  # a write cut short earlier
            self.profiles = await self._in_store(self._read_all)
            self._loaded = True

    async def write(self, operation: str, *args) -> tuple[int, dict[str, Profile]]:
        """``save``, ``remove`` or ``rename`` on the store; every replica gets the new
        profiles. Returns them (and their version) to the writer."""
        if operation not in ("save", "remove", "rename"):
            raise ProfileError(f"unknown profile store operation {operation!r}")
        await self._load()
        try:
            await self._in_store(getattr(self.store, operation), *args)
        finally:
            self.profiles = await self._in_store(self._read_all)
            self.version += 1
            self._fan_out(None, [("profiles", self.version, self.profiles)])
        return self.version, self.profiles

    async def path(self) -> str:
        return str(self.store.path)


def start_hub(profiles: str):
    """The hub actor: the running one, else a new one on the head node, whose store is
    the folder ``profiles`` there (the first to start it picks the folder)."""
    head = next(
        (n["NodeID"] for n in ray.nodes() if n["Alive"] and HEAD_RESOURCE in n["Resources"]),
        None,
    )
    strategy = NodeAffinitySchedulingStrategy(head, soft=False) if head else "DEFAULT"
    actor = ray.remote(ClusterHub).options(
        name=HUB_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=10_000,
        scheduling_strategy=strategy,
    )
    return actor.remote(profiles)
