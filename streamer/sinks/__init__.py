"""Where events go: consumers of :class:`~streamer.events.Event`, one concern per module.

Data flows one way, tracker -> events -> sinks: a sink is handed each event of a stream
in order through ``write(event)`` and finished with ``close()``; it never talks back to
the pipeline. The sinks:

- :mod:`.jsonl`: every event as one JSON line, flushed as it comes (``docs/events.md``).
- :mod:`.rttm`: the ``segment`` events as an RTTM file, written atomically at the end.
- :mod:`.console`: a readable view for people, live on a terminal.

File sinks open their output when they are created, so a path that cannot be written
fails with a one-line :class:`~streamer.errors.ConfigError` before any audio is processed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..errors import ConfigError
from ..events import Event


class Sink(Protocol):
    def write(self, event: Event) -> None: ...

    def close(self) -> None: ...


def output_error(path: Path, what: str, exc: OSError) -> ConfigError:
    """A one-line error for an output file that cannot be written, saying why."""
    parent = path.parent
    if path.is_dir():
        reason = "that is a folder; pass a file path"
    elif not parent.exists():
        reason = f"folder {parent} does not exist"
    elif not parent.is_dir():
        reason = f"{parent} is a file, not a folder"
    else:
        reason = exc.strerror or str(exc)
    return ConfigError(f"cannot write {what} to {path}: {reason}")
