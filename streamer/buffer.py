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

KEEP_BYTES = 1 << 16
"""What a ring of its own keeps resident once its reader has caught up (64 kB: a second
of 16 kHz float32, more than a real-time stream's usual backlog); the pages a larger
backlog touched beyond it go back to the OS then (``MADV_DONTNEED``, one call), not when
the stream ends."""


class RingBuffer:
    """A fixed-capacity ring of the most recent samples of one stream.

    Samples are addressed by their absolute index since the stream started, so readers
    never track wrap-around. Writes never allocate; a read copies into ``out`` when given.
    After :meth:`clear` (the reader has taken everything) the next write starts at the
    front of the storage, so a ring read about as fast as it is written keeps using its
    first pages only; and a ring of its own gives back the pages a backlog touched past
    :data:`KEEP_BYTES`: its resident memory follows its current backlog, not its capacity
    nor its largest backlog so far.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype=np.float32) -> None:
        if capacity <= 0:
            raise ConfigError(f"a ring buffer needs a positive capacity, not {capacity}")
        shape = (capacity,) if channels == 1 else (capacity, channels)
        dtype = np.dtype(dtype)
        nbytes = capacity * channels * dtype.itemsize
        self._mapping: mmap.mmap | None = None
        if nbytes >= OWN_MAPPING_BYTES:
            # Private: pages given back read as zeros again (a shared one keeps them).
            flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
            self._mapping = mmap.mmap(-1, nbytes, flags=flags) if flags else mmap.mmap(-1, nbytes)
            self._data = np.frombuffer(self._mapping, dtype).reshape(shape)
        else:
            self._data = np.zeros(shape, dtype=dtype)
        self._row_bytes = channels * dtype.itemsize
        self._touched = 0  # rows of the storage written since pages were last given back
        self.capacity = capacity
        self.end = 0
        """Absolute index one past the newest sample written."""
        self._first = 0  # absolute index kept at the front of the storage

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(self._first, self.end - self.capacity)

    def clear(self) -> None:
        """Forget every sample held; the next one written goes to the front (and a ring
        of its own gives back the pages past :data:`KEEP_BYTES` that a backlog touched)."""
        self._first = self.end
        if self._mapping is not None and self._touched * self._row_bytes > KEEP_BYTES:
            self._give_back()

    def _give_back(self) -> None:
        start = KEEP_BYTES  # a multiple of the page size
        stop = -(-self._touched * self._row_bytes // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = min(stop, len(self._mapping))
        if stop > start and hasattr(self._mapping, "madvise"):
            self._mapping.madvise(mmap.MADV_DONTNEED, start, stop - start)
        self._touched = 0

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
            self._touched = self.capacity
        elif pos + first > self._touched:
            self._touched = pos + first
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
