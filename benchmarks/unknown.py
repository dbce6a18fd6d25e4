"""Unknown voices: the live labels against offline clustering of the same windows.

    python benchmarks/unknown.py --sim ../shared/data/librispeech-train-clean-100 \\
        --ami ../shared/data/ami-debug-train --sample ../shared/data/pyannote-sample

Nobody is enrolled. Each recording streams through the same pipeline as ``streamer
track`` (20 ms chunks); the tracker's full windows are recorded on the way, and two
baselines label those same windows after the fact:

* offline spectral clustering of all windows (cosine affinity, each row keeping its
  strongest quarter, symmetrised; the speaker count from the normalised Laplacian's
  largest eigengap, at most 8; k-means on the eigenvectors);
* a greedy online threshold (each window joins the most similar running-mean cluster
  if that similarity clears a threshold, else starts a new one) at the best of a few
  thresholds, picked on the scored data itself, so the baseline is flattered.

Two more rows say where the live labels lose: ``live labels`` scores the segments as
first told (the corrections of ``docs/events.md`` not applied), ``each segment its
majority speaker`` relabels every segment with the reference speaker it holds most of,
so what is left is error inside segments (a turn missed without a pause) that no
relabelling of segments can repair. DER is split into confusion, missed speech and
false alarm (the latter two come from the speech regions, the same for every system).

A baseline labels every 10 ms of the tracker's own speech regions with the label of
the window whose centre is nearest. DER is pyannote.metrics' with ``collar=0.25``
(the total width), overlap scored; the AMI excerpts are scored inside their UEM and the
DER is the time-weighted total. ``--long-min`` adds a long session: four speakers in
five phases (two of them at a time, then all four), so every speaker comes back after
minutes of absence; their labels must not change.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from report import add_condition_arguments, condition_title, publish
from rich.progress import track
from rich.table import Table

from streamer.audio import load_audio
from streamer.evaluation.scoring import DerScores, der, read_rttm, read_uem
from streamer.evaluation.simulate import (
    SimulationOptions,
    benchmark_options,
    load_speaker_folder,
    pick_speakers,
    simulate,
    simulate_from_folder,
)
from streamer.events import final_segments
from streamer.pipeline import PipelineOptions, build_engine, track_chunks
from streamer.tracker import Tracker

GRID_S = 0.01
GREEDY_THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)


class RecordingTracker(Tracker):
    """The tracker, keeping every embedded full window it was given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.windows: list = []

    def window(self, window, now_s: float):
        if window.embedding is not None and not window.onset:
            self.windows.append(window)
        return super().window(window, now_s)


def run(engine, audio: np.ndarray, file_id: str):
    """Stream ``audio``; return its segments (corrections applied), the segments as
    first told, its speech regions and full windows."""
    tracker = RecordingTracker(file_id, engine.tracker_options, {})
    size = int(0.02 * engine.embedder.spec.sample_rate)
    chunks = (audio[i : i + size] for i in range(0, len(audio), size))
    events = list(track_chunks(engine, chunks, file_id, tracker=tracker))
    segments = final_segments(events)
    live = final_segments(e for e in events if e.type != "segment" or e.previous is None)
    regions = [(e.start_s, e.end_s) for e in events if e.type == "speech_end"]
    return segments, live, regions, tracker.windows


def majority_labels(reference, segments) -> list[tuple[float, float, str]]:
    """Each segment labelled with the reference speaker it holds most of: what is left
    of the DER is the error inside segments (a turn missed without a pause)."""
    result = []
    for start, end, label in segments:
        held = Counter()
        for ref_start, ref_end, who in reference:
            held[who] += max(0.0, min(end, ref_end) - max(start, ref_start))
        best = held.most_common(1)[0] if held else (label, 0.0)
        result.append((start, end, best[0] if best[1] > 0 else label))
    return result


