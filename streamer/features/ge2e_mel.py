"""The GE2E encoder's input: a 40-band power mel spectrogram at 16 kHz, 25 ms / 10 ms.

It matches ``librosa.feature.melspectrogram(y, sr=16000, n_fft=400, hop_length=160,
n_mels=40)`` frame for frame (periodic Hann window, centred frames with zero padding,
Slaney mel filters), which is how the encoder was trained; it is not log-compressed.
"""

from __future__ import annotations

import librosa
import numpy as np

from .framing import Framer, shared

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 40


@shared
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """The periodic Hann window and the mel filters, transposed."""
    window = librosa.filters.get_window("hann", N_FFT, fftbins=True).astype(np.float32)
    return window, librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).T.copy()


class GE2EMel:
    """Streaming 40-bin power mel frames, each computed once as its samples arrive."""

    sample_rate = SAMPLE_RATE
    hop_samples = HOP
    n_features = N_MELS

    def __init__(self) -> None:
        self._framer = Framer(N_FFT, HOP, left_pad=N_FFT // 2)
        self._window, self._mel_t = _tables()

    def push(self, samples: np.ndarray) -> np.ndarray:
        frames = self._framer.push(samples)
        if len(frames) == 0:
            return np.empty((0, N_MELS), dtype=np.float32)
        frames *= self._window
        spectrum = np.fft.rfft(frames, n=N_FFT, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        return (power @ self._mel_t).astype(np.float32, copy=False)
