"""The look-back pass: the recent past of a stream's unknown voices, clustered again (sans-I/O).

The tracker labels an unknown voice as it is heard, greedily: each segment goes to the
closest voice there is at that moment. Mistakes made early last (two voices taken for
one, one voice split in two). Every few seconds, as a segment closes, the
:class:`Reclusterer` clusters the clean windows of the recent closed segments again (a
bounded history), as an offline diarizer would, then maps the clusters onto the labels
the stream already uses, so that a label keeps its meaning while the segments that got
the wrong one are repaired:

* Points are the full windows that lie mostly inside one closed segment, weighted by
  their speech ratio times their share inside it (overlap at turn edges and silence
  weigh less; below ``min_weight`` a window is left out).
* Spectral clustering of the points (optionally with their session mean removed, what
  all voices of a recording share): a cosine affinity in which each point keeps its
  strongest neighbours, the number of voices from the largest eigengap of the
  normalised Laplacian, k-means on the eigenvectors.
* Clusters too small to be a voice join the nearest; optionally, two clusters whose
  centroids are closer than their own windows are to them (the cluster's spread) are
  one voice.
* Each segment votes with its points' weights; clusters and labels are matched by the
  speech they share (Hungarian matching), so every label the history holds goes to at
  most one cluster. A cluster with no label becomes a new voice once it holds
  ``min_voice_s`` of speech; a label that no cluster took is merged into the cluster
  most of its speech went to.

The tracker turns a :class:`Repair` into corrected ``segment`` events (``docs/events.md``)
and new voice centroids.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .events import UNKNOWN


@dataclass(frozen=True)
class ReclusterOptions:
    """How often and over how much of the past the look-back pass runs.

    Attributes:
        every_s: a pass runs at most this often (seconds of stream audio), when a
            segment closes, and once more when the stream ends.
        history_s: the pass sees the segments that ended in the last this many seconds.
        max_points: at most this many windows (the latest) are clustered.
        spacing_s: points of one segment are full windows at least this far apart
            (neighbouring windows share most of their audio; near-copies would make
            every segment look like a voice of its own).
        min_weight: a window's speech ratio times its share inside its segment must be
            at least this for it to be a point.
        keep: share of the strongest affinities each point keeps (at least
            ``min_cluster``).
        centre: remove the history's mean before the affinities.
        min_cluster: fewest points a cluster holds; the voice count is bounded so that
            every cluster can hold this many, and smaller clusters join the nearest.
        max_voices: most voices the pass may find in its history.
        min_points: fewest points a pass needs.
        merge_spread: two clusters are one voice when their centroids' similarity is
            at least the mean similarity of their windows to their own centroid less
            this. The default, -1, turns the test off: on the tuning conversations
            every margin tried (0 to 0.16) merged different voices more often than it
            joined one voice's halves.
        min_voice_s: seconds of speech a cluster without a label needs to become a new
            voice (each point stands for ``spacing_s``).
    """

    every_s: float = 4.0
    history_s: float = 300.0
    max_points: int = 300
    spacing_s: float = 0.8
    min_weight: float = 0.0
    keep: float = 0.25
    centre: bool = False
    min_cluster: int = 3
    max_voices: int = 8
    min_points: int = 6
    merge_spread: float = -1.0
    min_voice_s: float = 2.0


@dataclass
class Entry:
    """A closed segment the look-back may relabel."""

    start_s: float
    end_s: float
    label: str
    vector: np.ndarray  # the segment's voice (unit), to score a new label with
    evidence_s: float = 0.0  # how much audio the vector rests on (for the length-aware bars)


@dataclass
class Repair:
    """What a look-back pass changed.

    Attributes:
        relabelled: ``(entry, old_label)`` for each segment whose label changed (the
            entry already carries the new one).
        centroids: the new centroid of every label the pass found, new ones included.
        merged: labels no cluster took, and the label that took their speech.
        created: labels made by this pass.
    """

    relabelled: list[tuple[Entry, str]] = field(default_factory=list)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)


class Reclusterer:
    """The bounded history of one stream's unknown-voice segments, and the pass over it."""

    def __init__(self, options: ReclusterOptions) -> None:
        self.options = options
        self.entries: deque[Entry] = deque()
        self._windows: deque = deque()  # (start_s, end_s, speech_ratio, vector)
        self._last_s = -np.inf  # when the last pass ran
        self.passes = 0

    def add_window(self, window) -> None:
        """A full window (``streamer.worker.Window``) of the stream."""
        if self._windows and window.start_s - self._windows[-1][0] < self.options.spacing_s:
            return
        self._windows.append((window.start_s, window.end_s, window.speech_ratio, window.embedding))
        while len(self._windows) > self.options.max_points * 2:
            self._windows.popleft()

    def add_segment(self, entry: Entry) -> None:
        """A closed segment labelled with an unknown voice's label (or ``unknown``)."""
        if entry.end_s > entry.start_s:
            self.entries.append(entry)

    def forget(self, label: str) -> None:
        """Stop treating ``label`` as a voice to repair (e.g. it became a profile)."""
        self.entries = deque(e for e in self.entries if e.label != label)

    def due(self, now_s: float) -> bool:
        return now_s - self._last_s >= self.options.every_s

    def run(self, now_s: float, new_label: Callable[[], str]) -> Repair | None:
        """Cluster the history again; ``None`` when it holds too little to say anything.
        ``new_label`` mints the label of a voice the pass finds."""
        o = self.options
        self._last_s = now_s
        self._trim(now_s)
        points = self._points()
        if points is None:
            return None
        self.passes += 1
        owner, weight, vectors = points
        clusters = cluster(vectors, o)
        k = int(clusters.max()) + 1
        votes = np.zeros((len(self.entries), k))
        np.add.at(votes, (owner, clusters), weight)
        labels = sorted({e.label for e in self.entries if e.label != UNKNOWN})
        shared = np.zeros((k, len(labels)))
        for i, entry in enumerate(self.entries):
            if entry.label != UNKNOWN:
                shared[:, labels.index(entry.label)] += votes[i]
        names = self._name(shared, labels, weight, clusters, new_label)
        repair = Repair(created=[n for n in names if n is not None and n not in labels])
        for j, label in enumerate(labels):
            if label not in names and shared[:, j].any():
                taker = names[int(np.argmax(shared[:, j]))]
                if taker is not None:
                    repair.merged[label] = taker
        for c, name in enumerate(names):
            if name is not None:
                repair.centroids[name] = _unit(vectors[clusters == c].mean(axis=0))
        for i, entry in enumerate(self.entries):
            name = names[int(np.argmax(votes[i]))] if votes[i].any() else None
            name = name or repair.merged.get(entry.label)
            if name is not None and name != entry.label:
                repair.relabelled.append((entry, entry.label))
                entry.label = name
        return repair

    def _trim(self, now_s: float) -> None:
        horizon = now_s - self.options.history_s
        while self.entries and self.entries[0].end_s < horizon:
            self.entries.popleft()
        first = self.entries[0].start_s if self.entries else now_s
        while self._windows and self._windows[0][0] < min(first, horizon):
            self._windows.popleft()

    def _points(self):
        """``(owner, weight, unit vectors)`` of the windows inside closed segments."""
        o = self.options
        if not self.entries or not self._windows:
            return None
        starts = np.array([e.start_s for e in self.entries])
        ends = np.array([e.end_s for e in self.entries])
        windows = list(self._windows)[-o.max_points :]
        w_start = np.array([w[0] for w in windows])
        w_end = np.array([w[1] for w in windows])
        owner = np.searchsorted(starts, (w_start + w_end) / 2, side="right") - 1
        inside = np.minimum(w_end, ends[owner]) - np.maximum(w_start, starts[owner])
        weight = np.array([w[2] for w in windows]) * inside / (w_end - w_start)
        keep = (owner >= 0) & (weight >= o.min_weight)
        if keep.sum() < o.min_points:
            return None
        vectors = np.array([w[3] for w, k in zip(windows, keep, strict=True) if k], np.float64)
        return owner[keep], weight[keep], vectors

    def _name(self, shared, labels, weight, clusters, new_label) -> list[str | None]:
        """Each cluster's label: the label it shares most speech with (Hungarian), a new
        one when it has none and enough speech, else ``None`` (its segments keep theirs)."""
        from scipy.optimize import linear_sum_assignment

        names: list[str | None] = [None] * shared.shape[0]
        if labels:
            rows, cols = linear_sum_assignment(-shared)
            for c, j in zip(rows, cols, strict=True):
                if shared[c, j] > 0:
                    names[c] = labels[j]
        point_s = self.options.spacing_s
        for c in range(len(names)):
            if names[c] is None and (clusters == c).sum() * point_s >= self.options.min_voice_s:
                names[c] = new_label()
        return names


