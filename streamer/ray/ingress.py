"""The ingress deployment: the daemon's protocol behind Ray Serve's proxy, its engines
in the engine deployment (:mod:`~streamer.ray.engine`).

Each ingress replica is the daemon without a listening socket and without an engine of
its own: Serve's proxy hands it websocket connections (a FastAPI route), and
:meth:`~streamer.server.app.Server.connect` serves each with the daemon's own
:class:`~streamer.server.connection.Connection` — the same messages, limits and errors
as ``streamer serve``. Its engine worker is :class:`~streamer.ray.remote.RemoteEngines`:
each stream runs on the engine replica Serve's router chose when it opened, for its
whole life. When that replica dies, the stream's client gets ``ended`` with the reason
:data:`~streamer.ray.remote.ENGINE_DIED` and its connection is closed (1013, try
again); every other stream and subscriber carries on.

What an ingress replica does beyond the daemon: its hub is linked to the cluster's hub
actor (:mod:`~streamer.ray.link`), so its subscribers see every replica's streams and
stream ids are unique cluster-wide; its profile store is the cluster's
(:class:`~streamer.ray.link.ClusterStore`).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import ray
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray.serve.config import RequestRouterConfig
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from ..errors import ProtocolError, StreamerError
from ..models import get_spec
from ..pipeline import PipelineOptions
from ..profiles import default_store_path
from ..server.app import Server
from ..server.connection import serve_stream_request
from ..server.http import HttpRoutes
from ..server.metrics import CONTENT_TYPE_LATEST
from ..server.options import ServerOptions
from ..server.protocol import Request as StreamRequest
from ..server.protocol import error_message
from .engine import INGRESS
from .hub import Message, start_hub
from .link import ClusterStore, HubLink, LinkedHub, RemoteClient
from .remote import ENGINE_DIED, EnginePool, RemoteEngines
from .routing import SpreadRouter

log = logging.getLogger("streamer.ray")

api = FastAPI(title="streamer", docs_url=None, redoc_url=None, openapi_url=None)


@dataclass(frozen=True)
class ReplicaOptions:
    """What the replicas run: the model, the daemon's options (address and port are the
    proxy's, set when Serve starts) and the profile store's folder on the head node
    (where the hub runs)."""

    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    server: ServerOptions = field(default_factory=ServerOptions)
    profiles: str = field(default_factory=lambda: str(default_store_path()))


class ServeSocket:
    """A Starlette websocket with the face of a ``websockets`` server connection, which is
    what :class:`~streamer.server.connection.Connection` talks to."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self.close_code: int | None = None
        self.close_reason: str | None = None
        url = websocket.url
        self.request = SimpleNamespace(
            path=url.path + (f"?{url.query}" if url.query else ""), headers=websocket.headers
        )
        client = websocket.client
        self.remote_address = (client.host, client.port) if client else None

    def __aiter__(self):
        return self._messages()

    async def _messages(self):
        while self.close_code is None:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                self.close_code = message.get("code", 1005)
                self.close_reason = message.get("reason") or None
                return
            data = message.get("bytes")
            yield data if data is not None else message.get("text", "")

    async def send(self, text: str) -> None:
        if self.close_code is not None:
            raise ConnectionClosed(Close(self.close_code, ""), None)
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.close_code = self.close_code or 1006
            raise ConnectionClosed(None, None) from exc

    async def ping(self) -> asyncio.Future:
        """An answered ping: Serve's proxy keeps the client's socket alive itself (its own
        pings), and the proxy-to-replica hop is Ray's, not a socket."""
        if self.close_code is not None:
            raise ConnectionClosed(Close(self.close_code, ""), None)
        pong = asyncio.get_running_loop().create_future()
        pong.set_result(0.0)
        return pong

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            with contextlib.suppress(RuntimeError, OSError):  # the client closed it first
                await self._ws.close(code, reason)


