"""The rf5-gru input: Tacotron's log mel spectrogram at 22 050 Hz, 1024 / 256, 80 bands, 0-8 kHz.

As simple-speaker-embedding computes it (its ``TacotronSTFT``): audio clamped to [-1, 1],
reflect-padded by half a window at the start, periodic Hann window of 1024 samples,
magnitude (not power) spectrum, Slaney mel filters from librosa, then ``log(max(mel,
1e-5))``. Frame for frame that is ``log(max(librosa.feature.melspectrogram(y, sr=22050,
n_fft=1024, hop_length=256, n_mels=80, fmin=0, fmax=8000, power=1, pad_mode="reflect"),
1e-5))``. The encoder, not this frontend, applies the model's ``min_log_value``
normalisation, as the reference wrapper does.
"""

from __future__ import annotations

import librosa
import numpy as np

from .framing import Framer, shared

SAMPLE_RATE = 22_050
N_FFT = 1024
HOP = 256
N_MELS = 80
FMIN_HZ = 0.0
FMAX_HZ = 8000.0
CLIP = 1e-5  # smallest mel magnitude before the log


@shared
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """The Hann window (float64) and the mel filters, transposed."""
    window = librosa.filters.get_window("hann", N_FFT, fftbins=True)
    mel = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN_HZ, fmax=FMAX_HZ
    )
    return window, mel.T.copy()


class TacotronMel:
    """Streaming 80-bin log mel frames, each computed once as its samples arrive.

    The reflect padding mirrors samples 1..512 around the first one, so nothing is emitted
    until 513 samples have arrived; from then on frames come as their samples complete.
    """

    sample_rate = SAMPLE_RATE
    hop_samples = HOP
    n_features = N_MELS

    def __init__(self) -> None:
        self._framer = Framer(N_FFT, HOP, left_pad=0)
        self._head: np.ndarray | None = np.zeros(0, dtype=np.float32)  # until padded
        self._window, self._mel_t = _tables()

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        if self._head is not None:
            head = np.concatenate([self._head, samples])
            if len(head) <= N_FFT // 2:
                self._head = head
                return np.empty((0, N_MELS), dtype=np.float32)
            self._head = None
            samples = np.concatenate([head[N_FFT // 2 : 0 : -1], head])
        frames = self._framer.push(samples)
        if len(frames) == 0:
            return np.empty((0, N_MELS), dtype=np.float32)
        # In float64, as librosa does: quiet bands are far below the frame's energy.
        magnitude = np.abs(np.fft.rfft(frames * self._window, n=N_FFT, axis=1))
        mel = magnitude @ self._mel_t
        return np.log(np.maximum(mel, CLIP)).astype(np.float32, copy=False)
