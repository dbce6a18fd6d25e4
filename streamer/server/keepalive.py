"""The daemon's websocket keepalive: pings that never kill a client paused for backpressure.

The ``websockets`` keepalive drops a peer whose pong is late. But while the daemon does
not read a client — it is paused because its stream's backlog is full (backpressure) —
that client's pong waits unread behind its audio, and a healthy client sending a file
faster than real time would be dropped for it (close 1011). Here a connection is alive
while it is paused, or when anything arrived from it since the ping; only a peer that is
read and still stays silent past ``timeout_s`` is closed (1011, ``keepalive ping timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

log = logging.getLogger("streamer.server")

INTERNAL_ERROR = 1011


async def keepalive(
    ws,
    interval_s: float,
    timeout_s: float,
    paused: Callable[[], bool],
    last_heard: Callable[[], float],
) -> None:
    """Ping ``ws`` every ``interval_s``; close it if it stays unheard for ``timeout_s``.

    ``paused()``: whether the daemon is holding the client's socket unread right now;
    ``last_heard()``: the loop time its last message was read.
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval_s)
            if paused() or loop.time() - last_heard() < interval_s:
                continue  # it is talking, or it cannot be heard for now: no need to ask
            sent = loop.time()
            pong = await ws.ping()
            while True:
                done, _ = await asyncio.wait([pong], timeout=timeout_s)
                if done:
                    pong.exception()  # retrieved: a pong, or the connection closing
                    break
                if not (paused() or last_heard() > sent):
                    log.info("a client did not answer a ping for %g s; closing it", timeout_s)
                    await ws.close(INTERNAL_ERROR, "keepalive ping timeout")
                    return
                sent = loop.time()  # paused or talking: give the pong more time
