"""An open stream in the daemon: its engine stream, where its audio comes from, its enrollment."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import AudioError
from ..sources.websocket import FrameDecoder
from ..worker import Stream
from .metrics import Metrics
from .runner import EngineRunner

LAGGING_S = 1.0
"""A stream whose events come later than this after their audio is lagging (it gets a
``lagging`` notice, the daemon takes no new stream until it has caught up)."""
NOTICE_EVERY_S = 5.0


class PushClock:
    """When each stretch of a stream's audio arrived (wall clock), to time its events.

    An event's *decisive audio* is the sample at its ``emitted_at``: the tracker could not
    decide it before hearing that sample. :meth:`arrival` tells when the push that
    brought it in arrived.
    """

    def __init__(self, sample_rate: int, max_entries: int = 8192) -> None:
        self._rate = sample_rate
        self._pushes: deque[tuple[int, float]] = deque(maxlen=max_entries)  # (end, time)
        self._lock = threading.Lock()  # a microphone pushes from its audio thread

    def pushed(self, end_sample: int, at: float) -> None:
        with self._lock:
            self._pushes.append((end_sample, at))

    def arrival(self, time_s: float) -> float | None:
        """``time.monotonic()`` when the audio at ``time_s`` arrived (queries in time order)."""
        sample = round(time_s * self._rate)
        with self._lock:
            # Later queries never look further back, so earlier pushes can go.
            while len(self._pushes) > 1 and self._pushes[0][0] < sample:
                self._pushes.popleft()
            if self._pushes and self._pushes[0][0] >= sample:
                return self._pushes[0][1]
        return None


class Requester(Protocol):
    """Where a request's replies go: a client's :class:`~streamer.server.hub.Outbox`, or
    a client of another replica of a cluster."""

    def reply(self, message: dict) -> None: ...


@dataclass
class Enrollment:
    """A live enrollment of a stream: who asked, for which name, and how to answer."""

    name: str
    seconds: float
    force: bool
    requester: Requester
    request_id: object = None
    start_s: float = 0.0
    started: bool = False  # enroll_started was sent
    finished: bool = False  # done or cancelled

    def reply(self, message: dict) -> None:
        if self.request_id is not None:
            message["id"] = self.request_id
        self.requester.reply(message)


class Session:
    """One audio stream open in the engine.

    ``decoder`` is set for websocket streams (``None`` for the microphone, which
    converts in its own callback). Only the loop pushes a websocket stream's audio; a
    microphone pushes from its audio thread (:meth:`push_nowait`).
    """

    def __init__(
        self,
        stream: Stream,
        source: str,
        owner: int | None,
        runner: EngineRunner,
        metrics: Metrics,
        decoder: FrameDecoder | None = None,
    ) -> None:
        self.stream = stream
        self.id = stream.id
        self.source = source
        self.owner = owner  # the connection that streams it (None: the microphone)
        self.decoder = decoder
        self.clock = PushClock(stream.sample_rate)
        self.enrollment: Enrollment | None = None
        self.closing = False
        self.dropped_samples = 0  # microphone audio lost to a full buffer
        self.started = time.monotonic()
        self.pushed = 0  # samples pushed (at the model's rate)
        self.lag_s = 0.0  # how late its latest event was (arrival of its audio -> event)
        self.lagging = False
        self._noticed = -math.inf  # monotonic time of the last lagging notice
        self.runner = runner
        self._metrics = metrics

    @property
    def audio_s(self) -> float:
        """Seconds of audio received (at the model's rate)."""
        return self.pushed / self.stream.sample_rate

    def observe_lag(self, lag_s: float, now: float) -> bool:
        """Record an event's lag; whether the stream is newly lagging (or still lagging
        and growing) and due a ``lagging`` notice (at most one per :data:`NOTICE_EVERY_S`)."""
        growing = lag_s > self.lag_s
        self.lag_s = lag_s
        # A client sending faster than real time (a file) waits for the engine by design.
        live = self.audio_s <= 1.2 * (now - self.started) + 1.0
        if lag_s < LAGGING_S / 2 or not live:
            self.lagging = False
        elif lag_s > LAGGING_S:
            self.lagging = True
        if self.lagging and growing and now - self._noticed >= NOTICE_EVERY_S:
            self._noticed = now
            return True
        return False

    async def push(self, samples: np.ndarray, max_backlog_s: float) -> None:
        """Push audio, first waiting (backpressure) while the stream's backlog is too long."""
        limit = max(1, int(max_backlog_s * self.stream.sample_rate))
        for start in range(0, len(samples), limit):
            piece = samples[start : start + limit]
            waited = False
            while (
                self.stream.pending_samples
                and self.stream.pending_samples + len(piece) > limit
                and self.runner.failure is None
            ):
                waited = True
                await self.runner.until_stepped()
            if waited:
                self._metrics.backpressure.inc()
            self._push(piece)

    def push_nowait(self, samples: np.ndarray) -> None:
        """Push from a source that cannot wait (a microphone callback): drop on overflow."""
        try:
            self._push(samples)
        except AudioError:
            self.dropped_samples += len(samples)
            self._metrics.mic_dropped_s.inc(len(samples) / self.stream.sample_rate)

    def _push(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self.stream.push(samples)
        self.pushed += len(samples)
        self.clock.pushed(self.pushed, time.monotonic())
        self._metrics.audio_s.inc(len(samples) / self.stream.sample_rate)
        self.runner.wake()

    def status(self) -> dict:
        rate = self.stream.sample_rate
        return {
            "stream": self.id,
            "source": self.source,
            "audio_s": round(self.audio_s, 3),
            "processed_s": round(self.stream.time_s, 3),
            "backlog_s": round(self.stream.pending_samples / rate, 3),
            "enrolling": self.enrollment.name if self.enrollment else None,
            "dropped_s": round(self.dropped_samples / rate, 3),
            "lag_s": round(self.lag_s, 3),
            "lagging": self.lagging,
        }


def disconnect_reason(close_code: int | None, close_reason: str | None) -> str:
    """Why a stream ended with its connection (the log and ``stream_ended`` say it)."""
    if close_code in (None, 1006):
        return "its client disconnected (the connection was lost, no close frame)"
    if close_code == 1011 and close_reason:
        return f"its connection was closed ({close_reason})"
    said = f": {close_reason}" if close_reason else ""
    return f"its client disconnected (close code {close_code}{said})"