class IngressServer(Server):
    """The daemon, as one ingress replica of the cluster (see the module docstring)."""

    def __init__(
        self, engines: RemoteEngines, store: ClusterStore, options: ServerOptions, link: HubLink
    ):
        super().__init__(EnginePool(engines), store, options)
        self.engines = engines
        engines.on_lost = self._engine_lost
        self.admission.enabled = False  # the engines' capacity is Serve's to manage
        self.link = link
        self.replica = link.replica
        self.hub = LinkedHub(self.metrics, link)
        self._applied = -1  # the version of the profiles the engines have

    def new_stream_id(self) -> str:
        return f"{self.replica}.{super().new_stream_id()}"

    async def open_stream(self, stream_id: str, *args, **kwargs):
        if not await self.link.claim(stream_id):
            raise ProtocolError(
                "stream_in_use",
                f"a stream named {stream_id!r} is open already in the cluster; pick another "
                "id or leave it out to get one",
            )
        try:
            return await super().open_stream(stream_id, *args, **kwargs)
        except BaseException:
            await self.link.release(stream_id)
            raise

    async def refresh_profiles(self) -> None:
        if self.store.version == self._applied:
            return  # this version is applied already (the writer's own write, broadcast)
        self._applied = self.store.version
        await super().refresh_profiles()

    async def on_batch(self, batch: list[Message]) -> None:
        """The hub's news: other replicas' streams, new profiles, and questions."""
        for message in batch:
            if message[0] == "profiles":
                if self.store.mirror(message[1], message[2]) and self.runners:
                    await self.refresh_profiles()
            elif message[0] == "ask":
                self.link.answer(message[1], self.answer(message[2]))
            elif message[0] == "request":
                self.background(self._serve_forwarded(*message[1:]))
            elif message[0] == "reply":
                self._reply_to(*message[1:])
            else:
                self.hub.receive([message])

    async def forward(self, request: StreamRequest, connection: int) -> bool:
        return await self.link.forward(connection, request)

    async def _serve_forwarded(self, origin: str, connection: int, request: StreamRequest):
        """Another replica's client asked for something on one of this replica's streams."""
        client = RemoteClient(self.link, origin, connection)
        try:
            session = self.open_session(request.stream)
            await serve_stream_request(self, request, session, client)
        except StreamerError as exc:
            known = exc.request_id if exc.request_id is not None else request.id
            client.reply(error_message(exc, known))
        except Exception:
            log.exception("a request from replica %s failed", origin)
            message = "internal error; the daemon's log has the details"
            error = {"type": "error", "code": "internal", "message": message}
            client.reply(error if request.id is None else {**error, "id": request.id})

    def _reply_to(self, connection: int, message: dict) -> None:
        """A reply to a request one of this replica's clients sent to another replica."""
        client = next((c for c in self.connections if c.number == connection), None)
        if client is not None:
            client.outbox.reply(message)

    def answer(self, question: str):
        """``health``: this replica's health; ``metrics``: its Prometheus text."""
        return self.health() if question == "health" else self.exposition()

    def _engine_lost(self, stream_id: str) -> None:
        """A stream's engine replica died: its client is told why and closed."""
        session = self.sessions.get(stream_id)
        if session is None or session.closing:
            return
        connection = next((c for c in self.connections if c.session is session), None)
        if connection is not None:
            self.background(connection.stream_lost(ENGINE_DIED))
        else:
            self.background(self.end_stream(session, ENGINE_DIED))

    def status(self) -> dict:
        """The daemon's status, with this replica, its node and each stream's engine
        replica (``engine``) and node (``node``)."""
        status = super().status()
        for entry in status["streams"]:
            stream = self.engines.streams.get(entry["stream"])
            if stream is not None:
                entry.update(engine=stream.replica, node=stream.node)
        return {**status, "replica": self.replica, "node": self.node}

    @property
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def health(self) -> dict:
        body = {**super().health(), "replica": self.replica, "node": self.node}
        if self.link.failure is not None:
            body["status"] = "failed"
        return body


def labelled(expositions: dict[str, bytes]) -> bytes:
    """Prometheus texts of several replicas as one, each series labelled ``replica``."""
    families: dict[str, Metric] = {}
    for replica, text in sorted(expositions.items()):
        for family in text_string_to_metric_families(text.decode()):
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type)
            )
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "replica": replica}, sample.value)
    return generate_latest(SimpleNamespace(collect=lambda: list(families.values())))