def spectral(vectors: np.ndarray, max_k: int = 8, keep: float = 0.25) -> np.ndarray:
    """Offline spectral clustering with the speaker count from the eigengap."""
    from scipy.sparse.csgraph import laplacian
    from sklearn.cluster import KMeans

    n = len(vectors)
    if n < 3:
        return np.zeros(n, dtype=int)
    affinity = np.clip(vectors @ vectors.T, 0.0, None)
    cut = np.quantile(affinity, 1.0 - keep, axis=1, keepdims=True)
    affinity = np.where(affinity >= cut, affinity, 0.0)
    affinity = np.maximum(affinity, affinity.T)
    values, vectors_ = np.linalg.eigh(laplacian(affinity, normed=True))
    top = min(max_k, n - 1)
    k = int(np.argmax(np.diff(values[: top + 1]))) + 1
    embedding = vectors_[:, :k]
    embedding /= np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(embedding)


def greedy(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Online greedy clustering: nearest running mean above ``threshold``, else new."""
    sums: list[np.ndarray] = []
    labels = np.zeros(len(vectors), dtype=int)
    for i, v in enumerate(vectors):
        scores = [float(s @ v) / np.linalg.norm(s) for s in sums]
        if scores and max(scores) >= threshold:
            labels[i] = int(np.argmax(scores))
            sums[labels[i]] = sums[labels[i]] + v
        else:
            labels[i] = len(sums)
            sums.append(v.astype(np.float64))
    return labels


def label_regions(regions, windows, labels) -> list[tuple[float, float, str]]:
    """Segments: each 10 ms of the regions takes the label of the nearest window centre."""
    if not windows:
        return []
    centres = np.array([(w.start_s + w.end_s) / 2 for w in windows])
    segments = []
    for start, end in regions:
        grid = np.arange(start, end, GRID_S)
        if len(grid) == 0:
            continue
        nearest = labels[np.abs(grid[:, None] - centres[None, :]).argmin(axis=1)]
        cuts = np.flatnonzero(np.diff(nearest)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(grid)], strict=True):
            segments.append(
                (float(grid[a]), float(min(end, grid[b - 1] + GRID_S)), f"c{nearest[a]}")
            )
    return segments


def speaker_count(segments, min_s: float = 1.0) -> int:
    """Labels holding at least ``min_s`` of speech (``unknown`` is not a voice)."""
    held = Counter()
    for start, end, label in segments:
        held[label] += end - start
    return sum(1 for label, s in held.items() if s >= min_s and label != "unknown")


def purity_coverage(reference, hypothesis, uem) -> tuple[float, float]:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationCoverage, DiarizationPurity

    def annotation(segments):
        result = Annotation()
        for i, (s, e, label) in enumerate(segments):
            if e > s:
                result[Segment(s, e), i] = str(label)
        return result

    ref, hyp = annotation(reference), annotation(hypothesis)
    span = Timeline([Segment(s, e) for s, e in uem]) if uem else None
    purity = DiarizationPurity(collar=0.25)(ref, hyp, uem=span)
    coverage = DiarizationCoverage(collar=0.25)(ref, hyp, uem=span)
    return purity, coverage


class Scores:
    """DER per system over a set of recordings, plus speaker counts and purity/coverage."""

    def __init__(self) -> None:
        self.ders: dict[str, list[DerScores]] = {}
        self.counts: dict[str, list[tuple[int, int]]] = {}
        self.purity: list[tuple[float, float]] = []

    def add(self, system: str, reference, hypothesis, uem=None) -> None:
        self.ders.setdefault(system, []).append(der(reference, hypothesis, 0.25, uem))
        truth = len({label for *_, label in reference})
        self.counts.setdefault(system, []).append((speaker_count(hypothesis), truth))
        if system == "streamer":
            self.purity.append(purity_coverage(reference, hypothesis, uem))

    def der(self, system: str) -> float:
        return DerScores.combine(self.ders[system]).der

    def right_count(self, system: str) -> float:
        pairs = self.counts[system]
        return sum(found == truth for found, truth in pairs) / len(pairs)


def evaluate(engine, recordings, scores: Scores) -> None:
    """Stream each ``(file_id, audio, reference, uem)``; score streamer and baselines."""
    greedy_runs: dict[float, list] = {t: [] for t in GREEDY_THRESHOLDS}
    for file_id, audio, reference, uem in recordings:
        segments, live, regions, windows = run(engine, audio, file_id)
        scores.add("streamer", reference, segments, uem)
        scores.add("streamer, live labels (no corrections)", reference, live, uem)
        scores.add(
            "streamer, each segment its majority speaker",
            reference,
            majority_labels(reference, segments),
            uem,
        )
        dim = engine.embedder.spec.embedding_dim
        vectors = np.array([w.embedding for w in windows], np.float32).reshape(len(windows), dim)
        offline = label_regions(regions, windows, spectral(vectors))
        scores.add("offline spectral", reference, offline, uem)
        for t in GREEDY_THRESHOLDS:
            greedy_runs[t].append(
                (reference, label_regions(regions, windows, greedy(vectors, t)), uem)
            )
    best = min(
        GREEDY_THRESHOLDS,
        key=lambda t: DerScores.combine(der(r, h, 0.25, u) for r, h, u in greedy_runs[t]).der,
    )
    for reference, hypothesis, uem in greedy_runs[best]:
        scores.add(f"greedy online (best threshold {best})", reference, hypothesis, uem)


def simulated(folder: Path, count: int, args: argparse.Namespace):
    """The tracking benchmark's conversations with nobody enrolled (2-4 voices)."""
    for index in range(count):
        options = benchmark_options(
            index, seed=args.seed, clean=args.clean, speakers=args.speakers, enrolled=False
        )
        conversation = simulate_from_folder(folder, options, index)
        yield conversation.file_id, conversation.audio, list(conversation.speech), None


def ami(folder: Path):
    reference = read_rttm(folder / "reference.rttm")
    uem = read_uem(folder / "reference.uem")
    for path in sorted(folder.glob("*.wav")):
        yield path.stem, load_audio(path, 16000), reference.get(path.stem, []), uem[path.stem]


def sample(folder: Path):
    path = folder / "sample.wav"
    reference = read_rttm(folder / "sample.rttm")
    yield "sample", load_audio(path, 16000), reference["sample"], None


def long_session(folder: Path, minutes: float):
    """Four speakers in five phases: AB, CD, AC, BD, ABCD; each comes back after minutes."""
    files = load_speaker_folder(folder)
    long_enough = [s for s, fs in files.items() if sum(sf.info(f).duration for f in fs) >= 12.0]
    speakers = pick_speakers(long_enough, SimulationOptions(n_speakers=0, n_strangers=4), 99)[1]
    recordings = {s: np.concatenate([load_audio(f, 16000) for f in files[s]]) for s in speakers}
    phases = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 1, 2, 3)]
    phase_s = minutes * 60 / len(phases)
    audio, turns, offset = [], [], 0.0
    for index, members in enumerate(phases):
        options = SimulationOptions(
            n_speakers=0, n_strangers=len(members), duration_s=phase_s, enroll_s=0.5, seed=index
        )
        voices = [speakers[m] for m in members]
        conversation = simulate(recordings, options, enrolled=[], strangers=voices)
        audio.append(conversation.audio)
        turns += [(s + offset, e + offset, who) for s, e, who in conversation.turns]
        offset += conversation.duration_s
    return np.concatenate(audio), turns, phases, speakers, phase_s


