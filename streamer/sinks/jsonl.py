"""Events as JSON Lines: one object (``Event.to_dict()``) per line, in the order they come."""

from __future__ import annotations

import json
from pathlib import Path

from ..events import Event
from . import output_error


class JsonlSink:
    """Writes each event as one line of JSON (schema: ``docs/events.md``) and flushes it.

    The file is created (or truncated) when the sink is made, so a reader can follow it
    live (``tail -f``) and a run that stops early leaves every event decided so far. A
    run with no events leaves an empty file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        try:
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise output_error(self.path, "events", exc) from exc

    def write(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            raise output_error(self.path, "events", exc) from exc
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
