"""Where events go: consumers of :class:`~streamer.events.Event`, one concern per module.

Data flows one way, tracker -> events -> sinks: a sink is handed each event of a stream
in order through ``write(event)`` and finished with ``close()``; it never talks back to
the pipeline. The sinks:

- :mod:`.jsonl`: every event as one JSON line, flushed as it comes (``docs/events.md``).
- :mod:`.rttm`: the ``segment`` events as an RTTM file, written atomically at the end.
- :mod:`.console`: a readable view for people, live on a terminal.
- :mod:`.timeline`: a picture of who spoke when (PNG, SVG, PDF), drawn at the end.

File sinks open their output when they are created, so a path that cannot be written
fails with a one-line :class:`~streamer.errors.ConfigError` before any audio is processed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol, TypeVar

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


class AtomicFile:
    """An output file written whole or not at all.

    A temporary file next to ``path`` is created at once (proving the folder is writable
    before any audio is processed); :meth:`commit` fills it and renames it over ``path``,
    :meth:`discard` removes it and leaves any old ``path`` untouched. ``what`` names the
    output in errors.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if path.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            # O_EXCL: never follow or reuse someone else's file; mode 0o666 minus the umask.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise output_error(path, what, exc) from exc
        self._tmp: Path | None = tmp
        self._file = os.fdopen(fd, "wb")

    @property
    def open(self) -> bool:
        """Neither committed nor discarded yet."""
        return self._tmp is not None

    def commit(self, data: bytes) -> None:
        """Write ``data`` and put the file in place (a :class:`ConfigError` if it fails)."""
        try:
            with self._file:
                self._file.write(data)
                self._file.flush()
                os.fsync(self._file.fileno())
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.discard()
            raise output_error(self.path, self.what, exc) from exc
        self._tmp = None

    def discard(self) -> None:
        """Remove the temporary file (nothing happens once committed or discarded)."""
        if self._tmp is None:
            return
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._tmp = None


_Sink = TypeVar("_Sink", bound="AtomicSink")


class AtomicSink:
    """Base of the sinks that write one file at the end (:class:`AtomicFile` ``_out``):
    :meth:`close` writes it; leaving a ``with`` block by an exception, or :meth:`discard`,
    leaves any old file untouched."""

    _out: AtomicFile

    def close(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        """Drop what was collected and remove the temporary file."""
        self._out.discard()

    def __enter__(self: _Sink) -> _Sink:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