def label_stability(segments, turns, phases, speakers, phase_s) -> tuple[int, int]:
    """Returning speakers whose majority label is the same in every phase they speak."""
    stable = 0
    for i, speaker in enumerate(speakers):
        majorities = []
        for index, members in enumerate(phases):
            if i not in members:
                continue
            held = Counter()
            lo, hi = index * phase_s, (index + 1) * phase_s
            for ts, te, who in turns:
                if who != speaker or not lo <= ts < hi:
                    continue
                for s, e, label in segments:
                    held[label] += max(0.0, min(e, te) - max(s, ts))
            majorities.append(held.most_common(1)[0][0] if held else None)
        stable += len(set(majorities)) == 1 and majorities[0] not in (None, "unknown")
    return stable, len(speakers)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", type=Path, help="folder of single-speaker recordings")
    parser.add_argument("--count", type=int, default=12, help="simulated conversations")
    add_condition_arguments(parser)
    parser.add_argument("--ami", type=Path, help="ami-debug-train folder")
    parser.add_argument("--sample", type=Path, help="pyannote-sample folder")
    parser.add_argument("--long-min", type=float, default=0.0, help="long-session minutes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    engine = build_engine(PipelineOptions())
    sets = []
    if args.sim:
        sets.append(
            (
                f"simulated ({args.count} × 60–120 s, 2–4 speakers, {condition_title(args)})",
                simulated(args.sim, args.count, args),
            )
        )
    if args.ami:
        sets.append(("AMI excerpts (UEM, 30 s each)", ami(args.ami)))
    if args.sample:
        sets.append(("pyannote sample", sample(args.sample)))
    figures: dict[str, dict] = {}
    table = Table(title="unknown voices: streamer (live) vs baselines on the same windows")
    columns = ("data", "system", "DER", "confusion / missed / false alarm", "right speaker count")
    for column in (*columns, "purity / coverage"):
        table.add_column(column)
    for title, recordings in sets:
        scores = Scores()
        evaluate(engine, track(list(recordings), description=title, transient=True), scores)
        for system in scores.ders:
            p = np.mean(scores.purity, axis=0) if system == "streamer" else None
            figures.setdefault(title, {})[system] = {
                "der": scores.der(system),
                "right_count": scores.right_count(system),
                "counts": scores.counts[system],
                **({"purity": p[0], "coverage": p[1]} if p is not None else {}),
            }
            parts = DerScores.combine(scores.ders[system])
            figures[title][system] |= {
                name: getattr(parts, f"{name}_s") / max(parts.total_s, 1e-9)
                for name in ("confusion", "missed", "false_alarm")
            }
            table.add_row(
                title,
                system,
                f"{100 * scores.der(system):.1f} %",
                " / ".join(
                    f"{100 * getattr(parts, name) / max(parts.total_s, 1e-9):.1f}"
                    for name in ("confusion_s", "missed_s", "false_alarm_s")
                ),
                f"{100 * scores.right_count(system):.0f} %",
                f"{p[0]:.2f} / {p[1]:.2f}" if p is not None else "",
            )
    if args.sim and args.long_min:
        audio, turns, phases, speakers, phase_s = long_session(args.sim, args.long_min)
        started = time.process_time()
        segments, *_ = run(engine, audio, "long")
        cpu_s = time.process_time() - started
        stable, total = label_stability(segments, turns, phases, speakers, phase_s)
        long_der = der(turns, segments, 0.25).der
        figures["long session"] = {
            "minutes": len(audio) / 16000 / 60,
            "stable_speakers": stable,
            "speakers": total,
            "labels": speaker_count(segments),
            "der": long_der,
            "rtf": cpu_s / (len(audio) / 16000),
        }
        table.add_row(
            f"long session ({len(audio) / 16000 / 60:.0f} min, 4 speakers, 5 phases)",
            "streamer",
            f"{100 * long_der:.1f} %",
            "",
            f"{speaker_count(segments)} labels for 4",
            f"{stable}/{total} kept their label",
        )
    return publish(table, figures, args.json, width=140)


if __name__ == "__main__":
    sys.exit(main())
