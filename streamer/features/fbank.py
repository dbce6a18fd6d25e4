"""The WeSpeaker ResNet34 input: Kaldi's 80-bin log mel filterbank at 16 kHz, streamed.

Each frame is what ``compute-fbank-feats`` (and ``torchaudio.compliance.kaldi.fbank`` with
pyannote's arguments) gives for it: samples scaled to the 16-bit range (x 32768), 25 ms
frames every 10 ms, no dither, the frame's DC offset removed, pre-emphasis 0.97 (the first
sample against itself), a symmetric Hamming window, zero-padding to a 512-point FFT, the
power spectrum, 80 triangular filters equally spaced on Kaldi's mel scale
``1127 ln(1 + f/700)`` from 20 Hz to Nyquist (the Nyquist bin gets no weight), and the
natural log floored at float32 epsilon. No energy column.

Kaldi's ``snip_edges`` frames start at sample ``k * 160``; here the stream is preceded by
200 zero samples, so frame ``t`` is centred on sample ``t * 160`` as the
:class:`~streamer.features.Frontend` protocol requires, and every frame is a Kaldi frame of
the audio. Mean normalisation (CMN) is per window and belongs to the encoder.
"""

from __future__ import annotations

import numpy as np

from .framing import Framer, shared

SAMPLE_RATE = 16_000
FRAME_LENGTH = 400
HOP = 160
N_FFT = 512
N_MELS = 80
LOW_HZ = 20.0
PREEMPHASIS = 0.97
INPUT_SCALE = 32768.0
LOG_FLOOR = float(np.finfo(np.float32).eps)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_banks() -> np.ndarray:
    """``(N_FFT // 2 + 1, N_MELS)`` triangular filters on Kaldi's mel scale, 20 Hz to Nyquist."""
    edges = np.linspace(_mel(LOW_HZ), _mel(SAMPLE_RATE / 2), N_MELS + 2)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    mel = _mel(np.arange(N_FFT // 2) * SAMPLE_RATE / N_FFT)[:, None]
    rising, falling = (mel - left) / (centre - left), (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([banks, np.zeros((1, N_MELS))])  # the Nyquist bin has no weight


@shared
def _tables() -> tuple[np.ndarray, np.ndarray]:
    return np.hamming(FRAME_LENGTH), _mel_banks()


class KaldiFbank:
    """Streaming 80-bin Kaldi log mel frames, each computed once as its samples arrive."""

    sample_rate = SAMPLE_RATE
    hop_samples = HOP
    n_features = N_MELS

    def __init__(self) -> None:
        self._framer = Framer(FRAME_LENGTH, HOP, left_pad=FRAME_LENGTH // 2)
        self._window, self._banks = _tables()

    def push(self, samples: np.ndarray) -> np.ndarray:
        frames = self._framer.push(samples)
        if len(frames) == 0:
            return np.empty((0, N_MELS), dtype=np.float32)
        x = frames.astype(np.float64) * INPUT_SCALE
        x -= x.mean(axis=1, keepdims=True)
        x[:, 1:] -= PREEMPHASIS * x[:, :-1]
        x[:, 0] *= 1.0 - PREEMPHASIS
        x *= self._window
        spectrum = np.fft.rfft(x, n=N_FFT, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        return np.log(np.maximum(power @ self._banks, LOG_FLOOR)).astype(np.float32)
