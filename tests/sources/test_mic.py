"""The microphone source through a REAL PortAudio device, and its errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamer.errors import AudioError, ConfigError
from streamer.evaluation.synth import speech
from streamer.sources import mic as mic_module
from streamer.sources.mic import Microphone, find_input_device, load_sounddevice


def test_records_what_the_device_hears_at_its_own_rate(pulse_mic):
    mic = Microphone(pulse_mic.device, target_rate=16000)
    assert mic.sample_rate != 16000  # the pulse device runs at 44.1 or 48 kHz: resampled
    audio = speech("alice", 2.0, seed=1)
    blocks: list[np.ndarray] = []
    enough = threading.Event()

    def on_audio(block: np.ndarray) -> None:
        blocks.append(block)
        if sum(map(len, blocks)) >= len(audio):
            enough.set()

    mic.start(on_audio)
    try:
        # Silence after the speech pushes it through the sound server's buffers.
        pulse_mic.feed(np.concatenate([audio, np.zeros(8000, np.float32)])).join()
        assert enough.wait(timeout=10), "the microphone delivered too little audio"
    finally:
        mic.stop()
    got = np.concatenate(blocks)
    assert got.dtype == np.float32 and got.ndim == 1
    # The fed speech comes out at the same level and with the same shape over time.
    energy = lambda x: np.sqrt(np.mean(x.reshape(-1, 800) ** 2, axis=1))  # noqa: E731
    fed = energy(audio[: len(audio) // 800 * 800])
    start = int(np.argmax(np.abs(got) > 0.01))  # where the speech begins in the recording
    heard = got[start : start + len(fed) * 800]
    heard = energy(heard[: len(heard) // 800 * 800])
    assert len(heard) == len(fed)
    assert abs(20 * np.log10(heard.mean() / fed.mean())) < 1.5
    assert np.corrcoef(fed, heard)[0, 1] > 0.9


def test_unknown_device_lists_the_real_ones(pulse_mic):
    with pytest.raises(ConfigError, match=r"no input device 'no such mic'.*'pulse'"):
        Microphone("no such mic")
    with pytest.raises(ConfigError, match="no input device 99"):
        Microphone("99")


def test_a_rate_the_device_refuses_says_which_work(pulse_mic):
    with pytest.raises(AudioError, match=r"does not support 1000000 Hz; it supports .*--mic-rate"):
        Microphone(pulse_mic.device, sample_rate=1_000_000)


@pytest.mark.parametrize(
    "raised", ["PortAudio library not found", "libportaudio.so.2: cannot open shared object"]
)
def test_missing_portaudio_names_the_package_once(monkeypatch, raised):
    def no_portaudio(name):
        raise OSError(raised)

    monkeypatch.setattr(mic_module.importlib, "import_module", no_portaudio)
    with pytest.raises(AudioError) as error:
        load_sounddevice()
    message = str(error.value)
    assert message.startswith("PortAudio library not found") and raised in message
    assert message.count("PortAudio library not found") == 1
    assert "apt-get install libportaudio2" in message


class _NoInputs:
    """sounddevice as on a machine with speakers but no microphone."""

    class PortAudioError(Exception):
        pass

    default = type("Default", (), {"device": [-1, 0]})()

    @staticmethod
    def query_devices(device=None, kind=None):
        return [{"index": 0, "name": "speakers", "hostapi": 0, "max_input_channels": 0}]

    @staticmethod
    def query_hostapis():
        return [{"name": "ALSA"}]


def test_no_input_device_is_a_clear_error():
    with pytest.raises(AudioError, match="no input device found"):
        find_input_device(None, _NoInputs)
