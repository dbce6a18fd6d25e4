"""The daemon's protocol without I/O (``docs/protocol.md``): messages in, decisions out.

:class:`Protocol` is one connection's state machine. It is fed each message the client
sent (:meth:`Protocol.receive`) and returns what the message asks for — a typed
request or audio — or raises a :class:`~streamer.errors.ProtocolError` carrying the
error code (and, for the few errors that end a connection, the close code). It also
says how long to hold back a client that sends too fast and when a silent one has
timed out. :class:`Gate` decides who may hold a connection at all. Neither touches a
socket, a clock or the engine: the asyncio layer (:mod:`~streamer.server.connection`)
passes in the time and does what they decide, and the tests drive them synchronously.

States of a connection::

    HELLO --hello accepted--> OPEN --error with a close code, timeout--> CLOSING
      |                        (stream role: streaming until its end)
      +----wrong token, limit, hello timeout, evicted----------------------^
"""

from __future__ import annotations

import enum
import hmac
import json
import math
import re
import reprlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from ..errors import ProtocolError, StreamerError
from ..sources.websocket import AudioFormat
from .options import ServerLimits

PROTOCOL_VERSION = 1
ROLES = ("stream", "subscribe", "control")
REQUESTS = ("hello", "end", "status", "profiles", "rename", "remove", "enroll", "cancel", "promote")

# Close codes (RFC 6455)
NORMAL = 1000
POLICY = 1008
TRY_LATER = 1013

STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def check_stream_id(stream_id: object) -> str:
    """``stream_id`` if it is a valid stream id, else ``bad_message``."""
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise ProtocolError(
            "bad_message",
            f"stream id {stream_id!r} is not valid: use 1-64 letters, digits, '.', '_', ':' "
            "or '-', starting with a letter or digit (or leave it out to get one)",
        )
    return stream_id


def token_matches(expected: str | None, given: object) -> bool:
    """Whether ``given`` is the daemon's token (always, when it has none)."""
    if not expected:
        return True
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def error_message(exc: StreamerError, request_id: object = None) -> dict:
    """The ``error`` message for ``exc``: its class's (or its own) code, its one line."""
    message = {"type": "error", "code": exc.code, "message": " ".join(str(exc).split())}
    if request_id is not None:
        message["id"] = request_id
    return message


def profile_info(profile) -> dict:
    """A :class:`~streamer.profiles.Profile` as clients see it (never its voice vector)."""
    return {
        "name": profile.name,
        "model": profile.model,
        "speech_s": round(profile.speech_s, 2),
        "created": profile.created,
        "updated": profile.updated,
    }


def report_info(report) -> dict:
    """An :class:`~streamer.enroll.EnrollmentReport` as a message's fields."""
    return {
        "saved": report.profile is not None,
        "speech_s": round(report.speech_s, 2),
        "windows": report.windows,
        "feedback": [{"code": f.code, "message": f.message} for f in report.feedback],
        "profile": profile_info(report.profile) if report.profile is not None else None,
    }


# What a message asks for


@dataclass(frozen=True)
class Audio:
    """A binary frame for this connection's stream (not yet decoded)."""

    data: bytes


@dataclass(frozen=True)
class Hello:
    role: str
    id: object = None
    stream: str | None = None
    """Role ``stream``: the stream id asked for (``None``: the daemon picks one)."""
    audio_format: AudioFormat | None = None
    events: bool = False
    streams: frozenset[str] | None = None
    """Role ``subscribe``: only these streams (``None``: all)."""


@dataclass(frozen=True)
class Request:
    """A request after the hello; ``stream`` is ``None`` for this connection's own."""

    type: str
    id: object = None
    stream: str | None = None
    name: str | None = None
    new_name: str | None = None
    label: str | None = None
    seconds: float = 10.0
    force: bool = False


Message = Audio | Hello | Request


class State(enum.Enum):
    HELLO = "waiting for its hello"
    OPEN = "open"
    CLOSING = "closing"


