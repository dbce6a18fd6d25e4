"""Subscribe to the streamer daemon and print who is speaking, live.

    python -m clients.subscribe                         # every stream
    python -m clients.subscribe --stream mic --json     # one stream, raw JSON lines
    python -m clients.subscribe --url ws://host:8765/ --token SECRET

First comes a snapshot (the open streams, who speaks in each now, the profiles), then
every event as it is decided. Ctrl-C (or SIGTERM) stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable

from .common import DEFAULT_URL, ClientError, open_connection, show


async def subscribe(
    url: str,
    on_message: Callable[[dict], bool | None],
    *,
    streams: list[str] | None = None,
    token: str | None = None,
) -> None:
    """Call ``on_message`` with every message (snapshot first) until it returns ``True``."""
    hello: dict = {"type": "hello", "role": "subscribe"}
    if streams:
        hello["streams"] = streams
    ws = await open_connection(url, hello, token)
    try:
        async for raw in ws:
            if on_message(json.loads(raw)):
                return
    finally:
        await ws.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.subscribe", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"daemon (default: {DEFAULT_URL})")
    parser.add_argument(
        "--stream", action="append", metavar="ID", help="only this stream (repeatable)"
    )
    parser.add_argument("--token", help="the daemon's token, if it has one")
    parser.add_argument("--json", action="store_true", help="print the raw JSON messages")
    args = parser.parse_args(argv)

    async def run() -> None:
        # Ctrl-C and SIGTERM close the connection cleanly (also when the shell started
        # this client in the background, where Python would ignore Ctrl-C).
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await subscribe(
            args.url,
            lambda message: show(message, args.json),
            streams=args.stream,
            token=args.token,
        )

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        return 0
    except (ClientError, OSError) as exc:
        print(f"clients.subscribe: error: {exc}", file=sys.stderr)
        return 1
    print("clients.subscribe: the daemon closed the connection", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
