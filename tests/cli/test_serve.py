"""``streamer serve`` end to end (a real process, the example clients as real processes), and
its configuration errors, which fail in one line before the model loads."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A child process whose output lines are read as they come (by a thread each)."""

    def __init__(self, *args: str, background: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        command = [sys.executable, *args]
        if background:
            # As a shell starts a background job: Ctrl-C (SIGINT) ignored from the start.
            command = ["bash", "-c", "trap '' INT; exec \"$@\"", "bash", *command]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, queue.Queue] = {"out": queue.Queue(), "err": queue.Queue()}
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        for name, pipe in (("out", self.process.stdout), ("err", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, pipe), daemon=True).start()

    def _read(self, name: str, pipe) -> None:
        for line in pipe:
            self.lines[name].put(line.rstrip("\n"))

    def wait_for(self, pattern: str, stream: str = "err", timeout_s: float = 60.0) -> re.Match:
        while True:
            try:
                line = self.lines[stream].get(timeout=timeout_s)
            except queue.Empty:
                self.process.kill()
                pytest.fail(f"no line matching {pattern!r}; got {self.seen[stream]}")
            self.seen[stream].append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout_s)
        for name in self.lines:
            while not self.lines[name].empty():
                self.seen[name].append(self.lines[name].get())
        return code


def test_serve_with_the_example_clients(store, audio):
    daemon = Process("-m", "streamer", "serve", "--port", "0", "--profiles", str(store))
    try:
        listening = daemon.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)", timeout_s=180)
        port = int(listening.group(1))  # its workers (one per core) load the model first
        daemon.wait_for(rf"open http://127\.0\.0\.1:{port}/ in a browser")
        url = f"ws://127.0.0.1:{port}/"
        watcher = Process("-m", "clients.subscribe", "--url", url)
        watcher.wait_for(r"^profiles: alice, bob$", "out")
        # Two more that stop cleanly too: one on SIGTERM, one started as a background job
        # (where Python alone would ignore Ctrl-C).
        others = [
            Process("-m", "clients.subscribe", "--url", url, "--json"),
            Process("-m", "clients.subscribe", "--url", url, "--json", background=True),
        ]
        for other in others:
            other.wait_for(r'"type": "snapshot"', "out")
        sender = Process(
            "-m", "clients.stream", str(audio["talk.wav"]), "--url", url, "--stream", "talk"
        )
        assert sender.process.wait(timeout=60) == 0
        sender.stop()
        watcher.wait_for(r"^\[talk\] ended after", "out")
        assert watcher.stop() == 0
        assert others[0].stop(sig=signal.SIGTERM) == 0
        assert others[1].stop(timeout_s=10.0) == 0
    finally:
        code = daemon.stop()
    assert code == 0
    # The sender printed its stream's events; the watcher saw the same, live.
    segments = [line for line in sender.seen["out"] if " segment " in line]
    assert [line.split()[5] for line in segments][:3] == ["alice", "bob", "alice"]
    assert any(re.match(r"\[talk\] .* speaker  alice", line) for line in watcher.seen["out"])
    seconds = f"{sf.info(audio['talk.wav']).duration:.1f}"
    assert sender.seen["err"][-1] == f"stream talk ended: {seconds} s of audio"
    log = "\n".join(daemon.seen["err"])
    for pattern in (
        r"client 1 connected from 127\.0\.0\.1:\d+",
        r"client 1 subscribed to all streams",
        r"stream 'talk' started by client 4 \(16000 Hz int16 x1 -> 16000 Hz\)",
        rf"stream 'talk' ended: ended by its client \({seconds} s of audio\)",
        *(rf"client {n} disconnected \(close code 1000, after \d+\.\d s\)" for n in (1, 2, 3, 4)),
        r"stopped$",
    ):
        assert re.search(pattern, log, re.M), (pattern, log)


def test_a_public_address_needs_a_token(cli, no_model):
    message = cli("serve", "--host", "0.0.0.0").error
    assert "binding to 0.0.0.0" in message and "--token" in message
    assert "at least 8 characters" in cli("serve", "--token", "short").error


def test_ray_replica_range(cli, no_model):
    message = cli("serve", "--ray", "--min-replicas", "3", "--max-replicas", "2").error
    assert message == "--min-replicas 3 is more than --max-replicas 2"


def test_config_file(cli, no_model, tmp_path):
    config = tmp_path / "streamer.toml"
    config.write_text('host = "192.168.1.5"\n[limits]\nmax_streams = 4\n')
    assert "binding to 192.168.1.5" in cli("serve", "--config", config).error
    config.write_text('hots = "x"\n[limits]\nmax_stream = 4\n')
    message = cli("serve", "--config", config).error
    assert "unknown key(s) hots, limits.max_stream" in message
    config.write_text("port = \n")
    assert "is not valid TOML" in cli("serve", "--config", config).error
    config.write_text("[limits]\nidle_timeout_s = -1\n")
    assert "idle_timeout_s must be more than 0" in cli("serve", "--config", config).error
    assert "cannot read config" in cli("serve", "--config", tmp_path / "nope.toml").error
    assert cli("serve", "--max-streams", "0").code == 2


def test_port_in_use(cli, no_model, tmp_path):
    """Checked before the model loads (``no_model``), with one worker or a pool."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in (1, 2):
            message = cli(
                "serve", "--port", port, "--profiles", tmp_path, "--workers", workers
            ).error
            assert f"cannot listen on 127.0.0.1:{port}" in message and "--port" in message


def test_microphone_errors(cli, no_model, pulse_mic):
    assert cli("serve", "--mic", "nosuch").error.startswith("no input device 'nosuch'")
    message = cli("serve", "--mic", pulse_mic.device, "--mic-rate", 1_000_000).error
    assert "does not support 1000000 Hz" in message and "--mic-rate" in message
