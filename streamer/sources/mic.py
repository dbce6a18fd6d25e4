"""The local microphone through PortAudio (sounddevice), at the device's own rate.

:class:`Microphone` opens an input stream at the rate the device prefers (or the one
asked for), and its callback — running on PortAudio's audio thread — only down-mixes,
resamples and hands the block on (``on_audio``, e.g. ``Stream.push``). It never waits
and never sleeps: whoever consumes the audio is woken by ``on_audio``, not by polling.

Every failure a user can meet says what to do: PortAudio missing (the system package
to install), no input device, a device that does not exist, a rate the device refuses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import numpy as np

from ..errors import AudioError, ConfigError
from .resample import Resampler

COMMON_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)
PORTAUDIO_HINT = (
    "install the PortAudio library: sudo apt-get install libportaudio2 (Debian, Ubuntu), "
    "sudo dnf install portaudio (Fedora), brew install portaudio (macOS)"
)


def load_sounddevice() -> ModuleType:
    """Import sounddevice, or raise :class:`AudioError` naming the package to install."""
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:  # sounddevice raises this when libportaudio cannot be loaded
        found = "PortAudio library not found"
        detail = str(exc) if found in str(exc) else f"{found} ({exc})"
        raise AudioError(f"{detail}; {PORTAUDIO_HINT}") from exc
    except ImportError as exc:
        raise AudioError(
            f"the sounddevice package is missing ({exc}); pip install sounddevice"
        ) from exc


def input_devices(sd: ModuleType | None = None) -> list[dict]:
    """Every device PortAudio can record from, with ``index``, ``hostapi_name`` and ``default``."""
    sd = sd or load_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_index = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise AudioError(f"PortAudio cannot list the audio devices: {exc}") from exc
    found = []
    for info in devices:
        if info["max_input_channels"] > 0:
            found.append(
                dict(
                    info,
                    hostapi_name=hostapis[info["hostapi"]]["name"],
                    default=info["index"] == default_index,
                )
            )
    return found


def _listing(devices: list[dict]) -> str:
    return ", ".join(f"{d['index']} {d['name']!r}" for d in devices)


def find_input_device(device: str | int | None, sd: ModuleType | None = None) -> dict:
    """The device to record from: an index, a (part of a) name, or ``None`` for the default."""
    sd = sd or load_sounddevice()
    devices = input_devices(sd)
    if not devices:
        raise AudioError(
            "no input device found: PortAudio sees no microphone; connect one or check "
            "that the sound server runs, then see `streamer devices`"
        )
    if device is None or device == "":
        try:
            return sd.query_devices(kind="input")
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioError(
                f"there is no default input device; pick one of {_listing(devices)} "
                "(streamer devices lists them)"
            ) from exc
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise ConfigError(
            f"no input device {device!r}: {' '.join(str(exc).split())}; input devices: "
            f"{_listing(devices)}"
        ) from exc
    if info["max_input_channels"] < 1:
        raise ConfigError(
            f"device {info['index']} {info['name']!r} has no input channels; input devices: "
            f"{_listing(devices)}"
        )
    return info


class Microphone:
    """An input device, checked on creation and recording between :meth:`start` and :meth:`stop`.

    Args:
        device: index, (part of a) name, or ``None`` for the system's default input.
        sample_rate: rate to open the device at (``None``: the device's default rate).
        target_rate: the rate ``on_audio`` receives (the model's).
        block_s: seconds per callback block.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int | None = None,
        target_rate: int = 16_000,
        block_s: float = 0.02,
    ) -> None:
        self._sd = load_sounddevice()
        self.info = find_input_device(device, self._sd)
        self.index = int(self.info["index"])
        self.name = str(self.info["name"])
        self.sample_rate = int(sample_rate or self.info["default_samplerate"])
        self.channels = self._check_settings()
        self.target_rate = target_rate
        self.block = max(1, round(block_s * self.sample_rate))
        self.overflows = 0  # blocks PortAudio reported as overrun (audio lost)
        self._stream = None
        self._on_audio: Callable[[np.ndarray], None] | None = None
        self._resample: Resampler | None = None

    def describe(self) -> str:
        """``device 0 'pulse' at 44100 Hz``."""
        return f"device {self.index} {self.name!r} at {self.sample_rate} Hz"

    def _supports(self, rate: int, channels: int) -> bool:
        try:
            self._sd.check_input_settings(
                device=self.index, samplerate=rate, channels=channels, dtype="float32"
            )
        except (ValueError, self._sd.PortAudioError):
            return False
        return True

    def _check_settings(self) -> int:
        """Channels to open (mono if the device allows); :class:`AudioError` for a refused rate."""
        max_channels = int(self.info["max_input_channels"])
        for channels in sorted({1, min(2, max_channels)}):
            if self._supports(self.sample_rate, channels):
                return channels
        supported = [r for r in COMMON_RATES if self._supports(r, 1)]
        if not supported:
            raise AudioError(f"{self.describe()} cannot be opened for recording; try another")
        best = 16_000 if 16_000 in supported else supported[-1]
        raise AudioError(
            f"device {self.index} {self.name!r} does not support "
            f"{self.sample_rate} Hz; it supports {', '.join(map(str, supported))} — streamer "
            f"resamples, so pass --mic-rate {best}"
        )

    def start(self, on_audio: Callable[[np.ndarray], None]) -> None:
        """Record; ``on_audio`` gets mono float32 blocks at ``target_rate`` on the audio thread."""
        self._on_audio = on_audio
        self._resample = Resampler(self.sample_rate, self.target_rate)
        try:
            self._stream = self._sd.InputStream(
                device=self.index,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block,
                callback=self._callback,
            )
            self._stream.start()
        except (ValueError, self._sd.PortAudioError) as exc:
            self._stream = None
            raise AudioError(
                f"cannot record from {self.describe()}: {' '.join(str(exc).split())}"
            ) from exc

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        block = self._resample(indata)  # a copy: PortAudio reuses ``indata``
        if len(block):
            self._on_audio(block)

    def stop(self) -> None:
        """Stop recording at once (``abort``: ``stop`` can wait on a device that stalls)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