@serve.deployment(
    name=INGRESS,
    graceful_shutdown_timeout_s=3600,  # a replica stopped waits for its streams to end
    request_router_config=RequestRouterConfig(request_router_class=SpreadRouter),
)
@serve.ingress(api)
class Ingress:
    """The ingress deployment. Its replicas and theirs sizes, and the engine
    deployment's, come from :func:`~streamer.ray.deploy.build`."""

    async def __init__(self, options: ReplicaOptions, engines, batch_s: float) -> None:
        """``engines``: the engine deployment's handle; ``batch_s``: how often a stream's
        audio goes to its engine replica."""
        hub = start_hub(options.profiles)
        replica = serve.get_replica_context().replica_id.unique_id
        link = HubLink(hub, replica)
        store = ClusterStore(hub, await hub.path.remote())
        spec = get_spec(options.pipeline.model)
        remote = RemoteEngines(engines, replica, spec, options.pipeline.worker.buffer_s, batch_s)
        self.server = IngressServer(remote, store, options.server, link)
        self.routes = HttpRoutes(self.server)
        ready = asyncio.get_running_loop().create_future()
        self._feed = asyncio.create_task(link.run(self.server.on_batch, ready))
        await ready
        await self.server.start_engine()
        self._hub = hub
        log.info("ingress replica %s ready (model %s)", replica, self.server.model)

    async def feed(self, engine: str, replica: str | None = None):
        """The audio and jobs of this replica's streams on the ``engine`` replica: one
        long-running call from there, pinned to this ``replica``
        (:mod:`~streamer.ray.routing`); see :meth:`~streamer.ray.remote.RemoteEngines.feed`."""
        async for batch in self.server.engines.feed(engine):
            yield batch

    async def deliver(self, engine: str, batch: dict, replica: str | None = None) -> None:
        """What the ``engine`` replica sends about this replica's streams there; see
        :meth:`~streamer.ray.remote.RemoteEngines.deliver`."""
        self.server.engines.deliver(batch)

    @api.websocket("/")
    async def websocket(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if origin is not None and not self.routes.origin_ok(
            origin, websocket.headers.get("host", "")
        ):
            log.warning("refused a connection from origin %r (not allowed)", origin)
            await websocket.close(1008, "origin not allowed; start with --allow-origin")
            return
        await websocket.accept()
        await self.server.connect(ServeSocket(websocket))

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """This replica's health (the status code is its own) and every replica's."""
        body = self.server.health()
        cluster, health = await asyncio.gather(
            self._hub.cluster.remote(), self._hub.ask.remote("health")
        )
        body["cluster"] = {**cluster, "health": health}
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @api.get("/metrics")
    async def metrics(self, request: Request) -> Response:
        """Every replica's series, each labelled ``replica``."""
        wrapper = SimpleNamespace(path=f"/?{request.url.query}", headers=request.headers)
        if not self.server.token_ok(self.server.request_token(wrapper)):
            return PlainTextResponse(
                "send the token: Authorization: Bearer TOKEN, or /metrics?token=TOKEN\n", 401
            )
        answers = await self._hub.ask.remote("metrics")
        return Response(labelled(answers), media_type=CONTENT_TYPE_LATEST)

    @api.get("/{path:path}")
    async def page(self, request: Request) -> Response:
        """The web page, its files and the daemon's 404 (:mod:`streamer.server.http`)."""
        url = request.url
        wrapper = SimpleNamespace(
            path=url.path + (f"?{url.query}" if url.query else ""), headers=request.headers
        )
        answer = self.routes(None, wrapper)
        headers = {
            k: v for k, v in answer.headers.raw_items() if k not in ("Content-Length", "Connection")
        }
        return Response(answer.body, answer.status_code, headers)

    def check_health(self) -> None:
        """Serve's health check: a replica whose hub link failed is replaced."""
        failure = self.server.failure or self.server.link.failure
        if failure is not None:
            raise RuntimeError(f"ingress replica {self.server.replica} failed: {failure!r}")

    async def __del__(self) -> None:
        """Serve stops the replica: its streams end (their clients are told why)."""
        await self.server.close()
        self._feed.cancel()
