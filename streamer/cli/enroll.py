"""``streamer enroll``: make or extend a voice profile from a few clips of one person."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import AudioError, ConfigError, ProfileError
from ..profiles import ProfileStore, check_name
from . import (
    add_model_options,
    add_profiles_option,
    check_readable,
    load_engine,
    non_negative_float,
    positive_float,
)
from .devices import add_mic_options

MAX_MIC_S = 120.0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``enroll`` sub-command."""
    from ..enroll import EnrollOptions

    defaults = EnrollOptions()
    parser = subparsers.add_parser(
        "enroll",
        help="make or extend a voice profile from clips of one person",
        description=(
            "Embed the speech in CLIP files (one person talking; any common audio format), "
            "or record it from the microphone with --mic, and save it as profile NAME, or "
            "add it to NAME if it exists. The report says how much speech was used and what "
            "could be better. Nothing is saved when there is too little speech or a clip "
            "sounds like someone else, unless --force."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="profile name, e.g. alice")
    parser.add_argument("clips", metavar="CLIP", type=Path, nargs="*", help="audio files")
    mic = add_mic_options(parser, "record from the microphone instead")
    mic.add_argument(
        "--seconds",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds to record with --mic (default: 10)",
    )
    parser.add_argument(
        "--force", action="store_true", help="save even with too little speech or odd clips"
    )
    parser.add_argument(
        "--min-speech-s",
        type=non_negative_float,
        default=defaults.min_speech_s,
        metavar="S",
        help=f"least seconds of speech a profile needs (default: {defaults.min_speech_s:g})",
    )
    parser.add_argument(
        "--variant-weight",
        type=non_negative_float,
        default=defaults.variant_weight,
        metavar="W",
        help="how much each channel variant of the audio (a telephone line, a room, noise) "
        "adds to the profile, as a share of the audio's own windows, so that other "
        f"microphones and rooms still match it (default: {defaults.variant_weight:.3g}; "
        "0: the audio alone)",
    )
    add_profiles_option(parser)
    add_model_options(parser)
    parser.set_defaults(func=lambda args: run(args, parser))
    return parser


def check_store_writable(store: ProfileStore) -> None:
    """Fail before the model loads if the store folder cannot be created or written."""
    folder = store.path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ProfileError(
            f"cannot create profile store {store.path}: {folder} is a file; pass --profiles DIR"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProfileError(
            f"cannot write to profile store {store.path}: permission denied on {folder}; "
            "pass --profiles DIR"
        )


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """What argparse does for a usage error (exit code 2), for checks it cannot express."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..audio import load_audio
    from ..enroll import EnrollOptions, check_model, enroll, enroll_collected, variants_total
    from ..models import get_spec

    if args.mic is not None and args.clips:
        return usage_error(parser, "pass CLIP files or --mic, not both")
    if args.mic is None and not args.clips:
        return usage_error(parser, "pass the CLIP files to enroll, or --mic to record")
    name = check_name(args.name)
    if args.mic is not None and args.seconds > MAX_MIC_S:
        raise ConfigError(f"--seconds {args.seconds:g} is too long; record at most {MAX_MIC_S:g} s")
    store = ProfileStore(args.profiles)
    check_store_writable(store)
    extending = name in store
    spec = get_spec(args.model)
    options = EnrollOptions(min_speech_s=args.min_speech_s, variant_weight=args.variant_weight)
    if args.mic is not None:
        from ..sources.mic import Microphone

        check_model(store, name, spec.name)
        microphone = Microphone(args.mic or None, args.mic_rate, target_rate=spec.sample_rate)
        engine = load_engine(args)
        collector, audio = record(engine, microphone, args.seconds)
        collector.variant_total = variants_total(engine, audio, collector, options.variant_weight)
        report = enroll_collected(
            store,
            name,
            [("the microphone", collector)],
            spec.name,
            spec.embedding_dim,
            options,
            args.force,
        )
        source = f"{len(audio) / spec.sample_rate:.1f} s recorded with {microphone.describe()}"
    else:
        clips = []
        for path in args.clips:
            check_readable(path)
            clips.append((str(path), load_audio(path, spec.sample_rate)))
        engine = load_engine(args)
        report = enroll(store, name, clips, engine, options, force=args.force)
        n = len(clips)
        source = f"{n} clip{'s' if n != 1 else ''}"
    print_report(name, report, source, store, extending)
    return 0


def print_report(name: str, report, source: str, store: ProfileStore, extending: bool) -> None:
    """The feedback lines, then where the profile went; :class:`ProfileError` if not saved."""
    from ..enroll import BLOCKING

    print(f"{name}: {report.speech_s:.1f} s of speech in {report.windows} windows from {source}")
    width = max(len(f.code) for f in report.feedback) if report.feedback else 0
    for feedback in report.feedback:
        print(f"  {feedback.code:<{width}}  {feedback.message}")
    profile = report.profile
    if profile is None:
        blocking = [f.message for f in report.feedback if f.code in BLOCKING]
        raise ProfileError(
            f"profile {name!r} not saved: {' / '.join(blocking)} "
            "(or pass --force to save it anyway)"
        )
    verb = "extended" if extending else "saved"
    print(
        f"{verb} profile {name!r} ({profile.speech_s:.1f} s of speech in all) in {store.file(name)}"
    )


def record(engine, microphone, seconds: float, stall_s: float = 3.0):
    """Record ``seconds`` from the microphone through the worker, showing a progress bar
    with the input level and the speech heard so far; returns the collector and the
    audio recorded."""
    import threading

    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..enroll import Collector

    collector = Collector()
    stream = engine.open_stream("microphone", tracker=collector)
    target = int(seconds * stream.sample_rate)
    arrived = threading.Event()
    state = {"pushed": 0, "level_dbfs": -120.0, "lost": 0}
    recorded: list[np.ndarray] = []  # for the channel variants of the profile

    def on_audio(block: np.ndarray) -> None:  # PortAudio's thread: copy in, wake, return
        block = block[: target - state["pushed"]]
        if not len(block):
            return
        try:
            stream.push(block)
        except AudioError:
            state["lost"] += len(block)
        recorded.append(block.copy())
        state["pushed"] += len(block)
        power = float(np.mean(block.astype(np.float64) ** 2))
        state["level_dbfs"] = 10 * np.log10(power + 1e-12)
        arrived.set()

    progress = Progress(
        TextColumn("recording"),
        BarColumn(),
        TextColumn("{task.completed:4.1f}/{task.total:g} s"),
        TextColumn("{task.fields[level]}"),
        TextColumn("{task.fields[speech]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task("", total=seconds, level=level_meter(-120.0), speech="")
        microphone.start(on_audio)
        try:
            while state["pushed"] < target or stream.pending_samples:
                if not arrived.wait(timeout=stall_s) and state["pushed"] < target:
                    raise AudioError(
                        f"{microphone.describe()} delivered no audio for {stall_s:g} s; "
                        "check that it is not muted or used by another program"
                    )
                arrived.clear()
                for _ in engine.run():
                    pass
                voiced = "[green]●[/]" if stream.gate.voiced else "○"
                progress.update(
                    task,
                    completed=stream.time_s,
                    level=level_meter(state["level_dbfs"]),
                    speech=f"speech {voiced} {collector.speech_until(stream.time_s):4.1f} s",
                )
        finally:
            microphone.stop()
    engine.close_stream("microphone")
    if state["lost"]:
        raise AudioError("audio was lost while recording (the machine is too busy); try again")
    return collector, np.concatenate(recorded) if recorded else np.zeros(0, np.float32)


def level_meter(level_dbfs: float, cells: int = 10, floor_dbfs: float = -60.0) -> str:
    """``▮▮▮▮▮▯▯▯▯▯ -30 dBFS``: the input level from ``floor_dbfs`` to 0."""
    filled = round(cells * min(1.0, max(0.0, 1 - level_dbfs / floor_dbfs)))
    return "▮" * filled + "▯" * (cells - filled) + f" {max(level_dbfs, -99):3.0f} dBFS"
