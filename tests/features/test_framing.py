import tracemalloc

import numpy as np
import pytest

from streamer.features.fbank import KaldiFbank
from streamer.features.framing import Framer
from streamer.features.ge2e_mel import GE2EMel
from streamer.features.tacotron_mel import TacotronMel


@pytest.mark.parametrize("frontend", [GE2EMel, TacotronMel, KaldiFbank])
def test_a_streams_frontend_takes_little_memory(frontend):
    """Every stream builds its own frontend: its framing buffer holds a frame and a few
    thousand samples (it grows when a push needs more), not megabytes (it was
    ``np.zeros(length + 1 << 12)``: (length + 1) * 4096 samples, 6.6 MB for GE2E's
    400-sample frames, 17 MB for Tacotron's); its window and filter bank are the
    process's, shared (they were a copy per stream: 33 kB for GE2E, 170 kB for the
    others)."""
    frontend()  # filter banks and caches built once per process are not the point
    tracemalloc.start()
    try:
        kept = frontend()
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept is not None
    assert allocated < 32 * 1024, f"{frontend.__name__}() allocates {allocated / 1e3:.0f} kB"


def test_the_framer_grows_for_a_long_push_and_frames_stay_exact():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(40_000).astype(np.float32)
    framer = Framer(400, 160, left_pad=200)
    padded = np.concatenate([np.zeros(200, np.float32), audio])
    frames = np.concatenate([framer.push(audio[:300]), framer.push(audio[300:])])
    expected = np.stack([padded[i * 160 : i * 160 + 400] for i in range(len(frames))])
    assert len(frames) == (len(padded) - 400) // 160 + 1
    np.testing.assert_array_equal(frames, expected)
