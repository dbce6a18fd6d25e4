"""streamer on a real Ray cluster (two simulated nodes, Serve's proxy on 127.0.0.1, two
ingress replicas in front of two engine replicas): streams spread over the engines,
subscribers on any ingress see all of them, profiles are shared, and an engine replica
that dies ends only its own streams, whose clients are told why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request

import ray
from websockets.exceptions import ConnectionClosed

from streamer.evaluation.synth import speech
from streamer.ray.remote import ENGINE_DIED
from tests.conftest import label_share
from tests.server.conftest import Client, run

from .conftest import open_stream, replica_of


async def streams_on_two_replicas(proxy) -> list[tuple[Client, str, str, str, str]]:
    """Stream connections until two of them differ in both their ingress and their engine
    replica (the rest are closed); each is ``open_stream``'s tuple."""
    opened = []
    for _ in range(8):
        opened.append(await open_stream(proxy))
        pair = next(
            ((a, b) for a in opened for b in opened if a[2] != b[2] and a[3] != b[3]),
            None,
        )
        if pair is not None:
            for other in opened:
                if other not in pair:
                    await other[0].close()
            return list(pair)
    raise AssertionError(f"8 streams never spread: {[(o[2], o[3]) for o in opened]}")


async def connection_on(proxy, replica: str, role: str = "subscribe") -> Client:
    """A connection of ``role`` on ``replica`` (others opened on the way are closed)."""
    others = []
    try:
        for _ in range(8):
            client = await Client.open(proxy, role, listen=True)
            if await replica_of(client) == replica:
                return client
            others.append(client)
        raise AssertionError(f"8 connections missed replica {replica}")
    finally:
        for client in others:
            await client.close()


def test_streams_land_on_both_replicas_and_one_subscriber_sees_them_all(proxy):
    alice, bob = speech("alice", 6.0, seed=11), speech("bob", 6.0, seed=12)

    async def scenario():
        (a, a_id, a_replica, *_), (b, b_id, b_replica, *_) = await streams_on_two_replicas(proxy)
        watcher = await connection_on(proxy, a_replica)  # b's events cross the hub to it
        await asyncio.gather(a.send_audio(alice), b.send_audio(bob))
        await asyncio.gather(a.end(), b.end())
        ended = {(await watcher.next("stream_ended", timeout_s=60))["stream"] for _ in "ab"}
        for client in (a, b, watcher):
            await client.close()
        return a, a_id, b, b_id, a_replica, b_replica, watcher, ended

    a, a_id, b, b_id, a_replica, b_replica, watcher, ended = run(scenario(), 240)
    assert a_replica != b_replica
    assert ended == {a_id, b_id}
    # Every event of both streams, in each stream's order, on one subscriber.
    assert watcher.events(a_id) == a.events(a_id) and a.events(a_id)
    assert watcher.events(b_id) == b.events(b_id) and b.events(b_id)
    assert label_share(a.events(a_id), 0.0, 6.0).get("alice", 0) > 4.5
    assert label_share(b.events(b_id), 0.0, 6.0).get("bob", 0) > 4.5
    # It joined after both had started: its snapshot showed both (and maybe a stream
    # closed while spreading them, still ending).
    snapshot = next(m for _, m in watcher.received if m["type"] == "snapshot")
    assert {a_id, b_id} <= {s["stream"] for s in snapshot["streams"]}


def test_a_voice_enrolled_through_one_replica_is_named_on_the_other(proxy):
    carol, later = speech("carol", 9.0, seed=71), speech("carol", 6.0, seed=73)

    async def scenario():
        (a, a_id, a_replica, *_), (b, b_id, b_replica, *_) = await streams_on_two_replicas(proxy)
        # Asked for on b's replica (as the web page's control connection may be) of a's
        # stream: a's replica enrolls, the replies come back through the hub.
        control = await connection_on(proxy, b_replica, "control")
        request = {"type": "enroll", "stream": a_id, "name": "carol", "seconds": 8, "id": 7}
        await control.send(request)
        started = await control.next("enroll_started", "error")
        await a.send_audio(carol)
        done = await control.next("enroll_done", timeout_s=60)
        done_at = time.monotonic()
        notice = await b.next("profiles", timeout_s=10)  # b's replica took the new profile
        noticed_at = time.monotonic()
        # A write the store refuses comes back as the store's own one-line error.
        refused = await b.request({"type": "rename", "name": "carol", "new_name": "alice"})
        nowhere = await control.request({"type": "cancel", "stream": "nowhere", "id": 8})
        await b.send_audio(later)
        await b.end()
        await a.end()
        for client in (a, b, control):
            await client.close()
        return started, done, notice, noticed_at - done_at, refused, nowhere, b.events(b_id)

    started, done, notice, delay_s, refused, nowhere, events = run(scenario(), 240)
    assert started["type"] == "enroll_started" and started["id"] == 7, started
    assert done["saved"] is True and done["id"] == 7, done
    assert [p["name"] for p in notice["profiles"]] == ["alice", "bob", "carol"]
    assert delay_s < 1.0
    assert "carol" in proxy.store.names()  # on the hub's node, in the usual files
    assert refused == {
        "type": "error",
        "code": "profile",
        "message": "a profile named 'alice' exists already; remove it first",
    }
    assert (nowhere["code"], nowhere["id"]) == ("unknown_stream", 8), nowhere
    assert label_share(events, 0.0, 6.0).get("carol", 0) > 4.5


