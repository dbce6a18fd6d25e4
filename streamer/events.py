"""Events the tracker emits; the daemon sends the same objects as JSON (``docs/events.md``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

SCHEMA_VERSION = 3
UNKNOWN = "unknown"

EVENT_TYPES = ("speech_start", "speech_end", "speaker", "change", "segment")
"""
- ``speech_start``: speech began at ``start_s`` (``end_s == start_s``).
- ``speech_end``: the speech region ``[start_s, end_s]`` ended; silence follows.
- ``speaker``: ``label`` is speaking since ``start_s``; decided at ``end_s``.
- ``change``: the speaker changed from ``previous`` to ``label`` at ``start_s``.
- ``segment``: a finished identity segment ``[start_s, end_s]`` with its mean score; one
  with a ``previous`` label is a correction: the segment of that span, relabelled.
"""


@dataclass(frozen=True)
class Event:
    """One tracker event. Times are seconds of stream audio since the stream started.

    ``emitted_at`` is the stream audio time at which the event was decided, so
    ``emitted_at - start_s`` is the algorithmic latency whether audio arrives in real
    time or faster.
    """

    type: str
    stream: str
    start_s: float
    end_s: float
    emitted_at: float
    label: str | None = None
    score: float | None = None
    previous: str | None = None

    def to_dict(self) -> dict:
        """The JSON object of the current schema version (``docs/events.md``)."""
        data = {"v": SCHEMA_VERSION, **asdict(self)}
        for key in ("start_s", "end_s", "emitted_at"):
            data[key] = round(data[key], 3)
        if data["score"] is not None:
            data["score"] = round(data["score"], 4)
        return data


def final_segments(events: Iterable[Event]) -> list[tuple[float, float, str]]:
    """``(start_s, end_s, label)`` of the ``segment`` events, in the order they first
    came, each with its latest label: a correction (a ``segment`` with a ``previous``)
    relabels the segment of the same span."""
    labels: dict[tuple[float, float], str] = {}
    for event in events:
        if event.type == "segment" and event.label is not None:
            labels[event.start_s, event.end_s] = event.label
    return [(start, end, label) for (start, end), label in labels.items()]