def cluster(vectors: np.ndarray, options: ReclusterOptions) -> np.ndarray:
    """Cluster indices of unit ``vectors``: spectral clustering with the count from the
    eigengap (the session mean removed first with ``centre``), then look-alike clusters
    merged."""
    from scipy.cluster.vq import kmeans2
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import laplacian

    n = len(vectors)
    top = min(options.max_voices, n // options.min_cluster, n - 1)
    if top < 2:
        return np.zeros(n, dtype=int)
    points = vectors
    if options.centre:
        points = vectors - vectors.mean(axis=0)
        points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    affinity = np.clip(points @ points.T, 0.0, None)
    keep = max(options.keep, options.min_cluster / n)
    cut = np.quantile(affinity, 1.0 - keep, axis=1, keepdims=True)
    affinity = np.where(affinity >= cut, affinity, 0.0)
    affinity = np.maximum(affinity, affinity.T)
    # The smallest eigenpairs only: the count and the embedding need no more.
    values, eigenvectors = eigh(laplacian(affinity, normed=True), subset_by_index=[0, top])
    k = int(np.argmax(np.diff(values[: top + 1]))) + 1
    if k == 1:
        return np.zeros(n, dtype=int)
    embedding = eigenvectors[:, :k]
    embedding /= np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    # scipy's k-means: one k-means++ start costs a few ms here, scikit-learn's ten 130 ms.
    _, labels = kmeans2(embedding, k, minit="++", seed=0)
    return merge_alike(vectors, labels, options.min_cluster, options.merge_spread)


def merge_alike(
    vectors: np.ndarray, labels: np.ndarray, min_cluster: int, margin: float
) -> np.ndarray:
    """Merge the closest two clusters while one holds fewer than ``min_cluster`` points
    or their centroids are at least as similar as the clusters' windows are to their
    own centroid, on average, less ``margin`` (the spread); relabel ``0..k-1`` in order
    of appearance."""
    labels = labels.copy()
    while True:
        ids = list(dict.fromkeys(labels.tolist()))
        if len(ids) < 2:
            break
        members = [labels == c for c in ids]
        centroids = np.array([_unit(vectors[m].mean(axis=0)) for m in members])
        spread = np.array([float((vectors[m] @ c).mean()) for m, c in zip(members, centroids)])
        small = np.array([m.sum() < min_cluster for m in members])
        sims = centroids @ centroids.T
        np.fill_diagonal(sims, -np.inf)
        bar = (spread[:, None] + spread[None, :]) / 2 - margin
        alike = (sims >= bar) | small[:, None] | small[None, :]
        if not alike.any():
            break
        a, b = np.unravel_index(int(np.argmax(np.where(alike, sims, -np.inf))), sims.shape)
        labels[labels == ids[b]] = ids[a]
    _, first = np.unique(labels, return_index=True)
    order = {c: i for i, c in enumerate(labels[np.sort(first)])}
    return np.array([order[c] for c in labels])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)