class Protocol:
    """One connection's protocol state (see the module's docstring).

    Args:
        limits: the daemon's limits (frame size, message rate, timeouts, enrollment).
        token: the daemon's token, if it has one.
        handshake_token: the token the client sent in the URL or a header, if any.
        now: the time the connection opened (any monotonic clock, in seconds).
    """

    def __init__(
        self,
        limits: ServerLimits,
        token: str | None = None,
        handshake_token: str | None = None,
        now: float = 0.0,
    ) -> None:
        self.limits = limits
        self.state = State.HELLO
        self.role: str | None = None
        self.streaming = False
        """Role ``stream`` with its stream open (until ``end``)."""
        self._token = token
        self._handshake_token = handshake_token
        self._opened = self._last_active = self._refilled = now
        self._tokens = float(limits.max_messages_per_s)  # bucket: one token per message
        self._busy = False

    # Messages

    def receive(self, message: str | bytes, now: float) -> Message:
        """What ``message`` asks for; :class:`ProtocolError` if it cannot be used (with
        the request's ``id`` as its ``request_id``). The connection counts as busy
        (never idle) until :meth:`handled`.
        """
        self._last_active = now
        self._busy = True
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > self.limits.max_frame_bytes:
            kind = "audio frame" if isinstance(message, bytes) else "text message"
            raise ProtocolError(
                "frame_too_large",
                f"a {kind} of {size} bytes is over the limit of {self.limits.max_frame_bytes}; "
                "it was dropped — send 20-100 ms of audio per frame",
            )
        if isinstance(message, bytes):
            return self._audio(message)
        request = _parse_json(message)
        try:
            return self._request(request)
        except ProtocolError as exc:
            exc.request_id = request.get("id")  # the error answers the request: same id
            raise

    def _request(self, request: dict) -> Message:
        kind = request.get("type")
        if not isinstance(kind, str) or kind not in REQUESTS:
            raise ProtocolError(
                "unknown_type",
                f"unknown message type {reprlib.repr(kind)}; the daemon understands "
                + ", ".join(REQUESTS),
            )
        if kind == "hello":
            return self._hello(request)
        if self.state is State.HELLO:
            raise ProtocolError(
                "not_ready",
                f'send a hello first, e.g. {{"type": "hello", "role": "control"}}, not {kind!r}',
            )
        return _request(kind, request, self.limits.max_enroll_s)

    @property
    def busy(self) -> bool:
        """Handling a message (maybe paused by backpressure): not reading, not idle."""
        return self._busy

    @property
    def last_active(self) -> float:
        """When the client was last heard from, or its last message dealt with."""
        return self._last_active

    def handled(self, now: float) -> None:
        """The last message received has been dealt with."""
        self._busy = False
        self._last_active = now

    def _audio(self, data: bytes) -> Audio:
        if self.state is State.HELLO:
            raise ProtocolError(
                "not_ready",
                'audio before hello: send a hello first, e.g. {"type": "hello", '
                '"role": "stream", "sample_rate": 16000, "format": "int16"}',
            )
        if not self.streaming:
            why = "its stream has ended" if self.role == "stream" else f"its role is {self.role}"
            raise ProtocolError(
                "no_stream",
                f"this connection has no open stream ({why}); audio goes to a connection "
                "that said hello with role 'stream'",
            )
        return Audio(data)

    def _hello(self, request: dict) -> Hello:
        if self.state is not State.HELLO:
            raise ProtocolError("bad_message", f"this connection said hello already ({self.role})")
        version = request.get("protocol", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION or isinstance(version, bool):
            raise ProtocolError(
                "bad_message",
                f"protocol version {reprlib.repr(version)} is not supported; this daemon speaks "
                f"{PROTOCOL_VERSION}",
            )
        role = request.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ProtocolError(
                "bad_message",
                f"hello needs a role: one of {', '.join(ROLES)}; got {reprlib.repr(role)}",
            )
        if not token_matches(self._token, request.get("token") or self._handshake_token):
            raise ProtocolError(
                "unauthorized",
                "wrong or missing token: send the daemon's token in the hello's token field, "
                "as ?token= in the URL or as an Authorization: Bearer header",
                POLICY,
            )
        request_id = request.get("id")
        if role == "stream":
            stream = request.get("stream")
            return Hello(
                role,
                request_id,
                stream=check_stream_id(stream) if stream is not None else None,
                audio_format=AudioFormat.from_hello(request),
                events=_bool(request, "events", False),
            )
        if role == "subscribe":
            streams = request.get("streams")
            if streams is not None:
                if not isinstance(streams, list) or not streams:
                    raise ProtocolError(
                        "bad_message",
                        "streams must be a non-empty list of stream ids, or left out for all",
                    )
                streams = frozenset(check_stream_id(s) for s in streams)
            return Hello(role, request_id, streams=streams)
        return Hello(role, request_id)

    @property
    def authenticated_early(self) -> bool:
        """The daemon has a token and the client brought it in the URL or a header."""
        return bool(self._token) and token_matches(self._token, self._handshake_token)

    # State

    def accept(self, hello: Hello) -> None:
        """The daemon took the hello (its stream, if any, is open)."""
        self.state = State.OPEN
        self.role = hello.role
        self.streaming = hello.role == "stream"

    def stream_ended(self) -> None:
        self.streaming = False

    def closing(self) -> None:
        self.state = State.CLOSING

    # Limits

    def throttle(self, now: float) -> float:
        """Seconds to wait before reading the next message: a token bucket of
        ``max_messages_per_s``, bursts of one second's worth. Call once per message."""
        rate = self.limits.max_messages_per_s
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        wait = 0.0
        if self._tokens < 1:
            wait = (1 - self._tokens) / rate
            self._tokens, self._refilled = 1.0, now + wait
        self._tokens -= 1
        return wait

    def next_check(self, now: float) -> float | None:
        """When to call :meth:`expired` next (``None``: never; subscribers only listen)."""
        if self.state is State.CLOSING or self.role == "subscribe":
            return None
        if self.state is State.HELLO:
            return self._opened + self.limits.hello_timeout_s
        if self._busy:  # handling a message (maybe paused by backpressure): not idle
            return now + self.limits.idle_timeout_s
        return self._last_active + self.limits.idle_timeout_s

    def expired(self, now: float) -> ProtocolError | None:
        """The timeout error if the hello or the idle deadline has passed, else ``None``."""
        when = self.next_check(now)
        if when is None or now < when:
            return None
        if self.state is State.HELLO:
            timeout = self.limits.hello_timeout_s
            message = f"no hello within {timeout:g} s; closing (say hello right after connecting)"
            return ProtocolError("hello_timeout", message, POLICY)
        timeout = self.limits.idle_timeout_s
        return ProtocolError("idle_timeout", f"nothing received for {timeout:g} s; closing", NORMAL)


# Parsing


def _parse_json(text: str) -> dict:
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            "bad_json",
            f"a text message must be one JSON object; this is not JSON ({exc.msg} at "
            f"character {exc.pos})",
        ) from None
    except RecursionError:
        raise ProtocolError(
            "bad_json", "a text message must be one JSON object; this one is nested too deeply"
        ) from None
    if not isinstance(request, dict):
        raise ProtocolError(
            "bad_json", 'a text message must be a JSON object like {"type": "status"}'
        )
    return request


