"""What the benchmark scripts share: the simulated condition's options, and the ending
(the table on the console, the figures as JSON)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
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


class ServedDaemon:
    """``streamer serve --port 0 ARGS`` of this checkout in a process of its own: ``port``
    and ``url`` once it listens; its log lines are read on (into ``log``), so the daemon
    never blocks on a full pipe."""

    def __init__(self, args: list[str]) -> None:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "streamer", "serve", "--port", "0", *args]
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stderr=subprocess.PIPE, text=True
        )
        for line in self.process.stderr:
            match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise SystemExit(f"the daemon did not start (exit code {self.process.wait()})")
        self.log: list[str] = []
        threading.Thread(target=self.log.extend, args=(self.process.stderr,), daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.port}/"
