"""Protocol fuzzing against a real daemon on 127.0.0.1: hypothesis draws hellos, requests,
binary frames and broken text; a well-behaved stream runs alongside the whole time.

Every message drawn must be answered by documented messages only (errors with a code
of docs/protocol.md's table), the log must hold no traceback, the daemon must stay
healthy and the concurrent stream must get its events as if nothing happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamer.evaluation.synth import conversation
from tests.server.conftest import SR, Client

BUDGET_S = 30.0
"""Fuzzing time (the test takes about this plus the stream's end)."""

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ANSWERS = {
    "ready", "status", "profiles", "ended", "renamed", "removed", "enroll_started",
    "enroll_progress", "enroll_done", "enroll_cancelled", "promoted", "snapshot",
    "stream_started", "stream_ended", "dropped",
}  # fmt: skip


def documented_codes() -> set[str]:
    errors = DOCS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in errors.splitlines() if line.startswith("| `")]
    return {code for row in rows for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


# Strategies: mostly almost-right messages, since those reach deepest.

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(["zed", "", "a/b", "..", "speaker-1", "unknown", " x", "x" * 70]) | anything
fields = {
    "role": st.sampled_from(["stream", "subscribe", "control", "boss"]) | anything,
    "sample_rate": st.sampled_from([8000, 16000, 44100, 192001, 0, -1, 16000.5]) | anything,
    "format": st.sampled_from(["int16", "float32", "int24"]) | anything,
    "channels": st.integers(-1, 10) | anything,
    "stream": st.sampled_from(["fuzz", "../x", ""]) | anything,  # never "good": its voices
    "streams": st.lists(st.sampled_from(["good", "fuzz", "!"]), max_size=3) | anything,
    "events": st.booleans() | anything,
    "protocol": st.sampled_from([1, 2]) | anything,
    "token": anything,
    "id": anything,
    "name": names,
    "new_name": names,
    "label": st.sampled_from(["speaker-1", "nobody"]) | anything,
    "seconds": st.floats(allow_nan=True) | anything,
    "force": anything,
}
TYPES = ["hello", "end", "status", "profiles", "rename", "remove", "enroll", "cancel", "promote"]
request = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | anything},
    optional={key: value for key, value in fields.items()},
)
hello = st.fixed_dictionaries(
    {"type": st.just("hello"), "role": st.sampled_from(["stream", "subscribe", "control"])},
    optional={key: fields[key] for key in ("sample_rate", "format", "channels", "events", "id")},
)
text = st.one_of(
    request.map(json.dumps),
    st.text(max_size=200),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 3000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.just('{"type": "hello", "role": "stream", "sample_rate": NaN}'),
)
frame = st.binary(max_size=700)
messages = st.lists(st.one_of(text, text, frame), min_size=1, max_size=8)


def good_stream(url: str, seconds: float) -> None:
    """The well-behaved client (run in a process of its own, so that the fuzzing's CPU
    use cannot delay it): a conversation, again and again in real time, with its own
    events; prints a JSON summary (labels of its segments, each event's lag)."""

    async def main() -> dict:
        talk, _ = conversation([("alice", 4.0), ("bob", 4.0)], gap_s=0.6, seed=33)
        good = Client(await connect(url))
        await good.hello("stream", stream="good", events=True)
        good.listen()
        sent, offset, until = [], 0, time.monotonic() + seconds
        while time.monotonic() < until:
            for end, at in await good.send_audio(talk, realtime=True):
                sent.append((offset + end, at))
            offset += len(talk)
        ended = await good.end()
        await good.close()
        lags = []
        for received_at, event in good.received:
            if "v" in event and event["emitted_at"] < offset / SR - 0.05:
                sample = round(event["emitted_at"] * SR)
                lags.append(received_at - next(t for end, t in sent if end >= sample))
        labels = [e["label"] for e in good.events("good") if e["type"] == "segment"]
        return {"ended": ended, "labels": labels, "lags": lags, "talk_s": len(talk) / SR}

    print(json.dumps(asyncio.run(main())))


def test_fuzzed_messages_get_documented_answers_and_hurt_nobody(store_of, tmp_path):
    codes = documented_codes()
    store = store_of("alice", "bob")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "streamer", "serve", "--port", "0", "--hello-timeout-s", "2"]
    daemon = subprocess.Popen(
        [*command, "--profiles", str(store.path)], stderr=subprocess.PIPE, text=True, env=env
    )
    log: list[str] = []
    try:
        while (line := daemon.stderr.readline()) and "listening on" not in line:
            log.append(line)
        url = re.search(r"listening on (ws://\S+)", line).group(1) + "/"
        reader = threading.Thread(target=lambda: log.extend(daemon.stderr), daemon=True)
        reader.start()
        script = f"from tests.server.test_fuzz import good_stream; good_stream({url!r}, {BUDGET_S})"
        good = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
        )
        answers = asyncio.run(fuzz_for(url, BUDGET_S - 5.0))
        summary = json.loads(good.communicate(timeout=BUDGET_S + 120)[0])
        status, health = asyncio.run(healthz(url))
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(60)
        reader.join(10)

    # Every answer is a documented message; every error has a documented code.
    assert len(answers) > 200
    unknown = [a for a in answers if "v" not in a and a.get("type") not in ANSWERS | {"error"}]
    assert not unknown, unknown[:5]
    errors = [a for a in answers if a.get("type") == "error"]
    assert {e["code"] for e in errors} <= codes - {"internal"}, {e["code"] for e in errors}
    assert all(e["message"] and "\n" not in e["message"] for e in errors)
    assert len({e["code"] for e in errors}) >= 6  # the fuzzing reached deep
    # Nothing escaped: no traceback, no error in the daemon's log; it stayed healthy.
    text = "".join(log)
    assert "Traceback" not in text and "failed" not in text, text[-3000:]
    assert status == 200 and health["status"] == "ok"
    # The good stream got every event, on time.
    assert summary["ended"]["audio_s"] >= BUDGET_S - 1
    assert set(summary["labels"]) == {"alice", "bob"}
    assert len(summary["labels"]) >= 2 * int(BUDGET_S / summary["talk_s"]) - 1
    lags = summary["lags"]
    if os.getloadavg()[0] < os.cpu_count():  # timing means nothing on an overloaded machine
        assert statistics.median(lags) < 1.0 and max(lags) < 3.0, (
            statistics.median(lags),
            max(lags),
        )


async def healthz(url: str) -> tuple[int, dict]:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def fuzz_for(url: str, budget_s: float) -> list[dict]:
    """Hypothesis's messages to the daemon for ``budget_s``; every answer they got."""
    answers: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + budget_s

    async def exchange(batch: list, prefix: list) -> None:
        """Send the messages, each followed by a probe; collect what comes back."""
        async with connect(url, max_size=2**22) as ws:
            for message in [*prefix, *batch]:
                try:
                    await ws.send(message)
                    await ws.send('{"type": "status", "id": "probe"}')
                    while True:
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        answers.append(reply)
                        if reply.get("id") == "probe":
                            break
                except ConnectionClosed:
                    assert ws.close_code in (1000, 1008, 1013), ws.close_code
                    return

    @settings(
        max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(batch=messages, prefix=st.lists(hello.map(json.dumps), max_size=1))
    def fuzz(batch, prefix):
        if time.monotonic() > deadline:
            return  # the time budget is spent: the remaining examples pass at once
        asyncio.run_coroutine_threadsafe(exchange(batch, prefix), loop).result(timeout=60)

    await asyncio.to_thread(fuzz)
    return answers
