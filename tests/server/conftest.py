"""A real daemon on 127.0.0.1 (a free port) and real websocket clients.

Each test runs its scenario with :func:`run` (``asyncio.run`` with a deadline, so a
bug can fail a test but never hang the suite). The daemon shares the session's loaded
model and VAD; its profile store is a fresh folder holding the synthetic voices asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from streamer.profiles import Profile, ProfileStore
from streamer.server import Server, ServerLimits, ServerOptions

SR = 16_000


def run(scenario, timeout_s: float = 120.0):
    """Run a coroutine to completion, failing (not hanging) after ``timeout_s``."""
    return asyncio.run(asyncio.wait_for(scenario, timeout_s))


@pytest.fixture
def store_of(tmp_path, voice_profiles):
    """``store_of(*names)``: a profile store holding those synthetic voices."""

    def make(*names: str) -> ProfileStore:
        store = ProfileStore(tmp_path / "profiles")
        for name in names:
            vector = voice_profiles[name].astype(np.float64)
            store.save(Profile(name, "ge2e", total=vector, count=1, speech_s=8.0))
        return store

    return make


@contextlib.asynccontextmanager
async def daemon(engine, store, token=None, origins=(), microphone=None, **limits):
    """A started :class:`Server` on a free port."""
    options = ServerOptions(
        host="127.0.0.1",
        port=0,
        token=token,
        allowed_origins=tuple(origins),
        limits=ServerLimits(**limits),
    )
    async with Server(engine, store, options, microphone=microphone) as server:
        yield server


def url_of(server: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/{query}"


class Client:
    """A websocket client speaking the daemon's protocol, with what the tests need."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[tuple[float, dict]] = []  # (monotonic time read, message)
        self._inbox: asyncio.Queue | None = None

    def listen(self) -> None:
        """Read every message as it arrives (so ``received`` has arrival times)."""
        self._inbox = asyncio.Queue()

        async def read() -> None:
            async for raw in self.ws:
                message = json.loads(raw)
                self.received.append((time.monotonic(), message))
                self._inbox.put_nowait(message)

        self._reader = asyncio.create_task(read())

    @classmethod
    async def connect(cls, server: Server, query: str = "", **kwargs) -> Client:
        return cls(await connect(url_of(server, query), **kwargs))

    @classmethod
    async def open(cls, server: Server, role: str = "stream", listen: bool = False, **hello):
        """Connect and say hello (then read in the background, with ``listen``)."""
        client = await cls.connect(server)
        await client.hello(role, **hello)
        if listen:
            client.listen()
        return client

    async def send(self, message: dict | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def next(self, *types: str, timeout_s: float = 30.0) -> dict:
        """The next message (of one of ``types``, skipping others, if given)."""
        while True:
            if self._inbox is not None:
                message = await asyncio.wait_for(self._inbox.get(), timeout_s)
            else:
                message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
                self.received.append((time.monotonic(), message))
            if not types or message["type"] in types:
                return message

    async def request(self, message: dict) -> dict:
        await self.send(message)
        return await self.next()

    async def hello(self, role: str = "stream", **fields) -> dict:
        if role == "stream":
            fields.setdefault("sample_rate", SR)
            fields.setdefault("format", "float32")
        reply = await self.request({"type": "hello", "role": role, **fields})
        assert reply["type"] == "ready", reply
        return reply

    async def send_audio(
        self,
        audio: np.ndarray,
        chunk: int = 320,
        fmt: str = "float32",
        realtime: bool = False,
        rate: int = SR,
    ) -> list[tuple[int, float]]:
        """Send ``audio`` (``(n,)`` or ``(n, channels)``); returns (end sample, send time)."""
        dtype = "<f4" if fmt == "float32" else "<i2"
        scale = 1.0 if fmt == "float32" else 32767.0
        data = (audio * scale).astype(dtype)
        sent = []
        started = time.monotonic()
        for start in range(0, len(data), chunk):
            if realtime:
                await asyncio.sleep(max(0.0, started + start / rate - time.monotonic()))
            await self.ws.send(data[start : start + chunk].tobytes())
            sent.append((min(start + chunk, len(data)), time.monotonic()))
        return sent

    async def end(self) -> dict:
        await self.send({"type": "end"})
        return await self.next("ended")

    def events(self, stream: str | None = None) -> list[dict]:
        return [
            m for _, m in self.received if "v" in m and (stream is None or m["stream"] == stream)
        ]

    async def close(self) -> None:
        await self.ws.close()


async def http_get(server: Server, path: str, headers: dict | None = None) -> tuple[int, str]:
    """A plain HTTP GET to the daemon's port: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def metric(text: str, name: str) -> float:
    """A sample's value from a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def reference(
    make_engine, store: ProfileStore, audio: np.ndarray, stream: str, cohort=None
) -> list[dict]:
    """The events the engine alone gives for ``audio`` (what the daemon must send); pass
    ``cohort`` for a daemon whose engines ``build_engine`` made (the shipped cohort)."""
    from tests.conftest import run_stream

    engine = make_engine({p.name: p.embedding for p in store.all()}, cohort=cohort)
    return [dict(e.to_dict(), stream=stream) for e in run_stream(engine, audio)]
