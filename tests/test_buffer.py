import os
import sys

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


def test_after_clear_writes_start_at_the_front_and_reads_stay_absolute():
    ring = RingBuffer(8)
    data = np.arange(30, dtype=np.float32)
    ring.write(data[:5])
    ring.clear()
    assert ring.start == ring.end == 5
    ring.write(data[5:11])
    np.testing.assert_array_equal(ring._data[:6], data[5:11])  # at the front
    np.testing.assert_array_equal(ring.read(5, 11), data[5:11])
    ring.write(data[11:30])  # wraps past its capacity as before
    assert ring.start == 22
    np.testing.assert_array_equal(ring.read(22, 30), data[22:30])
    with pytest.raises(AudioError, match="not in the buffer"):
        ring.read(4, 6)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_large_rings_hold_only_the_pages_written_and_give_them_back():
    """20 stream rings of 30 s (1.9 MB each) with 1 s written: about 1.3 MB resident, not
    38 MB, also after a large block was freed (glibc then serves blocks of that size from
    its heap, zeroed whole); and all of it goes back when the rings go."""
    np.ones(1 << 20).sum()  # a freed 8 MB block raises glibc's mmap threshold
    before = rss_mb()
    kept = []  # what a stream leaves behind on the heap (its events, say)
    for _ in range(2):  # the second round reuses what the first freed
        rings = []
        for _ in range(20):
            rings.append(RingBuffer(30 * 16_000))
            rings[-1].write(np.ones(16_000, np.float32))
            kept.append(np.ones(1000))
        grown = rss_mb() - before
        del rings
        assert grown < 5, f"{grown:.1f} MB resident for 20 rings holding 1 s each"
        assert rss_mb() - before < 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_ring_gives_back_what_a_backlog_touched_once_its_reader_caught_up():
    """A stream that fell 20 s behind touched 20 s of its ring; once the worker has taken
    it all, the ring keeps a second of pages, not the backlog's (it kept them until the
    stream ended: 1.1 MB per stream of a daemon that had fallen behind)."""
    ring = RingBuffer(30 * 16_000)
    data = np.random.default_rng(0).standard_normal(60 * 16_000).astype(np.float32)
    taken = np.ones(20 * 16_000, np.float32)  # the worker's copy, resident before
    before = rss_mb()
    for start in range(0, 20 * 16_000, 1600):  # the backlog builds up
        ring.write(data[start : start + 1600])
    backlog_mb = rss_mb() - before
    ring.read(0, ring.end, out=taken)
    ring.clear()
    kept_mb = rss_mb() - before
    np.testing.assert_array_equal(taken, data[: 20 * 16_000])
    assert backlog_mb > 1.0, f"the backlog took only {backlog_mb:.2f} MB"
    assert kept_mb < 0.2, f"{kept_mb:.2f} MB kept after the backlog was read"
    # Writing goes on as before: from the front, across the pages given back, wrapping.
    for start in range(20 * 16_000, 55 * 16_000, 16_000):
        ring.write(data[start : start + 16_000])
    assert ring.start == 25 * 16_000
    np.testing.assert_array_equal(ring.read(ring.start, ring.end), data[ring.start : ring.end])


def test_a_small_backlog_keeps_its_pages():
    """Up to a second of audio the pages stay (no system call on every clear)."""
    ring = RingBuffer(30 * 16_000)
    ring.write(np.ones(16_000, np.float32))
    ring.read(0, 16_000)
    ring.clear()
    assert ring._touched == 16_000  # nothing given back: still counted as touched
