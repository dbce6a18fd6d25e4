"""What every benchmark script ends with: its table on the console, its figures as JSON."""

from __future__ import annotations

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
