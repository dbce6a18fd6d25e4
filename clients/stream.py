"""Stream an audio file or the microphone to the streamer daemon and print its events.

    python -m clients.stream meeting.wav                # as fast as the daemon takes it
    python -m clients.stream meeting.wav --realtime     # at the recording's own pace
    python -m clients.stream --mic                      # the default microphone, until Ctrl-C
    python -m clients.stream --mic 2 --stream desk --url ws://host:8765/ --token SECRET

Audio goes as int16 at the source's own rate and channel count; the daemon resamples
and down-mixes. A file sent faster than the daemon processes it is slowed down by the
daemon (backpressure), so nothing is lost. At the end (or Ctrl-C) the client sends
``end`` and waits for the stream's last events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable

import numpy as np

from .common import DEFAULT_URL, ClientError, open_audio, open_connection, show


async def stream_file(
    url: str,
    path: str,
    *,
    stream_id: str | None = None,
    token: str | None = None,
    realtime: bool = False,
    chunk_s: float = 0.02,
    events: bool = True,
    on_message: Callable[[dict], None] = lambda message: None,
    stop: asyncio.Event | None = None,
) -> dict:
    """Send a file (any format soundfile reads); returns the daemon's ``ended`` message."""
    with open_audio(path) as f:
        rate = f.samplerate

        async def blocks() -> AsyncIterator[np.ndarray]:
            loop = asyncio.get_running_loop()
            started, sent, size = loop.time(), 0, max(1, int(rate * chunk_s))
            while len(data := f.read(size, dtype="int16", always_2d=True)):
                if realtime:
                    await asyncio.sleep(max(0.0, started + sent / rate - loop.time()))
                sent += len(data)
                yield data

        hello = _hello(rate, f.channels, stream_id, events)
        return await send(url, hello, blocks(), token, on_message, stop)


async def stream_mic(
    url: str,
    device: str | int | None,
    *,
    stream_id: str | None = None,
    token: str | None = None,
    chunk_s: float = 0.02,
    on_message: Callable[[dict], None] = lambda message: None,
    stop: asyncio.Event | None = None,
) -> dict:
    """Send the microphone until ``stop`` is set; returns the daemon's ``ended`` message."""
    import sounddevice as sd

    info = sd.query_devices(device, kind="input")
    rate = int(info["default_samplerate"])
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
        loop.call_soon_threadsafe(queue.put_nowait, indata.copy())

    async def blocks() -> AsyncIterator[np.ndarray]:
        while True:
            yield await queue.get()

    with sd.InputStream(
        device=info["index"],
        samplerate=rate,
        channels=1,
        dtype="int16",
        blocksize=int(rate * chunk_s),
        callback=callback,
    ) as mic:
        try:
            return await send(
                url, _hello(rate, 1, stream_id, True), blocks(), token, on_message, stop
            )
        finally:
            mic.abort()


def _hello(rate: int, channels: int, stream_id: str | None, events: bool) -> dict:
    hello = {
        "type": "hello",
        "role": "stream",
        "sample_rate": rate,
        "format": "int16",
        "channels": channels,
        "events": events,
    }
    if stream_id:
        hello["stream"] = stream_id
    return hello


async def send(
    url: str,
    hello: dict,
    blocks: AsyncIterator[np.ndarray],
    token: str | None,
    on_message: Callable[[dict], None],
    stop: asyncio.Event | None,
) -> dict:
    """Open a stream, send int16 ``blocks`` until they end or ``stop`` is set, then ``end``
    it; every message from the daemon goes to ``on_message``. Returns ``ended``."""
    ws = await open_connection(url, hello, token)
    ended: asyncio.Future = asyncio.get_running_loop().create_future()

    async def receive() -> None:
        async for raw in ws:
            message = json.loads(raw)
            on_message(message)
            if message.get("type") == "ended" and not ended.done():
                ended.set_result(message)
        if not ended.done():
            reason = ws.close_reason or "no reason given"
            ended.set_exception(ConnectionError(f"the daemon closed the connection: {reason}"))

    receiver = asyncio.create_task(receive())
    stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        async for block in _until(blocks, stopped, ended):
            await ws.send(np.ascontiguousarray(block, dtype="<i2").tobytes())
        if not ended.done():
            await ws.send(json.dumps({"type": "end"}))
        return await asyncio.wait_for(ended, 60)
    finally:
        if stopped is not None:
            stopped.cancel()
        receiver.cancel()
        await ws.close()


async def _until(blocks: AsyncIterator, *stoppers: asyncio.Future | None):
    """``blocks`` until one of ``stoppers`` is done (checked while waiting for a block)."""
    stoppers = [s for s in stoppers if s is not None]
    iterator = blocks.__aiter__()
    while not any(s.done() for s in stoppers):
        nxt = asyncio.ensure_future(iterator.__anext__())
        await asyncio.wait([nxt, *stoppers], return_when=asyncio.FIRST_COMPLETED)
        if not nxt.done():
            nxt.cancel()
            return
        try:
            yield nxt.result()
        except StopAsyncIteration:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.stream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("file", nargs="?", help="audio file to send (wav, flac, ogg, mp3)")
    parser.add_argument(
        "--mic", nargs="?", const="", metavar="DEVICE", help="send the microphone instead"
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"daemon (default: {DEFAULT_URL})")
    parser.add_argument("--stream", metavar="ID", help="stream id (default: the daemon picks)")
    parser.add_argument("--token", help="the daemon's token, if it has one")
    parser.add_argument("--realtime", action="store_true", help="send a file at its own pace")
    parser.add_argument("--json", action="store_true", help="print the raw JSON messages")
    args = parser.parse_args(argv)
    if (args.file is None) == (args.mic is None):
        parser.error("pass a FILE or --mic")

    async def run() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        printer = lambda message: show(message, args.json)  # noqa: E731
        if args.mic is not None:
            device = int(args.mic) if args.mic.isdigit() else (args.mic or None)
            return await stream_mic(
                args.url,
                device,
                stream_id=args.stream,
                token=args.token,
                on_message=printer,
                stop=stop,
            )
        return await stream_file(
            args.url,
            args.file,
            stream_id=args.stream,
            token=args.token,
            realtime=args.realtime,
            on_message=printer,
            stop=stop,
        )

    try:
        ended = asyncio.run(run())
    except (ClientError, OSError, ConnectionError) as exc:
        print(f"clients.stream: error: {exc}", file=sys.stderr)
        return 1
    print(f"stream {ended['stream']} ended: {ended['audio_s']:.1f} s of audio", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
