import math

import numpy as np
import pytest

from streamer.evaluation.synth import speech
from streamer.features.fbank import KaldiFbank


def kaldi_fbank(wave: np.ndarray) -> np.ndarray:
    """Kaldi's compute-fbank-feats as its documentation describes it, one frame at a time,
    with the options pyannote passes (16 kHz, 25/10 ms, hamming, dither 0, 80 bins, input
    scaled to 16-bit integers, snip_edges, no energy)."""
    wave = np.asarray(wave, np.float64) * 32768
    length, shift, padded = 400, 160, 512
    bin_hz = 16000 / padded

    def mel(hz):
        return 1127 * math.log(1 + hz / 700)

    low, high = mel(20), mel(8000)
    delta = (high - low) / 81
    filters = np.zeros((80, padded // 2 + 1))
    for m in range(80):
        left, centre, right = low + m * delta, low + (m + 1) * delta, low + (m + 2) * delta
        for i in range(padded // 2):
            f = mel(i * bin_hz)
            if left < f < right:
                filters[m, i] = (
                    (f - left) / (centre - left) if f <= centre else (right - f) / (right - centre)
                )
    window = [0.54 - 0.46 * math.cos(2 * math.pi * n / (length - 1)) for n in range(length)]
    out = []
    for start in range(0, len(wave) - length + 1, shift):
        frame = wave[start : start + length].copy()
        frame -= frame.mean()
        emphasised = [frame[n] - 0.97 * frame[max(n - 1, 0)] for n in range(length)]
        windowed = np.zeros(padded)
        windowed[:length] = [emphasised[n] * window[n] for n in range(length)]
        power = np.abs(np.fft.fft(windowed)[: padded // 2 + 1]) ** 2
        out.append([math.log(max(filters[m] @ power, np.finfo(np.float32).eps)) for m in range(80)])
    return np.array(out)


@pytest.fixture(scope="module")
def audio():
    return speech("dave", 2.0, seed=7)


@pytest.fixture(scope="module")
def reference(audio):
    # The stream is preceded by half a frame of zeros, so frame t is centred on sample 160 t.
    return kaldi_fbank(np.concatenate([np.zeros(200), audio]))


@pytest.mark.parametrize("chunk", [1, 160, 333, 32000])
def test_streaming_frames_match_kaldi(audio, reference, chunk):
    frontend = KaldiFbank()
    pieces = [frontend.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    frames = np.concatenate(pieces)
    assert frames.dtype == np.float32 and frames.shape == reference.shape
    np.testing.assert_allclose(frames, reference, rtol=0, atol=1e-4)


def test_silence_is_floored_not_minus_infinity():
    frames = KaldiFbank().push(np.zeros(1640, np.float32))
    assert len(frames) == 10
    np.testing.assert_allclose(frames, math.log(np.finfo(np.float32).eps))
