"""The daemon: one asyncio websocket server around one engine (``docs/protocol.md``).

:class:`Server` owns the shared parts — the engine's thread, the subscribers' hub, the
open streams, the profile store — and the operations that touch several of them
(open and end a stream, live enrollment, profile changes). Each client connection is
a :class:`~streamer.server.connection.Connection`, which reads the client's messages,
has its :class:`~streamer.server.protocol.Protocol` check them and calls these.

Nothing on the event loop waits for the encoder, the disk or a client: the engine runs
in its thread (:mod:`~streamer.server.runner`), profile files are read and written in a
thread of their own, and every client has an outbox written by its own task
(:mod:`~streamer.server.hub`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.http11 import Request

from ..enroll import Collector, EnrollOptions, enroll_collected
from ..enroll import promote as save_voice
from ..errors import ConfigError, NoSpeechError, ProfileError, ProtocolError, StreamerError
from ..events import Event
from ..profiles import ProfileStore
from ..sources.mic import Microphone
from ..sources.websocket import AudioFormat, FrameDecoder
from ..worker import Engine
from .admission import Admission
from .connection import Connection, Refusals
from .http import HttpRoutes
from .hub import Hub, StreamState
from .metrics import Metrics, TimedEmbedder
from .options import ServerOptions
from .protocol import (
    PROTOCOL_VERSION,
    Gate,
    check_stream_id,
    error_message,
    profile_info,
    report_info,
    token_matches,
)
from .protocol import Request as StreamRequest
from .runner import EngineRunner, EnrollProgress
from .session import Enrollment, Session
from .workers import WorkerPool

log = logging.getLogger("streamer.server")

CLOSE_TIMEOUT_S = 2.0
"""How long closing a connection waits for the client's side of the closing handshake
(a client that stopped reading never answers)."""


class Server:
    """The daemon. ``async with Server(engine, store, options) as server: ...``.

    The store is the truth about profiles: on start the engine is given the store's
    profiles made with its model, and every change (enroll, rename, remove, promote)
    goes through the store and then to every stream's tracker at once.

    Args:
        engine: the engine to run (the server runs it in a thread of its own).
        store: the profile store.
        options: address, token, origins and limits.
        microphone: a checked, not yet started :class:`~streamer.sources.mic.Microphone`
            to add as the stream ``mic_stream``.
        enroll_options: the quality checks of live enrollment.
    """

    def __init__(
        self,
        engine: Engine | WorkerPool,
        store: ProfileStore,
        options: ServerOptions | None = None,
        microphone: Microphone | None = None,
        mic_stream: str = "mic",
        enroll_options: EnrollOptions | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.options = options or ServerOptions()
        self.limits = self.options.limits
        self.pool = engine if isinstance(engine, WorkerPool) else None
        self.spec = engine.spec if self.pool else engine.embedder.spec
        buffer_s = engine.buffer_s if self.pool else engine.options.buffer_s
        if self.limits.max_backlog_s > buffer_s / 2:
            raise ConfigError(
                f"max_backlog_s ({self.limits.max_backlog_s:g} s) must be at most half the "
                f"engine's buffer_s ({buffer_s:g} s)"
            )
        self.microphone = microphone
        self.mic_stream = check_stream_id(mic_stream)
        self.enroll_options = enroll_options or EnrollOptions()
        self.model = self.spec.name
        self.sample_rate = self.spec.sample_rate
        self.metrics = Metrics()
        self.hub = Hub(self.metrics)
        self.sessions: dict[str, Session] = {}
        self._opening: dict[str, object] = {}  # stream ids being opened -> their runner
        self.connections: set[Connection] = set()
        self.gate = Gate(self.limits)
        self.refusals = Refusals()
        self.port: int | None = None
        self.failure: BaseException | None = None
        self.started = time.monotonic()
        self.runners: list = []  # EngineRunner, or the pool's WorkerProcess-es
        self.admission = Admission(self.limits, self.sessions, self.runners)
        self.admission.enabled = self.options.admission
        self._connection_numbers = itertools.count(1)
        self._stream_numbers = itertools.count(1)
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="streamer-store")
        self._tasks: set[asyncio.Task] = set()
        self._ws = None
        self._stopped: asyncio.Event | None = None

    # Life cycle

    async def __aenter__(self) -> Server:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self, sock: socket.socket | None = None) -> None:
        """Start the engine's thread, load the profiles, listen (on ``sock`` when given, a
        bound socket: else on the options' host and port) and record the microphone."""
        await self.start_engine()
        limits = self.limits
        address = (
            {"sock": sock}
            if sock is not None
            else {
                "host": self.options.host,
                "port": self.options.port,
            }
        )
        self._ws = await serve(
            self.connect,
            **address,
            process_request=HttpRoutes(self),  # also checks the Origin of handshakes
            compression=None,
            max_size=4 * limits.max_frame_bytes,
            ping_interval=None,  # each Connection runs its own keepalive (keepalive.py)
            close_timeout=CLOSE_TIMEOUT_S,
            open_timeout=limits.hello_timeout_s,
        )
        self.port = self._ws.sockets[0].getsockname()[1]
        if self.microphone is not None:
            await self._start_microphone()

    async def start_engine(self) -> None:
        """Start the engine's thread and load the profiles, without listening: a front end
        of another kind (the Ray ingress) hands its connections to :meth:`connect`."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self.pool is not None:
            self.runners += self.pool.workers
            await self.pool.start(self._on_events, self._on_failure, self.metrics)
        else:
            self.engine.embedder = TimedEmbedder(self.engine.embedder, self.metrics)
            runner = EngineRunner(
                self.engine,
                loop,
                self._on_events,
                self._on_failure,
                self.metrics,
                self.options.batch_delay_s,
            )
            self.runners.append(runner)
            runner.start()
        costs = await asyncio.gather(*(runner.calibrate() for runner in self.runners))
        self.admission.calibrated(costs)
        await self.refresh_profiles()

    async def connect(self, websocket) -> None:
        """Serve one client connection until it closes (a ``websockets`` server connection,
        or anything with its ``recv`` iteration, ``send``, ``close`` and ``request``)."""
        await Connection(self, websocket, next(self._connection_numbers)).run()

    async def wait(self) -> None:
        """Until :meth:`stop` is called or the engine's thread fails."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Make :meth:`wait` return (the caller then closes the server)."""
        if self._stopped is not None:
            self._stopped.set()

    async def close(self) -> None:
        """Stop the microphone, close every connection (their streams end), stop the engine."""
        mic = self.sessions.get(self.mic_stream) if self.microphone else None
        if self.microphone is not None:
            self.microphone.stop()
        if mic is not None:
            await self.end_stream(mic, "the daemon stopped")
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(runner.stop() for runner in self.runners))
        self._store_thread.shutdown(wait=True)
        if self.pool is None and isinstance(self.engine.embedder, TimedEmbedder):
            self.engine.embedder = self.engine.embedder.inner
        self.stop()

    def _on_failure(self, exc: BaseException) -> None:
        self.failure = exc
        log.error("stopping: the engine thread failed (%r)", exc)
        self.stop()

    def background(self, coroutine) -> None:
        """Run ``coroutine`` as a task the server waits for when it closes."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # Tokens, /healthz and /metrics (served by http.py; by the Ray replicas too)

    def token_ok(self, given: str | None) -> bool:
        return token_matches(self.options.token, given)

    def request_token(self, request: Request) -> str | None:
        """The token a client sent in the URL (``?token=``) or an ``Authorization`` header."""
        query = parse_qs(urlsplit(request.path).query)
        if query.get("token"):
            return query["token"][0]
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def health(self) -> dict:
        """The body of ``GET /healthz``; ``status`` is ``failed`` once the engine has died."""
        return {
            "status": "ok" if self.failure is None else "failed",
            "streams": len(self.sessions),
            "capacity": self.admission.capacity() if self.runners else None,
            "connections": len(self.connections),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    # Events from the engine's thread

    def _on_events(self, events: list[Event]) -> None:
        now = time.monotonic()
        for event in events:
            session = self.sessions.get(event.stream)
            arrived = session.clock.arrival(event.emitted_at) if session else None
            if arrived is not None:
                self.metrics.event_latency_s.observe(now - arrived)
                if session.observe_lag(now - arrived, now):
                    self._notice_lagging(session)
        self.hub.publish(events)
        self.metrics.lagging.set(sum(s.lagging for s in self.sessions.values()))

    def _notice_lagging(self, session: Session) -> None:
        lag_s = round(session.lag_s, 2)
        message = (
            f"stream {session.id!r} is lagging: its events come {lag_s:g} s after its audio "
            "and the daemon is not catching up; it takes no new streams meanwhile"
        )
        log.warning("%s", message)
        notice = {"type": "lagging", "stream": session.id, "lag_s": lag_s, "message": message}
        self.hub.notice(notice, session.id)

    def exposition(self) -> bytes:
        """The body of ``GET /metrics`` (Prometheus text)."""
        self._update_backlog()
        return self.metrics.exposition()

    def _update_backlog(self) -> None:
        backlog = max((s.stream.pending_samples for s in self.sessions.values()), default=0)
        self.metrics.backlog_s.set(backlog / self.sample_rate)

    # Streams

    def new_stream_id(self) -> str:
        while True:
            stream_id = f"stream-{next(self._stream_numbers)}"
            if stream_id not in self.sessions and stream_id not in self._opening:
                return stream_id

    async def open_stream(
        self, stream_id: str, source: str, audio: str, owner: int | None, decoder=None
    ) -> Session:
        if stream_id in self.sessions or stream_id in self._opening:
            raise ProtocolError(
                "stream_in_use",
                f"a stream named {stream_id!r} is open already; pick another id or leave "
                "it out to get one",
            )
        runner = self.admission.least_loaded(self._opening.values())
        self._opening[stream_id] = runner
        try:
            stream = await runner.open_stream(stream_id)
        finally:
            del self._opening[stream_id]
        session = Session(stream, source, owner, runner, self.metrics, decoder)
        self.sessions[stream_id] = session
        self.metrics.streams.set(len(self.sessions))
        self.hub.stream_started(StreamState(stream_id, source, audio, time.time()))
        return session

    def open_session(self, stream_id: str) -> Session:
        """The open stream ``stream_id``; an ``unknown_stream`` error if there is none."""
        session = self.sessions.get(stream_id)
        if session is None or session.closing:
            known = ", ".join(sorted(self.hub.streams)) or "none"
            raise ProtocolError(
                "unknown_stream", f"no open stream {stream_id!r} (open streams: {known})"
            )
        return session

    async def forward(self, request: StreamRequest, connection: int) -> bool:
        """Send a request about a stream this daemon does not hold to where that stream
        is, if anywhere (another replica of a cluster); its replies go to connection
        number ``connection``. Whether it was sent: a lone daemon has nowhere to send it."""
        return False

    async def open_websocket_stream(
        self, stream_id: str | None, audio_format: AudioFormat, owner: int
    ) -> Session:
        self.admission.check(len(self._opening))
        stream_id = check_stream_id(stream_id) if stream_id is not None else self.new_stream_id()
        decoder = FrameDecoder(audio_format, self.sample_rate)
        session = await self.open_stream(
            stream_id, "websocket", audio_format.describe(), owner, decoder
        )
        log.info(
            "stream %r started by client %d (%s -> %d Hz)",
            stream_id,
            owner,
            audio_format.describe(),
            self.sample_rate,
        )
        return session

    async def end_stream(self, session: Session, reason: str) -> None:
        """Process the rest of the stream's audio, publish its closing events, forget it."""
        if session.closing:
            return
        session.closing = True
        if session.decoder is not None:
            await session.push(session.decoder.flush(), self.limits.max_backlog_s)
        try:
            await session.runner.end_stream(session.id)
        finally:
            self.sessions.pop(session.id, None)
            self.metrics.streams.set(len(self.sessions))
            self.hub.stream_ended(session.id, session.audio_s, reason)
        log.info("stream %r ended: %s (%.1f s of audio)", session.id, reason, session.audio_s)

    async def _start_microphone(self) -> None:
        mic = self.microphone
        session = await self.open_stream(
            self.mic_stream, "microphone", f"{mic.sample_rate} Hz float32 x{mic.channels}", None
        )
        mic.target_rate = self.sample_rate
        mic.start(session.push_nowait)
        log.info(
            "stream %r started: microphone %s (-> %d Hz)",
            self.mic_stream,
            mic.describe(),
            self.sample_rate,
        )

    # Profiles

    async def in_store(self, fn, *args):
        """Run a profile store operation in the store's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_thread, functools.partial(fn, *args))

    def _read_profiles(self) -> tuple[dict, list[dict]]:
        """(The engine's profiles, the list clients see); damaged files are logged, skipped."""
        vectors, listing = {}, []
        for name in self.store.names():
            try:
                profile = self.store.get(name)
            except ProfileError as exc:
                log.warning("skipping a profile: %s", exc)
                continue
            listing.append(profile_info(profile))
            if profile.model == self.model:
                vectors[profile.name] = profile.embedding
        return vectors, listing

    async def refresh_profiles(self) -> None:
        """Reload the store; every stream's tracker gets the new profiles at once."""
        vectors, listing = await self.in_store(self._read_profiles)
        await asyncio.gather(*(runner.set_profiles(vectors) for runner in self.runners))
        self.hub.set_profiles(listing)

    async def rename_profile(self, old: str, new: str) -> None:
        if old == new:
            raise ProfileError(f"profile {old!r} has that name already")
        await self.in_store(self.store.rename, old, new)
        await self.refresh_profiles()
        log.info("profile %r renamed to %r", old, new)

    async def remove_profile(self, name: str) -> None:
        await self.in_store(self.store.remove, name)
        await self.refresh_profiles()
        log.info("profile %r removed", name)

    # Live enrollment and promotion

    async def start_enroll(self, session: Session, enrollment: Enrollment) -> None:
        """Collect the next ``enrollment.seconds`` of the stream; the requester gets
        ``enroll_started``, ``enroll_progress`` and finally ``enroll_done``."""
        if session.enrollment is not None:
            raise ProtocolError(
                "busy",
                f"stream {session.id!r} is being enrolled as {session.enrollment.name!r} "
                "already; wait for it or cancel it first",
            )
        session.enrollment = enrollment
        try:
            from ..enroll import check_model

            await self.in_store(check_model, self.store, enrollment.name, self.model)
            enrollment.start_s = await session.runner.enroll(
                session.id,
                session.audio_s,
                enrollment.seconds,
                functools.partial(self._enroll_progress, session, enrollment),
                functools.partial(self._enroll_done, session, enrollment),
            )
        except BaseException:
            session.enrollment = None
            raise
        enrollment.reply(
            {
                "type": "enroll_started",
                "stream": session.id,
                "name": enrollment.name,
                "seconds": enrollment.seconds,
                "start_s": round(enrollment.start_s, 3),
            }
        )
        enrollment.started = True
        log.info(
            "enrolling %r from stream %r for %g s", enrollment.name, session.id, enrollment.seconds
        )

    def _enroll_progress(
        self, session: Session, enrollment: Enrollment, progress: EnrollProgress
    ) -> None:
        if not enrollment.started or enrollment.finished:
            return
        enrollment.reply(
            {
                "type": "enroll_progress",
                "stream": session.id,
                "name": enrollment.name,
                "recorded_s": round(progress.recorded_s, 2),
                "seconds": enrollment.seconds,
                "speech_s": round(progress.speech_s, 2),
                "windows": progress.windows,
                "level_dbfs": None
                if progress.level_dbfs is None
                else round(progress.level_dbfs, 1),
            }
        )

    def _enroll_done(
        self, session: Session, enrollment: Enrollment, collector: Collector, recorded_s: float
    ) -> None:
        enrollment.finished = True
        if session.enrollment is enrollment:
            session.enrollment = None
        self.background(self._save_enrollment(session.id, enrollment, collector, recorded_s))

    async def _save_enrollment(
        self, stream_id: str, enrollment: Enrollment, collector: Collector, recorded_s: float
    ) -> None:
        label = f"stream {stream_id}"
        done = {
            "type": "enroll_done",
            "stream": stream_id,
            "name": enrollment.name,
            "recorded_s": round(recorded_s, 2),
        }
        try:
            report = await self.in_store(
                enroll_collected,
                self.store,
                enrollment.name,
                [(label, collector)],
                self.model,
                self.spec.embedding_dim,
                self.enroll_options,
                enrollment.force,
            )
        except NoSpeechError as exc:
            message = {"code": "no_voice", "message": str(exc)}
            done.update(saved=False, speech_s=0.0, windows=0, feedback=[message], profile=None)
        except StreamerError as exc:
            enrollment.reply(error_message(exc))
            return
        else:
            done.update(report_info(report))
            if report.profile is not None:
                await self.refresh_profiles()
        codes = ", ".join(f["code"] for f in done["feedback"])
        outcome = "saved" if done["saved"] else "not saved"
        log.info(
            "enrollment of %r from stream %r %s: %.1f s of speech (%s)",
            enrollment.name,
            stream_id,
            outcome,
            done["speech_s"],
            codes,
        )
        enrollment.reply(done)

    async def cancel_enroll(self, session: Session) -> Enrollment:
        enrollment = session.enrollment
        if enrollment is None or enrollment.finished:
            raise ProtocolError(
                "not_enrolling", f"stream {session.id!r} is not being enrolled; nothing to cancel"
            )
        await session.runner.cancel(session.id)
        enrollment.finished = True
        session.enrollment = None
        log.info("enrollment of %r from stream %r cancelled", enrollment.name, session.id)
        return enrollment

    async def promote(self, session: Session, label: str, name: str):
        """Name an unknown voice of a stream: the engine settles it, the store thread
        saves it, then every stream's tracker gets the new profiles."""
        voice = await session.runner.settle(session.id, label)
        report = await self.in_store(save_voice, self.store, name, voice, self.model)
        vectors, listing = await self.in_store(self._read_profiles)
        if report.profile is not None:
            await asyncio.gather(
                session.runner.adopt(session.id, label, vectors),
                *(r.set_profiles(vectors) for r in self.runners if r is not session.runner),
            )
        self.hub.set_profiles(listing)
        log.info("voice %r of stream %r promoted to profile %r", label, session.id, name)
        return report

    # Status

    def status(self) -> dict:
        streams = []
        for session in self.sessions.values():
            state = self.hub.streams.get(session.id)
            speaker = state.speaker["label"] if state and state.speaker else None
            in_speech = bool(state and state.in_speech)
            streams.append({**session.status(), "in_speech": in_speech, "speaker": speaker})
        mic = self.microphone
        return {
            "type": "status",
            "version": _version(),
            "protocol": PROTOCOL_VERSION,
            "model": self.model,
            "sample_rate": self.sample_rate,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "connections": len(self.connections),
            "subscribers": len(self.hub.subscribers),
            "streams": streams,
            "profiles": [p["name"] for p in self.hub.profiles if p["model"] == self.model],
            "microphone": None
            if mic is None
            else {"stream": self.mic_stream, "device": mic.describe(), "overflows": mic.overflows},
            "limits": self.limits.to_dict(),
        }


def _version() -> str:
    try:
        return metadata.version("streamer")
    except metadata.PackageNotFoundError:
        return "unknown"
