"""A picture of who spoke when: one coloured lane per label, the reference beside it.

:class:`TimelineSink` collects the ``segment`` events (corrections applied, as in the
RTTM) and draws them with matplotlib when closed, written atomically like the RTTM. The
format follows the file's extension (``.png``, ``.svg``, ``.pdf``, ...). Given reference
turns (an RTTM's), they get a panel of their own above, on the same time axis; a label
that is also a reference speaker's name has that speaker's colour.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..events import UNKNOWN, Event, final_segments
from . import AtomicFile, AtomicSink

Segment = tuple[float, float, str]

UNKNOWN_COLOUR = "#9e9e9e"
LANE_HEIGHT_IN = 0.32
WIDTH_IN = 11.0


def image_formats() -> set[str]:
    """The extensions matplotlib can write (without the dot)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def lanes(segments: Sequence[Segment]) -> list[str]:
    """The labels in order of first appearance."""
    return list(dict.fromkeys(label for _, _, label in sorted(segments)))


def draw(
    segments: Sequence[Segment],
    title: str,
    reference: Sequence[Segment] | None = None,
    end_s: float | None = None,
):
    """A matplotlib ``Figure`` of the segments (and of the reference turns, above)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    panels = [("streamer", list(segments))]
    if reference is not None:
        panels.insert(0, ("reference", list(reference)))
    palette = colormaps["tab10"].colors
    colours: dict[str, object] = {UNKNOWN: UNKNOWN_COLOUR}
    for _, panel in panels:
        for label in lanes(panel):
            colours.setdefault(label, palette[(len(colours) - 1) % len(palette)])
    heights = [max(1, len(lanes(panel))) for _, panel in panels]
    size = (WIDTH_IN, LANE_HEIGHT_IN * (sum(heights) + 2.5 * len(panels)))
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=heights)
    last = max((end for _, panel in panels for _, end, _ in panel), default=0.0)
    for ax, (name, panel) in zip(axes[:, 0], panels, strict=True):
        names = lanes(panel)
        for row, label in enumerate(names):
            spans = [(start, end - start) for start, end, lab in panel if lab == label]
            ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=colours[label])
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.5 if names else 0.5, -0.5)
        ax.set_ylabel(name)
        ax.grid(axis="x", alpha=0.3)
        if not names:
            ax.text(0.5, 0.5, "no speech", transform=ax.transAxes, ha="center", va="center")
    axes[0, 0].set_title(title, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0.0, max(end_s or 0.0, last, 1.0))
    return figure


class TimelineSink(AtomicSink):
    """Collects ``segment`` events; :meth:`close` draws them into ``path``.

    ``reference`` (reference turns, e.g. an RTTM's) gets a panel above; ``end_s`` is where
    the time axis ends (default: the last segment). Unknown extensions fail at once.
    """

    def __init__(
        self,
        path: str | Path,
        title: str,
        reference: Sequence[Segment] | None = None,
    ) -> None:
        self.path = Path(path)
        self.title = title
        self.reference = reference
        self.end_s: float | None = None
        extension = self.path.suffix.lstrip(".").lower()
        formats = image_formats()
        if extension not in formats and not self.path.is_dir():
            raise ConfigError(
                f"cannot draw {self.path}: {extension or 'no extension'} is not an image "
                f"format; end the name with one of .{', .'.join(sorted(formats))}"
            )
        self._format = extension
        self._events: list[Event] = []
        self._out = AtomicFile(self.path, "the timeline")

    def write(self, event: Event) -> None:
        if event.type == "segment" and event.label is not None:
            self._events.append(event)

    def close(self) -> None:
        """Draw the timeline and put the file in place."""
        if not self._out.open:
            return
        figure = draw(final_segments(self._events), self.title, self.reference, self.end_s)
        image = io.BytesIO()
        figure.savefig(image, format=self._format, dpi=120)
        self._out.commit(image.getvalue())
