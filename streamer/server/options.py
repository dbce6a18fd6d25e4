"""The daemon's options: where it listens, who may talk to it, and what each client may do.

Safe by default: it listens on 127.0.0.1 only, refuses browser pages (any ``Origin``
header) but its own page unless their origin is allowed, and binding to any other
address needs a token.
Every limit below has a unit in its name and is enforced where it says.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, field, fields

from ..errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ServerLimits:
    """What one client, and all of them together, may do.

    Attributes:
        max_connections: websocket connections open at once that have said hello (or
            brought the right token in the URL or a header); one more gets ``limit`` and
            is closed (1013, try again later).
        max_pending_connections: connections that have not said hello yet, from
            anywhere. When full, the oldest pending connection of the address holding
            the most is closed (``limit``, 1013) to make room, so idle or reconnecting
            clients cannot lock out one that says hello at once.
        max_pending_per_address: the same, from one IP address.
        max_streams: audio streams open at once, websocket and microphone together; a
            hello beyond it gets ``limit`` and the connection is closed (1013). ``None``
            (the default): no fixed number, only admission control
            (:mod:`~streamer.server.admission`): a stream that would take the daemon past
            the capacity it measures (at start-up, then from its streams' real cost), or
            that comes while a stream is lagging, gets ``busy`` (1013). That applies
            under a fixed limit too.
        max_subscribers: connections receiving events at once (a stream client that
            asked for its own events counts too); beyond it: ``limit``, closed (1013).
        max_frame_bytes: largest message read. A bigger one gets the error
            ``frame_too_large`` and is dropped; the connection stays open. The websocket
            layer refuses messages over 4x this without reading them (close 1009).
        max_messages_per_s: sustained messages per second per connection (bursts of one
            second's worth pass). A faster client is slowed down, not refused: its socket
            is not read until it is back under the rate.
        max_backlog_s: seconds of a stream's audio that may wait for the worker.
            **Backpressure:** a client that sends faster than the worker processes (a
            file sent as fast as it reads) is paused — its socket is not read, so TCP
            flow control slows the sender — until the worker has caught up. It never
            gets an error for sending too fast and no audio is lost. A microphone
            cannot wait: if its stream's buffer is full, blocks are dropped and counted
            (``status``, the log). Keep this well under the engine's ``buffer_s``.
        subscriber_queue_events: events queued per subscriber that cannot keep up.
            **Overflow policy:** once the queue is full, further events for that
            subscriber are dropped (never the other subscribers' events, never the audio
            path); when its queue has drained it gets ``{"type": "dropped", "count": N}``
            followed by a fresh ``snapshot``, so it knows what it missed and where things
            stand now. A subscriber that stops reading altogether is disconnected by the
            websocket keepalive (``ping_timeout_s``).
        hello_timeout_s: a connection must send its hello within this; else it gets
            ``hello_timeout`` and is closed (1008).
        idle_timeout_s: a stream or control connection that sends nothing for this long
            gets ``idle_timeout`` and is closed (1000; its stream, if any, is ended).
            Subscribers only listen, so they are never idle.
        ping_interval_s: websocket keepalive ping interval (a client that sent something
            within it is not pinged).
        ping_timeout_s: a peer that does not answer a ping within this, and sends
            nothing else either, is dropped (1011). A client paused for backpressure is
            never dropped for it: its pong waits behind the audio the daemon is not reading.
        max_enroll_s: longest live enrollment recording.
    """

    max_connections: int = 128
    max_pending_connections: int = 64
    max_pending_per_address: int = 32
    max_streams: int | None = None
    max_subscribers: int = 64
    max_frame_bytes: int = 2**19
    max_messages_per_s: float = 200.0
    max_backlog_s: float = 4.0
    subscriber_queue_events: int = 256
    hello_timeout_s: float = 5.0
    idle_timeout_s: float = 60.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    max_enroll_s: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_streams":
                continue
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                raise ConfigError(f"limit {f.name} must be a number, not {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"limit {f.name} must be more than 0, not {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ServerOptions:
    """Where the daemon listens and who may connect.

    Attributes:
        host: address to bind; ``127.0.0.1`` (the default) accepts local clients only.
            Any non-loopback address (``0.0.0.0``, a LAN address) requires ``token``.
        port: TCP port; ``0`` picks a free one (the log and ``Server.port`` say which).
        token: shared secret clients must present (hello ``token`` field, ``?token=`` in
            the URL, or an ``Authorization: Bearer`` header); ``/metrics`` asks for it too.
        allowed_origins: browser origins (``https://app.example``) allowed to connect.
            Clients that send no ``Origin`` (programs, not browsers) are always allowed,
            and so is the daemon's own page (:mod:`streamer.server.http`); a browser page
            from any other origin is refused (403), so a web page cannot reach a daemon
            on localhost behind the user's back.
        limits: see :class:`ServerLimits`.
        batch_delay_s: with two streams or more, the least time between two steps of the
            engine. The audio of all streams that arrives within it is processed in one
            step — one VAD batch, one encoder batch, one pass of the per-step overhead —
            instead of every frame of every stream waking the engine for a step of its
            own. It adds up to this much latency (half on average); a busy engine steps
            back to back and never waits; a single stream never waits.
        admission: refuse new streams with ``busy`` when the daemon is at its measured
            capacity or a stream lags (:mod:`~streamer.server.admission`); off, only
            ``limits.max_streams`` bounds them (for capacity benchmarks).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    batch_delay_s: float = 0.05
    admission: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not 0 <= self.batch_delay_s <= 1:
            raise ConfigError(f"batch_delay_s must be 0 to 1 s, not {self.batch_delay_s}")
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("the token is too short; use at least 8 characters (16+ random)")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"binding to {self.host or 'all interfaces'} lets other machines connect; "
                "pass --token SECRET (or set STREAMER_TOKEN) so only clients that know it can"
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname, "" or "0.0.0.0"-like: assume it is reachable
