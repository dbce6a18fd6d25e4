"""``streamer simulate``: build simulated conversations with references for benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.augment import SessionOptions
from ..evaluation.simulate import HALVES, SimulationOptions, simulate_from_folder


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command."""
    defaults = SimulationOptions()
    parser = subparsers.add_parser(
        "simulate",
        help="build multi-speaker conversations from single-speaker recordings",
        description=(
            "Cut turns from single-speaker recordings (LibriSpeech-style "
            "SPEAKER-CHAPTER-UTT.flac, or one speaker per file stem) into conversations. "
            "Each conversation goes to OUT_DIR/<id>/ as <id>.wav, <id>.rttm (the reference) "
            "and enroll/<speaker>.wav for its enrolled speakers; strangers are the RTTM "
            "labels without an enroll file. OUT_DIR/reference.rttm holds all references."
        ),
    )
    parser.add_argument(
        "src_dir", type=Path, metavar="SRC_DIR", help="a folder of single-speaker recordings"
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="where they go")
    parser.add_argument("--count", type=int, default=10, help="conversations (default: 10)")
    parser.add_argument(
        "--speakers",
        type=int,
        default=defaults.n_speakers,
        help="enrolled speakers in each (default: %(default)s)",
    )
    parser.add_argument(
        "--strangers",
        type=int,
        default=defaults.n_strangers,
        help="unenrolled voices in each (default: %(default)s)",
    )
    parser.add_argument(
        "--duration-s",
        type=float,
        default=defaults.duration_s,
        help="seconds per conversation (default: %(default)s)",
    )
    parser.add_argument(
        "--enroll-s",
        type=float,
        default=defaults.enroll_s,
        help="seconds of each enrolled speaker's enrollment clip (default: %(default)s)",
    )
    parser.add_argument(
        "--overlap-prob",
        type=float,
        default=defaults.overlap_prob,
        help="the chance a turn overlaps the one before (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--mismatched",
        action="store_true",
        help="make enrollment and turns two sessions (level, microphone, room, noise), as "
        "the benchmarks do; OUT_DIR/<id>/conditions.json says what each speaker got",
    )
    parser.add_argument(
        "--speaker-half",
        choices=HALVES,
        default=defaults.speakers,
        help="draw from all speakers or only the tune or report half (default all)",
    )
    parser.add_argument(
        "--cut-anywhere",
        action="store_true",
        help="cut turns at their drawn lengths, mid-word too, instead of at pauses",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write ``args.count`` conversations; returns the exit code."""
    from rich.progress import Progress

    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, not {args.count}")
    options = SimulationOptions(
        n_speakers=args.speakers,
        n_strangers=args.strangers,
        duration_s=args.duration_s,
        enroll_s=args.enroll_s,
        overlap_prob=args.overlap_prob,
        seed=args.seed,
        cut_at_pauses=not args.cut_anywhere,
        session=SessionOptions() if args.mismatched else None,
        speakers=args.speaker_half,
    )
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    references = []
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=args.count)
        for index in range(args.count):
            conversation = simulate_from_folder(args.src_dir, options, index)
            conversation.save(out_dir / conversation.file_id)
            if conversation.conditions:
                conditions = out_dir / conversation.file_id / "conditions.json"
                conditions.write_text(json.dumps(conversation.conditions, indent=2) + "\n")
            references.append(conversation.to_rttm())
            progress.advance(task)
    (out_dir / "reference.rttm").write_text("".join(references), encoding="utf-8")
    print(f"wrote {args.count} conversations to {out_dir}")
    return 0
