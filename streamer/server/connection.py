"""One client connection, the asyncio side: a thin layer around :mod:`.protocol`.

It reads the websocket, hands each message to the connection's
:class:`~streamer.server.protocol.Protocol`, does what the message asks of the
:class:`~streamer.server.app.Server` and writes the answers to the connection's outbox.
Every error is one ``error`` message (``docs/protocol.md``); only errors with a close
code (a wrong token, a limit, a timeout) close the connection, after the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..errors import ProtocolError, StreamerError
from ..profiles import check_name
from .hub import Outbox, Subscriber
from .keepalive import keepalive
from .protocol import (
    PROTOCOL_VERSION,
    TRY_LATER,
    Audio,
    Hello,
    LogLimiter,
    Protocol,
    Request,
    error_message,
    report_info,
)
from .session import Enrollment, Requester, Session, disconnect_reason

if TYPE_CHECKING:  # annotations only: the server imports this module, not the reverse
    from .app import Server

log = logging.getLogger("streamer.server")


class Connection:
    def __init__(self, server: Server, websocket: ServerConnection, number: int) -> None:
        self.server = server
        self.ws = websocket
        self.number = number
        self.limits = server.limits
        self.outbox = Outbox(
            websocket, self.limits.subscriber_queue_events, server.metrics.dropped.inc
        )
        self._loop = asyncio.get_running_loop()
        self.protocol = Protocol(
            self.limits,
            server.options.token,
            server.request_token(websocket.request),
            self._loop.time(),
        )
        self.session: Session | None = None
        self.subscriber: Subscriber | None = None
        self.opened = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing = False

    @property
    def peer(self) -> str:
        address = self.ws.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    @property
    def role(self) -> str | None:
        return self.protocol.role

    # Life

    async def run(self) -> None:
        server = self.server
        address = self.ws.remote_address[0] if self.ws.remote_address else "?"
        server.connections.add(self)
        server.metrics.connections.set(len(server.connections))
        self.outbox.start()
        pinging = None
        try:
            if self.protocol.authenticated_early:
                if not server.gate.accept(self):
                    await self._close(server.gate.full_error())
                    return
            else:
                for evicted in server.gate.arrive(self, address):
                    evicted.evict()
            self._arm_watchdog()
            pinging = asyncio.create_task(self._keepalive())
            async for message in self.ws:
                try:
                    wait_s = self.protocol.throttle(self._loop.time())
                    if wait_s:  # not reading = slowing the client down
                        await asyncio.sleep(wait_s)
                    await self._handle(message)
                except ProtocolError as exc:  # only those with a close code get here
                    await self._close(exc)
                    break
                finally:
                    self.protocol.handled(self._loop.time())
        except ConnectionClosed:
            pass  # vanished mid-message, or a keepalive timeout: clean up all the same
        finally:
            if pinging is not None:
                pinging.cancel()
            await self._cleanup()

    def _keepalive(self):
        limits = self.limits
        return keepalive(
            self.ws,
            limits.ping_interval_s,
            limits.ping_timeout_s,
            paused=lambda: self.protocol.busy,
            last_heard=lambda: self.protocol.last_active,
        )

    def evict(self) -> None:
        """Close this connection (still waiting for its hello) to make room for another."""
        self.server.background(self._close(self.server.gate.evicted_error()))

    async def _cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.server.hub.unsubscribe(self.subscriber)
        if self.session is not None:
            reason = (
                disconnect_reason(self.ws.close_code, self.ws.close_reason)
                if not self._closing
                else "its client was closed"
            )
            try:
                await self.server.end_stream(self.session, reason)
            except Exception:
                log.exception("client %d: could not end stream %r", self.number, self.session.id)
        await self.outbox.close()
        self.server.gate.leave(self)
        self.server.connections.discard(self)
        self.server.metrics.connections.set(len(self.server.connections))
        if self.role is None:
            return  # never said hello: not worth a line (a flood of them would fill the log)
        code = self.ws.close_code
        log.info(
            "client %d disconnected (%s, after %.1f s)",
            self.number,
            f"close code {code}" if code is not None else "connection lost",
            time.monotonic() - self.opened,
        )

    async def _close(self, exc: ProtocolError) -> None:
        """Send the error, then close the connection with its close code."""
        if self._closing:
            return
        self._closing = True
        self.protocol.closing()
        self.server.refusals(exc, self.peer)
        self.outbox.reply(error_message(exc))
        try:
            await self.outbox.flush(timeout_s=2.0)
            await self.ws.close(exc.close_code, exc.code)
        except ConnectionClosed:
            pass

    def reply(self, message: dict, request_id: object = None) -> None:
        if request_id is not None:
            message["id"] = request_id
        self.outbox.reply(message)

    # Timeouts

    def _arm_watchdog(self) -> None:
        when = self.protocol.next_check(self._loop.time())
        if when is not None:
            self._watchdog = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        if self._closing:
            return
        error = self.protocol.expired(self._loop.time())
        if error is None:
            self._arm_watchdog()
        else:
            self.server.background(self._close(error))

    # Messages

    async def _handle(self, raw: str | bytes) -> None:
        """Answer one message; errors that close the connection propagate."""
        request_id = None
        try:
            message = self.protocol.receive(raw, self._loop.time())
            request_id = getattr(message, "id", None)
            if isinstance(message, Audio):
                samples = self.session.decoder.decode(message.data)
                await self.session.push(samples, self.limits.max_backlog_s)
            elif isinstance(message, Hello):
                await self._hello(message)
            else:
                await getattr(self, f"_{message.type}")(message)
        except StreamerError as exc:
            if exc.close_code is not None:
                raise
            known = exc.request_id if exc.request_id is not None else request_id
            self.reply(error_message(exc, known))
        except Exception:
            log.exception("client %d: error handling a message", self.number)
            message = "internal error; the daemon's log has the details"
            self.reply({"type": "error", "code": "internal", "message": message}, request_id)

    async def _hello(self, hello: Hello) -> None:
        if not self.server.gate.accept(self):
            raise self.server.gate.full_error()
        log.info("client %d connected from %s (%s)", self.number, self.peer, hello.role)
        if hello.role == "stream":
            await self._hello_stream(hello)
        elif hello.role == "subscribe":
            self._check_subscriber_limit()
            self.protocol.accept(hello)
            streams = sorted(hello.streams) if hello.streams is not None else None
            self.reply({"type": "ready", "role": "subscribe", "streams": streams}, hello.id)
            self.subscriber = self.server.hub.subscribe(self.outbox, hello.streams)
            shown = ", ".join(streams) if streams else "all streams"
            log.info("client %d subscribed to %s", self.number, shown)
        else:
            self.protocol.accept(hello)
            self.reply({"type": "ready", "role": "control", **self._about()}, hello.id)

    async def _hello_stream(self, hello: Hello) -> None:
        audio_format = hello.audio_format
        if hello.events:
            self._check_subscriber_limit()
        try:
            session = await self.server.open_websocket_stream(
                hello.stream, audio_format, self.number
            )
        except ProtocolError as exc:
            if exc.code in ("limit", "busy"):  # full: come back later
                raise ProtocolError(exc.code, str(exc), TRY_LATER) from exc
            raise
        self.session = session
        self.protocol.accept(hello)
        ready = {
            "type": "ready",
            "role": "stream",
            "stream": session.id,
            "sample_rate": audio_format.sample_rate,
            "format": audio_format.format,
            "channels": audio_format.channels,
            "events": hello.events,
            **self._about(),
        }
        self.reply(ready, hello.id)
        if hello.events:
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
            raise ProtocolError(
                "limit",
                f"the daemon has {self.limits.max_subscribers} subscribers, its limit; "
                "try again later or raise --max-subscribers",
                TRY_LATER,
            )

    # Requests after hello

    async def _end(self, request: Request) -> None:
        session = self.session
        if session is None or session.closing:
            raise ProtocolError("no_stream", "this connection has no open stream to end")
        await self._end_stream(session, "ended by its client", request.id)
        if self.subscriber is not None and self.subscriber.streams == {session.id}:
            self.server.hub.unsubscribe(self.subscriber)
            self.subscriber = None

    async def _end_stream(self, session: Session, reason: str, request_id: object = None) -> None:
        self.protocol.stream_ended()
        await self.server.end_stream(session, reason)
        self.session = None
        ended = {
            "type": "ended",
            "stream": session.id,
            "audio_s": round(session.audio_s, 3),
            "reason": reason,
        }
        self.reply(ended, request_id)

    async def stream_lost(self, reason: str) -> None:
        """End this connection's stream for the daemon's own ``reason`` (the engine that
        held it is gone): the client gets ``ended`` with it, then an ``engine_lost``
        error and close code 1013; a new connection gets a new stream."""
        session = self.session
        if session is None or session.closing:
            return
        await self._end_stream(session, reason)
        await self._close(ProtocolError("engine_lost", reason, TRY_LATER))

    async def _status(self, request: Request) -> None:
        self.reply(self.server.status(), request.id)

    async def _profiles(self, request: Request) -> None:
        self.reply({"type": "profiles", "profiles": self.server.hub.profiles}, request.id)

    async def _rename(self, request: Request) -> None:
        await self.server.rename_profile(request.name, check_name(request.new_name))
        reply = {"type": "renamed", "name": request.name, "new_name": request.new_name}
        self.reply(reply, request.id)

    async def _remove(self, request: Request) -> None:
        await self.server.remove_profile(request.name)
        self.reply({"type": "removed", "name": request.name}, request.id)

    def _target(self, request: Request) -> Session:
        """The stream a request is about: its ``stream`` field, else this connection's own."""
        if request.stream is None:
            if self.session is None:
                raise ProtocolError(
                    "bad_message", f'{request.type} needs a stream: add "stream": ID'
                )
            return self.session
        return self.server.open_session(request.stream)

    async def _stream_request(self, request: Request) -> None:
        """``enroll``, ``cancel`` or ``promote``: here, or where the stream is (a cluster)."""
        elsewhere = request.stream is not None and request.stream not in self.server.sessions
        if elsewhere and await self.server.forward(request, self.number):
            return  # its replies come back from the stream's own replica
        await serve_stream_request(self.server, request, self._target(request), self.outbox)

    _enroll = _cancel = _promote = _stream_request


