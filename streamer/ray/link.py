"""A replica's side of the hub (:mod:`~streamer.ray.hub`): its events out, the others' in.

:class:`HubLink` is the replica's one connection to the hub actor. :class:`LinkedHub`
is the daemon's :class:`~streamer.server.hub.Hub` that also sends what the replica's
streams do to the hub, and shows the local subscribers what the other replicas'
streams do. :class:`ClusterStore` is the profile store as a replica sees it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import ray

from ..errors import ProfileError, StreamerError
from ..events import Event
from ..profiles import Profile, check_name
from ..server.hub import Hub, StreamState, dumps
from ..server.metrics import Metrics
from .hub import Message

log = logging.getLogger("streamer.ray")


class ClusterStore:
    """The cluster's profiles, read from a mirror the hub keeps current and written
    through the hub (which owns the files); the methods of
    :class:`~streamer.profiles.ProfileStore` that the daemon and enrollment use.

    Writes block on the hub: call them from the daemon's store thread, never the loop.
    """

    def __init__(self, hub, path: str) -> None:
        self._hub = hub
        self.path = Path(path)
        self.version = -1
        self._profiles: dict[str, Profile] = {}

    def mirror(self, version: int, profiles: dict[str, Profile]) -> bool:
        """Take the hub's profiles if they are newer; whether they were."""
        if version <= self.version:
            return False
        self.version, self._profiles = version, dict(profiles)
        return True

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def __contains__(self, name: str) -> bool:
        return check_name(name) in self._profiles

    def file(self, name: str) -> Path:
        return self.path / f"{check_name(name)}.json"

    def get(self, name: str) -> Profile:
        profile = self._profiles.get(check_name(name))
        if profile is None:
            known = ", ".join(self.names()) or "none"
            raise ProfileError(f"no profile named {name!r} in {self.path} (known: {known})")
        return profile

    def all(self) -> list[Profile]:
        return [self._profiles[name] for name in self.names()]

    def for_model(self, model: str) -> list[Profile]:
        return [p for p in self.all() if p.model == model]

    def save(self, profile: Profile) -> Path:
        self._write("save", profile)
        return self.file(profile.name)

    def remove(self, name: str) -> None:
        self._write("remove", name)

    def rename(self, old: str, new: str) -> None:
        self._write("rename", old, new)

    def _write(self, operation: str, *args) -> None:
        try:
            version, profiles = ray.get(self._hub.write.remote(operation, *args))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, StreamerError):
                raise exc.cause from None  # the store's own one-line error
            raise
        self.mirror(version, profiles)


class LinkedHub(Hub):
    """The daemon's hub, joined to the cluster: local streams' events and notices also go
    to the hub actor; the other replicas' arrive through :meth:`receive`."""

    def __init__(self, metrics: Metrics, link: HubLink) -> None:
        super().__init__(metrics)
        self._link = link

    def publish(self, events: list[Event]) -> None:
        super().publish(events)
        self._link.send(("events", [event.to_dict() for event in events]))

    def stream_started(self, state: StreamState) -> None:
        super().stream_started(state)
        self._link.send(("started", state.to_dict()))

    def stream_ended(self, stream_id: str, audio_s: float, reason: str) -> None:
        super().stream_ended(stream_id, audio_s, reason)
        self._link.send(("ended", stream_id, audio_s, reason))

    def receive(self, batch: list[Message]) -> None:
        """Another replica's messages, shown to this replica's subscribers."""
        for message in batch:
            kind = message[0]
            if kind == "events":
                for data in message[1]:
                    state = self.streams.get(data["stream"])
                    if state is not None:
                        state.update(data)
                    self._send(dumps(data), data["stream"])
            elif kind == "started":
                Hub.stream_started(self, StreamState(**message[1]))
            elif kind == "ended":
                Hub.stream_ended(self, *message[1:])


class HubLink:
    """One replica's connection to the hub actor.

    :meth:`send` queues a message; the queue goes to the hub once per turn of the event
    loop as one numbered batch (the hub restores their order). :meth:`run` receives the
    other replicas' batches until the hub or this replica goes away.
    """

    def __init__(self, hub, replica: str) -> None:
        self.hub = hub
        self.replica = replica
        self._outgoing: list[Message] = []
        self._number = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None

    def send(self, message: Message) -> None:
        if not self._outgoing:
            self._loop = self._loop or asyncio.get_running_loop()
            self._loop.call_soon(self._flush)
        self._outgoing.append(message)

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, []
        self.hub.relay.remote(self.replica, self._number, batch)
        self._number += 1

    async def claim(self, stream_id: str) -> bool:
        return await self.hub.claim.remote(self.replica, stream_id)

    async def release(self, stream_id: str) -> None:
        await self.hub.release.remote(stream_id)

    async def forward(self, connection: int, request) -> bool:
        """Send a request about another replica's stream there (see the hub)."""
        return await self.hub.forward.remote(self.replica, connection, request)

    def reply(self, replica: str, connection: int, message: dict) -> None:
        """A reply to a request another replica forwarded: to its client."""
        self.hub.reply.remote(replica, connection, message)

    def answer(self, number: int, value) -> None:
        """This replica's answer to the hub's question ``number``."""
        self.hub.answer.remote(number, self.replica, value)

    async def run(self, on_batch, ready: asyncio.Future) -> None:
        """Feed ``on_batch`` every batch the hub sends; ``ready`` is resolved after the first
        (the open streams and the profiles)."""
        held = self.hub.hold.remote(self.replica)  # never returns while this replica lives
        try:
            async for ref in self.hub.attach.remote(self.replica, [held]):
                await on_batch(await ref)
                if not ready.done():
                    ready.set_result(None)
        except Exception as exc:
            self.failure = exc
            log.error("replica %s lost the hub: %r", self.replica, exc)
            if not ready.done():
                ready.set_exception(exc)
        else:
            self.failure = ConnectionError("the hub closed this replica's feed")


@dataclass(frozen=True)
class RemoteClient:
    """A client of another replica whose request this replica does: the requester of an
    enrollment or a promote, answered through the hub."""

    link: HubLink
    replica: str
    connection: int

    def reply(self, message: dict) -> None:
        self.link.reply(self.replica, self.connection, message)
