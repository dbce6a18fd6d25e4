"""Per-stream ring buffer addressed by absolute sample index."""

from __future__ import annotations

import mmap

import numpy as np

from .errors import AudioError, ConfigError

OWN_MAPPING_BYTES = 1 << 20
"""A ring at least this big gets memory of its own from the OS (an anonymous mapping),
not from malloc: its pages are touched only as far as samples are written, and they go
back to the OS when the ring goes. (glibc raises its mmap threshold to the size of each
mapped block freed, so after the first stream closes, each new stream's ring came from
the heap, memset whole by calloc, and stayed there after the stream ended.)"""


class RingBuffer:
    """A fixed-capacity ring of the most recent samples of one stream.

    Samples are addressed by their absolute index since the stream started, so readers
    never track wrap-around. Writes never allocate; a read copies into ``out`` when given.
    After :meth:`clear` (the reader has taken everything) the next write starts at the
    front of the storage, so a ring read about as fast as it is written keeps using its
    first pages only: its resident memory follows its largest backlog, not its capacity.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype=np.float32) -> None:
        if capacity <= 0:
            raise ConfigError(f"a ring buffer needs a positive capacity, not {capacity}")
        shape = (capacity,) if channels == 1 else (capacity, channels)
        dtype = np.dtype(dtype)
        nbytes = capacity * channels * dtype.itemsize
        if nbytes >= OWN_MAPPING_BYTES:
            self._data = np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)
        else:
            self._data = np.zeros(shape, dtype=dtype)
        self.capacity = capacity
        self.end = 0
        """Absolute index one past the newest sample written."""
        self._first = 0  # absolute index kept at the front of the storage

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(self._first, self.end - self.capacity)

    def clear(self) -> None:
        """Forget every sample held; the next one written goes to the front."""
        self._first = self.end

    def write(self, samples: np.ndarray) -> None:
        """Append samples, overwriting the oldest ones when full."""
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            samples = samples[-self.capacity :]
            self.end += n - self.capacity
            n = self.capacity
        pos = (self.end - self._first) % self.capacity
        first = min(n, self.capacity - pos)
        self._data[pos : pos + first] = samples[:first]
        if first < n:
            self._data[: n - first] = samples[first:]
        self.end += n

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` by absolute index (a copy, into ``out`` if given)."""
        if start < self.start or stop > self.end or start > stop:
            raise AudioError(
                f"samples [{start}, {stop}) are not in the buffer (it holds "
                f"[{self.start}, {self.end})); raise the buffer capacity"
            )
        n = stop - start
        if out is None:
            out = np.empty((n,) + self._data.shape[1:], dtype=self._data.dtype)
        pos = (start - self._first) % self.capacity
        first = min(n, self.capacity - pos)
        out[:first] = self._data[pos : pos + first]
        if first < n:
            out[first:n] = self._data[: n - first]
        return out
