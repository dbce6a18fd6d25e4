"""``streamer enroll``: make or extend a voice profile from a few clips of one person."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import ProfileError
from ..profiles import ProfileStore, check_name
from . import (
    add_model_options,
    add_profiles_option,
    check_readable,
    load_engine,
    non_negative_float,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``enroll`` sub-command."""
    from ..enroll import EnrollOptions

    defaults = EnrollOptions()
    parser = subparsers.add_parser(
        "enroll",
        help="make or extend a voice profile from clips of one person",
        description=(
            "Embed the speech in CLIP files (one person talking; any common audio format) "
            "and save it as profile NAME, or add it to NAME if it exists. The report says "
            "how much speech was used and what could be better. Nothing is saved when "
            "there is too little speech or a clip sounds like someone else, unless --force."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="profile name, e.g. alice")
    parser.add_argument("clips", metavar="CLIP", type=Path, nargs="+", help="audio files")
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
    add_profiles_option(parser)
    add_model_options(parser)
    parser.set_defaults(func=run)
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


def run(args: argparse.Namespace) -> int:
    from ..audio import load_audio
    from ..enroll import BLOCKING, EnrollOptions, enroll
    from ..models import get_spec

    name = check_name(args.name)
    store = ProfileStore(args.profiles)
    check_store_writable(store)
    extending = name in store
    sample_rate = get_spec(args.model).sample_rate
    clips = []
    for path in args.clips:
        check_readable(path)
        clips.append((str(path), load_audio(path, sample_rate)))
    engine = load_engine(args)
    options = EnrollOptions(min_speech_s=args.min_speech_s)
    report = enroll(store, name, clips, engine, options, force=args.force)

    n = len(clips)
    print(
        f"{name}: {report.speech_s:.1f} s of speech in {report.windows} windows "
        f"from {n} clip{'s' if n != 1 else ''}"
    )
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
    return 0