def _request(kind: str, request: dict, max_enroll_s: float) -> Request:
    request_id = request.get("id")
    stream = request.get("stream")
    if kind in ("enroll", "cancel", "promote") and stream is not None:
        stream = check_stream_id(stream)
    if kind == "rename":
        return Request(
            kind, request_id, name=_text(request, "name"), new_name=_text(request, "new_name")
        )
    if kind == "remove":
        return Request(kind, request_id, name=_text(request, "name"))
    if kind == "enroll":
        return Request(
            kind,
            request_id,
            stream,
            name=_text(request, "name"),
            seconds=_number(request, "seconds", 10.0, 1.0, max_enroll_s),
            force=_bool(request, "force", False),
        )
    if kind == "cancel":
        return Request(kind, request_id, stream)
    if kind == "promote":
        return Request(
            kind, request_id, stream, name=_text(request, "name"), label=_text(request, "label")
        )
    return Request(kind, request_id)  # end, status, profiles


def _text(request: dict, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("bad_message", f"{request['type']} needs {key!r}: a non-empty string")
    return value


def _number(request: dict, key: str, default: float, low: float, high: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError("bad_message", f"{key} must be a number, not {reprlib.repr(value)}")
    if not low <= value <= high:
        raise ProtocolError("bad_message", f"{key} must be {low:g} to {high:g}, not {value:g}")
    return float(value)


def _bool(request: dict, key: str, default: bool) -> bool:
    value = request.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(
            "bad_message", f"{key} must be true or false, not {reprlib.repr(value)}"
        )
    return value


# Who may hold a connection


class Gate:
    """Admission: connections that have not said hello cannot lock others out.

    A connection is *pending* until its hello is accepted (or from the start, when it
    brought the right token in the URL or a header). Pending connections have their
    own small budget — ``max_pending_connections`` in all, ``max_pending_per_address``
    from one address — and when it is full the oldest pending connection of the
    address holding the most is evicted to make room, so a flood of idle or
    reconnecting clients churns only itself: a client that says hello right away always
    gets in. Accepted connections count against ``max_connections``.
    """

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.pending: OrderedDict[Hashable, str] = OrderedDict()  # key -> address, oldest first
        self.accepted: set[Hashable] = set()

    def arrive(self, key: Hashable, address: str) -> list[Hashable]:
        """A new connection, pending; returns the pending connections it evicts."""
        evicted = []
        same = [k for k, a in self.pending.items() if a == address]
        if len(same) >= self.limits.max_pending_per_address:
            evicted.append(same[0])
        elif len(self.pending) >= self.limits.max_pending_connections:
            counts: dict[str, int] = {}
            for a in self.pending.values():
                counts[a] = counts.get(a, 0) + 1
            busiest = max(counts, key=counts.__getitem__)
            evicted.append(next(k for k, a in self.pending.items() if a == busiest))
        for k in evicted:
            del self.pending[k]
        self.pending[key] = address
        return evicted

    def accept(self, key: Hashable) -> bool:
        """Move a pending connection to the accepted ones; ``False`` if they are full."""
        self.pending.pop(key, None)
        if key in self.accepted:
            return True
        if len(self.accepted) >= self.limits.max_connections:
            return False
        self.accepted.add(key)
        return True

    def leave(self, key: Hashable) -> None:
        self.pending.pop(key, None)
        self.accepted.discard(key)

    def full_error(self) -> ProtocolError:
        return ProtocolError(
            "limit",
            f"the daemon has {self.limits.max_connections} connections open, its limit; "
            "try again later or raise --max-connections",
            TRY_LATER,
        )

    def evicted_error(self) -> ProtocolError:
        return ProtocolError(
            "limit",
            "too many connections are waiting for their hello; closing the oldest — say "
            "hello right after connecting",
            TRY_LATER,
        )


class LogLimiter:
    """At most one log line per ``interval_s`` for a kind of event; the rest are counted.

    ``note(now)`` returns ``None`` to stay silent, or how many were silenced since the
    last line (0 for the first), to log now.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._next = -math.inf
        self._silenced = 0

    def note(self, now: float) -> int | None:
        if now < self._next:
            self._silenced += 1
            return None
        silenced, self._silenced = self._silenced, 0
        self._next = now + self.interval_s
        return silenced
