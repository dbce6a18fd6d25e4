"""The tracker: speech regions and window embeddings in, identity events out (sans-I/O).

Each window that is mostly speech of the current speech region is scored against the
enrolled profiles (cosine similarity of unit vectors). A window votes for a name when
its best score clears ``accept_score`` with a ``margin`` over the runner-up, for
``unknown`` when no profile reaches ``reject_score``, and abstains in between. The
label of a region is decided by the first vote; afterwards a different label must win
``confirm_windows`` consecutive votes before the tracker reports a change, so one
ambiguous window never makes the label flicker. A change is dated back to where the
new voice most likely began.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import UNKNOWN, Event
from .vad import GateUpdate


@dataclass(frozen=True)
class TrackerOptions:
    """Decision thresholds and smoothing.

    Attributes:
        accept_score: cosine similarity to a profile that a segment (the mean of its
            windows) needs to take that profile's name.
        reject_score: a segment whose best score is below this is ``unknown`` at once;
            between the two scores the label waits for more windows.
        max_undecided: windows a segment may stay undecided before it is ``unknown``.
        margin: the best profile must beat the runner-up by this much.
        window_accept_score: the same bar for one window's vote, used to spot a change.
        same_score: a window this similar to the current segment's mean continues it.
        min_region_s: a window must overlap the current speech region by this many
            seconds to count (so the previous speaker's tail does not decide a new region).
        confirm_windows: consecutive deviating windows that make a change.
        change_lag_s: how far before the end of the first deviating window the change
            is dated (the encoder weighs the end of its window most).
    """

    accept_score: float = 0.75
    reject_score: float = 0.68
    max_undecided: int = 4
    margin: float = 0.03
    window_accept_score: float = 0.75
    same_score: float = 0.8
    min_region_s: float = 0.6
    confirm_windows: int = 2
    change_lag_s: float = 1.1


class Tracker:
    """Live identity of one stream. Feed it gate updates and windows in time order."""

    def __init__(
        self, stream_id: str, options: TrackerOptions, profiles: dict[str, np.ndarray]
    ) -> None:
        self.stream = stream_id
        self.options = options
        self.set_profiles(profiles)
        self.in_region = False
        self.region_start_s = 0.0
        self.label: str | None = None  # label of the open segment
        self.last_label: str | None = None  # last label of the stream (across regions)
        self.segment_start_s = 0.0
        self._sum: np.ndarray | None = None  # sum of the open segment's window vectors
        self._windows = 0  # windows in the open segment
        self._score = 0.0
        self._pending: list = []  # deviating windows not yet confirmed as a change

    def set_profiles(self, profiles: dict[str, np.ndarray]) -> None:
        self.names = list(profiles)
        dim = len(next(iter(profiles.values()))) if profiles else 0
        self._matrix = np.array([profiles[n] for n in self.names], dtype=np.float32).reshape(
            len(self.names), dim
        )

    # Inputs

    def gate(self, update: GateUpdate, now_s: float) -> list[Event]:
        events: list[Event] = []
        if update.ended is not None:
            events += self._end_region(update.ended, now_s)
        if update.started_at_s is not None:
            self.in_region = True
            self.region_start_s = update.started_at_s
            events.append(
                self._event("speech_start", update.started_at_s, update.started_at_s, now_s)
            )
        return events

    def window(self, window, now_s: float) -> list[Event]:
        """A window (``streamer.worker.Window``) whose inputs were complete at ``now_s``."""
        o = self.options
        if not self.in_region or window.embedding is None:
            return []
        if window.end_s - max(window.start_s, self.region_start_s) < o.min_region_s:
            return []
        if self._sum is None:
            return self._open_segment(window, self.region_start_s, now_s)
        if window.start_s < self.segment_start_s:
            # Straddles the segment start: part of it is the previous voice or silence.
            # It refines the label, weighted by its share, but cannot signal a change.
            self._pending.clear()
            return self._extend(window, now_s)
        similarity = float(_unit(self._sum) @ window.embedding)
        vote, _ = self.classify(window.embedding, o.window_accept_score)
        deviates = similarity < o.same_score or (vote not in (UNKNOWN, self.label))
        if not deviates:
            self._pending.clear()
            return self._extend(window, now_s)
        self._pending.append(window)
        if len(self._pending) < o.confirm_windows:
            return []
        pending, self._pending = self._pending, []
        change_s = max(self.segment_start_s, pending[0].end_s - o.change_lag_s)
        label, _ = self.classify(pending[-1].embedding, o.accept_score)
        if label == self.label and label != UNKNOWN:
            for w in pending:
                self._extend(w, now_s)
            return []
        events = [self._segment_event(change_s, now_s)]
        return events + self._open_segment(pending[-1], change_s, now_s)

    def close(self, update: GateUpdate, now_s: float) -> list[Event]:
        """End of stream: close the open segment and region."""
        return self._end_region(update.ended, now_s) if update.ended else []

    # Decisions

    def classify(self, vector: np.ndarray, accept_score: float) -> tuple[str, float]:
        """The profile ``vector`` (unit length) matches, or ``unknown``; and the best score."""
        if not self.names:
            return UNKNOWN, 0.0
        scores = self._matrix @ vector
        order = np.argsort(scores)[::-1]
        best = float(scores[order[0]])
        second = float(scores[order[1]]) if len(order) > 1 else -1.0
        if best >= accept_score and best - second >= self.options.margin:
            return self.names[order[0]], best
        return UNKNOWN, best

    def _open_segment(self, window, start_s: float, now_s: float) -> list[Event]:
        self.segment_start_s = start_s
        self._sum = np.zeros_like(window.embedding, dtype=np.float64)
        self._windows = 0
        self.label = None
        return self._extend(window, now_s)

    def _extend(self, window, now_s: float) -> list[Event]:
        """Add a window to the open segment, weighted by its share after the segment start."""
        inside = window.end_s - max(window.start_s, self.segment_start_s)
        self._sum += window.embedding * (inside / (window.end_s - window.start_s))
        return self._relabel(now_s)

    def _relabel(self, now_s: float) -> list[Event]:
        """Re-decide the open segment's label from all its windows so far."""
        o = self.options
        self._windows += 1
        label, score = self.classify(_unit(self._sum), o.accept_score)
        self._score = score
        undecided = label == UNKNOWN and score >= o.reject_score
        if label == self.label or (undecided and self._windows < o.max_undecided):
            return []
        events = []
        previous = self.last_label if self.label is None else self.label
        start = self.segment_start_s
        if previous is not None and previous != label:
            events.append(self._event("change", start, now_s, now_s, label, score, previous))
        self.label = self.last_label = label
        events.append(self._event("speaker", start, now_s, now_s, label, score))
        return events

    def _segment_event(self, end_s: float, now_s: float) -> Event:
        """The closing open segment; one still undecided is ``unknown``."""
        label = self.label or UNKNOWN
        return self._event("segment", self.segment_start_s, end_s, now_s, label, self._score)

    def _end_region(self, span: tuple[float, float], now_s: float) -> list[Event]:
        events = []
        if self._sum is not None:
            events.append(self._segment_event(span[1], now_s))
        events.append(self._event("speech_end", span[0], span[1], now_s))
        self.in_region = False
        self.label = None
        self._sum = None
        self._pending.clear()
        return events

    def _event(self, type_, start_s, end_s, now_s, label=None, score=None, previous=None):
        return Event(
            type=type_,
            stream=self.stream,
            start_s=start_s,
            end_s=end_s,
            emitted_at=now_s,
            label=label,
            score=score,
            previous=previous,
        )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)
