"""Per-stream ring buffer addressed by absolute sample index."""

from __future__ import annotations

import numpy as np

from .errors import AudioError, ConfigError


class RingBuffer:
    """A fixed-capacity float32 ring of the most recent samples of one stream.

    Samples are addressed by their absolute index since the stream started, so readers
    never track wrap-around. Writes never allocate; a read copies into ``out`` when given.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype=np.float32) -> None:
        if capacity <= 0:
            raise ConfigError(f"a ring buffer needs a positive capacity, not {capacity}")
        shape = (capacity,) if channels == 1 else (capacity, channels)
        self._data = np.zeros(shape, dtype=dtype)
        self.capacity = capacity
        self.end = 0
        """Absolute index one past the newest sample written."""

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    def write(self, samples: np.ndarray) -> None:
        """Append samples, overwriting the oldest ones when full."""
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            samples = samples[-self.capacity :]
            self.end += n - self.capacity
            n = self.capacity
        pos = self.end % self.capacity
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
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        out[:first] = self._data[pos : pos + first]
        if first < n:
            out[first:n] = self._data[: n - first]
        return out
