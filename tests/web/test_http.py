"""The page over plain HTTP on the websocket port (no browser): what is served, the origin
and token rules for the page and its websocket, and that programs keep working."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.server.conftest import Client, daemon, http_get, run, url_of


async def handshake(server, host: str, origin: str | None) -> int:
    """The status of a raw websocket handshake with these Host and Origin headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [
        "GET / HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ] + ([f"Origin: {origin}"] if origin else [])
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


def test_a_browser_gets_the_page_and_programs_the_websocket(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of("alice")) as server:
            page = await http_get(server, "/")
            app = await http_get(server, "/web/app.js")
            worklet = await http_get(server, "/web/worklet.js")
            missing = await http_get(server, "/web/secrets.py")
            health = await http_get(server, "/healthz")
            client = await Client.open(server, "control")
            status = await client.request({"type": "status"})
            await client.close()
            return page, app, worklet, missing, health, status

    page, app, worklet, missing, health, status = run(scenario())
    assert page[0] == 200
    for hook in ('id="current-speaker"', 'data-label=""', 'id="mic-toggle"', "/web/app.js"):
        assert hook in page[1]
    assert app[0] == 200 and "window.streamerEvents" in app[1]
    assert worklet[0] == 200 and 'registerProcessor("int16-frames"' in worklet[1]
    assert missing[0] == 404
    assert health[0] == 200 and json.loads(health[1])["status"] == "ok"
    assert status["profiles"] == ["alice"]


def test_the_pages_own_origin_is_allowed_and_others_are_not(make_engine, store_of):
    async def scenario(token):
        async with daemon(make_engine(), store_of(), token=token) as server:
            own = f"127.0.0.1:{server.port}"
            return {
                "program": await handshake(server, own, None),
                "own": await handshake(server, own, f"http://{own}"),
                "localhost": await handshake(
                    server, f"localhost:{server.port}", f"http://localhost:{server.port}"
                ),
                "other port": await handshake(server, own, "http://127.0.0.1:3000"),
                "other site": await handshake(server, own, "http://evil.example"),
                # another site's name resolving to 127.0.0.1 (DNS rebinding)
                "rebound": await handshake(
                    server, f"evil.example:{server.port}", f"http://evil.example:{server.port}"
                ),
            }

    without_token = run(scenario(None))
    assert without_token == {
        "program": 101,
        "own": 101,
        "localhost": 101,
        "other port": 403,
        "other site": 403,
        "rebound": 403,
    }
    # With a token the page's address may be any name for the machine: the token guards it.
    assert run(scenario("s3cret-token"))["rebound"] == 101


def test_allowed_origins_still_work_and_refusals_say_what_to_do(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), origins=["http://localhost:3000"]) as server:
            ok = Client(await connect(url_of(server), origin="http://localhost:3000"))
            await ok.hello("control")
            await ok.close()
            with pytest.raises(InvalidStatus) as refused:
                await connect(url_of(server), origin="http://evil.example")
            return refused.value.response

    response = run(scenario())
    assert response.status_code == 403
    assert b"--allow-origin http://evil.example" in response.body


def test_with_a_token_the_page_wants_it_and_says_how(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of(), token="s3cret-token") as server:
            return (
                await http_get(server, "/"),
                await http_get(server, "/?token=wrong-token"),
                await http_get(server, "/?token=s3cret-token"),
                await http_get(server, "/", {"Authorization": "Bearer s3cret-token"}),
                await http_get(server, "/web/style.css"),  # public code, no secret in it
            )

    missing, wrong, right, header, style = run(scenario())
    for refused in (missing, wrong):
        assert refused[0] == 401
        assert "needs its token" in refused[1] and "?token=YOUR_TOKEN" in refused[1]
    assert right[0] == header[0] == 200 and 'id="mic-toggle"' in right[1]
    assert style[0] == 200


def test_page_responses_keep_the_token_to_themselves(make_engine, store_of):
    async def scenario():
        async with daemon(make_engine(), store_of()) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            head = (await reader.read()).split(b"\r\n\r\n")[0].decode()
            writer.close()
            return head

    head = run(scenario())
    assert "Referrer-Policy: no-referrer" in head
    assert "Content-Security-Policy: default-src 'self'" in head
