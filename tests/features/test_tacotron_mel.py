"""The Tacotron log mel frontend against librosa's mel of the same parameters."""

import librosa
import numpy as np
import pytest

from streamer.evaluation.synth import speech
from streamer.features.tacotron_mel import TacotronMel


@pytest.fixture(scope="module")
def audio():
    return speech("alice", 3.0, seed=3, sample_rate=22050)


def librosa_log_mel(audio: np.ndarray) -> np.ndarray:
    """simple-speaker-embedding's features, from librosa: ``(frames, 80)``."""
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=22050,
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=80,
        fmin=0.0,
        fmax=8000.0,
    )
    return np.log(np.maximum(mel, 1e-5)).T


def streamed(audio: np.ndarray, chunk: int) -> np.ndarray:
    frontend = TacotronMel()
    pieces = [frontend.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    return np.concatenate(pieces)


@pytest.mark.parametrize("chunk", [1, 256, 441, 5000])
def test_streaming_frames_match_librosa(audio, chunk):
    frames = streamed(audio, chunk)
    # Frames past the end would need the reflection of samples not yet heard.
    assert frames.shape == ((len(audio) + 512 - 1024) // 256 + 1, 80)
    reference = librosa_log_mel(audio)
    assert np.abs(frames - reference[: len(frames)]).max() <= 1e-5


def test_nothing_until_the_start_can_be_reflected(audio):
    frontend = TacotronMel()
    assert frontend.push(audio[:512]).shape == (0, 80)
    assert frontend.push(audio[512:1024]).shape == (3, 80)  # centres 0, 256, 512


def test_silence_is_clamped_and_loud_audio_clipped(audio):
    assert np.all(TacotronMel().push(np.zeros(4096, np.float32)) == np.float32(np.log(1e-5)))
    loud = streamed(audio * 4, 441)
    clipped = librosa_log_mel(np.clip(audio * 4, -1, 1))
    assert np.abs(loud - clipped[: len(loud)]).max() <= 1e-5
