"""Shared fixtures: the real GE2E model and silero VAD, loaded once per test session, and a
real PortAudio microphone (PulseAudio fed by the test)."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
import pytest
import torch

from streamer.enroll import collect
from streamer.models import Embedder, get_spec
from streamer.synth import speech
from streamer.vad import SileroVAD
from streamer.worker import Engine

torch.set_num_threads(1)

ENROLLED = ("alice", "bob", "carol")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(get_spec("ge2e"))


@pytest.fixture(scope="session")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="session")
def make_engine(embedder, vad):
    """``make_engine(profiles=None, **options)``: a fresh engine sharing the loaded models."""

    def make(profiles=None, **options) -> Engine:
        return Engine(embedder, vad, profiles=profiles, **options)

    return make


@pytest.fixture(scope="session")
def voice_profiles(make_engine) -> dict[str, np.ndarray]:
    """Profiles of the synthetic voices, from speech not used in any test conversation."""
    profiles = {}
    for name in (*ENROLLED, "dave", "erin"):
        collector = collect(make_engine(), speech(name, 8.0, seed=101))
        mean = np.mean(collector.embeddings, axis=0)
        profiles[name] = mean / np.linalg.norm(mean)
    return profiles


def run_stream(engine: Engine, audio: np.ndarray, chunk: int = 320, step_every: int = 1):
    """Push ``audio`` in ``chunk``-sample pieces, stepping every ``step_every`` pushes."""
    stream = engine.open_stream("test")
    events = []
    for i, start in enumerate(range(0, len(audio), chunk)):
        stream.push(audio[start : start + chunk])
        if (i + 1) % step_every == 0:
            events += engine.step()
    return events + engine.close_stream("test")


# A real PortAudio microphone: PulseAudio with a pipe source fed from a FIFO

PULSE_PACKAGES = "libportaudio2 pulseaudio libasound2-plugins"


class Feeding(threading.Thread):
    """A thread playing audio into the test microphone; :meth:`stop` ends it early."""

    def __init__(self, stop: threading.Event, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stop_event = stop

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class PulseMic:
    """A PulseAudio server whose only source plays what the test writes into a FIFO.

    PortAudio reaches it through ALSA's ``pulse`` device, like any desktop microphone.
    :meth:`feed` writes audio in real time (100 ms every 100 ms), as a live mic would.
    """

    device = "pulse"
    rate = 16000

    def __init__(self, folder) -> None:
        import subprocess

        self.folder = folder
        env = dict(os.environ, HOME=str(folder), XDG_RUNTIME_DIR=str(folder))
        self.process = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "-n",
                "--exit-idle-time=-1",
                "-L",
                f"module-native-protocol-unix socket={folder}/native auth-anonymous=1",
                "-L",
                f"module-pipe-source source_name=testmic file={folder}/mic.fifo "
                f"format=s16le rate={self.rate} channels=1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.server = f"unix:{folder}/native"
        self._fifo: int | None = None
        self._threads = []

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        native, fifo = self.folder / "native", self.folder / "mic.fifo"
        while time.monotonic() < deadline and self.process.poll() is None:
            if native.is_socket() and fifo.exists():
                self._fifo = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                return True
            time.sleep(0.05)  # waiting for another process to create files; nothing to await
        return False

    def feed(self, audio: np.ndarray, block_s: float = 0.1) -> Feeding:
        """Play float32 ``audio`` (at 16 kHz) into the source in real time, from a thread.

        Like a real microphone, the source does not wait: what nobody records (the FIFO
        is full) is lost. Each 100 ms block is under PIPE_BUF, so it is written whole.
        """
        data = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        block = int(self.rate * block_s)

        stop = threading.Event()

        def run() -> None:
            started = time.monotonic()
            for i, start in enumerate(range(0, len(data), block)):
                if stop.is_set():
                    return
                with contextlib.suppress(BlockingIOError):
                    os.write(self._fifo, data[start : start + block].tobytes())
                delay = started + (i + 1) * block_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing a live source, not synchronisation

        thread = Feeding(stop, target=run, name="pulse-feed", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def close(self) -> None:
        for thread in self._threads:
            thread.join()
        if self._fifo is not None:
            os.close(self._fifo)
        self.process.terminate()
        self.process.wait(timeout=10)


def _pulse_missing() -> str | None:
    import ctypes.util
    import glob
    import shutil

    if shutil.which("pulseaudio") is None:
        return "pulseaudio"
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"):
        return "libasound2-plugins"
    return None


@pytest.fixture(scope="session")
def pulse_mic(tmp_path_factory):
    """A real PortAudio input device (``pulse``) fed by the test; skips without the packages."""
    missing = _pulse_missing()
    if missing:
        pytest.skip(f"{missing} is not installed; apt-get install {PULSE_PACKAGES}")
    folder = tmp_path_factory.mktemp("pulse")
    mic = PulseMic(folder)
    previous = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = mic.server
    try:
        if not mic.wait_ready():
            pytest.skip("pulseaudio did not start (is this a container without /dev/shm?)")
        import sys

        if "sounddevice" in sys.modules:  # PortAudio listed the devices already: list again
            sd = sys.modules["sounddevice"]
            sd._terminate()
            sd._initialize()
        yield mic
    finally:
        mic.close()
        if previous is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = previous
