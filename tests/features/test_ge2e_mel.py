import librosa
import numpy as np
import pytest

from streamer.evaluation.synth import speech
from streamer.features.ge2e_mel import GE2EMel


@pytest.fixture(scope="module")
def audio():
    return speech("alice", 4.0, seed=3)


@pytest.mark.parametrize("chunk", [1, 160, 317, 4000])
def test_streaming_frames_match_librosa(audio, chunk):
    reference = librosa.feature.melspectrogram(
        y=audio, sr=16000, n_fft=400, hop_length=160, n_mels=40
    ).T
    frontend = GE2EMel()
    frames = np.concatenate(
        [frontend.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    )
    # Frames whose window reaches past the end need librosa's right-hand padding, which a
    # stream cannot know; every frame it does emit matches.
    assert len(frames) == (len(audio) + 200 - 400) // 160 + 1
    np.testing.assert_allclose(frames, reference[: len(frames)], rtol=1e-4, atol=1e-6)


def test_each_frame_is_computed_once(audio):
    frontend = GE2EMel()
    first = frontend.push(audio[:8000])
    second = frontend.push(audio[8000:16000])
    assert len(first) + len(second) == (16000 + 200 - 400) // 160 + 1
