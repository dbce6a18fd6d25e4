"""``streamer demo``: enroll three synthetic voices and track a conversation live.

Needs no audio files and no microphone: the voices are synthesised with espeak-ng, the
profiles go to a temporary store (your own store is not touched), and the conversation —
which includes a voice nobody enrolled — is fed through the same pipeline as
``streamer track``, in real time unless ``--fast``.
"""

from __future__ import annotations

import argparse
import tempfile

from . import add_model_options, load_engine

ENROLLED = ("alice", "bob", "carol")
SCRIPT = [
    ("alice", 4.0),
    ("bob", 3.0),
    ("carol", 4.0),
    ("dave", 3.5),  # not enrolled: should come out as unknown
    ("alice", 3.0),
    ("bob", 2.5),
    ("carol", 3.0),
]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="enroll three synthetic voices and track a conversation live",
        description="Enroll three synthetic voices and track a conversation of them live.",
    )
    parser.add_argument(
        "--fast", action="store_true", help="run as fast as possible instead of in real time"
    )
    add_model_options(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..enroll import enroll
    from ..evaluation.synth import conversation, speech
    from ..pipeline import track_chunks
    from ..profiles import ProfileStore
    from ..sinks.console import ConsoleSink
    from ..sources.file import array_chunks, paced

    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="streamer-demo-") as folder:
        store = ProfileStore(folder)
        engine = load_engine(args)
        rate = engine.embedder.spec.sample_rate
        for name in ENROLLED:
            clip = speech(name, 8.0, seed=101, sample_rate=rate)
            report = enroll(store, name, [(name, clip)], engine)
            console.print(
                f"enrolled [bold]{name}[/]: {report.speech_s:.1f} s of speech, "
                f"feedback: {', '.join(report.codes)}"
            )
        engine.set_profiles({p.name: p.embedding for p in store.all()})
        audio, reference = conversation(SCRIPT, gap_s=0.5, seed=2, sample_rate=rate)
        mode = "as fast as possible" if args.fast else "in real time"
        console.print(f"\nthe conversation ({len(audio) / rate:.0f} s, {mode}); who really spoke:")
        for start, end, speaker in reference:
            shown = speaker if speaker in ENROLLED else f"{speaker} (not enrolled)"
            console.print(f"{start:8.2f} - {end:8.2f}  {shown}")
        console.print("\nwhat streamer heard, live:")
        view = ConsoleSink(console, live=not args.fast)
        chunks = array_chunks(audio, rate)
        if not args.fast:
            chunks = paced(chunks, rate)
        try:
            for event in track_chunks(engine, chunks, "demo", realtime=not args.fast):
                view.write(event)
        finally:
            view.close()
    return 0
