"""One client connection: its hello, its audio, its requests (``docs/protocol.md``).

Every bad message gets one ``error`` message with a ``code`` and a message that says
what would work, and the connection carries on. Only a wrong token, a limit reached at
hello, and the hello and idle timeouts close the connection (after the error).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..errors import ProtocolError, StreamerError
from ..profiles import check_name
from ..sources.websocket import AudioFormat
from .app import PROTOCOL_VERSION, Server, check_stream_id, error_message, report_info
from .hub import Outbox, Subscriber
from .keepalive import keepalive
from .session import Enrollment, Session

log = logging.getLogger("streamer.server")

ROLES = ("stream", "subscribe", "control")
REQUESTS = ("hello", "end", "status", "profiles", "rename", "remove", "enroll", "cancel", "promote")

# Close codes (RFC 6455)
NORMAL = 1000
POLICY = 1008
TRY_LATER = 1013


class Closing(Exception):
    """An error after which the connection is closed."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


class Connection:
    def __init__(self, server: Server, websocket: ServerConnection, number: int) -> None:
        self.server = server
        self.ws = websocket
        self.number = number
        self.limits = server.limits
        self.outbox = Outbox(
            websocket, self.limits.subscriber_queue_events, server.metrics.dropped.inc
        )
        self.role: str | None = None
        self.session: Session | None = None
        self.subscriber: Subscriber | None = None
        self.opened = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._last_active = self._opened_at = self._loop.time()
        self._busy = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._tokens = self.limits.max_messages_per_s  # token bucket: one token per message
        self._refilled = self._last_active
        self._closing = False

    @property
    def peer(self) -> str:
        address = self.ws.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    # Life

    async def run(self) -> None:
        server = self.server
        if len(server.connections) >= self.limits.max_connections:
            await self._refuse()
            return
        server.connections.add(self)
        server.metrics.connections.set(len(server.connections))
        log.info("client %d connected from %s", self.number, self.peer)
        self.outbox.start()
        self._arm_watchdog()
        pinging = asyncio.create_task(self._keepalive())
        try:
            async for message in self.ws:
                self._last_active = self._loop.time()
                self._busy = True
                try:
                    await self._throttle()
                    await self._handle(message)
                except Closing as exc:
                    await self._close(exc.code, str(exc), exc.close_code)
                    break
                finally:
                    self._busy = False
                    self._last_active = self._loop.time()
        except ConnectionClosed:
            pass  # vanished mid-message, or a keepalive timeout: clean up all the same
        finally:
            pinging.cancel()
            await self._cleanup()

    def _keepalive(self):
        limits = self.limits
        return keepalive(
            self.ws,
            limits.ping_interval_s,
            limits.ping_timeout_s,
            paused=lambda: self._busy,
            last_heard=lambda: self._last_active,
        )

    async def _refuse(self) -> None:
        message = (
            f"the daemon has {self.limits.max_connections} connections open, its limit; "
            "try again later"
        )
        try:
            await self.ws.send(json.dumps({"type": "error", "code": "limit", "message": message}))
            await self.ws.close(TRY_LATER, "too many connections")
        except ConnectionClosed:
            pass
        log.warning("refused a connection from %s: %s", self.peer, message)

    async def _cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.server.hub.unsubscribe(self.subscriber)
        if self.session is not None:
            reason = "its client disconnected" if not self._closing else "its client was closed"
            try:
                await self.server.end_stream(self.session, reason)
            except Exception:
                log.exception("client %d: could not end stream %r", self.number, self.session.id)
        await self.outbox.close()
        self.server.connections.discard(self)
        self.server.metrics.connections.set(len(self.server.connections))
        code = self.ws.close_code
        log.info(
            "client %d disconnected (%s, after %.1f s)",
            self.number,
            f"close code {code}" if code is not None else "connection lost",
            time.monotonic() - self.opened,
        )

    async def _close(self, code: str, message: str, close_code: int) -> None:
        """Send the error, then close the connection."""
        self._closing = True
        self.error(code, message)
        await self.outbox.flush(timeout_s=2.0)
        await self.ws.close(close_code, code)

    def error(self, code: str, message: str, request_id: object = None) -> None:
        reply = {"type": "error", "code": code, "message": message}
        self.reply(reply, request_id)

    def reply(self, message: dict, request_id: object = None) -> None:
        if request_id is not None:
            message["id"] = request_id
        self.outbox.reply(message)

    # Limits

    async def _throttle(self) -> None:
        """Token bucket: ``max_messages_per_s``, bursts of one second's worth."""
        rate = self.limits.max_messages_per_s
        now = self._loop.time()
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / rate)  # not reading = slowing the client
            self._tokens, self._refilled = 1.0, self._loop.time()
        self._tokens -= 1

    def _deadline(self) -> tuple[float, float] | None:
        """(When the connection times out, the timeout): the hello is due a fixed time
        after connecting; then a stream or control connection may not stay silent."""
        if self.role is None:
            return self._opened_at + self.limits.hello_timeout_s, self.limits.hello_timeout_s
        if self.role == "subscribe":
            return None
        return self._last_active + self.limits.idle_timeout_s, self.limits.idle_timeout_s

    def _arm_watchdog(self) -> None:
        deadline = self._deadline()
        if deadline is not None:
            self._watchdog = self._loop.call_at(deadline[0], self._check_idle)

    def _check_idle(self) -> None:
        deadline = self._deadline()
        if deadline is None or self._closing:
            return
        when, timeout = deadline
        if self._busy:  # handling a message (maybe paused by backpressure): not idle
            self._watchdog = self._loop.call_later(timeout, self._check_idle)
            return
        if self._loop.time() < when:
            self._arm_watchdog()
            return
        if self.role is None:
            code, message = "hello_timeout", f"no hello within {timeout:g} s; closing"
            close_code = POLICY
        else:
            code, message = "idle_timeout", f"nothing received for {timeout:g} s; closing"
            close_code = NORMAL
        self.server.background(self._close(code, message, close_code))

    # Messages

    async def _handle(self, message: str | bytes) -> None:
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > self.limits.max_frame_bytes:
            kind = "audio frame" if isinstance(message, bytes) else "text message"
            self.error(
                "frame_too_large",
                f"a {kind} of {size} bytes is over the limit of {self.limits.max_frame_bytes}; "
                "it was dropped — send 20-100 ms of audio per frame",
            )
            return
        if isinstance(message, bytes):
            try:
                await self._audio(message)
            except StreamerError as exc:
                self.outbox.reply(error_message(exc))
            return
        try:
            request = json.loads(message)
        except json.JSONDecodeError as exc:
            self.error(
                "bad_json",
                f"a text message must be one JSON object; this is not JSON ({exc.msg} at "
                f"character {exc.pos})",
            )
            return
        if not isinstance(request, dict):
            self.error("bad_json", 'a text message must be a JSON object like {"type": "status"}')
            return
        request_id = request.get("id")
        try:
            await self._request(request)
        except StreamerError as exc:
            self.reply(error_message(exc), request_id)
        except Closing:
            raise
        except Exception:
            log.exception("client %d: error handling %r", self.number, request.get("type"))
            self.error("internal", "internal error; the daemon's log has the details", request_id)

    async def _request(self, request: dict) -> None:
        kind = request.get("type")
        if kind not in REQUESTS:
            raise ProtocolError(
                "unknown_type",
                f"unknown message type {kind!r}; the daemon understands " + ", ".join(REQUESTS),
            )
        if kind == "hello":
            await self._hello(request)
        elif self.role is None:
            raise ProtocolError(
                "not_ready",
                f'send a hello first, e.g. {{"type": "hello", "role": "control"}}, not {kind!r}',
            )
        else:
            await getattr(self, f"_{kind}")(request)

    async def _audio(self, data: bytes) -> None:
        if self.role is None:
            raise ProtocolError(
                "not_ready",
                'audio before hello: send a hello first, e.g. {"type": "hello", '
                '"role": "stream", "sample_rate": 16000, "format": "int16"}',
            )
        session = self.session
        if session is None or session.closing:
            why = "its stream has ended" if self.role == "stream" else f"its role is {self.role}"
            raise ProtocolError(
                "no_stream",
                f"this connection has no open stream ({why}); audio goes to a connection "
                "that said hello with role 'stream'",
            )
        samples = session.decoder.decode(data)
        await session.push(samples, self.limits.max_backlog_s)

    async def _hello(self, request: dict) -> None:
        if self.role is not None:
            raise ProtocolError("bad_message", f"this connection said hello already ({self.role})")
        version = request.get("protocol", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                "bad_message",
                f"protocol version {version!r} is not supported; this daemon speaks "
                f"{PROTOCOL_VERSION}",
            )
        role = request.get("role")
        if role not in ROLES:
            raise ProtocolError(
                "bad_message", f"hello needs a role: one of {', '.join(ROLES)}; got {role!r}"
            )
        token = request.get("token") or self.server.request_token(self.ws.request)
        if not self.server.token_ok(token if isinstance(token, str) else None):
            log.warning("client %d: wrong or missing token", self.number)
            raise Closing(
                "unauthorized",
                "wrong or missing token: send the daemon's token in the hello's token field, "
                "as ?token= in the URL or as an Authorization: Bearer header",
                POLICY,
            )
        request_id = request.get("id")
        if role == "stream":
            await self._hello_stream(request, request_id)
        elif role == "subscribe":
            streams = request.get("streams")
            if streams is not None:
                if not isinstance(streams, list) or not streams:
                    raise ProtocolError(
                        "bad_message",
                        "streams must be a non-empty list of stream ids, or left out for all",
                    )
                streams = frozenset(check_stream_id(s) for s in streams)
            self._check_subscriber_limit()
            self.role = "subscribe"
            self.reply({"type": "ready", "role": role, "streams": _listed(streams)}, request_id)
            self.subscriber = self.server.hub.subscribe(self.outbox, streams)
            shown = ", ".join(sorted(streams)) if streams else "all streams"
            log.info("client %d subscribed to %s", self.number, shown)
        else:
            self.role = "control"
            self.reply({"type": "ready", "role": role, **self._about()}, request_id)

    async def _hello_stream(self, request: dict, request_id: object) -> None:
        audio_format = AudioFormat.from_hello(request)
        events = _bool(request, "events", False)
        if events:
            self._check_subscriber_limit()
        try:
            session = await self.server.open_websocket_stream(
                request.get("stream"), audio_format, self.number
            )
        except ProtocolError as exc:
            if exc.code == "limit":
                raise Closing(exc.code, str(exc), TRY_LATER) from exc
            raise
        self.session = session
        self.role = "stream"
        ready = {
            "type": "ready",
            "role": "stream",
            "stream": session.id,
            "sample_rate": audio_format.sample_rate,
            "format": audio_format.format,
            "channels": audio_format.channels,
            "events": events,
            **self._about(),
        }
        self.reply(ready, request_id)
        if events:
            self.subscriber = self.server.hub.subscribe(self.outbox, frozenset([session.id]))

    def _about(self) -> dict:
        server = self.server
        return {
            "protocol": PROTOCOL_VERSION,
            "model": server.model,
            "model_sample_rate": server.sample_rate,
            "max_frame_bytes": self.limits.max_frame_bytes,
        }

    def _check_subscriber_limit(self) -> None:
        if len(self.server.hub.subscribers) >= self.limits.max_subscribers:
            raise Closing(
                "limit",
                f"the daemon has {self.limits.max_subscribers} subscribers, its limit; "
                "try again later or raise --max-subscribers",
                TRY_LATER,
            )

    # Requests after hello

    async def _end(self, request: dict) -> None:
        session = self.session
        if session is None or session.closing:
            raise ProtocolError("no_stream", "this connection has no open stream to end")
        await self.server.end_stream(session, "ended by its client")
        self.session = None
        if self.subscriber is not None and self.subscriber.streams == {session.id}:
            self.server.hub.unsubscribe(self.subscriber)
            self.subscriber = None
        ended = {"type": "ended", "stream": session.id, "audio_s": round(session.audio_s, 3)}
        self.reply(ended, request.get("id"))

    async def _status(self, request: dict) -> None:
        self.reply(self.server.status(), request.get("id"))

    async def _profiles(self, request: dict) -> None:
        self.reply({"type": "profiles", "profiles": self.server.hub.profiles}, request.get("id"))

    async def _rename(self, request: dict) -> None:
        old, new = _text(request, "name"), _text(request, "new_name")
        await self.server.rename_profile(old, new)
        self.reply({"type": "renamed", "name": old, "new_name": new}, request.get("id"))

    async def _remove(self, request: dict) -> None:
        name = _text(request, "name")
        await self.server.remove_profile(name)
        self.reply({"type": "removed", "name": name}, request.get("id"))

    def _target(self, request: dict) -> Session:
        """The stream a request is about: its ``stream`` field, else this connection's own."""
        stream_id = request.get("stream")
        if stream_id is None:
            if self.session is None:
                raise ProtocolError(
                    "bad_message", f'{request["type"]} needs a stream: add "stream": ID'
                )
            return self.session
        session = self.server.sessions.get(check_stream_id(stream_id))
        if session is None or session.closing:
            known = ", ".join(sorted(self.server.sessions)) or "none"
            raise ProtocolError(
                "unknown_stream", f"no open stream {stream_id!r} (open streams: {known})"
            )
        return session

    async def _enroll(self, request: dict) -> None:
        session = self._target(request)
        name = check_name(_text(request, "name"))
        seconds = _number(request, "seconds", 10.0, 1.0, self.limits.max_enroll_s)
        enrollment = Enrollment(
            name=name,
            seconds=seconds,
            force=_bool(request, "force", False),
            requester=self.outbox,
            request_id=request.get("id"),
        )
        await self.server.start_enroll(session, enrollment)

    async def _cancel(self, request: dict) -> None:
        session = self._target(request)
        enrollment = await self.server.cancel_enroll(session)
        cancelled = {"type": "enroll_cancelled", "stream": session.id, "name": enrollment.name}
        enrollment.reply(dict(cancelled))
        if enrollment.requester is not self.outbox:
            self.reply(cancelled, request.get("id"))

    async def _promote(self, request: dict) -> None:
        session = self._target(request)
        label = _text(request, "label")
        name = check_name(_text(request, "name"))
        report = await self.server.promote(session, label, name)
        promoted = {"type": "promoted", "stream": session.id, "label": label, "name": name}
        self.reply({**promoted, **report_info(report)}, request.get("id"))


# Fields


def _text(request: dict, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(
            "bad_message", f"{request.get('type')} needs {key!r}: a non-empty string"
        )
    return value


def _number(request: dict, key: str, default: float, low: float, high: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError("bad_message", f"{key} must be a number, not {value!r}")
    if not low <= value <= high:
        raise ProtocolError("bad_message", f"{key} must be {low:g} to {high:g}, not {value:g}")
    return float(value)


def _bool(request: dict, key: str, default: bool) -> bool:
    value = request.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError("bad_message", f"{key} must be true or false, not {value!r}")
    return value


def _listed(streams: frozenset[str] | None) -> list[str] | None:
    return sorted(streams) if streams is not None else None
