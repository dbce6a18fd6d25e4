"""Shared fixtures: the real GE2E model and silero VAD, loaded once per test session;
random weights for the models that ship none, in their published checkpoint layouts; and
a real PortAudio microphone (PulseAudio fed by the test)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.enroll import collect
from streamer.evaluation.synth import speech
from streamer.features.fbank import KaldiFbank
from streamer.models import Embedder, get_spec
from streamer.models.wespeaker_resnet34 import ResNet34Encoder
from streamer.vad import SileroVAD
from streamer.worker import Engine, drive

torch.set_num_threads(1)
# The Ray tests' cluster stays on loopback: without this Ray binds its nodes to the host's
# network address. Ray reads it when first imported, so it is set before any test imports it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ENROLLED = ("alice", "bob", "carol")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Iterator[None]:
    """The onnxruntime encoder's cache (the daemon's default builds one) goes to a folder
    of the test session, daemons started as processes included, never the user's."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


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


def label_share(events, start: float, end: float) -> dict[str, float]:
    """Seconds of ``[start, end]`` covered by each label's segments, corrections applied
    (events as objects or as their JSON dicts)."""
    labels: dict[tuple[float, float], str] = {}  # a corrected segment relabels its span
    for e in events:
        e = e if isinstance(e, dict) else e.to_dict()
        if e["type"] == "segment":
            labels[e["start_s"], e["end_s"]] = e["label"]
    shares: dict[str, float] = {}
    for (s, e), label in labels.items():
        overlap = min(end, e) - max(start, s)
        if overlap > 0:
            shares[label] = shares.get(label, 0.0) + overlap
    return shares


def chunked(audio: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    return (audio[start : start + chunk] for start in range(0, len(audio), chunk))


def run_stream(engine: Engine, audio: np.ndarray, chunk: int = 320, step_every: int = 1):
    """Push ``audio`` in ``chunk``-sample pieces, running the engine once ``step_every``
    pieces are waiting."""
    stream = engine.open_stream("test")
    return list(drive(engine, stream, chunked(audio, chunk), chunk * step_every))


@pytest.fixture(scope="session")
def rf5_checkpoint(tmp_path_factory) -> Path:
    """rf5-gru weights in the published layout (the hub wrapper's state dict), random."""
    torch.manual_seed(5)
    gru = torch.nn.GRU(80, 768, 3, batch_first=True)
    projection = torch.nn.Linear(768, 256)
    state = {f"model.rnn_stack.{k}": v for k, v in gru.state_dict().items()}
    state |= {f"model.projection.{k}": v for k, v in projection.state_dict().items()}
    path = tmp_path_factory.mktemp("rf5") / "gru-wrapped-f1f850.pth"
    torch.save(state, path)
    return path


# WeSpeaker ResNet34


def random_resnet34(windows: np.ndarray) -> ResNet34Encoder:
    """Random weights with non-trivial BatchNorm: random affine terms and running
    statistics measured on ``windows`` of real features (one train-mode pass)."""
    torch.manual_seed(0)
    model = ResNet34Encoder()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running stats = this pass's batch stats
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.2)
    with torch.no_grad():
        model.train()(torch.from_numpy(windows))
    return model.eval()


def as_npz(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The MLX card's layout: conv kernels (out, kh, kw, in), the rest as in torch."""
    return {
        k: v.numpy().transpose(0, 2, 3, 1) if v.ndim == 4 else v.numpy()
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


@contextlib.contextmanager
def pyannote_task_classes() -> Iterator[object]:
    """Stand-ins for pyannote's task classes, importable only inside the block (as when the
    published checkpoint, whose metadata pickles pyannote objects, was saved); yields the
    ``Specifications`` such a checkpoint holds."""
    task = types.ModuleType("pyannote.audio.core.task")

    class Problem(enum.Enum):
        REPRESENTATION = 4

    class Resolution(enum.Enum):
        CHUNK = 2

    @dataclasses.dataclass
    class Specifications:
        problem: Problem
        resolution: Resolution
        duration: float

    for cls in (Problem, Resolution, Specifications):
        cls.__module__, cls.__qualname__ = task.__name__, cls.__name__
        setattr(task, cls.__name__, cls)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("pyannote", "pyannote.audio", "pyannote.audio.core"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setitem(sys.modules, task.__name__, task)
        yield Specifications(Problem.REPRESENTATION, Resolution.CHUNK, 5.0)


def save_pyannote(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` as pyannote's ``pytorch_model.bin``: a Lightning checkpoint with metadata."""
    with pyannote_task_classes() as specifications:
        checkpoint = {
            "state_dict": state,
            "pyannote.audio": {
                "versions": {"pyannote.audio": "3.1.0"},
                "architecture": {
                    "module": "pyannote.audio.models.embedding.wespeaker",
                    "class": "WeSpeakerResNet34",
                },
                "specifications": specifications,
            },
            "pytorch-lightning_version": "2.1.0",
        }
        torch.save(checkpoint, path)


@pytest.fixture(scope="session")
def wespeaker_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The same random ResNet34 weights in both published layouts: ``pyannote`` (its
    ``pytorch_model.bin``) and ``npz`` (the MLX card's ``weights.npz``)."""
    feats = KaldiFbank().push(speech("erin", 3.2, seed=11))
    model = random_resnet34(np.stack([feats[s : s + 200] for s in (0, 60, 117)]))
    folder = tmp_path_factory.mktemp("wespeaker")
    paths = {"pyannote": folder / "pytorch_model.bin", "npz": folder / "weights.npz"}
    save_pyannote(model.state_dict(), paths["pyannote"])
    np.savez(paths["npz"], **as_npz(model.state_dict()))
    return paths


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
