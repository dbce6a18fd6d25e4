"""``streamer devices`` and ``streamer enroll NAME --mic`` through a REAL PortAudio device."""

from __future__ import annotations

import json

import numpy as np

from streamer.evaluation.synth import speech


def test_devices_lists_the_input_devices(cli, pulse_mic):
    result = cli("devices")
    assert result.code == 0, result.err
    rows = [line.split() for line in result.out.splitlines()]
    assert any("pulse" in row for row in rows)
    assert "default rate" in result.out


def test_enroll_from_the_microphone(cli, pulse_mic, tmp_path):
    store = tmp_path / "store"
    # Eight seconds of speech; five are recorded once the model is loaded and the mic opens.
    feeding = pulse_mic.feed(np.concatenate([speech("erin", 8.0, seed=91), np.zeros(8000)]))
    result = cli("enroll", "erin", "--mic", pulse_mic.device, "--seconds", 5, "--profiles", store)
    feeding.stop()
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("erin: ") and "recorded with device" in lines[0]
    assert lines[1].split()[0] == "ok"
    assert lines[-1].startswith("saved profile 'erin'")
    assert json.loads((store / "erin.json").read_text())["speech_s"] > 4
    assert "dBFS" in result.err and "speech" in result.err  # the live meter


def test_enroll_mic_errors(cli, pulse_mic, tmp_path, no_model):
    assert cli("enroll", "erin", "--mic", "nosuch").error.startswith("no input device 'nosuch'")
    result = cli("enroll", "erin", "a.wav", "--mic")
    assert result.code == 2 and "not both" in result.err
    assert "at most" in cli("enroll", "erin", "--mic", "--seconds", 1000).error
