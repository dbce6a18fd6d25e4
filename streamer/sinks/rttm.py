"""Identity segments as RTTM (``SPEAKER`` lines), the format diarization scorers read."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..events import Event, final_segments
from . import AtomicFile, AtomicSink

_SPACE = re.compile(r"\s+")

MERGE_GAP_S = 0.5
"""Default longest pause inside one speaker's RTTM segment (diarization's
``min_duration_off``): reference turns run through a speaker's short pauses."""


def merge_gaps(
    segments: Iterable[tuple[float, float, str]], max_gap_s: float
) -> list[tuple[float, float, str]]:
    """Sorted segments, with consecutive segments of one label that are at most
    ``max_gap_s`` apart joined into one (``0``: only touching or overlapping ones)."""
    merged: list[tuple[float, float, str]] = []
    for start, end, label in sorted(segments):
        if merged and merged[-1][2] == label and start - merged[-1][1] <= max_gap_s:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), label)
        else:
            merged.append((start, end, label))
    return merged


def _field(text: str) -> str:
    """RTTM fields are split on whitespace: a name like ``Mary Ann`` becomes ``Mary_Ann``."""
    return _SPACE.sub("_", text.strip()) or "_"


def format_rttm(file_id: str, segments: Iterable[tuple[float, float, str]]) -> str:
    """RTTM text for ``(start_s, end_s, label)`` segments, sorted by start.

    One line per segment: ``SPEAKER <file-id> 1 <start> <duration> <NA> <NA> <label>
    <NA> <NA>``, times in seconds with three decimals. Segments shorter than a
    millisecond are left out; whitespace in the file id and labels becomes ``_``.
    """
    file_id = _field(file_id)
    lines = []
    for start, end, label in sorted(segments):
        duration = round(end - start, 3)
        if duration <= 0:
            continue
        lines.append(
            f"SPEAKER {file_id} 1 {start:.3f} {duration:.3f} <NA> <NA> {_field(label)} <NA> <NA>\n"
        )
    return "".join(lines)


class RttmSink(AtomicSink):
    """Collects ``segment`` events and writes them as RTTM when closed, a speaker's
    segments less than ``merge_gap_s`` apart joined (:func:`merge_gaps`). A corrected
    ``segment`` (one with a ``previous`` label) replaces the segment of its span, so the
    file holds the repaired labels.

    The output is written atomically (:class:`~streamer.sinks.AtomicFile`): by
    :meth:`close`; :meth:`discard` (or leaving a ``with`` block by an exception) leaves
    any old ``path`` untouched.
    """

    def __init__(self, path: str | Path, file_id: str, merge_gap_s: float = MERGE_GAP_S) -> None:
        self.path = Path(path)
        self.file_id = file_id
        self.merge_gap_s = merge_gap_s
        self._events: list[Event] = []  # its segment events, corrections included
        self.written = 0  # RTTM lines written by close()
        self._out = AtomicFile(self.path, "RTTM")

    def write(self, event: Event) -> None:
        if event.type == "segment" and event.label is not None:
            self._events.append(event)

    @property
    def segments(self) -> list[tuple[float, float, str]]:
        """The segments so far, with corrections applied."""
        return final_segments(self._events)

    def close(self) -> None:
        """Write the RTTM (empty when there were no segments) and put it in place."""
        if not self._out.open:
            return
        text = format_rttm(self.file_id, merge_gaps(self.segments, self.merge_gap_s))
        self._out.commit(text.encode("utf-8"))
        self.written = text.count("\n")
