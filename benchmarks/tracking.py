"""Live identification of enrolled speakers on simulated conversations.

    python benchmarks/tracking.py ../shared/data/librispeech-train-clean-100 --count 100

Builds ``--count`` deterministic conversations from a folder of single-speaker
recordings (``streamer.evaluation.simulate``), enrolls each enrolled speaker from audio
not used in its conversation, streams the conversation through the same pipeline as ``streamer
track`` (20 ms chunks) and prints a table of identity, diarization, change and speed
figures. Identity and DER score the result ``streamer track --rttm`` writes (a speaker's
segments joined across pauses of up to ``MERGE_GAP_S``); ``identity_accuracy_live``
scores the segment events as they are. DER uses pyannote.metrics with ``collar=0.25``
(pyannote's convention: the collar is the total width, ±0.125 s around each reference
boundary).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import publish
from rich.progress import track
from rich.table import Table

from streamer.enroll import collect
from streamer.evaluation.scoring import (
    ChangeScores,
    DerScores,
    IdentityScores,
    change_scores,
    der,
    identity_scores,
)
from streamer.evaluation.simulate import SimulationOptions, simulate_from_folder
from streamer.events import Event
from streamer.pipeline import FILE_BATCH_S, PipelineOptions, build_engine, track_chunks
from streamer.sinks.rttm import MERGE_GAP_S, merge_gaps
from streamer.worker import WorkerOptions


def chunks(audio: np.ndarray, size: int):
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


def run_conversation(engine, conversation, realtime_batching: bool):
    """Enroll, then track one conversation; return its events and processing seconds."""
    profiles = {}
    for name, clip in conversation.enrollment.items():
        vectors = collect(engine, clip).embeddings
        mean = np.mean(vectors, axis=0)
        profiles[name] = mean / np.linalg.norm(mean)
    engine.set_profiles(profiles)
    size = int(0.02 * conversation.sample_rate)
    started = time.process_time()
    events: list[Event] = list(
        track_chunks(
            engine,
            chunks(conversation.audio, size),
            conversation.file_id,
            realtime=realtime_batching,
        )
    )
    return events, time.process_time() - started


def encoder_ms(engine, batch: int, repeats: int = 20) -> float:
    """Median milliseconds per window of the encoder alone at ``batch`` windows per call."""
    spec = engine.embedder.spec
    windows = np.random.default_rng(0).random((batch, spec.window_frames, 40), np.float32)
    times = []
    for _ in range(repeats + 3):
        started = time.perf_counter()
        engine.embedder.embed(windows.copy())
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times[3:])) / batch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of single-speaker recordings")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--strangers", type=int, default=1)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cut-anywhere",
        action="store_true",
        help="cut turns at their drawn lengths, mid-word too, not at pauses (harder)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    options = SimulationOptions(
        n_speakers=args.speakers,
        n_strangers=args.strangers,
        duration_s=args.duration_s,
        seed=args.seed,
        cut_at_pauses=not args.cut_anywhere,
    )
    # As `streamer track` runs a file: the worker takes 4 s of audio per step.
    engine = build_engine(PipelineOptions(worker=WorkerOptions(step_s=FILE_BATCH_S)))
    identity, live, ders, changes = [], [], [], []
    audio_s = cpu_fast_s = 0.0
    for index in track(range(args.count), description="conversations", transient=True):
        conversation = simulate_from_folder(args.data, options, index)
        events, cpu_s = run_conversation(engine, conversation, realtime_batching=False)
        audio_s += conversation.duration_s
        cpu_fast_s += cpu_s
        segments = [(e.start_s, e.end_s, e.label) for e in events if e.type == "segment"]
        hypothesis = merge_gaps(segments, MERGE_GAP_S)
        reference, enrolled = list(conversation.turns), set(conversation.enrollment)
        identity.append(identity_scores(reference, hypothesis, enrolled))
        live.append(identity_scores(reference, segments, enrolled))
        ders.append(der(reference, hypothesis, collar_s=0.25))
        predicted = [(e.start_s, e.emitted_at) for e in events if e.type == "change"]
        changes.append(change_scores(reference, predicted, tolerance_s=0.5))

    # Speed with real-time batching (the worker runs after every 20 ms chunk).
    conversation = simulate_from_folder(args.data, options, 0)
    _, cpu_rt_s = run_conversation(engine, conversation, realtime_batching=True)

    ident = IdentityScores.combine(identity)
    total_der = DerScores.combine(ders)
    chg = ChangeScores.combine(changes)
    figures = {
        "conversations": args.count,
        "audio_s": round(audio_s, 1),
        "identity_accuracy": ident.accuracy,
        "identity_accuracy_live": IdentityScores.combine(live).accuracy,
        "wrong_name": ident.wrong_name,
        "unknown": ident.unknown,
        "missed": ident.missed,
        "stranger_unknown": ident.stranger_unknown,
        "der": total_der.der,
        "change_precision": chg.precision,
        "change_recall": chg.recall,
        "change_f1": chg.f1,
        "latency_mean_s": chg.latency_mean_s,
        "latency_p90_s": chg.latency_p90_s,
        "encoder_ms_batch1": encoder_ms(engine, 1),
        "encoder_ms_batch16": encoder_ms(engine, 16),
        "rtf_fast": cpu_fast_s / audio_s,
        "rtf_realtime_batching": cpu_rt_s / conversation.duration_s,
        "torch_threads": torch.get_num_threads(),
    }
    table = Table(
        title=f"streamer tracking benchmark ({args.count} conversations, "
        f"{args.speakers} enrolled + {args.strangers} stranger, "
        f"turns cut {'anywhere' if args.cut_anywhere else 'at pauses'})"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return publish(table, figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
