"""A readable view of the events for people: lines as they come, a live status on a terminal."""

from __future__ import annotations

import time
import zlib

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..events import UNKNOWN, Event

_PALETTE = ("cyan", "magenta", "green", "blue", "bright_red", "bright_cyan", "bright_magenta")


def label_style(label: str) -> str:
    """A stable colour per name (the same in every run); ``unknown`` is dim."""
    if label == UNKNOWN:
        return "yellow dim"
    return f"bold {_PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)]}"


def _score(score: float | None) -> str:
    return "" if score is None else f"{score:.2f}"


def segment_line(event: Event) -> Text:
    """``  12.30 -   18.04  alice  0.84``: a finished segment, times in stream seconds; a
    correction says what it replaces (``(was speaker-2)``)."""
    label = event.label or ""
    return Text.assemble(
        f"{event.start_s:8.2f} - {event.end_s:8.2f}  ",
        (f"{label:<12}", label_style(label)),
        f" {_score(event.score)}",
        f"  (was {event.previous})" if event.previous else "",
    )


def change_line(event: Event) -> Text:
    """``  12.30  change alice -> bob  0.81  (+0.90 s)``: decided ``emitted_at - start_s`` later."""
    previous, label = event.previous or "", event.label or ""
    return Text.assemble(
        f"{event.start_s:8.2f}   change ",
        (previous, label_style(previous)),
        " -> ",
        (label, label_style(label)),
        f"  {_score(event.score)}  (+{event.emitted_at - event.start_s:.2f} s)",
        style="italic",
    )


def speaker_line(event: Event) -> Text:
    """``   0.00   speaker alice  0.77  (+1.60 s)``: who speaks since ``start_s``."""
    label = event.label or ""
    return Text.assemble(
        f"{event.start_s:8.2f}   speaker ",
        (label, label_style(label)),
        f"  {_score(event.score)}  (+{event.emitted_at - event.start_s:.2f} s)",
    )


class ConsoleSink:
    """Prints a line per finished segment and per speaker change, in order.

    With ``live`` it also shows who is speaking now. On a terminal that is a status line
    at the bottom, redrawn in place: the current speaker with their score, or silence,
    and the elapsed time. Off a terminal (a pipe, a file) there is no status line, so
    each new ``speaker`` decision is printed as a line instead (unless the ``change``
    line just before says the same). Off a terminal nothing is coloured.
    """

    def __init__(self, console: Console, live: bool = False) -> None:
        self.console = console
        self.in_speech = False
        self.current: Event | None = None  # the last ``speaker`` event of the open region
        self._speaker_lines = live and not console.is_terminal
        self._last: Event | None = None
        self._started = time.monotonic()
        self._live: Live | None = None
        if live and console.is_terminal:
            self._live = Live(self, console=console, refresh_per_second=4, transient=True)
            self._live.start()

    def write(self, event: Event) -> None:
        if event.type == "speech_start":
            self.in_speech = True
        elif event.type == "speech_end":
            self.in_speech = False
            self.current = None
        elif event.type == "speaker":
            self.current = event
            if self._speaker_lines and not _announced(self._last, event):
                self.console.print(speaker_line(event))
        elif event.type == "segment":
            self.console.print(segment_line(event))
        elif event.type == "change":
            self.console.print(change_line(event))
        self._last = event

    def __rich__(self) -> Text:
        """The status line (rendered by :class:`rich.live.Live`)."""
        clock = f"  [{time.monotonic() - self._started:6.1f} s]"
        if not self.in_speech:
            return Text.assemble(("○ silence", "dim"), clock)
        if self.current is None or self.current.label is None:
            return Text.assemble(("● speech", "bold"), "  (who? deciding)", clock)
        label = self.current.label
        return Text.assemble(
            ("● ", label_style(label)),
            (label, label_style(label)),
            f"  {_score(self.current.score)}  since {self.current.start_s:.2f} s",
            clock,
        )

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _announced(previous: Event | None, speaker: Event) -> bool:
    """Whether ``previous`` is the ``change`` event that already told of ``speaker``."""
    return (
        previous is not None
        and previous.type == "change"
        and (previous.label, previous.start_s) == (speaker.label, speaker.start_s)
    )
