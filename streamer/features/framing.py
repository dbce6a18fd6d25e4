"""Streaming framing shared by the feature frontends."""

from __future__ import annotations

from functools import cache
from typing import Protocol

import numpy as np


class Frontend(Protocol):
    """What the window worker needs from a feature frontend.

    ``push`` takes float32 samples at ``sample_rate`` and returns the feature frames
    (``(n, n_features)`` float32) that became complete; frame ``t`` is centred on
    sample ``t * hop_samples`` of the stream.
    """

    sample_rate: int
    hop_samples: int
    n_features: int

    def push(self, samples: np.ndarray) -> np.ndarray: ...


def shared(build):
    """``build()``'s arrays (a frontend's window, its filter bank), built once per process
    and shared read-only by every stream's frontend instead of a copy in each."""

    @cache
    def tables() -> tuple[np.ndarray, ...]:
        arrays = build()
        for array in arrays:
            array.flags.writeable = False
        return arrays

    return tables


class Framer:
    """Cuts a stream into overlapping frames as samples arrive.

    Frame ``t`` covers stream samples ``[t*hop - left_pad, t*hop - left_pad + length)``;
    samples before the stream start are zeros (librosa's ``center=True`` with constant
    padding when ``left_pad = length // 2``). Only the tail that the next frame needs is
    kept between pushes.
    """

    def __init__(self, length: int, hop: int, left_pad: int) -> None:
        self.length = length
        self.hop = hop
        # A frame and 4096 samples; a longer push grows it (once, to that push's size).
        self._buf = np.zeros(length + (1 << 12), dtype=np.float32)
        self._n = left_pad  # valid samples in _buf (the padding counts)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples; return the newly complete frames as ``(n, length)`` (a view)."""
        need = self._n + len(samples)
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = samples
        self._n = need
        n_frames = 0 if need < self.length else (need - self.length) // self.hop + 1
        if n_frames == 0:
            return np.empty((0, self.length), dtype=np.float32)
        frames = np.lib.stride_tricks.as_strided(
            self._buf, shape=(n_frames, self.length), strides=(self.hop * 4, 4), writeable=False
        ).copy()
        consumed = n_frames * self.hop
        keep = need - consumed
        self._buf[:keep] = self._buf[consumed:need]
        self._n = keep
        return frames
