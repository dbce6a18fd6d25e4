"""Reading audio files: any common format, rate and channel count -> mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError

FORMATS = "flac, mp3, ogg, wav"


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open ``path`` for reading, or raise :class:`AudioError` with what to do."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path} is a folder; pass an audio file ({FORMATS})")
    if path.stat().st_size == 0:
        raise AudioError(f"{path} is empty (0 bytes); pass an audio file ({FORMATS})")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip() or "unrecognised data"
        raise AudioError(
            f"{path}: cannot decode audio ({detail}); supported formats: {FORMATS}"
        ) from exc
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path} holds no audio samples")
    return f


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average channels: ``(n, channels)`` or ``(n,)`` -> ``(n,)`` float32."""
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` (resampled with soxr)."""
    with open_audio(path) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{path}: the file is truncated or corrupt ({exc})") from exc
        rate = f.samplerate
    mono = to_mono(data)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return mono
