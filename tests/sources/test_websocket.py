"""Binary frames -> float32 at the model's rate: formats, channels, resampling, bad frames."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from streamer.errors import ProtocolError
from streamer.sources.websocket import AudioFormat, FrameDecoder


def decode_all(decoder: FrameDecoder, data: bytes, frame_bytes: int) -> np.ndarray:
    out = [decoder.decode(data[i : i + frame_bytes]) for i in range(0, len(data), frame_bytes)]
    return np.concatenate([*out, decoder.flush()])


def test_int16_stereo_is_scaled_and_down_mixed():
    left = np.array([0, 16384, -32768, 32767], np.int16)
    right = np.array([0, 0, -32768, -32767], np.int16)
    data = np.stack([left, right], axis=1).astype("<i2").tobytes()
    decoder = FrameDecoder(AudioFormat(16000, "int16", 2), 16000)
    np.testing.assert_allclose(decoder.decode(data), [0.0, 0.25, -1.0, 0.0], atol=1e-4)
    assert decoder.seconds_in == 4 / 16000


def test_resampling_in_frames_equals_resampling_the_whole():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(44100)).astype(np.float32)
    decoder = FrameDecoder(AudioFormat(44100, "float32", 1), 16000)
    framed = decode_all(decoder, audio.astype("<f4").tobytes(), 4 * 441)
    whole = soxr.resample(audio, 44100, 16000, quality="HQ")
    assert len(framed) == len(whole) == 16000
    np.testing.assert_allclose(framed, whole, atol=1e-5)


def test_float32_is_clipped_to_full_scale():
    data = np.array([2.0, -3.0, 0.5], "<f4").tobytes()
    decoded = FrameDecoder(AudioFormat(16000, "float32"), 16000).decode(data)
    np.testing.assert_array_equal(decoded, [1.0, -1.0, 0.5])


@pytest.mark.parametrize(
    "hello, code",
    [
        ({}, "bad_sample_rate"),
        ({"sample_rate": 7999}, "bad_sample_rate"),
        ({"sample_rate": 192001}, "bad_sample_rate"),
        ({"sample_rate": 16000.5}, "bad_sample_rate"),
        ({"sample_rate": True}, "bad_sample_rate"),
        ({"sample_rate": 16000, "format": "s16le"}, "bad_format"),
        ({"sample_rate": 16000, "channels": 9}, "bad_channels"),
        ({"sample_rate": 16000, "channels": "2"}, "bad_channels"),
    ],
)
def test_bad_hellos(hello, code):
    with pytest.raises(ProtocolError) as error:
        AudioFormat.from_hello(hello)
    assert error.value.code == code


def test_defaults_and_whole_numbers():
    assert AudioFormat.from_hello({"sample_rate": 48000.0}) == AudioFormat(48000, "int16", 1)


def test_a_frame_must_hold_whole_sample_frames():
    decoder = FrameDecoder(AudioFormat(16000, "int16", 2), 16000)
    with pytest.raises(ProtocolError, match="not a whole number of samples.*4 bytes per sample"):
        decoder.decode(bytes(6))
    assert decoder.decode(b"").size == 0