async def serve_stream_request(
    server: Server, request: Request, session: Session, requester: Requester
) -> None:
    """Do an ``enroll``, ``cancel`` or ``promote`` request on ``session``; its replies go to
    ``requester`` (an :class:`~streamer.server.hub.Outbox`, or a client on another replica)."""

    def reply(message: dict) -> None:
        if request.id is not None:
            message["id"] = request.id
        requester.reply(message)

    if request.type == "enroll":
        enrollment = Enrollment(
            name=check_name(request.name),
            seconds=request.seconds,
            force=request.force,
            requester=requester,
            request_id=request.id,
        )
        await server.start_enroll(session, enrollment)
    elif request.type == "cancel":
        enrollment = await server.cancel_enroll(session)
        cancelled = {"type": "enroll_cancelled", "stream": session.id, "name": enrollment.name}
        enrollment.reply(dict(cancelled))
        if enrollment.requester != requester:
            reply(cancelled)
    else:
        name = check_name(request.name)
        report = await server.promote(session, request.label, name)
        promoted = {"type": "promoted", "stream": session.id, "label": request.label, "name": name}
        reply({**promoted, **report_info(report)})


class Refusals:
    """The log lines for refused and closed connections, at most one per kind per 10 s."""

    def __init__(self) -> None:
        self._limiters: dict[str, LogLimiter] = {}

    def __call__(self, exc: ProtocolError, peer: str) -> None:
        limiter = self._limiters.setdefault(exc.code, LogLimiter())
        silenced = limiter.note(time.monotonic())
        if silenced is None:
            return
        more = f" (and {silenced} more like it in the last {limiter.interval_s:g} s)"
        log.warning("closed a connection from %s: %s%s", peer, exc, more if silenced else "")
