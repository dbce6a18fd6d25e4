"""Admission control: the daemon takes a new stream only while it has the headroom for it.

The capacity starts from a measurement made at start-up (each engine times a full
encoder batch: :func:`~streamer.server.runner.stream_cost_s`) and, once streams run,
follows what they really cost: an engine with ``n`` streams using a share ``u`` of its
core holds about ``n * TARGET_UTILISATION / u``. A new stream is refused with ``busy``
(close 1013) once the streams open reach that, or while any stream is lagging (its
events come later than :data:`LAGGING_S` after its audio: the machine does not give the
engines the time they need) — before the admitted streams fall behind.
"""

from __future__ import annotations

import math

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

    @property
    def max_streams(self) -> int:
        """``limits.max_streams``, or (by default) the start-up estimate of the capacity."""
        if self.limits.max_streams is not None:
            return self.limits.max_streams
        return self.startup_capacity()

    def startup_capacity(self) -> int:
        return max(1, sum(math.floor(TARGET_UTILISATION / c) for c in self._costs if c > 0))

    def capacity(self) -> int:
        """Real-time streams the engines hold about, from their load now where measured."""
        total = 0.0
        for runner, cost in zip(self.runners, self._costs, strict=False):
            n, used = runner.stream_count, runner.load.utilisation()
            if n >= MEASURED_FROM_STREAMS and used > 0:
                total += n * TARGET_UTILISATION / used
            else:
                total += TARGET_UTILISATION / cost if cost > 0 else 0
        return max(1, math.floor(total))

    def least_loaded(self):
        return min(self.runners, key=lambda r: (r.stream_count, r.load.utilisation()))

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
        capacity = min(self.capacity(), self.max_streams)
        lagging = [s.id for s in self.sessions.values() if s.lagging]
        if open_now >= capacity or lagging:
            why = f" (stream {lagging[0]!r} is lagging)" if lagging else ""
            raise ProtocolError(
                "busy",
                f"the daemon is at its capacity of about {capacity} real-time streams on "
                f"this machine{why}; try again later, or add cores (--workers)",
            )
