"""Audio files as a stream of small chunks at the model's rate."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..audio import open_audio, to_mono
from ..errors import AudioError


def paced(chunks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Yield ``chunks`` no faster than real time, as a microphone would deliver them."""
    started = time.monotonic()
    sent = 0
    for chunk in chunks:
        delay = started + sent / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent += len(chunk)
        yield chunk


def array_chunks(audio: np.ndarray, sample_rate: int, chunk_s: float = 0.02):
    """Cut in-memory audio into chunks of ``chunk_s``."""
    size = max(1, int(chunk_s * sample_rate))
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


def file_chunks(
    path: str | Path, sample_rate: int, chunk_s: float = 0.02, realtime: bool = False
) -> Iterator[np.ndarray]:
    """Yield mono float32 chunks of about ``chunk_s`` at ``sample_rate``, decoding lazily.

    With ``realtime`` the chunks come at wall-clock pace, as from a microphone.
    """
    chunks = _decode(path, sample_rate, chunk_s)
    return paced(chunks, sample_rate) if realtime else chunks


def _decode(path: str | Path, sample_rate: int, chunk_s: float) -> Iterator[np.ndarray]:
    with open_audio(path) as f:
        resampler = (
            soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
            if f.samplerate != sample_rate
            else None
        )
        block = max(1, int(chunk_s * f.samplerate))
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{path}: the file is truncated or corrupt ({exc})") from exc
            last = len(data) < block
            chunk = to_mono(data)
            if resampler is not None:
                chunk = resampler.resample_chunk(chunk, last=last)
            if len(chunk):
                yield chunk
            if last:
                return
