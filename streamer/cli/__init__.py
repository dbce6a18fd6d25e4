"""The ``streamer`` command line: one module per sub-command, each with ``register()``.

``register(subparsers)`` adds the command's parser and sets ``func`` to a
``run(args) -> int``. :func:`main` turns every :class:`~streamer.errors.StreamerError`
into one line on stderr (``streamer: error: ...``) and exit code 1; Ctrl-C exits 130
without a traceback; usage errors exit 2 (argparse). Anything else escaping is a bug
and keeps its traceback.

Command modules import the heavy parts (torch, the model) inside ``run`` so that
``--help`` and mistakes in the arguments answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from importlib import metadata
from pathlib import Path

from ..errors import AudioError, StreamerError
from ..profiles import ENV_VAR, default_store_path

__all__ = ["main"]


def _version() -> str:
    try:
        return metadata.version("streamer")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``streamer`` parser with every sub-command registered."""
    from . import demo, devices, enroll, profiles, serve, simulate, track

    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Real-time speaker tracking: who is speaking, live, for enrolled "
        "and unknown voices.",
    )
    parser.add_argument("--version", action="version", version=f"streamer {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (serve, demo, track, enroll, profiles, devices, simulate):
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version and usage errors
            return exc.code if isinstance(exc.code, int) else 2
        return args.func(args)
    except StreamerError as exc:
        message = " ".join(str(exc).splitlines()) or type(exc).__name__
        print(f"streamer: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``streamer profiles | head -1``): stop quietly, and keep
        # Python from complaining again while it flushes stdout on exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# Options shared by the commands


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def add_profiles_option(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--profiles DIR``. ``suppress``: for nested parsers, set only when given there."""
    if suppress:
        parser.add_argument(
            "--profiles",
            type=Path,
            metavar="DIR",
            default=argparse.SUPPRESS,
            help=f"profile store (default: {default_store_path()}; ${ENV_VAR} sets it)",
        )
        return
    parser.add_argument(
        "--profiles",
        type=Path,
        metavar="DIR",
        default=default_store_path(),
        help=f"profile store (default: %(default)s; ${ENV_VAR} sets it)",
    )


def add_model_options(parser: argparse.ArgumentParser, precision: str = "fp32") -> None:
    """``--model``, ``--weights``, ``--backend``, ``--device``, ``--precision`` (default
    ``precision``) and ``--threads``."""
    from ..catalog import BACKENDS, MODEL_NAMES, PRECISIONS

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        choices=sorted(MODEL_NAMES),
        default="ge2e",
        help="embedding model (default: ge2e)",
    )
    group.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        help="weights file (default: the model's own; only ge2e ships weights, rf5-gru and "
        "wespeaker-resnet34 need one: see the README)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="torch or mlx (default: auto, MLX on Apple Silicon when installed, else torch)",
    )
    group.add_argument(
        "--device", help="torch device: cpu, cuda, cuda:N or mps (default: cpu; implies torch)"
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=precision,
        help="encoder arithmetic: fp32 (on torch); fp32-onnx, the same on onnxruntime's CPU "
        "kernels (faster; ge2e only); int8 there; or auto: fp32-onnx where it runs, else "
        f"fp32 (default: {precision})",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="CPU threads for torch and numpy (default: 1)",
    )


def check_readable(path: Path) -> None:
    """Raise :class:`AudioError` if ``path`` is a file this process may not read."""
    if path.is_file() and not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied; check the file's permissions")


def pipeline_options(args: argparse.Namespace, **options):
    """The :class:`~streamer.pipeline.PipelineOptions` of the model options in ``args``."""
    from ..pipeline import PipelineOptions

    return PipelineOptions(
        model=args.model,
        weights=args.weights,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        **options,
    )


def load_engine(args: argparse.Namespace, store=None, **options):
    """Build the engine from the model options in ``args`` (``streamer.pipeline``).

    ``options`` go to :class:`~streamer.pipeline.PipelineOptions` (e.g. ``worker=``).
    With ``--backend auto`` it says on stderr which backend it picked.
    """
    from ..pipeline import build_engine

    engine = build_engine(pipeline_options(args, **options), store)
    if args.backend == "auto":
        print(f"streamer: backend: {engine.embedder.describe()} (auto)", file=sys.stderr)
    return engine
