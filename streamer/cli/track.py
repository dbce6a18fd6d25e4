"""``streamer track``: run an audio file through the tracker and show or save its events."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from ..errors import ConfigError
from ..events import Event
from ..profiles import ProfileStore, check_name
from ..sinks.rttm import MERGE_GAP_S
from . import (
    add_model_options,
    add_profiles_option,
    check_readable,
    load_engine,
    non_negative_float,
    positive_float,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``track`` sub-command."""
    parser = subparsers.add_parser(
        "track",
        help="who speaks when in an audio file, live",
        description=(
            "Stream FILE through the tracker and print a line per finished segment and per "
            "speaker change as they are decided, then a summary. Voices are matched against "
            "the profiles made with the same model; other voices get labels speaker-1, "
            "speaker-2, ... in order of appearance, kept for the whole run. The stream id in "
            "the events and the RTTM file id is FILE's name without its extension."
        ),
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="audio file (wav, flac, ogg, mp3)")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="feed the audio at its own pace, as a microphone would (default: as fast as it goes)",
    )
    parser.add_argument(
        "--rttm", type=Path, metavar="OUT.rttm", help="write the segments as RTTM at the end"
    )
    parser.add_argument(
        "--merge-gap-s",
        type=non_negative_float,
        default=MERGE_GAP_S,
        metavar="S",
        help="in the RTTM, join a speaker's segments at most S seconds apart, as reference "
        f"turns run through short pauses (default: {MERGE_GAP_S}; 0: keep every pause)",
    )
    parser.add_argument(
        "--jsonl",
        type=Path,
        metavar="OUT.jsonl",
        help="write every event as a JSON line as it comes (docs/events.md)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="draw who spoke when at the end: one coloured lane per label (PNG, SVG, PDF "
        "by the extension)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="REF.rttm",
        help="with --plot: draw these reference turns above the labels, for comparison "
        "(the RTTM's turns of FILE's name, or its only file)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the summary, no event lines (a terminal still shows a progress bar)",
    )
    parser.add_argument(
        "--hop-s",
        type=positive_float,
        metavar="S",
        help="seconds between embedding windows, rounded to a whole number of the model's "
        "feature frames (default: the model's; 0.2 for ge2e)",
    )
    parser.add_argument(
        "--save-unknown",
        type=Path,
        metavar="DIR",
        help="at the end, save each unknown voice (its clean speech only) as a profile named "
        "after its label in the profile folder DIR; rename it there and copy it to your store",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="LABEL=NAME",
        type=label_name,
        help="at the end, enroll unknown voice LABEL (e.g. speaker-2) as profile NAME in the "
        "profile store; repeat for more voices",
    )
    add_profiles_option(parser)
    add_model_options(parser)
    parser.set_defaults(func=run)
    return parser


def label_name(text: str) -> tuple[str, str]:
    label, sep, name = text.partition("=")
    if not sep or not label or not name:
        raise argparse.ArgumentTypeError(
            f"expected LABEL=NAME (e.g. speaker-2=carol), got {text!r}"
        )
    check_name(name)
    return label, name


def save_voices(tracker, model: str, targets: list[tuple[str, str, ProfileStore]]) -> list[str]:
    """Promote the tracker's unknown voices: ``(label, name, store)`` each; report lines."""
    from ..enroll import promote

    lines = []
    for label, name, store in targets:
        if label not in tracker.voices:
            heard = ", ".join(tracker.voices) or "none"
            lines.append(f"not saved: no unknown voice {label!r} in this run (heard: {heard})")
            continue
        # --save-unknown keeps a voice under its own label, for the user to rename.
        report = promote(store, name, tracker.voices[label], model, label_ok=name == label)
        if report.profile is None:
            problems = "; ".join(f.message for f in report.feedback)
            lines.append(f"not saved: {label} as {name!r}: {problems}")
        else:
            lines.append(
                f"saved {label} as profile {name!r} in {store.path} "
                f"({report.speech_s:.1f} s of clean speech)"
            )
    return lines


class Summary:
    """A sink that counts what a run found: speech regions, events, seconds per label."""

    def __init__(self) -> None:
        self.regions = 0
        self.events = 0
        self.seconds: dict[str, float] = {}

    def write(self, event: Event) -> None:
        self.events += 1
        if event.type == "speech_start":
            self.regions += 1
        elif event.type == "segment" and event.label is not None:
            duration = max(0.0, event.end_s - event.start_s)
            self.seconds[event.label] = self.seconds.get(event.label, 0.0) + duration
            if event.previous is not None:  # a correction: the span was counted before
                self.seconds[event.previous] -= duration

    def close(self) -> None:
        pass

    def speakers(self) -> str:
        ranked = sorted(self.seconds.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{label} {seconds:.1f} s" for label, seconds in ranked) or "none"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(args: argparse.Namespace) -> None:
    """Outputs must not overwrite the input, the reference or each other."""
    flags = (("--jsonl", args.jsonl), ("--rttm", args.rttm), ("--plot", args.plot))
    outputs = [(flag, path) for flag, path in flags if path]
    inputs = [("the input file", args.file)]
    if args.reference:
        inputs.append(("the --reference file", args.reference))
    for i, (flag, path) in enumerate(outputs):
        for what, source in inputs:
            if _same_file(path, source):
                raise ConfigError(f"{flag} {path} is {what}; pick another output path")
        for other, other_path in outputs[i + 1 :]:
            if _same_file(path, other_path):
                raise ConfigError(f"{flag} and {other} are the same file ({path}); pick two paths")


def reference_turns(path: Path, file_id: str) -> list[tuple[float, float, str]]:
    """The turns of ``file_id`` in the RTTM at ``path`` (or of its only file)."""
    from ..errors import DataError
    from ..evaluation.scoring import read_rttm

    try:
        files = read_rttm(path)
    except DataError as exc:
        raise ConfigError(f"--reference {path}: {exc}") from exc
    if file_id in files:
        return files[file_id]
    if len(files) == 1:
        return next(iter(files.values()))
    found = ", ".join(sorted(files)) or "no SPEAKER lines"
    raise ConfigError(
        f"--reference {path} has no turns of {file_id!r} (it has {found}); pass the RTTM "
        "of this recording"
    )


def profile_names(store: ProfileStore, model: str) -> tuple[list[str], list[str]]:
    """The names tracking will match, and warnings about the store's other profiles."""
    profiles = store.all()
    names = [p.name for p in profiles if p.model == model]
    others = [f"{p.name} ({p.model})" for p in profiles if p.model != model]
    warnings = []
    if others:
        warnings.append(f"ignoring profiles made with another model: {', '.join(others)}")
    if not names:
        warnings.append(
            f"no {model} profiles in {store.path}, so voices get labels speaker-1, "
            "speaker-2, ... by order of appearance; name one with --name speaker-1=NAME or "
            "enroll one with: streamer enroll NAME CLIP"
        )
    return names, warnings


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from ..audio import open_audio
    from ..pipeline import FILE_BATCH_S, track_chunks
    from ..sinks.console import ConsoleSink
    from ..sinks.jsonl import JsonlSink
    from ..sinks.rttm import RttmSink
    from ..sinks.timeline import TimelineSink
    from ..sources.file import file_chunks
    from ..worker import WorkerOptions

    # Everything that can be checked without the model, first.
    path: Path = args.file
    check_readable(path)
    with open_audio(path) as f:
        duration_s = f.frames / f.samplerate
    check_outputs(args)
    stream_id = path.stem
    if args.reference and not args.plot:
        raise ConfigError("--reference is drawn beside the labels: pass --plot OUT.png too")
    reference = reference_turns(args.reference, stream_id) if args.reference else None
    store = ProfileStore(args.profiles)
    names, warnings = profile_names(store, args.model)

    console = Console(highlight=False, soft_wrap=True)
    summary = Summary()
    with ExitStack() as stack:
        sinks = []
        # The RTTM sink only makes a temporary file, removed if the JSONL path fails.
        if args.rttm:
            rttm = stack.enter_context(RttmSink(args.rttm, stream_id, args.merge_gap_s))
            sinks.append(rttm)
        if args.jsonl:
            jsonl = stack.enter_context(JsonlSink(args.jsonl))
            sinks.append(jsonl)
        if args.plot:
            title = f"{path.name}: who spoke when ({args.model})"
            plot = stack.enter_context(TimelineSink(args.plot, title, reference))
            sinks.append(plot)
        loading = time.perf_counter()
        worker = WorkerOptions(hop_s=args.hop_s, step_s=FILE_BATCH_S)
        engine = load_engine(args, store, worker=worker)
        load_s = time.perf_counter() - loading
        for warning in warnings:  # once nothing can fail before the audio is processed
            print(f"streamer: warning: {warning}", file=sys.stderr)
        if not args.quiet:
            console.print(
                Text(
                    f"tracking {path} ({duration_s:.1f} s) with {args.model}; "
                    f"profiles: {', '.join(names) or 'none'}"
                )
            )
            view = ConsoleSink(console, live=args.realtime)
            stack.callback(view.close)
            sinks.append(view)
        sinks.append(summary)
        started = time.perf_counter()
        tracker = engine.new_tracker(stream_id)
        stop, heard = threading.Event(), Heard()
        rate = engine.embedder.spec.sample_rate
        if args.realtime:
            # Ctrl-C stops the audio like a microphone unplugged: the stream is closed
            # (its open speech gets its segment) and the outputs hold what was heard.
            previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
            stack.callback(signal.signal, signal.SIGINT, previous)
        chunks = heard.count(file_chunks(path, rate, realtime=args.realtime), stop, rate)
        if not args.realtime:
            chunks = progress_bar(chunks, console, duration_s, rate, stack)
        events = track_chunks(engine, chunks, stream_id, realtime=args.realtime, tracker=tracker)
        for event in events:
            for sink in sinks:
                sink.write(event)
        processing_s = time.perf_counter() - started
        if args.plot:
            plot.end_s = heard.seconds

    if stop.is_set():
        duration_s = heard.seconds
        print(
            f"streamer: interrupted after {duration_s:.1f} s of audio; the stream was closed "
            "and the outputs hold what was heard",
            file=sys.stderr,
        )
    if summary.regions == 0:
        print(f"no speech found in {path}", file=sys.stderr)
    rtf = processing_s / duration_s if duration_s > 0 else 0.0
    pace = "paced in real time" if args.realtime else f"real-time factor {rtf:.3f}"
    console.print(
        Text(
            f"{duration_s:.1f} s of audio in {processing_s:.2f} s ({pace}; "
            f"model loaded in {load_s:.2f} s)"
        )
    )
    console.print(Text(f"speakers: {summary.speakers()}"))
    if args.jsonl:
        console.print(Text(f"wrote {jsonl.count} events to {args.jsonl}"))
    if args.rttm:
        console.print(Text(f"wrote {rttm.written} segments to {args.rttm}"))
    if args.plot:
        console.print(Text(f"drew the timeline in {args.plot}"))
    targets = [(label, name, store) for label, name in args.name]
    if args.save_unknown:
        unknown_store = ProfileStore(args.save_unknown)
        targets += [(label, label, unknown_store) for label in tracker.voices]
    lines = save_voices(tracker, engine.embedder.spec.name, targets)
    for line in lines:
        console.print(Text(line))
    if stop.is_set():
        return 130
    asked = lines[: len(args.name)]  # --name requests; --save-unknown keeps what it can
    return 1 if any(line.startswith("not saved") for line in asked) else 0


class Heard:
    """Counts the audio that went in, and stops it once ``stop`` is set."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def count(self, chunks, stop: threading.Event, sample_rate: int):
        for chunk in chunks:
            if stop.is_set():
                return
            self.seconds += len(chunk) / sample_rate
            yield chunk


def progress_bar(chunks, console, duration_s: float, sample_rate: int, stack: ExitStack):
    """``chunks``, advancing a progress bar of the audio done while they are consumed —
    on a terminal only (the event lines print above it; it goes when the run ends)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    if not console.is_terminal:
        console = Console(stderr=True)  # stdout is a file or a pipe: the bar on stderr
        if not console.is_terminal:
            return chunks
    progress = stack.enter_context(
        Progress(
            TextColumn("tracking"),
            BarColumn(),
            TextColumn("{task.completed:.0f} / {task.total:.0f} s of audio"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
    )
    task = progress.add_task("audio", total=duration_s)

    def advancing():
        for chunk in chunks:
            yield chunk
            progress.advance(task, len(chunk) / sample_rate)

    return advancing()
