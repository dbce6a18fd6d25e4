"""Admission control: the daemon takes a new stream only while it has the headroom for it.

The capacity starts from a measurement made at start-up (each engine times a full
encoder batch: :func:`~streamer.server.runner.stream_cost_s`, which errs low) and, once
streams run, follows what they really cost: an engine whose ``n`` settled streams (open
for the whole span its load is measured over) use a share ``u`` of its core holds about
``n * TARGET_UTILISATION / u``. Streams newer than that span add load ``u`` has not yet
fully seen, so they count for nothing in ``n``: a burst of new streams is admitted at
the start-up estimate and the rest once their cost has been measured. A new stream is
refused with ``busy`` (close 1013) once the streams open reach that, or while any
stream is lagging (its events come later than :data:`LAGGING_S` after its audio: the
machine does not give the engines the time they need) — before the admitted streams
fall behind.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable

from ..errors import ProtocolError
from .options import ServerLimits

TARGET_UTILISATION = 0.8
"""The share of its core an engine may be kept busy with (the rest absorbs bursts:
every stream turning to speech at once, a profile change)."""
MEASURED_FROM_STREAMS = 4
"""An engine's measured load counts once it has this many streams (fewer: start-up's)."""


class Admission:
    """Which engine a new stream goes to, and whether it may open at all."""

    def __init__(self, limits: ServerLimits, sessions: dict, runners: list) -> None:
        self.limits = limits
        self.sessions = sessions
        self.runners = runners
        self.enabled = True
        self._costs: list[float] = []  # engine s per stream s, per runner (start-up)

    def calibrated(self, costs: list[float]) -> None:
        self._costs = list(costs)

    def capacity(self) -> int:
        """Real-time streams the engines hold about, from their load now where measured."""
        now = time.monotonic()
        total = 0.0
        for runner, cost in zip(self.runners, self._costs, strict=False):
            span_s = runner.load.span_s
            settled = sum(
                1
                for s in self.sessions.values()
                if s.runner is runner and now - s.started >= span_s
            )
            used = runner.load.utilisation()
            if settled >= MEASURED_FROM_STREAMS and used > 0:
                total += settled * TARGET_UTILISATION / used
            elif cost > 0:
                total += TARGET_UTILISATION / cost
        return max(1, math.floor(total))

    def least_loaded(self, opening: Iterable = ()):
        """The runner with the fewest streams, counting those still being opened on it
        (``opening``: their runners), so that a burst of streams is spread out too."""
        pending = Counter(id(runner) for runner in opening)
        return min(
            self.runners,
            key=lambda r: (r.stream_count + pending[id(r)], r.load.utilisation()),
        )

    def check(self, opening: int) -> None:
        """Raise ``limit`` or ``busy`` if one more stream may not open now."""
        open_now = len(self.sessions) + opening
        limit = self.limits.max_streams
        if limit is not None and open_now >= limit:
            raise ProtocolError(
                "limit",
                f"the daemon has {limit} streams open, its limit; try again later or raise "
                "--max-streams",
            )
        if not self.enabled:
            return
        capacity = self.capacity()
        lagging = [s.id for s in self.sessions.values() if s.lagging]
        if open_now >= capacity or lagging:
            why = f" (stream {lagging[0]!r} is lagging)" if lagging else ""
            raise ProtocolError(
                "busy",
                f"the daemon is at its capacity of about {capacity} real-time streams on "
                f"this machine{why}; try again later, or add cores (--workers)",
            )
