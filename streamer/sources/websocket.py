"""Binary websocket frames -> mono float32 chunks at the model's rate.

A daemon client describes its audio once, in its ``hello`` (``docs/protocol.md``): sample
rate, sample format and channel count. Each binary frame then holds whole sample frames
(one sample per channel, interleaved, little-endian). :class:`FrameDecoder` checks a
frame, converts it to float32, down-mixes and resamples it (soxr, keeping its state
across frames) and returns the samples to push into the stream.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

import numpy as np

from ..errors import ProtocolError
from .resample import Resampler

SAMPLE_FORMATS = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}
"""Accepted ``format`` values: signed 16-bit or 32-bit float samples, little-endian."""

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


@dataclass(frozen=True)
class AudioFormat:
    """What a client's binary frames hold.

    Attributes:
        sample_rate: samples per second per channel, 8000 to 192000.
        format: ``int16`` (full scale 32768) or ``float32`` (full scale 1.0; louder
            samples are clipped), both little-endian.
        channels: interleaved channels, 1 to 8; they are averaged to mono.
    """

    sample_rate: int
    format: str = "int16"
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return SAMPLE_FORMATS[self.format].itemsize * self.channels

    @classmethod
    def from_hello(cls, hello: dict) -> AudioFormat:
        """Read and check ``sample_rate``, ``format`` and ``channels`` of a hello message."""
        rate = hello.get("sample_rate")
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise ProtocolError(
                "bad_sample_rate",
                f"sample_rate must be a whole number of Hz, e.g. 16000, not {reprlib.repr(rate)}",
            )
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise ProtocolError(
                "bad_sample_rate",
                f"sample_rate {rate} Hz is out of range; send {MIN_SAMPLE_RATE}-"
                f"{MAX_SAMPLE_RATE} Hz (the daemon resamples to the model's rate)",
            )
        sample_format = hello.get("format", "int16")
        if not isinstance(sample_format, str) or sample_format not in SAMPLE_FORMATS:
            raise ProtocolError(
                "bad_format",
                f"format {reprlib.repr(sample_format)} is not supported; send "
                + " or ".join(repr(f) for f in SAMPLE_FORMATS)
                + " little-endian samples",
            )
        channels = hello.get("channels", 1)
        if not isinstance(channels, int) or isinstance(channels, bool):
            raise ProtocolError(
                "bad_channels", f"channels must be a whole number, not {reprlib.repr(channels)}"
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise ProtocolError(
                "bad_channels", f"channels must be 1 to {MAX_CHANNELS}, not {channels}"
            )
        return cls(rate, sample_format, channels)

    def describe(self) -> str:
        """``44100 Hz int16 x2``."""
        return f"{self.sample_rate} Hz {self.format} x{self.channels}"


class FrameDecoder:
    """One stream's binary frames -> mono float32 at ``target_rate``."""

    def __init__(self, audio_format: AudioFormat, target_rate: int) -> None:
        self.format = audio_format
        self._dtype = SAMPLE_FORMATS[audio_format.format]
        self._resample = Resampler(audio_format.sample_rate, target_rate)
        self.frames_in = 0  # sample frames received

    @property
    def seconds_in(self) -> float:
        """Seconds of audio received so far, at the client's rate."""
        return self.frames_in / self.format.sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        """Samples of one binary frame; :class:`ProtocolError` if it is not whole samples."""
        size = self.format.frame_bytes
        if len(data) % size:
            raise ProtocolError(
                "bad_frame",
                f"a frame of {len(data)} bytes is not a whole number of samples: "
                f"{self.format.format} x {self.format.channels} channel(s) takes {size} "
                "bytes per sample; the frame was dropped",
            )
        samples = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.format.channels)
        if self.format.format == "int16":
            block = samples.astype(np.float32) / 32768.0
        else:
            if not np.isfinite(samples).all():
                raise ProtocolError(
                    "bad_frame", "the frame holds NaN or infinite samples; the frame was dropped"
                )
            block = np.clip(samples, -1.0, 1.0).astype(np.float32)
        self.frames_in += len(samples)
        return self._resample(block)

    def flush(self) -> np.ndarray:
        """The resampler's tail once the client has ended the stream."""
        return self._resample.flush()
