"""Live identification of enrolled speakers on simulated conversations.

    python benchmarks/tracking.py ../shared/data/librispeech-train-clean-100
    python benchmarks/tracking.py ../shared/data/librispeech-train-clean-100 --clean
    python benchmarks/tracking.py ../shared/data/librispeech-train-clean-100 --speakers tune

Builds ``--count`` deterministic conversations shaped like unseen ones
(``streamer.evaluation.simulate.benchmark_options``: 60-120 s, 2-4 enrolled speakers,
1-2 strangers in half of them, ~20 turns) from the ``--speakers`` half of a folder of
single-speaker recordings (``report`` by default; choices are made on ``tune``). By
default each speaker's enrollment clip and conversation turns are two different sessions
(the *mismatched* condition: level, microphone, room, noise; ``--clean`` keeps the
recordings as they are). Each speaker is enrolled from their clip, the conversation
streams through the same pipeline as ``streamer track`` (20 ms chunks) and a table of
identity, change, missed-speech, DER and speed figures is printed. Identity, DER and
missed speech score the result ``streamer track --rttm`` writes (a speaker's segments
joined across pauses of up to ``MERGE_GAP_S``) against the reference speech (an energy
VAD on the clean source, pauses under 0.3 s bridged); ``identity_accuracy_live`` scores
the segment events as they are. DER uses pyannote.metrics with ``collar=0.25``
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
from report import add_condition_arguments, condition_title, publish
from rich.progress import track
from rich.table import Table

from streamer.enroll import EnrollOptions, collect, variants_total
from streamer.evaluation.cohort import speaker_entries, without
from streamer.evaluation.scoring import (
    ChangeScores,
    DerScores,
    IdentityScores,
    MissedByLength,
    change_scores,
    der,
    identity_scores,
    missed_by_length,
)
from streamer.evaluation.simulate import benchmark_options, simulate_from_folder
from streamer.events import Event, final_segments
from streamer.pipeline import FILE_BATCH_S, PipelineOptions, build_engine, track_chunks
from streamer.sinks.rttm import MERGE_GAP_S, merge_gaps
from streamer.worker import WorkerOptions


def chunks(audio: np.ndarray, size: int):
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


def run_conversation(engine, conversation, realtime_batching: bool, enroll: EnrollOptions):
    """Enroll as ``streamer enroll`` does, then track one conversation; return its events,
    processing seconds and the speakers enrolled (a clip with no speech enrolls nobody,
    as the CLI refuses it)."""
    profiles = {}
    for name, clip in conversation.enrollment.items():
        collector = collect(engine, clip)
        if collector.embeddings:
            total = np.sum(collector.embeddings, axis=0)
            total += variants_total(engine, clip, collector, enroll.variant_weight)
            profiles[name] = total / np.linalg.norm(total)
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
    return events, time.process_time() - started, set(profiles)


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
    parser.add_argument("--count", type=int, default=24, help="conversations (default 24)")
    add_condition_arguments(parser)
    parser.add_argument(
        "--cut-anywhere",
        action="store_true",
        help="cut turns at their drawn lengths, mid-word too, not at pauses (harder)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="the encoder's precision, as `streamer track --precision` (default fp32)",
    )
    parser.add_argument(
        "--variant-weight",
        type=float,
        default=EnrollOptions().variant_weight,
        help="weight of each enrollment clip's channel variants, as `streamer enroll` "
        "(default %(default).2f; 0: the clip alone)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    enroll = EnrollOptions(variant_weight=args.variant_weight)

    def options(index: int):
        return benchmark_options(
            index,
            seed=args.seed,
            clean=args.clean,
            speakers=args.speakers,
            cut_at_pauses=not args.cut_anywhere,
        )

    # As `streamer track` runs a file: the worker takes 4 s of audio per step.
    engine = build_engine(
        PipelineOptions(worker=WorkerOptions(step_s=FILE_BATCH_S), precision=args.precision)
    )
    identity, live, ders, changes, missed = [], [], [], [], []
    closed, open_set = [], []
    audio_s = cpu_fast_s = 0.0
    turns = 0
    # The shipped cohort holds the tune half's speakers: there, each conversation is scored
    # against it less its own speakers, as the report half's never meet theirs in it.
    entries = None
    if args.speakers == "tune" and engine.cohort is not None:
        entries = speaker_entries(engine, args.data)
    for index in track(range(args.count), description="conversations", transient=True):
        conversation = simulate_from_folder(args.data, options(index), index)
        if entries is not None:
            engine.cohort = without(entries, {t.speaker for t in conversation.turns})
        events, cpu_s, enrolled = run_conversation(engine, conversation, False, enroll)
        audio_s += conversation.duration_s
        cpu_fast_s += cpu_s
        turns += len(conversation.turns)
        segments = final_segments(events)
        hypothesis = merge_gaps(segments, MERGE_GAP_S)
        reference = list(conversation.speech)
        identity.append(identity_scores(reference, hypothesis, enrolled))
        (open_set if conversation.strangers else closed).append(identity[-1])
        live.append(identity_scores(reference, segments, enrolled))
        ders.append(der(reference, hypothesis, collar_s=0.25))
        predicted = [(e.start_s, e.emitted_at) for e in events if e.type == "change"]
        changes.append(change_scores(reference, predicted, tolerance_s=0.5))
        missed.append(missed_by_length(conversation.turns, reference, hypothesis))

    # Speed with real-time batching (the worker runs after every 20 ms chunk).
    conversation = simulate_from_folder(args.data, options(0), 0)
    _, cpu_rt_s, _ = run_conversation(engine, conversation, True, enroll)

    ident = IdentityScores.combine(identity)
    total_der = DerScores.combine(ders)
    chg = ChangeScores.combine(changes)
    by_length = MissedByLength.combine(missed)
    figures = {
        "conversations": args.count,
        "audio_s": round(audio_s, 1),
        "turns_per_conversation": turns / args.count,
        "identity_accuracy": ident.accuracy,
        "identity_accuracy_live": IdentityScores.combine(live).accuracy,
        "wrong_name": ident.wrong_name,
        "wrong_name_closed_set": IdentityScores.combine(closed).wrong_name,
        "wrong_name_open_set": IdentityScores.combine(open_set).wrong_name,
        "unknown": ident.unknown,
        "missed": ident.missed,
        "stranger_unknown": ident.stranger_unknown,
        "stranger_wrong_name": ident.stranger_wrong_name,
        "stranger_missed": ident.stranger_missed,
        "der": total_der.der,
        "change_precision": chg.precision,
        "change_recall": chg.recall,
        "change_f1": chg.f1,
        "latency_mean_s": chg.latency_mean_s,
        "latency_p90_s": chg.latency_p90_s,
        **{
            f"missed_turns_{label.replace(' ', '')}": share
            for label, share in zip(by_length.labels(), by_length.shares, strict=True)
        },
        "encoder_ms_batch1": encoder_ms(engine, 1),
        "encoder_ms_batch16": encoder_ms(engine, 16),
        "rtf_fast": cpu_fast_s / audio_s,
        "rtf_realtime_batching": cpu_rt_s / conversation.duration_s,
        "torch_threads": torch.get_num_threads(),
        "precision": args.precision,
    }
    table = Table(
        title=f"streamer tracking benchmark ({args.count} conversations, "
        f"{condition_title(args)}, turns cut {'anywhere' if args.cut_anywhere else 'at pauses'}, "
        f"encoder {args.precision})"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return publish(table, figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
