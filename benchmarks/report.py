"""What the benchmark scripts share: the simulated condition's options, and the ending
(the table on the console, the figures as JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def publish(table: Table, figures: object, json_path: Path | None, width: int = 100) -> int:
    """Print ``table``; write ``figures`` to ``json_path`` when given. Returns exit code 0."""
    Console(width=width).print(table)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))
    return 0


def add_condition_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both simulation benchmarks share: condition, speaker half, seed."""
    parser.add_argument(
        "--clean",
        action="store_true",
        help="keep the recordings as they are (enrollment and turns from one session)",
    )
    parser.add_argument(
        "--speakers",
        choices=("tune", "report"),
        default="report",
        help="half of the development speakers to draw from (choices are made on tune)",
    )
    parser.add_argument("--seed", type=int, default=0)


def condition_title(args: argparse.Namespace) -> str:
    condition = "clean" if args.clean else "mismatched"
    return f"{condition}, {args.speakers} speakers, seed {args.seed}"