def get(proxy, path: str, headers: dict | None = None) -> tuple[int, str, str]:
    """A plain GET through Serve's proxy: (status, content type, body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{proxy.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_metrics_and_healthz_cover_every_replica_and_the_page_loads_through_the_proxy(proxy):
    status, _, body = get(proxy, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["cluster"]["replicas"] == 2
    replicas = set(health["cluster"]["health"])
    assert len(replicas) == 2 and health["replica"] in replicas
    _, _, text = get(proxy, "/metrics")
    labelled = {line.split('replica="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith("streamer_streams{")}  # fmt: skip
    assert labelled == replicas
    status, kind, page = get(proxy, "/")
    assert status == 200 and kind.startswith("text/html") and "/web/app.js" in page
    for asset in ("app.js", "style.css", "icon.svg"):
        assert get(proxy, f"/web/{asset}")[0] == 200
    assert get(proxy, "/nothing")[0] == 404

    async def page_socket():  # the page's own origin, as a browser sends it
        origin = f"http://127.0.0.1:{proxy.port}"
        client = await Client.connect(proxy, additional_headers={"Origin": origin})
        ready = await client.hello("subscribe")
        await client.close()
        return ready

    assert run(page_socket(), 60)["type"] == "ready"


# Last in the module: it kills an engine replica, and Serve's replacement starts later.
def test_killing_an_engine_replica_ends_only_its_streams_and_tells_their_clients(proxy):
    alice, bob = speech("alice", 4.0, seed=21), speech("bob", 8.0, seed=22)

    async def scenario():
        (a, a_id, _, a_engine, _), (b, b_id, b_replica, *_) = await streams_on_two_replicas(proxy)
        watcher = await connection_on(proxy, b_replica)  # a's ending crosses the hub to it
        await asyncio.gather(a.send_audio(alice), b.send_audio(bob[: len(bob) // 2]))
        await b.next("speaker", timeout_s=30)
        name = next(
            n["name"]
            for n in ray.util.list_named_actors(all_namespaces=True)
            if n["name"].endswith(f"#{a_engine}")
        )
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        noticed = await watcher.next("stream_ended", timeout_s=30)
        # Its own client is told why, then its connection is closed: try again.
        a_ended = await a.next("ended", timeout_s=30)
        refused = await a.next("error", timeout_s=30)
        await asyncio.wait_for(a.ws.wait_closed(), 30)
        with contextlib.suppress(ConnectionClosed):
            await a._reader
        before = len(b.events(b_id))
        await b.send_audio(bob[len(bob) // 2 :])
        b_ended = await b.end()
        await watcher.next("stream_ended", timeout_s=30)
        for client in (b, watcher):
            await client.close()
        return a_id, b_id, noticed, a_ended, refused, a, b_ended, before, b.events(b_id), watcher

    a_id, b_id, noticed, a_ended, refused, a, b_ended, before, b_events, watcher = run(
        scenario(), 240
    )
    assert noticed["stream"] == a_id and noticed["reason"] == ENGINE_DIED
    assert a_ended["stream"] == a_id and a_ended["reason"] == ENGINE_DIED, a_ended
    assert refused["code"] == "engine_lost" and refused["message"] == ENGINE_DIED, refused
    assert a.ws.close_code == 1013  # try again later: a new connection gets a new engine
    assert b_ended["stream"] == b_id and b_ended["audio_s"] == 8.0
    assert len(b_events) > before  # b carried on after a's engine replica died
    assert label_share(b_events, 0.0, 8.0).get("bob", 0) > 6.0
    # (A stream streams_on_two_replicas closed may still be ending when the watcher joins.)
    endings = [m for _, m in watcher.received if m["type"] == "stream_ended"]
    endings = [m for m in endings if m["stream"] in (a_id, b_id)]
    assert [(m["stream"], m["reason"]) for m in endings] == [
        (a_id, ENGINE_DIED),
        (b_id, "ended by its client"),
    ]
