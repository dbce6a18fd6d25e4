import numpy as np
import pytest

from streamer.buffer import RingBuffer
from streamer.errors import AudioError


def test_reads_by_absolute_index_across_wraparound():
    ring = RingBuffer(10)
    data = np.arange(27, dtype=np.float32)
    for start in range(0, 27, 4):
        ring.write(data[start : start + 4])
    assert ring.end == 27 and ring.start == 17
    np.testing.assert_array_equal(ring.read(17, 27), data[17:27])
    np.testing.assert_array_equal(ring.read(19, 22), data[19:22])


def test_read_into_preallocated_output():
    ring = RingBuffer(8, channels=2)
    frames = np.arange(24, dtype=np.float32).reshape(12, 2)
    ring.write(frames)
    out = np.zeros((3, 2), np.float32)
    assert ring.read(9, 12, out=out) is out
    np.testing.assert_array_equal(out, frames[9:12])


def test_write_larger_than_capacity_keeps_newest():
    ring = RingBuffer(5)
    ring.write(np.arange(12, dtype=np.float32))
    np.testing.assert_array_equal(ring.read(7, 12), np.arange(7, 12))


def test_reading_overwritten_samples_is_an_error():
    ring = RingBuffer(4)
    ring.write(np.zeros(10, np.float32))
    with pytest.raises(AudioError, match="not in the buffer"):
        ring.read(2, 6)
