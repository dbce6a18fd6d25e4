"""The scores the benchmarks report: identity accuracy, DER and speaker-change F1.

Segments are ``(start_s, end_s, label)`` triples (a simulated ``Turn`` is one).
Reference labels are speakers; hypothesis labels are enrolled names, ``"unknown"`` or
automatic labels for voices the tracker does not know. Each score keeps its seconds or
counts, and ``combine`` pools files time-weighted (or event-weighted) for a corpus total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

Segment = tuple[float, float, str]
"""``(start_s, end_s, label)``."""

GRID_S = 0.01
"""Frame step of the identity scores."""
DER_COLLAR_S = 0.25
"""pyannote's ``collar``: the TOTAL width of the no-score zone centred on each reference
boundary, i.e. +-0.125 s (NIST md-eval's ``-c 0.125``)."""


@dataclass
class IdentityScores:
    """Who-is-speaking scores on a 10 ms grid, in seconds; the shares are properties.

    Enrolled time is reference speech of one enrolled speaker alone; stranger time is
    reference speech of one speaker not enrolled alone. Time where two reference
    speakers overlap is not scored. A hypothesis label that is not an enrolled name
    (``"unknown"``, an automatic label) counts as "unknown".
    """

    enrolled_s: float = 0.0
    correct_s: float = 0.0
    """Enrolled time labelled with the right name."""
    wrong_name_s: float = 0.0
    """Enrolled time labelled with another enrolled name."""
    unknown_s: float = 0.0
    """Enrolled time labelled unknown."""
    missed_s: float = 0.0
    """Enrolled time with no hypothesis label."""
    stranger_s: float = 0.0
    stranger_unknown_s: float = 0.0
    """Stranger time labelled unknown (the right answer)."""
    stranger_wrong_name_s: float = 0.0
    """Stranger time given an enrolled name."""
    stranger_missed_s: float = 0.0
    """Stranger time with no hypothesis label."""
    false_alarm_s: float = 0.0
    """Hypothesis speech where no reference speaker speaks."""

    @property
    def accuracy(self) -> float:
        """Share of enrolled time labelled with the right name (nan without any)."""
        return _share(self.correct_s, self.enrolled_s)

    @property
    def wrong_name(self) -> float:
        return _share(self.wrong_name_s, self.enrolled_s)

    @property
    def unknown(self) -> float:
        return _share(self.unknown_s, self.enrolled_s)

    @property
    def missed(self) -> float:
        return _share(self.missed_s, self.enrolled_s)

    @property
    def stranger_unknown(self) -> float:
        """Share of stranger time labelled unknown (not given a name, and not missed)."""
        return _share(self.stranger_unknown_s, self.stranger_s)

    @property
    def stranger_wrong_name(self) -> float:
        return _share(self.stranger_wrong_name_s, self.stranger_s)

    @property
    def stranger_missed(self) -> float:
        return _share(self.stranger_missed_s, self.stranger_s)

    @classmethod
    def combine(cls, scores: Iterable[IdentityScores]) -> IdentityScores:
        """Time-weighted total over files."""
        scores = list(scores)
        return cls(
            **{name: sum(getattr(s, name) for s in scores) for name in cls.__dataclass_fields__}
        )

    def as_dict(self) -> dict[str, float]:
        """Shares and seconds, e.g. for a JSON report."""
        shares = ("accuracy", "wrong_name", "unknown", "missed")
        shares += ("stranger_unknown", "stranger_wrong_name", "stranger_missed")
        return {**{name: getattr(self, name) for name in shares}, **self.__dict__}


@dataclass
class DerScores:
    """Diarization error rate and its parts in scored seconds (pyannote.metrics)."""

    der: float
    confusion_s: float
    missed_s: float
    false_alarm_s: float
    total_s: float
    """Scored reference speech (after collars and outside the UEM removed)."""

    @classmethod
    def combine(cls, scores: Iterable[DerScores]) -> DerScores:
        """Time-weighted total over files."""
        scores = list(scores)
        parts = [sum(getattr(s, name) for s in scores) for name in _DER_PARTS]
        return cls(_der(*parts), *parts)


_DER_PARTS = ("confusion_s", "missed_s", "false_alarm_s", "total_s")


@dataclass
class ChangeScores:
    """Speaker-change detection against the reference's change points.

    With no predictions precision is 1, with no reference changes recall is 1; F1 is 0
    when either is 0. Latencies are ``emitted_at_s - true change time`` of matched pairs.
    """

    n_reference: int
    n_predicted: int
    n_matched: int
    latencies_s: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_predicted if self.n_predicted else 1.0

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_reference if self.n_reference else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def latency_mean_s(self) -> float:
        return float(np.mean(self.latencies_s)) if self.latencies_s else math.nan

    @property
    def latency_p90_s(self) -> float:
        return float(np.percentile(self.latencies_s, 90)) if self.latencies_s else math.nan

    @classmethod
    def combine(cls, scores: Iterable[ChangeScores]) -> ChangeScores:
        """Event-weighted total over files."""
        scores = list(scores)
        return cls(
            sum(s.n_reference for s in scores),
            sum(s.n_predicted for s in scores),
            sum(s.n_matched for s in scores),
            [x for s in scores for x in s.latencies_s],
        )

    def as_dict(self) -> dict[str, float]:
        names = ("precision", "recall", "f1", "latency_mean_s", "latency_p90_s")
        counts = {k: v for k, v in self.__dict__.items() if k != "latencies_s"}
        return {**{name: getattr(self, name) for name in names}, **counts}


def identity_scores(
    reference: Sequence[Segment], hypothesis: Sequence[Segment], enrolled: set[str]
) -> IdentityScores:
    """Score names given to voices on a 10 ms grid (see :class:`IdentityScores`).

    Where hypothesis segments overlap, the one that starts later holds the frame (the
    tracker's latest decision).
    """
    n = max((_frame(end) for _, end, _ in [*reference, *hypothesis]), default=0)
    speakers = sorted({label for _, _, label in reference})
    ref_count = np.zeros(n, dtype=np.int32)
    ref_code = np.full(n, -1, dtype=np.int32)
    for start, end, label in reference:
        lo, hi = _frame(start), _frame(end)
        ref_count[lo:hi] += 1
        ref_code[lo:hi] = speakers.index(label)
    names = sorted(enrolled)
    # hypothesis codes: -1 no label, 0.. an enrolled name (same index as `names`), -2 other
    hyp_code = np.full(n, -1, dtype=np.int32)
    for start, end, label in sorted(hypothesis, key=lambda seg: seg[0]):
        hyp_code[_frame(start) : _frame(end)] = names.index(label) if label in enrolled else -2
    # reference codes re-expressed in the enrolled-name index (-2 for strangers)
    ref_name = np.array([names.index(s) if s in enrolled else -2 for s in speakers] + [-1])
    ref_named = ref_name[ref_code]  # ref_code -1 picks the trailing -1
    single = ref_count == 1
    own = single & (ref_named >= 0)
    stranger = single & (ref_named == -2)

    def count(mask: np.ndarray) -> float:
        return float(np.count_nonzero(mask)) * GRID_S

    return IdentityScores(
        enrolled_s=count(own),
        correct_s=count(own & (hyp_code == ref_named)),
        wrong_name_s=count(own & (hyp_code >= 0) & (hyp_code != ref_named)),
        unknown_s=count(own & (hyp_code == -2)),
        missed_s=count(own & (hyp_code == -1)),
        stranger_s=count(stranger),
        stranger_unknown_s=count(stranger & (hyp_code == -2)),
        stranger_wrong_name_s=count(stranger & (hyp_code >= 0)),
        stranger_missed_s=count(stranger & (hyp_code == -1)),
        false_alarm_s=count((ref_count == 0) & (hyp_code != -1)),
    )


def der(
    reference: Sequence[Segment],
    hypothesis: Sequence[Segment],
    collar_s: float = DER_COLLAR_S,
    uem: Sequence[tuple[float, float]] | None = None,
) -> DerScores:
    """Diarization error rate by ``pyannote.metrics`` (optimal label mapping).

    ``collar_s`` goes to pyannote's ``collar`` unchanged: the total width of the zone
    centred on every reference boundary that is not scored, so 0.25 removes +-0.125 s.
    Overlapping reference speech is scored (``skip_overlap=False``). Only the ``uem``
    spans are scored; without one, the span from the first to the last segment of either
    side is (as pyannote assumes, minus its warning).
    """
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(segments: Sequence[Segment]) -> Annotation:
        result = Annotation()
        for track, (start, end, label) in enumerate(segments):
            if end > start:
                result[Span(start, end), track] = str(label)
        return result

    if uem is None:
        bounds = [(s, e) for s, e, _ in [*reference, *hypothesis] if e > s]
        if not bounds:
            return DerScores(0.0, 0.0, 0.0, 0.0, 0.0)
        uem = [(min(s for s, _ in bounds), max(e for _, e in bounds))]
    metric = DiarizationErrorRate(collar=collar_s, skip_overlap=False)
    parts = metric(
        annotation(reference),
        annotation(hypothesis),
        uem=Timeline([Span(s, e) for s, e in uem if e > s]),
        detailed=True,
    )
    values = [
        parts["confusion"],
        parts["missed detection"],
        parts["false alarm"],
        parts["total"],
    ]
    return DerScores(_der(*values), *(float(v) for v in values))


def change_points(turns: Sequence[Segment]) -> list[float]:
    """Times where the speaker changes: each turn start whose speaker differs from the
    previous turn's (turns in start order; the first turn's start is not a change)."""
    ordered = sorted(turns, key=lambda seg: seg[0])
    return [b[0] for a, b in zip(ordered, ordered[1:], strict=False) if b[2] != a[2]]


def change_scores(
    reference_turns: Sequence[Segment],
    predicted_changes: Sequence[tuple[float, float]],
    tolerance_s: float = 0.5,
) -> ChangeScores:
    """Match predicted ``(time_s, emitted_at_s)`` changes to the reference change points.

    Pairs within ``tolerance_s`` are matched one-to-one, closest first.
    """
    truth = change_points(reference_turns)
    pairs = sorted(
        (abs(time_s - true_s), i, j)
        for i, true_s in enumerate(truth)
        for j, (time_s, _) in enumerate(predicted_changes)
        if abs(time_s - true_s) <= tolerance_s
    )
    used_true, used_pred, latencies = set(), set(), []
    for _, i, j in pairs:
        if i not in used_true and j not in used_pred:
            used_true.add(i)
            used_pred.add(j)
            latencies.append((i, predicted_changes[j][1] - truth[i]))
    return ChangeScores(
        n_reference=len(truth),
        n_predicted=len(predicted_changes),
        n_matched=len(latencies),
        latencies_s=[float(lag) for _, lag in sorted(latencies)],
    )


TURN_LENGTH_BINS_S = (0.0, 1.5, 2.6, 4.0, math.inf)
"""Edges of the turn-length bins of :func:`missed_by_length`."""


@dataclass
class MissedByLength:
    """Reference speech left without any label, by the length of its turn."""

    edges_s: tuple[float, ...] = TURN_LENGTH_BINS_S
    speech_s: list[float] = field(default_factory=list)
    missed_s: list[float] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        bins = len(self.edges_s) - 1
        for name in ("speech_s", "missed_s", "turns"):
            if not getattr(self, name):
                setattr(self, name, [0] * bins)

    @property
    def shares(self) -> list[float]:
        """Missed share of the speech in each bin."""
        return [_share(m, s) for m, s in zip(self.missed_s, self.speech_s, strict=True)]

    def labels(self) -> list[str]:
        """Bin names such as ``1.5-2.6 s`` and ``>= 4 s``."""
        pairs = zip(self.edges_s, self.edges_s[1:], strict=False)
        return [f">= {lo:g} s" if math.isinf(hi) else f"{lo:g}-{hi:g} s" for lo, hi in pairs]

    @classmethod
    def combine(cls, scores: Iterable[MissedByLength]) -> MissedByLength:
        """Bin-wise totals over files (all with the same edges)."""
        scores = list(scores)
        total = cls(scores[0].edges_s if scores else TURN_LENGTH_BINS_S)
        for score in scores:
            for name in ("speech_s", "missed_s", "turns"):
                mine = getattr(total, name)
                setattr(
                    total, name, [a + b for a, b in zip(mine, getattr(score, name), strict=True)]
                )
        return total


def missed_by_length(
    turns: Sequence[Segment],
    speech: Sequence[Segment],
    hypothesis: Sequence[Segment],
    edges_s: tuple[float, ...] = TURN_LENGTH_BINS_S,
) -> MissedByLength:
    """Reference ``speech`` (within ``turns``, same speaker) that no hypothesis segment
    labels, on a 10 ms grid, binned by the length of the turn it belongs to."""
    n = max((_frame(end) for _, end, _ in [*turns, *speech, *hypothesis]), default=0)
    labelled = np.zeros(n, dtype=bool)
    for start, end, _ in hypothesis:
        labelled[_frame(start) : _frame(end)] = True
    result = MissedByLength(tuple(edges_s))
    for t_start, t_end, speaker in turns:
        slot = int(np.searchsorted(edges_s, t_end - t_start, side="right")) - 1
        slot = min(max(slot, 0), len(edges_s) - 2)
        result.turns[slot] += 1
        for start, end, who in speech:
            if who != speaker or end <= t_start or start >= t_end:
                continue
            lo, hi = _frame(max(start, t_start)), _frame(min(end, t_end))
            result.speech_s[slot] += (hi - lo) * GRID_S
            result.missed_s[slot] += float(np.count_nonzero(~labelled[lo:hi])) * GRID_S
    return result


def read_rttm(path_or_text: str | Path) -> dict[str, list[Segment]]:
    """``SPEAKER`` lines of an RTTM file (or RTTM text) by file id, sorted by start.

    A ``Path``, or a string that is neither multi-line nor starting with ``SPEAKER``,
    is read as a UTF-8 file.
    """
    result: dict[str, list[Segment]] = {}
    for number, fields in _lines(path_or_text, "SPEAKER"):
        if fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            label = fields[7]
        except (IndexError, ValueError) as error:
            raise DataError(
                f"RTTM line {number} is not 'SPEAKER <file> <chan> <start> <dur> <NA> <NA> "
                f"<speaker> ...': {' '.join(fields)}"
            ) from error
        result.setdefault(fields[1], []).append((start, start + duration, label))
    return {file_id: sorted(segs) for file_id, segs in result.items()}


def read_uem(path_or_text: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Scored spans of a UEM file (``<file> <chan> <start> <end>`` lines) by file id."""
    result: dict[str, list[tuple[float, float]]] = {}
    for number, fields in _lines(path_or_text, None):
        try:
            span = (float(fields[2]), float(fields[3]))
        except (IndexError, ValueError) as error:
            raise DataError(
                f"UEM line {number} is not '<file> <chan> <start> <end>': {' '.join(fields)}"
            ) from error
        result.setdefault(fields[0], []).append(span)
    return {file_id: sorted(spans) for file_id, spans in result.items()}


def _lines(path_or_text: str | Path, text_prefix: str | None) -> Iterable[tuple[int, list[str]]]:
    """Numbered whitespace-split lines, without blanks and ``#``/``;`` comments."""
    is_text = isinstance(path_or_text, str) and (
        "\n" in path_or_text
        or (text_prefix is not None and path_or_text.lstrip().startswith(text_prefix))
    )
    if is_text:
        text = str(path_or_text)
    else:
        try:
            text = Path(path_or_text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read {path_or_text}: {error}") from error
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields and not fields[0].startswith(("#", ";")):
            yield number, fields


def _frame(time_s: float) -> int:
    return max(0, round(time_s / GRID_S))


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan


def _der(confusion_s: float, missed_s: float, false_alarm_s: float, total_s: float) -> float:
    errors = confusion_s + missed_s + false_alarm_s
    if total_s > 0:
        return errors / total_s
    return 0.0 if errors == 0 else 1.0  # pyannote's rule for nothing to score
