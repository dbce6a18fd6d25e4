"""Blocks of audio at a source's own rate and channel count -> mono float32 at the model's rate."""

from __future__ import annotations

import numpy as np
import soxr

from ..audio import to_mono


class Resampler:
    """Down-mixes and resamples consecutive blocks of one live source (soxr, streaming).

    The resampler keeps its filter state between blocks, so a stream cut into blocks
    gives the same samples as the whole signal; :meth:`flush` returns the tail it still
    holds once the source has ended.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
            if in_rate != out_rate
            else None
        )

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``(n, channels)`` or ``(n,)`` float32 at ``in_rate`` -> mono float32 at ``out_rate``."""
        mono = to_mono(block)  # always a fresh array: callers may reuse ``block``
        return mono if self._stream is None else self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """What the filter still holds, once the source has ended."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
