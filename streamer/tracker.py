"""The tracker: speech regions and window embeddings in, identity events out (sans-I/O).

Windows are scored against the enrolled profiles (cosine similarity of unit vectors),
normalised against the model's cohort of impostor voices when the tracker is given one
(``streamer.cohort``: adaptive S-norm, mapped back onto the cosine scale), so one set of
bars holds across recording sessions. Short windows score lower for everyone, so every
bar is interpolated between its value for the shortest onset window and its value for a
full window.

* A segment's label comes from the mean of its windows: a name when the best profile
  clears ``accept_score`` with a ``margin`` over the runner-up, ``unknown`` when none
  reaches ``reject_score``; in between it waits (at most ``max_undecided`` full windows).
* Speaker changes are looked for where the voice resumes after a pause (an onset
  window, cut by the worker from the first voiced chunk): when the onset's audio
  confidently names someone else, the change is dated at the onset and emitted as soon
  as the onset window is in. Onset windows that name the current speaker settle that
  onset as a continuation, and so does one too weak to name anyone whose best match is
  still the current speaker. An onset too unsure to name anyone but clearly unlike the
  open segment, or clearly closer to another voice, still splits it there: the voice
  changed, and later windows say to whom.
* Voices that match no profile become unknown voices with stable labels
  (``speaker-1``, ``speaker-2``, ... in order of appearance): each is a centroid of the
  clean full windows of its segments (windows wholly inside one segment and mostly
  speech, so overlap at turn edges and silence do not pull it), a bounded running mean,
  scored alongside the profiles. :meth:`Tracker.voice` gives a voice's centroid, which
  is how an unknown voice is promoted to a profile. A voice whose centroid comes to
  match a profile (as it learns, or when profiles change) was that speaker, heard badly
  or enrolled since, and takes the name, unless the session has already confidently
  heard that speaker: then it is a stranger who sounds alike.
  The session's recent past is corrected as it learns (``revise_s``): a closed
  ``unknown`` segment that a voice learnt since now names, alike ``unknown`` segments
  that together make a voice, a voice merged into an older one and a voice that turned
  out to be an enrolled speaker are sent again as corrected ``segment`` events.
* Enrolled profiles adapt to the session: a segment named with a high score teaches the
  stream's copy of that profile its clean windows (the stored profile is not touched).
* Turns with no pause are caught by full windows: one window that confidently names
  another voice, or ``confirm_windows`` consecutive windows that deviate from the segment,
  make a change. It is dated where, from one window to the next, the new voice's score
  overtook the old one's (``crossing_lag_s`` before the end of the window where it did),
  or, when the recent windows show no such crossing or either side is a plain
  ``unknown``, ``change_lag_s`` before the end of the first deviating window. One
  ambiguous window never makes the label flicker. A window that reaches back over a
  change into the previous voice does not decide the new segment's label.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .cohort import Cohort
from .events import UNKNOWN, Event
from .recluster import Entry, Reclusterer, ReclusterOptions
from .vad import GateUpdate


@dataclass(frozen=True)
class TrackerOptions:
    """Decision thresholds and smoothing (scores are cosine similarities; with a cohort,
    normalised ones on the same scale).

    Attributes:
        accept_score: score a full-length segment needs to take a profile's name.
        reject_score: a segment whose best score is below this is ``unknown`` at once;
            between the two it waits for more windows.
        max_undecided: full windows a segment may stay undecided before it is
            ``unknown`` (onset windows, which come every few tens of ms, do not count).
        margin: the best profile must beat the runner-up by this much.
        short_window_s: the length at which the ``short_*`` bars apply; bars for
            lengths between it and the model's window are interpolated.
        short_accept_score: ``accept_score`` for a ``short_window_s`` window.
        short_reject_score: ``reject_score`` for a ``short_window_s`` window.
        short_margin: ``margin`` for a ``short_window_s`` window.
        new_voice_score: an onset whose audio is this dissimilar (at full length;
            interpolated like the others from ``short_new_voice_score``) to an unknown
            segment starts a new unknown voice.
        short_new_voice_score: ``new_voice_score`` for a ``short_window_s`` window.
        split_score: an onset window that names no one but is less similar than this (at
            full length) to the open segment's voice splits the segment at the onset.
        short_split_score: ``split_score`` for a ``short_window_s`` window.
        split_margin: an onset window that names no one but scores this much higher for
            another voice than for the open segment's also splits the segment.
        undecided_change_score: a segment that closes undecided and scores below this
            against the stream's previous label reports a change (to ``unknown``).
        resume_score: after a plain ``unknown`` segment, a segment named X (a profile or
            an unknown voice) is no change when X was also that segment's best match, with
            at least this score (the same voice, heard better).
        adapt_score: a segment named with at least this score teaches the stream's copy
            of that profile its clean windows.
        enrollment_weight_s: seconds of session speech the enrolled profile weighs as
            much as, in its adapted copy (the session's share is bounded by
            ``voice_memory_s``).
        window_accept_score: a full window that names another voice with at least this
            score makes a change at once; other deviating windows need
            ``confirm_windows`` in a row.
        same_score: a full window this similar to the segment's reference (the mean of
            its first ``reference_windows`` full windows) continues it.
        reference_windows: full windows inside a segment that make its reference.
        min_region_s: a full window must overlap the speech region by this many seconds
            to count (so the previous speaker's tail does not decide a new region).
        confirm_windows: consecutive deviating full windows that make a change (when
            none of them names another voice with ``window_accept_score``).
        crossing_lag_s: how far before the end of the window where the new voice's score
            overtakes the old one's such a change is dated (interpolated between the two
            windows around the crossing; the encoder weighs the end of its window most).
        change_lag_s: how far before the end of the first deviating window such a change
            is dated when the recent windows show no crossing (or a side is a plain
            ``unknown``, which has no voice to score).
        window_s: the model's full window length (the engine sets it).
        hop_s: seconds between full windows (the engine sets it).
        min_voice_windows: clean full windows a segment needs before its voice becomes a
            new unknown voice; until then it is plain ``unknown``.
        max_voices: unknown voices remembered at once; when a new one arrives beyond
            this, the one heard least recently is forgotten (its label is not reused).
        voice_memory_s: an unknown voice's centroid is a running mean over about this
            many seconds of its clean speech; older speech fades out, so the centroid
            follows the voice but cannot grow without bound.
        merge_score: two unknown voices whose centroids are this similar are one
            voice: the younger label is folded into the older one. Recent ``unknown``
            segments (``revise_s``) this similar to each other and to their mean make a
            voice of their own once there are ``min_voice_windows`` of them.
        revise_s: a closed segment labelled ``unknown`` or with an unknown voice's label
            that ended at most this many seconds ago is sent again with a better label
            (a corrected ``segment`` event) when the session has since learnt one: a voice
            that its audio now names, the older voice its own was merged into, or the
            profile its voice turned out to be; 0: never.
        look_back: the look-back pass that clusters the recent unknown-voice segments
            again and repairs their labels (``streamer.recluster``); ``None`` (the
            default, as it does not yet beat the live labels): off.
        cohort_top_k: with a cohort (``Tracker(cohort=...)``), a voice's score against a
            profile is normalised by both sides' ``cohort_top_k`` highest cohort scores
            (``streamer.cohort``; unknown voices, learnt in the session, score raw); 0:
            raw cosine scores.
        cohort_same_voice: cohort entries at least this similar to a vector are its own
            voice (a speaker who is in the cohort), not impostors, and are left out.
        norm_mean: a normalised score ``z`` is put on the cosine scale as ``norm_mean +
            norm_scale * z``, so every bar keeps its meaning: ``norm_scale`` is the slope
            of raw cosine on ``z`` for clean recordings of tune-half speakers; ``norm_mean``
            (0.68 in that fit) was then chosen on the tune-half benchmark, both conditions.
        norm_scale: see ``norm_mean``.
    """

    accept_score: float = 0.76
    reject_score: float = 0.64
    max_undecided: int = 4
    margin: float = 0.03
    short_window_s: float = 0.6
    short_accept_score: float = 0.70
    short_reject_score: float = 0.56
    short_margin: float = 0.05
    new_voice_score: float = 0.55
    short_new_voice_score: float = 0.45
    split_score: float = 0.6
    short_split_score: float = 0.5
    split_margin: float = 0.1
    undecided_change_score: float = 0.6
    resume_score: float = 0.65
    adapt_score: float = 0.85
    enrollment_weight_s: float = 3.0
    window_accept_score: float = 0.75
    same_score: float = 0.76
    reference_windows: int = 5
    min_region_s: float = 0.6
    confirm_windows: int = 2
    crossing_lag_s: float = 0.7
    change_lag_s: float = 1.0
    window_s: float = 1.6
    hop_s: float = 0.2
    # Unknown voices
    min_voice_windows: int = 3
    max_voices: int = 32
    voice_memory_s: float = 60.0
    merge_score: float = 0.8
    revise_s: float = 60.0
    look_back: ReclusterOptions | None = None
    # Score normalisation
    cohort_top_k: int = 50
    cohort_same_voice: float = 0.85
    norm_mean: float = 0.71
    norm_scale: float = 0.028

    def bars(self, length_s: float) -> Bars:
        """The bars for evidence from ``length_s`` of audio."""
        span = max(self.window_s - self.short_window_s, 1e-9)
        w = min(max((length_s - self.short_window_s) / span, 0.0), 1.0)
        return Bars(
            self.short_accept_score + w * (self.accept_score - self.short_accept_score),
            self.short_reject_score + w * (self.reject_score - self.short_reject_score),
            self.short_margin + w * (self.margin - self.short_margin),
            self.short_new_voice_score + w * (self.new_voice_score - self.short_new_voice_score),
            self.short_split_score + w * (self.split_score - self.short_split_score),
        )


class Bars(NamedTuple):
    """Score bars for one length of evidence (see :class:`TrackerOptions`)."""

    accept: float
    reject: float
    margin: float
    new_voice: float
    split: float


@dataclass
class Voice:
    """An unknown voice: a bounded running sum of its clean unit windows."""

    label: str
    total: np.ndarray
    weight_s: float
    last_heard_s: float
    windows: int = 0
    speech_s: float = 0.0  # seconds of speech its clean windows covered, in all
    heard_until_s: float = 0.0  # where its last clean window ended

    @property
    def centroid(self) -> np.ndarray:
        return _unit(self.total)


@dataclass
class _Segment:
    start_s: float
    label: str | None = None  # None: undecided
    full: np.ndarray | None = None  # weighted sum of its full windows
    onset: tuple[float, np.ndarray] | None = None  # its own latest onset window
    clean: list = field(default_factory=list)  # (end_s, vector) of its clean windows
    full_windows: int = 0  # full windows added to it (the undecided wait counts these)
    inside: int = 0  # full windows wholly inside it
    anchor: np.ndarray | None = None  # sum of its first full windows inside it
    score: float = 0.0
    previous: str | None = None  # the stream's label before this segment
    changed: bool = False  # whether its change (or that it is none) was decided
    reported: bool = False  # whether it emitted a change event
    announced: str | None = None  # the label its last speaker event gave


class Tracker:
    """Live identity of one stream. Feed it gate updates and windows in time order."""

    CLEAN_SPEECH_RATIO = 0.8
    """Windows with less speech than this never shape an unknown voice's centroid; nor
    do windows less similar than ``same_score`` to their segment (overlapped speech)."""
    RECENT_WINDOWS = 8
    """Full windows kept to date a change by where the new voice overtook the old one."""
    MIN_LABELLED_S = 0.5
    """A speech region at least this long ends with a label, even when no window of it
    decided one (``unknown`` at worst)."""
    STRADDLE_INSIDE = 0.7
    """A full window that reaches back over a change inside a speech region counts for the
    new segment only when at least this share of it is after the change: the rest is the
    previous voice, which would pull the label back to it."""

    def __init__(
        self,
        stream_id: str,
        options: TrackerOptions,
        profiles: dict[str, np.ndarray],
        cohort: np.ndarray | None = None,
    ) -> None:
        """``cohort``: unit embeddings of impostor voices (``streamer.cohort.shipped``)
        that scores are normalised against; ``None``: raw cosine scores."""
        self.stream = stream_id
        self.options = options
        self.cohort = None
        if cohort is not None and options.cohort_top_k > 0:
            self.cohort = Cohort(cohort, options.cohort_top_k, options.cohort_same_voice)
        self.voices: dict[str, Voice] = {}
        self._voices_made = 0
        self._session: dict[str, tuple[np.ndarray, float]] = {}  # name: (sum, seconds)
        self._folded: dict[str, str] = {}  # unknown voice: the profile it turned out to be
        self.set_profiles(profiles)
        self.in_region = False
        self.region_start_s = 0.0
        self.last_label: str | None = None  # last label of the stream (across regions)
        self.segment: _Segment | None = None
        self._settled_onset_s = -1.0  # the last onset settled as continuation or change
        self._pending: list = []  # deviating full windows not yet confirmed as a change
        self._recent: deque = deque(maxlen=self.RECENT_WINDOWS)  # the last full windows
        self._last_vector: np.ndarray | None = None  # the last closed segment's voice
        self._region_named = False  # whether the open region has held a segment
        self._held = None  # the region's last full window kept back for its onset
        self._closed: deque[Entry] = deque()  # recent closed segments revise_s may correct
        self._renamed: dict[str, str] = {}  # since the last revision: voice -> what it joined
        self.look_back = None
        if options.look_back is not None:
            self.look_back = Reclusterer(options.look_back)

    def set_profiles(self, profiles: dict[str, np.ndarray]) -> None:
        """New profiles; an unknown voice that a new one names takes its name at once."""
        self.profiles = dict(profiles)
        self._session = {name: s for name, s in self._session.items() if name in profiles}
        self._refresh()
        for voice in list(self.voices.values()):
            self._fold_into_profile(voice)

    def voice(self, label: str) -> Voice:
        """The unknown voice called ``label`` (``KeyError`` if there is none)."""
        return self.voices[label]

    def settle(self, label: str) -> Voice:
        """The unknown voice ``label``, with what the open segment heard of it so far."""
        voice = self.voices[label]
        segment = self.segment
        if segment is not None and segment.label == label and segment.clean:
            self._learn(voice, segment.clean, voice.last_heard_s)
            segment.clean.clear()
        return self.voices.get(label, voice)

    def forget(self, label: str) -> None:
        """Drop an unknown voice (e.g. once it was promoted to a profile)."""
        del self.voices[label]
        if self.look_back is not None:
            self.look_back.forget(label)
        self._refresh()

    def adapted(self, name: str) -> np.ndarray:
        """Profile ``name`` as this stream scores it: the enrolled vector, weighed as
        ``enrollment_weight_s`` of speech, plus what the session taught it."""
        profile = self.profiles[name]
        if name not in self._session:
            return profile
        total, _ = self._session[name]
        return _unit(profile * self.options.enrollment_weight_s + total)

    def _refresh(self) -> None:
        self._labels = list(self.profiles) + list(self.voices)
        vectors = [self.adapted(n) for n in self.profiles]
        vectors += [v.centroid for v in self.voices.values()]
        self._matrix = np.array(vectors, dtype=np.float32) if vectors else None
        if self.cohort is not None and self.profiles:
            self._profile_stats = self.cohort.stats(self._matrix[: len(self.profiles)])

    def _scores(self, vector: np.ndarray) -> np.ndarray:
        """``vector``'s score against every label (``_labels``): cosine; with a cohort,
        the profiles' scores are normalised (on the cosine scale). Unknown voices were
        learnt in this session, so their raw scores already hold."""
        scores = self._matrix @ vector
        if self.cohort is None or not self.profiles:
            return scores
        n = len(self.profiles)
        (mean, std), (own_mean, own_std) = self._profile_stats, self.cohort.stats(vector)
        z = 0.5 * ((scores[:n] - mean) / std + (scores[:n] - own_mean) / own_std)
        scores[:n] = self.options.norm_mean + self.options.norm_scale * z
        return scores

    # Inputs

    def gate(self, update: GateUpdate, now_s: float) -> list[Event]:
        events: list[Event] = []
        if update.ended is not None:
            events += self._end_region(update.ended, now_s)
        if update.started_at_s is not None:
            self.in_region = True
            self.region_start_s = update.started_at_s
            self._region_named, self._held = False, None
            events.append(
                self._event("speech_start", update.started_at_s, update.started_at_s, now_s)
            )
        return events

    def window(self, window, now_s: float) -> list[Event]:
        """A window (``streamer.worker.Window``) whose inputs were complete at ``now_s``."""
        if not self.in_region or window.embedding is None:
            return []
        if window.onset:
            return self._onset_window(window, now_s)
        return self._full_window(window, now_s)

    def close(self, update: GateUpdate, now_s: float) -> list[Event]:
        """End of stream: close the open segment and region, and look back once more."""
        events = self._end_region(update.ended, now_s) if update.ended else []
        return events + self._repair(now_s, force=True)

    def confident(self) -> bool:
        """Whether the open segment is settled: named, past its reference windows, and
        its last full window agreed with it (the engine may then embed fewer windows)."""
        segment = self.segment
        return (
            segment is not None
            and self._named(segment.label)
            and segment.inside >= self.options.reference_windows
            and not self._pending
        )

    # Decisions

    def classify(self, vector: np.ndarray, length_s: float) -> tuple[str | None, float]:
        """A profile name, an unknown voice's label, ``unknown`` (a new voice) or ``None``
        (undecided) for a unit vector from ``length_s`` of audio; and the best score."""
        if self._matrix is None:
            return UNKNOWN, 0.0
        accept, reject, margin, *_ = self.options.bars(length_s)
        scores = self._scores(vector)
        order = np.argsort(scores)[::-1]
        best = float(scores[order[0]])
        second = float(scores[order[1]]) if len(order) > 1 else -1.0
        if best >= accept and best - second >= margin:
            return self._labels[order[0]], best
        return (UNKNOWN if best < reject else None), best

    def _onset_window(self, window, now_s: float) -> list[Event]:
        """A short window from a voice onset: open, label or split the segment."""
        segment = self.segment
        onset_s = window.start_s
        if segment is None:
            # The region's first onset opens it from its (padded) start.
            start_s = self.region_start_s if onset_s <= self.region_start_s + 0.5 else onset_s
            return self._open_segment(start_s, now_s, onset=window)
        if onset_s <= segment.start_s + 0.5 and not segment.inside:
            # The onset that opened this segment: a longer look at the same audio, and a
            # better one than full windows that reach back before the segment.
            if segment.onset is None and segment.full is not None:
                segment.full = None
                segment.label = None
                if (
                    not segment.reported
                    and self.classify(window.embedding, window.length_s)[0] in self.profiles
                ):
                    # Full windows reaching back into the last voice took it for that
                    # voice; an onset that names someone may report the change after all.
                    segment.changed = False
            segment.onset = (window.length_s, window.embedding)
            return self._relabel(now_s)
        if onset_s <= self._settled_onset_s or onset_s <= segment.start_s:
            return []
        label, _ = self.classify(window.embedding, window.length_s)
        own = self._labels.index(segment.label) if segment.label in self._labels else None
        scores = self._scores(window.embedding) if own is not None else None
        if label == UNKNOWN and own is not None and int(np.argmax(scores)) == own:
            return []  # too weak to name anyone, yet closest to the current speaker
        if label is None:
            # Unsure who, but clearly not the open segment's voice: split here.
            split = self.options.bars(window.length_s).split
            closer = own is not None and scores.max() - scores[own] >= self.options.split_margin
            if not closer and float(self._reference(segment) @ window.embedding) >= split:
                return []
            self._settled_onset_s = onset_s
            self._pending.clear()
            return self._close_segment(onset_s, now_s) + self._open_segment(
                onset_s, now_s, onset=window
            )
        if label == UNKNOWN and not self._named(segment.label):
            new_voice = self.options.bars(window.length_s).new_voice
            if float(self._vector(segment) @ window.embedding) >= new_voice:
                label = segment.label
        self._settled_onset_s = onset_s
        if label == segment.label:
            return []
        if not self._named(segment.label) and self._named(label):
            # An unsure segment whose voice fits the onset's name: it was that voice.
            fits = self.options.bars(self._evidence_s(segment)).reject
            if self._score_for(label, self._vector(segment)) >= fits:
                segment.onset = (window.length_s, window.embedding)
                return self._relabel(now_s, adopt=label)
        self._pending.clear()
        return self._close_segment(onset_s, now_s) + self._open_segment(
            onset_s, now_s, onset=window
        )

    def _full_window(self, window, now_s: float) -> list[Event]:
        o = self.options
        self._recent.append(window)
        if self.look_back is not None:
            self.look_back.add_window(window)
        if window.end_s - max(window.start_s, self.region_start_s) < o.min_region_s:
            return []
        segment = self.segment
        if segment is None:
            inside = (window.end_s - self.region_start_s) / window.length_s
            if inside < self.STRADDLE_INSIDE and not self._names_another(window):
                self._held = window  # mostly what came before the region: its onset names it
                return []
            return self._open_segment(self.region_start_s, now_s, full=window)
        if window.start_s < segment.start_s:
            # Straddles the segment start: part of it is the previous voice or silence.
            # It refines the label, weighted by its share, but cannot signal a change.
            self._pending.clear()
            inside = (window.end_s - segment.start_s) / window.length_s
            if segment.start_s > self.region_start_s and inside < self.STRADDLE_INSIDE:
                return []  # mostly the previous voice of this region
            return self._extend(window, now_s)
        similarity = float(self._reference(segment) @ window.embedding)
        vote, vote_score = self.classify(window.embedding, o.window_s)
        deviates = similarity < o.same_score or (self._named(vote) and vote != segment.label)
        if not deviates:
            self._pending.clear()
            return self._extend(window, now_s)
        self._pending.append(window)
        sure = self._named(vote) and vote != segment.label and vote_score >= o.window_accept_score
        if len(self._pending) < o.confirm_windows and not sure:
            return []
        pending, self._pending = self._pending, []
        label, _ = self.classify(pending[-1].embedding, o.window_s)
        if label is None or label == segment.label:
            # A false alarm: the windows are the segment's after all, and may revise it.
            return [event for w in pending for event in self._extend(w, now_s)]
        change_s = max(segment.start_s, self._change_time(segment, label, pending))
        return self._close_segment(change_s, now_s) + self._open_segment(
            change_s, now_s, full=pending[-1]
        )

    def _names_another(self, window) -> bool:
        """Whether a full window names a known voice other than the stream's last one
        (news even from a window that is mostly the audio before its region)."""
        label, _ = self.classify(window.embedding, self.options.window_s)
        return self._named(label) and label != self.last_label

    def _change_time(self, segment: _Segment, label: str, pending: list) -> float:
        """When the voice changed from ``segment``'s to ``label``'s, from the recent full
        windows: the last point where, between consecutive windows, the new voice's score
        rose past the old one's. Both must be known voices (a plain ``unknown`` has no
        vector to score against)."""
        o = self.options
        new, old = self._scored(label), self._scored(segment.label)
        crossing_s = None if new is None or old is None else self._crossing_s(new, old)
        if crossing_s is None:
            return pending[0].end_s - o.change_lag_s
        return crossing_s - o.crossing_lag_s

    def _crossing_s(self, new: np.ndarray, old: np.ndarray) -> float | None:
        """The last time the recent full windows' score for ``new`` rose past the one for
        ``old`` between consecutive windows (interpolated end time), or ``None``."""
        crossing_s = None
        before_s, before = -np.inf, 0.0  # the previous window's end and lead
        for window in self._recent:
            lead = float(window.embedding @ new) - float(window.embedding @ old)
            if before < 0 <= lead and window.end_s - before_s < 1.5 * self.options.hop_s:
                crossing_s = before_s + (window.end_s - before_s) * before / (before - lead)
            before_s, before = window.end_s, lead
        return crossing_s

    def _scored(self, label: str | None) -> np.ndarray | None:
        """The vector this stream scores ``label`` with (a profile as adapted to the
        session, or an unknown voice's centroid); ``None`` for anything else."""
        if label not in self._labels:
            return None
        return self._matrix[self._labels.index(label)]

    def _score_for(self, label: str | None, vector: np.ndarray) -> float | None:
        """``vector``'s score (:meth:`_scores`) against ``label``; ``None`` if it has no
        vector to score."""
        if label not in self._labels:
            return None
        return float(self._scores(vector)[self._labels.index(label)])

    def _named(self, label: str | None) -> bool:
        """Whether ``label`` is a known voice (a profile or an unknown voice's label)."""
        return label is not None and label != UNKNOWN

    def _open_segment(self, start_s: float, now_s: float, onset=None, full=None) -> list[Event]:
        self.segment = _Segment(start_s, previous=self.last_label)
        self._region_named = True
        if onset is not None:
            self.segment.onset = (onset.length_s, onset.embedding)
            return self._relabel(now_s)
        return self._extend(full, now_s)

    def _extend(self, window, now_s: float) -> list[Event]:
        """Add a full window to the open segment, weighted by its share after the start."""
        segment = self.segment
        clean = (
            window.start_s >= segment.start_s
            and window.speech_ratio >= self.CLEAN_SPEECH_RATIO
            and (
                segment.full is None
                or self._vector(segment) @ window.embedding >= self.options.same_score
            )
        )
        if window.start_s >= segment.start_s:
            segment.inside += 1
            if segment.inside <= self.options.reference_windows:
                vector = window.embedding.astype(np.float64)
                segment.anchor = vector if segment.anchor is None else segment.anchor + vector
        inside = window.end_s - max(window.start_s, segment.start_s)
        weighted = window.embedding * (inside / window.length_s)
        segment.full = (
            weighted.astype(np.float64) if segment.full is None else segment.full + weighted
        )
        if clean:
            segment.clean.append((window.end_s, window.embedding))
        segment.full_windows += 1
        return self._relabel(now_s)

    def _reference(self, segment: _Segment) -> np.ndarray:
        """What a new window must resemble to continue the segment: its first full windows
        inside it (a mean over all of them would drift along with an unnoticed turn)."""
        if segment.anchor is not None:
            return _unit(segment.anchor)
        return self._vector(segment)

    def _vector(self, segment: _Segment) -> np.ndarray:
        """The segment's evidence: its full windows, and its onset window."""
        total = np.zeros(0)
        if segment.full is not None:
            total = segment.full.copy()
        if segment.onset is not None:
            length_s, vector = segment.onset
            weighted = vector * (length_s / self.options.window_s)
            total = weighted.astype(np.float64) if total.size == 0 else total + weighted
        return _unit(total)

    def _evidence_s(self, segment: _Segment) -> float:
        """How much audio the segment's label rests on, for the length-dependent bars."""
        return self.options.window_s if segment.full is not None else segment.onset[0]

    def _relabel(self, now_s: float, adopt: str | None = None) -> list[Event]:
        """Re-decide the open segment's label from all its windows so far (or take
        ``adopt``). A segment reports a change at most once: corrections of its label
        are ``speaker`` events."""
        o = self.options
        segment = self.segment
        label, score = self.classify(self._vector(segment), self._evidence_s(segment))
        if adopt is not None:
            label = adopt
        segment.score = score
        if label is None:
            if segment.full is None or segment.full_windows < o.max_undecided:
                return []
            label = UNKNOWN
        if label == UNKNOWN and segment.label in self.voices:
            return []  # a voice of its own already; more windows will refine it
        if label == UNKNOWN and len(segment.clean) >= o.min_voice_windows:
            label = self._new_voice(segment.clean, now_s)
            segment.clean.clear()
            label = self._folded.get(label, label)  # at once an enrolled speaker's
        if label == segment.label:
            return []
        events = []
        previous = segment.previous
        if (
            not segment.changed
            and UNKNOWN in (previous, label)
            and self._same_as_last(segment, label)
        ):
            # Next to an undecided voice, a label is news only if the voice is another one.
            segment.changed = True
            if label == UNKNOWN and self._named(previous):
                label = previous
        if not segment.changed and previous is not None and previous != label:
            segment.changed = segment.reported = True
            events.append(
                self._event("change", segment.start_s, now_s, now_s, label, score, previous)
            )
        segment.label = self.last_label = label
        if label != segment.announced:
            segment.announced = label
            events.append(self._event("speaker", segment.start_s, now_s, now_s, label, score))
        return events

    def _same_as_last(self, segment: _Segment, label: str) -> bool:
        """Whether the segment, labelled ``label``, is the voice of the last closed one."""
        if self._last_vector is None:
            return False
        if float(self._last_vector @ self._vector(segment)) >= self.options.same_score:
            return True
        if segment.previous == UNKNOWN and self._named(label):
            # That unknown was this voice, heard too badly to name.
            scores = self._scores(self._last_vector)
            best = int(np.argmax(scores))
            return self._labels[best] == label and scores[best] >= self.options.resume_score
        return False

    def _new_voice(self, windows: list[tuple[float, np.ndarray]], now_s: float) -> str:
        """A new unknown voice, learnt from clean windows (``(end_s, vector)``)."""
        if len(self.voices) >= self.options.max_voices:
            oldest = min(self.voices.values(), key=lambda v: v.last_heard_s)
            del self.voices[oldest.label]
        label = self._mint()
        voice = Voice(label, np.zeros(len(windows[0][1])), 0.0, now_s)
        self.voices[label] = voice
        self._learn(voice, windows, now_s)
        return self._renamed.get(label, label)

    def _close_segment(self, end_s: float, now_s: float) -> list[Event]:
        """Emit the closing segment (one still undecided is ``unknown``); teach its voice."""
        segment, self.segment = self.segment, None
        label = segment.label or UNKNOWN
        self._last_vector = self._vector(segment)
        events = []
        previous = segment.previous
        score = self._score_for(previous, self._last_vector) if segment.label is None else None
        if score is not None and score < self.options.undecided_change_score:
            # Too unsure to name, but not the voice before it: that much is a change.
            self.last_label = UNKNOWN
            events += [
                self._event("change", segment.start_s, now_s, now_s, UNKNOWN, score, previous),
                self._event("speaker", segment.start_s, now_s, now_s, UNKNOWN, score),
            ]
        clean = [(end, v) for end, v in segment.clean if end <= end_s + 0.2]
        voice = self.voices.get(label)
        if voice is not None:
            self._learn(voice, clean, now_s)
            label = self._folded.get(label, label)  # the voice was an enrolled speaker's
        elif label in self.profiles and segment.score >= self.options.adapt_score:
            self._adapt(label, [v for _, v in clean])
        segment_event = self._event("segment", segment.start_s, end_s, now_s, label, segment.score)
        if label not in self.profiles:
            entry = Entry(
                segment.start_s, end_s, label, self._last_vector, self._evidence_s(segment)
            )
            if self.options.revise_s > 0:
                self._closed.append(entry)
            if self.look_back is not None:
                self.look_back.add_segment(entry)
        return [*events, segment_event, *self._revise(now_s), *self._repair(now_s)]

    def _revise(self, now_s: float) -> list[Event]:
        """Corrected ``segment`` events for the recent closed segments the session now
        labels better: a voice merged into another takes that one's label, and an
        ``unknown`` segment takes the unknown voice its audio names by now."""
        closed, renamed = self._closed, self._renamed
        while closed and closed[0].end_s < now_s - self.options.revise_s:
            closed.popleft()
        events = []
        self._pool_unknown(now_s)
        for entry in closed:
            label = entry.label
            while label in renamed:
                label = renamed[label]
            if label == UNKNOWN:
                named, _ = self.classify(entry.vector, entry.evidence_s)
                label = named if named in self.voices else UNKNOWN
            if label != entry.label:
                score = self._score_for(label, entry.vector)
                events.append(
                    self._event(
                        "segment", entry.start_s, entry.end_s, now_s, label, score, entry.label
                    )
                )
                if entry is closed[-1] and self.last_label == entry.label:
                    self.last_label = label
                entry.label = label
        renamed.clear()
        return events

    def _pool_unknown(self, now_s: float) -> None:
        """When the segment that just closed is ``unknown``, a new voice of the recent
        ``unknown`` segments as alike as two voices that merge (``merge_score``), if
        there are ``min_voice_windows`` of them: a speaker heard only in turns too short
        to make a voice of their own."""
        bar = self.options.merge_score
        unknown = [e for e in self._closed if e.label == UNKNOWN]
        if not unknown or self._closed[-1] is not unknown[-1]:
            return
        latest = unknown[-1]
        group = [e for e in unknown if float(e.vector @ latest.vector) >= bar]
        if len(group) < self.options.min_voice_windows:
            return
        centre = _unit(np.sum([e.vector for e in group], axis=0))
        group = [e for e in group if float(e.vector @ centre) >= bar]
        if len(group) < self.options.min_voice_windows:
            return
        self._new_voice([(e.end_s, e.vector) for e in group], now_s)

    def _repair(self, now_s: float, force: bool = False) -> list[Event]:
        """Run the look-back pass when it is due: adopt its voices, and re-emit each
        segment it relabelled as a corrected ``segment`` event (``previous``: the label
        it had)."""
        look_back = self.look_back
        if look_back is None or not (force or look_back.due(now_s)):
            return []
        repair = look_back.run(now_s, self._mint)
        if repair is None:
            return []
        for old, new in repair.merged.items():
            self.voices.pop(old, None)
            if self.last_label == old:
                self.last_label = new
        for label, centroid in repair.centroids.items():
            voice = self.voices.get(label)
            if voice is None and label in repair.created:
                voice = self.voices[label] = Voice(label, centroid, 0.0, now_s)
            if voice is not None:
                voice.total = centroid * max(voice.weight_s, self.options.hop_s)
        self._refresh()
        latest = look_back.entries[-1]
        for entry, old in repair.relabelled:
            if entry is latest and self.last_label == old:
                self.last_label = entry.label
        return [
            self._event("segment", e.start_s, e.end_s, now_s, e.label, self._score(e), old)
            for e, old in repair.relabelled
        ]

    def _mint(self) -> str:
        """The next unknown voice's label."""
        self._voices_made += 1
        return f"speaker-{self._voices_made}"

    def _score(self, entry) -> float:
        score = self._score_for(entry.label, entry.vector)
        return 0.0 if score is None else score

    def _adapt(self, name: str, windows: list[np.ndarray]) -> None:
        """Teach the stream's copy of profile ``name`` clean windows of its voice."""
        if not windows:
            return
        self._session[name] = self._fold(*self._session.get(name, (0.0, 0.0)), windows)
        self._refresh()

    def _fold(
        self, total: np.ndarray | float, weight_s: float, windows: list[np.ndarray]
    ) -> tuple[np.ndarray, float]:
        """A running sum of windows (each weighing ``hop_s``) with new ``windows`` added,
        scaled down to at most ``voice_memory_s`` of speech so older speech fades."""
        hop_s = self.options.hop_s
        total = total + np.sum(windows, axis=0) * hop_s
        weight_s += hop_s * len(windows)
        memory = self.options.voice_memory_s
        if weight_s > memory:
            total, weight_s = total * (memory / weight_s), memory
        return total, weight_s

    def _fold_into_profile(self, voice: Voice) -> bool:
        """Whether the unknown voice matches a profile the session has not heard yet: then
        it was that enrolled speaker all along, heard badly at first (or enrolled since),
        and what it heard is how this session sounds; it takes the name. (Once the
        session has heard that speaker, a voice of its own near the profile is somebody
        else: a stranger who sounds alike.)"""
        if not self.profiles:
            return False
        scores = self._scores(voice.centroid)[: len(self.profiles)]
        name, score = self._labels[int(np.argmax(scores))], float(scores.max())
        if score < self.options.accept_score or name in self._session:
            return False
        self._session[name] = (voice.total, voice.weight_s)
        self._folded[voice.label] = name
        self._renamed[voice.label] = name  # its recent segments are revised
        self.forget(voice.label)
        if self.last_label == voice.label:
            self.last_label = name
        return True

    def _learn(self, voice: Voice, windows: list[tuple[float, np.ndarray]], now_s: float) -> None:
        """Fold clean windows (``(end_s, vector)``) into an unknown voice (bounded), then
        merge look-alikes. Its speech is the time its windows cover, overlaps counted once."""
        voice.last_heard_s = now_s
        if not windows:
            return
        vectors = [v for _, v in windows]
        voice.total, voice.weight_s = self._fold(voice.total, voice.weight_s, vectors)
        voice.windows += len(windows)
        for end_s, _ in windows:
            start_s = max(end_s - self.options.window_s, voice.heard_until_s)
            voice.speech_s += max(0.0, end_s - start_s)
            voice.heard_until_s = max(voice.heard_until_s, end_s)
        if self._fold_into_profile(voice):
            return
        for other in list(self.voices.values()):
            if other is voice:
                continue
            if float(other.centroid @ voice.centroid) >= self.options.merge_score:
                older, younger = sorted((other, voice), key=lambda v: int(v.label.split("-")[1]))
                older.total = older.total + younger.total
                older.weight_s += younger.weight_s
                older.windows += younger.windows
                older.speech_s += younger.speech_s
                older.heard_until_s = max(older.heard_until_s, younger.heard_until_s)
                older.last_heard_s = max(older.last_heard_s, younger.last_heard_s)
                del self.voices[younger.label]
                self._renamed[younger.label] = older.label
                if self.last_label == younger.label:
                    self.last_label = older.label
                if self.segment is not None and self.segment.label == younger.label:
                    self.segment.label = older.label
                break
        self._refresh()

    def _end_region(self, span: tuple[float, float], now_s: float) -> list[Event]:
        events = []
        if not self._region_named and span[1] - span[0] >= self.MIN_LABELLED_S:
            events += self._label_unheard(span, now_s)
        if self.segment is not None:
            events += self._close_segment(span[1], now_s)
        events.append(self._event("speech_end", span[0], span[1], now_s))
        self.in_region = False
        self._pending.clear()
        return events

    def _label_unheard(self, span: tuple[float, float], now_s: float) -> list[Event]:
        """A label for a region that ends without one: from the full window kept back for
        its onset when there is one (named if it names someone, else ``unknown``), else
        ``unknown`` (no window of it was clean enough to embed), which is no change."""
        if self._held is not None:
            return self._open_segment(span[0], now_s, full=self._held)
        return [
            self._event(kind, span[0], end_s, now_s, UNKNOWN, 0.0)
            for kind, end_s in (("speaker", now_s), ("segment", span[1]))
        ]

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
