"""``streamer profiles``: list, remove and rename enrolled voices."""

from __future__ import annotations

import argparse
import sys

from ..errors import ProfileError
from ..profiles import ProfileStore
from . import add_profiles_option


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``profiles`` sub-command and its actions."""
    parser = subparsers.add_parser(
        "profiles",
        help="list, remove or rename enrolled voices",
        description="List the profiles in the store (the default), or remove or rename one.",
    )
    add_profiles_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="show every profile (the default)")
    remove = actions.add_parser("remove", help="delete a profile")
    remove.add_argument("name", metavar="NAME", help="the profile to delete")
    rename = actions.add_parser("rename", help="give a profile another name")
    rename.add_argument("old", metavar="OLD", help="its name now")
    rename.add_argument("new", metavar="NEW", help="its new name")
    for action in (listing, remove, rename):
        add_profiles_option(action, suppress=True)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    store = ProfileStore(args.profiles)
    if args.action == "remove":
        store.remove(args.name)
        print(f"removed profile {args.name!r} from {store.path}")
    elif args.action == "rename":
        if args.old == args.new:
            raise ProfileError(f"profile {args.old!r} has that name already")
        store.rename(args.old, args.new)
        print(f"renamed profile {args.old!r} to {args.new!r} in {store.path}")
    else:
        show(store)
    return 0


def _time(stamp: str) -> str:
    """``2025-01-31T09:05:00+00:00`` -> ``2025-01-31 09:05`` (the store keeps UTC)."""
    return stamp[:16].replace("T", " ")


def show(store: ProfileStore) -> None:
    """Print the store as a table; files that cannot be read are named on stderr."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    names = store.names()
    if not names:
        console.print(Text(f"no profiles in {store.path}"))
        return
    console.print(Text(f"profiles in {store.path}"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("name")
    table.add_column("speech s", justify="right")
    table.add_column("model")
    table.add_column("created (UTC)")
    table.add_column("updated (UTC)")
    problems = []
    for name in names:
        try:
            profile = store.get(name)
        except ProfileError as exc:
            problems.append(str(exc))
            table.add_row(Text(name), "", Text("unreadable", style="red"), "", "")
            continue
        table.add_row(
            Text(profile.name),
            f"{profile.speech_s:.1f}",
            Text(profile.model),
            _time(profile.created),
            _time(profile.updated),
        )
    console.print(table)
    for problem in problems:
        print(f"streamer: warning: {problem}", file=sys.stderr)
