"""How other sessions may hear an enrollment clip: a telephone line, a room, noise.

People enroll once, in a quiet moment, and are tracked for months on other microphones,
in other rooms. A profile made from the clip alone sits where the clip's own session
puts the voice, and another session moves the voice's embeddings away from it. So
enrollment also embeds each clip through a few fixed channel variants and adds them to
the profile at a lower weight (:attr:`streamer.enroll.EnrollOptions.variant_weight`):
the profile moves toward where the voice lands in other sessions, most of it still the
clip as recorded. The variants are deterministic, so one clip always makes one profile.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

TELEPHONE_HZ = (300.0, 3400.0)
"""The pass band of the telephone line (4th-order Butterworth)."""
ROOM_RT60_S = 0.5
"""Reverberation time of the room: an exponentially decaying noise tail."""
ROOM_DIRECT_TO_REVERB_DB = 3.0
"""Energy of the direct sound over the reverberant tail's."""
NOISE_SNR_DB = 15.0
"""Pink noise against the clip's mean power."""
SEED = 20261208


def variants(audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """The clip (mono float32) as a telephone line, a room and a noisy place hear it."""
    x = audio.astype(np.float64)
    rng = np.random.default_rng(SEED)
    return [
        v.astype(np.float32)
        for v in (_telephone(x, sample_rate), _room(x, sample_rate, rng), _noisy(x, rng))
    ]


def _telephone(x: np.ndarray, sample_rate: int) -> np.ndarray:
    high = min(TELEPHONE_HZ[1], 0.45 * sample_rate)
    sos = signal.butter(4, (TELEPHONE_HZ[0], high), btype="band", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _room(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(ROOM_RT60_S * sample_rate)) / sample_rate
    tail = rng.standard_normal(len(t)) * np.exp(-3 * np.log(10) * t / ROOM_RT60_S)
    tail *= np.sqrt(10 ** (-ROOM_DIRECT_TO_REVERB_DB / 10) / np.sum(tail**2))
    response = np.concatenate(([1.0], np.zeros(int(0.003 * sample_rate)), tail))
    return signal.fftconvolve(x, response)[: len(x)]


def _noisy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(len(x)))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # 1/f power: pink
    noise = np.fft.irfft(spectrum, len(x))
    power = np.mean(x**2) / 10 ** (NOISE_SNR_DB / 10)
    return x + noise * np.sqrt(power / max(np.mean(noise**2), 1e-20))
