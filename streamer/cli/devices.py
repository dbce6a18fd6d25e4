"""``streamer devices``: the input devices PortAudio can record from (for ``--mic DEVICE``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``devices`` sub-command."""
    parser = subparsers.add_parser(
        "devices",
        help="list the microphones and other input devices",
        description=(
            "List the input devices PortAudio sees, with their index, name, host API, "
            "channels and default rate; * marks the default. Pass an index or a part of a "
            "name to --mic (streamer serve --mic DEVICE, streamer enroll NAME --mic DEVICE)."
        ),
    )
    parser.set_defaults(func=run)
    return parser


def add_mic_options(parser: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    """``--mic [DEVICE]`` and ``--mic-rate HZ`` in a group of their own (returned);
    ``what`` says what the microphone is for."""
    from . import positive_int

    group = parser.add_argument_group("microphone")
    group.add_argument(
        "--mic",
        nargs="?",
        const="",
        metavar="DEVICE",
        help=f"{what}: the default input, or DEVICE (an index or a name from `streamer devices`)",
    )
    group.add_argument(
        "--mic-rate",
        type=positive_int,
        metavar="HZ",
        help="open the microphone at this rate (default: the device's own)",
    )
    return group


def run(args: argparse.Namespace) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..sources.mic import input_devices

    devices = input_devices()
    console = Console(highlight=False)
    if not devices:
        console.print(Text("no input devices: PortAudio sees no microphone"))
        return 0
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("", "index", "name", "host API", "channels", "default rate"):
        table.add_column(column, justify="right" if column in ("index", "channels") else "left")
    for d in devices:
        table.add_row(
            "*" if d["default"] else "",
            str(d["index"]),
            Text(d["name"]),
            Text(d["hostapi_name"]),
            str(d["max_input_channels"]),
            f"{d['default_samplerate']:g} Hz",
        )
    console.print(table)
    return 0
