"""Events out: per-client outboxes, subscribers, and the state a new subscriber is shown.

Every message to a client goes through its :class:`Outbox`, written by one task, so a
client's messages keep their order and nobody waits on a slow client: the worker
hands events to the loop, the loop appends them to each subscriber's outbox (never
blocking), and each outbox's task writes to its own socket at that client's pace.

Overflow policy (see also ``ServerLimits.subscriber_queue_events``): a subscriber whose
outbox holds ``subscriber_queue_events`` unsent events loses the newer ones — counted,
never blocking anyone — and once it has caught up it receives
``{"type": "dropped", "count": N}`` and then a fresh ``snapshot``. Replies to a client's
own requests are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from ..events import Event
from .metrics import Metrics

log = logging.getLogger("streamer.server")

MAX_UNSENT_REPLIES = 1024
"""A client that lets this many replies pile up unread is disconnected (1008)."""


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


class Outbox:
    """One client's messages, sent in order by one task."""

    def __init__(self, websocket, max_events: int, on_dropped: Callable[[], None]) -> None:
        self._ws = websocket
        self._max_events = max_events
        self._on_dropped = on_dropped
        self._items: deque[tuple[str, bool]] = deque()  # (text, is an event)
        self._events = 0  # events in _items
        self._unreported = 0  # dropped since the last "dropped" notice
        self.dropped = 0
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task | None = None
        self.snapshot: Callable[[], dict] | None = None  # set when the client subscribes

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def flush(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until everything queued so far has been written."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)

    def reply(self, message: dict) -> None:
        """A message the client asked for (or an error): never dropped."""
        if len(self._items) - self._events >= MAX_UNSENT_REPLIES:
            log.warning("a client does not read its replies; disconnecting it")
            asyncio.ensure_future(self._ws.close(1008, "too many unread replies"))
            return
        self._append(dumps(message), False)

    def event(self, text: str) -> None:
        """An event (JSON text): dropped if this client is too far behind."""
        if self._events >= self._max_events:
            self.dropped += 1
            self._unreported += 1
            self._on_dropped()
            return
        self._events += 1
        self._append(text, True)

    def _append(self, text: str, is_event: bool) -> None:
        if self._task is not None and self._task.done():
            return  # the client has gone
        self._items.append((text, is_event))
        self._empty.clear()
        self._ready.set()

    async def _run(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._items:
                    text, is_event = self._items.popleft()
                    if is_event:
                        self._events -= 1
                    await self._ws.send(text)
                    if self._unreported and not self._events:
                        count, self._unreported = self._unreported, 0
                        await self._ws.send(dumps({"type": "dropped", "count": count}))
                        if self.snapshot is not None:
                            await self._ws.send(dumps(self.snapshot()))
                self._empty.set()
        except ConnectionClosed:
            self._items.clear()
            self._empty.set()


@dataclass
class StreamState:
    """What a subscriber that joins now needs to know about a stream."""

    stream: str
    source: str  # "websocket" or "microphone"
    audio: str  # what the source sends, e.g. "44100 Hz int16 x2"
    started_at: float  # unix time
    in_speech: bool = False
    speaker: dict | None = None  # the latest ``speaker`` event of the open speech region

    def to_dict(self) -> dict:
        return {
            "stream": self.stream,
            "source": self.source,
            "audio": self.audio,
            "started_at": round(self.started_at, 3),
            "in_speech": self.in_speech,
            "speaker": self.speaker,
        }

    def update(self, event: dict) -> None:
        if event["type"] == "speech_start":
            self.in_speech, self.speaker = True, None
        elif event["type"] == "speech_end":
            self.in_speech, self.speaker = False, None
        elif event["type"] == "speaker":
            self.speaker = event


class Subscriber:
    def __init__(self, outbox: Outbox, streams: frozenset[str] | None) -> None:
        self.outbox = outbox
        self.streams = streams  # None: every stream

    def wants(self, stream_id: str | None) -> bool:
        return stream_id is None or self.streams is None or stream_id in self.streams


class Hub:
    """The subscribers, the open streams' state, and the known profiles (all on the loop)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.subscribers: set[Subscriber] = set()
        self.streams: dict[str, StreamState] = {}
        self.profiles: list[dict] = []

    def subscribe(self, outbox: Outbox, streams: frozenset[str] | None) -> Subscriber:
        """Send ``outbox`` the snapshot now and the matching events from now on."""
        subscriber = Subscriber(outbox, streams)
        outbox.snapshot = lambda: self.snapshot(subscriber)
        outbox.reply(self.snapshot(subscriber))
        self.subscribers.add(subscriber)
        self._metrics.subscribers.set(len(self.subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            self.subscribers.discard(subscriber)
            self._metrics.subscribers.set(len(self.subscribers))

    def snapshot(self, subscriber: Subscriber) -> dict:
        return {
            "type": "snapshot",
            "time": round(time.time(), 3),
            "streams": [s.to_dict() for s in self.streams.values() if subscriber.wants(s.stream)],
            "profiles": self.profiles,
        }

    def publish(self, events: list[Event]) -> None:
        """Tracker events, in order, to every subscriber that wants their stream."""
        for event in events:
            data = event.to_dict()
            state = self.streams.get(event.stream)
            if state is not None:
                state.update(data)
            self._metrics.events.labels(event.type).inc()
            self._send(dumps(data), event.stream)

    def notice(self, message: dict, stream_id: str | None = None) -> None:
        """A daemon message (stream started or ended, profiles changed) to the subscribers."""
        self._send(dumps(message), stream_id)

    def _send(self, text: str, stream_id: str | None) -> None:
        for subscriber in self.subscribers:
            if subscriber.wants(stream_id):
                subscriber.outbox.event(text)

    def stream_started(self, state: StreamState) -> None:
        self.streams[state.stream] = state
        self.notice({"type": "stream_started", **state.to_dict()}, state.stream)

    def stream_ended(self, stream_id: str, audio_s: float, reason: str) -> None:
        self.streams.pop(stream_id, None)
        message = {
            "type": "stream_ended",
            "stream": stream_id,
            "audio_s": round(audio_s, 3),
            "reason": reason,
        }
        self.notice(message, stream_id)

    def set_profiles(self, profiles: list[dict]) -> None:
        self.profiles = profiles
        self.notice({"type": "profiles", "profiles": profiles})
