"""What both clients share: connecting, and one readable line per daemon message."""

from __future__ import annotations

import json
import sys

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

DEFAULT_URL = "ws://127.0.0.1:8765/"


class ClientError(Exception):
    """What went wrong, in one line a client prints as it is."""


async def open_connection(url: str, hello: dict, token: str | None = None) -> ClientConnection:
    """Connect and say hello; return the connection once the daemon answered ``ready``."""
    try:
        ws = await connect(url, max_size=2**22)
    except InvalidURI as exc:
        raise ClientError(f"{url} is not a websocket URL; pass --url ws://HOST:PORT/") from exc
    except (OSError, InvalidHandshake) as exc:
        raise ClientError(f"no daemon at {url}; start it with `streamer serve`") from exc
    if token:
        hello = {**hello, "token": token}
    try:
        await ws.send(json.dumps(hello))
        reply = json.loads(await ws.recv())
    except ConnectionClosed as exc:
        raise ClientError(f"the daemon at {url} closed the connection: {exc}") from exc
    if reply.get("type") != "ready":
        await ws.close()
        if reply.get("code") == "unauthorized":
            given = "the token given with --token" if token else "no token"
            raise ClientError(
                f"the daemon at {url} refused {given}: pass its token with --token TOKEN"
            )
        raise ClientError(f"the daemon refused: {reply.get('message', reply)}")
    return ws


def open_audio(path: str):
    """``soundfile.SoundFile(path)``, or a :class:`ClientError` saying why it cannot be."""
    import os

    import soundfile as sf

    if not os.path.exists(path):
        raise ClientError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ClientError(f"{path} is not a file; pass an audio file (wav, flac, ogg, mp3)")
    if os.path.getsize(path) == 0:
        raise ClientError(f"{path} is empty; pass an audio file (wav, flac, ogg, mp3)")
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ClientError(
            f"{path} is not audio soundfile can read; pass a wav, flac, ogg or mp3 file"
        ) from exc
    if f.frames == 0:
        f.close()
        raise ClientError(f"{path} holds no audio (0 samples)")
    return f


def describe(message: dict) -> str | None:
    """A line for people, or ``None`` for messages not worth a line."""
    kind = message.get("type")
    where = f"[{message.get('stream')}]"
    score = message.get("score")
    score = f"{score:.2f}" if isinstance(score, float) else ""
    if kind == "speech_start":
        return f"{where} {message['start_s']:8.2f}  speech starts"
    if kind == "speech_end":
        return f"{where} {message['end_s']:8.2f}  speech ends"
    if kind == "speaker":
        lag = message["emitted_at"] - message["start_s"]
        return (
            f"{where} {message['start_s']:8.2f}  speaker  {message['label']}  {score}  "
            f"(+{lag:.2f} s)"
        )
    if kind == "change":
        return (
            f"{where} {message['start_s']:8.2f}  change   {message['previous']} -> "
            f"{message['label']}  {score}"
        )
    if kind == "segment":
        return (
            f"{where} {message['start_s']:8.2f} - {message['end_s']:8.2f}  segment  "
            f"{message['label']}  {score}"
        )
    if kind == "stream_started":
        return f"{where} started ({message['source']}, {message['audio']})"
    if kind == "stream_ended":
        return f"{where} ended after {message['audio_s']:.1f} s ({message['reason']})"
    if kind == "snapshot":
        lines = [f"{len(message['streams'])} stream(s) open"]
        for s in message["streams"]:
            who = s["speaker"]["label"] if s["speaker"] else ("speech" if s["in_speech"] else "-")
            lines.append(f"  [{s['stream']}] {s['source']}, now: {who}")
        names = ", ".join(p["name"] for p in message["profiles"]) or "none"
        lines.append(f"profiles: {names}")
        return "\n".join(lines)
    if kind == "profiles":
        return "profiles: " + (", ".join(p["name"] for p in message["profiles"]) or "none")
    if kind == "dropped":
        return f"(missed {message['count']} events: this client was too slow)"
    if kind == "error":
        return f"error {message['code']}: {message['message']}"
    return None


def show(message: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(message), flush=True)
        return
    line = describe(message)
    if line is not None:
        stream = sys.stderr if message.get("type") == "error" else sys.stdout
        print(line, file=stream, flush=True)
