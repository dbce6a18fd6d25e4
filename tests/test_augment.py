"""The session conditions of the mismatched benchmark, measured on real (synthetic) speech."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.errors import ConfigError
from streamer.evaluation.augment import (
    Microphone,
    Noise,
    Room,
    Session,
    SessionOptions,
    add_noise,
    coloured_noise,
    draw_noise,
    draw_session,
    filter_microphone,
)
from streamer.evaluation.synth import speech

SR = 16000


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return speech("alice", 6.0, seed=3)


def band_db(audio: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    """Power of ``audio`` between two frequencies, in dB."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return 10 * np.log10(spectrum[(freqs >= lo_hz) & (freqs < hi_hz)].sum() + 1e-30)


def test_telephone_band_limit_removes_energy_outside_200_to_3800_hz(voice):
    phone = filter_microphone(voice, SR, Microphone(250.0, 3600.0, 48))
    # the speech band passes, what lies above 4.5 kHz and below 120 Hz is gone
    assert band_db(phone, 500, 3000) - band_db(voice, 500, 3000) > -1.0
    assert band_db(phone, 4500, 8000) - band_db(voice, 4500, 8000) < -30.0
    assert band_db(phone, 0, 120) - band_db(voice, 0, 120) < -25.0
    assert len(phone) == len(voice) and phone.dtype == np.float32


def test_tilted_microphone_is_gentle(voice):
    bright = filter_microphone(voice, SR, Microphone(80.0, 7000.0, 12, 2000.0, 6.0))
    change_high = band_db(bright, 3000, 5000) - band_db(voice, 3000, 5000)
    change_low = band_db(bright, 200, 800) - band_db(voice, 200, 800)
    assert 4.0 < change_high < 7.0 and abs(change_low) < 1.5


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
@pytest.mark.parametrize("kind", ["colour", "babble"])
def test_noise_is_added_at_the_snr_asked_for_against_the_speech(voice, kind, snr_db):
    audio = np.concatenate([np.zeros(SR, np.float32), voice, np.zeros(SR, np.float32)])
    mask = np.zeros(len(audio), bool)
    mask[SR : SR + len(voice)] = True
    babble = [speech(name, 4.0, seed=1) for name in ("bob", "carol", "dave")]
    noisy = add_noise(audio, mask, Noise(kind, snr_db, -3.01, seed=5), SR, babble)
    noise = noisy - audio
    measured = 10 * np.log10(np.mean(audio[mask] ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    # the noise runs through the silences too: it is a background, not a gate
    assert np.mean(noise[: SR // 2] ** 2) > 0.3 * np.mean(noise**2)


def test_babble_is_other_voices_and_colour_falls_with_frequency():
    pink = coloured_noise(SR * 8, -3.01, SR, seed=1)
    brown = coloured_noise(SR * 8, -6.02, SR, seed=1)
    # two octaves from 500-1000 Hz to 2000-4000 Hz: the bands are 4x wider, so the power
    # per band rises 6 dB for white noise and stays ~0 dB (pink) / falls ~6 dB (brown)
    assert abs(band_db(pink, 2000, 4000) - band_db(pink, 500, 1000)) < 1.5
    assert band_db(brown, 2000, 4000) - band_db(brown, 500, 1000) < -4.0
    assert np.array_equal(pink, coloured_noise(SR * 8, -3.01, SR, seed=1))
    state = np.random.get_state()[1].copy()
    coloured_noise(SR, 0.0, SR, seed=2)
    assert np.array_equal(np.random.get_state()[1], state)  # global generator untouched


@pytest.mark.parametrize("rt60_s", [0.3, 0.7])
def test_room_reverberates_for_about_the_rt60_asked_for(voice, rt60_s):
    import pyroomacoustics as pra

    mic = Microphone(60.0, 7500.0, 12)
    room = Room(rt60_s, (6.0, 5.0, 3.0), (2.0, 2.0, 1.5), (3.5, 2.6, 1.3))
    session = Session(0.0, mic, room)
    rir = session.impulse_response(SR)
    measured = pra.experimental.measure_rt60(rir, SR)
    assert 0.7 * rt60_s < measured < 1.3 * rt60_s
    assert int(np.argmax(np.abs(rir))) <= 20  # the direct sound starts it: no added delay
    assert np.linalg.norm(rir) == pytest.approx(1.0, abs=1e-4)
    wet = session.apply(voice, SR, rir)
    assert len(wet) == len(voice) + len(rir) - 1
    tail = wet[len(voice) :]
    assert np.mean(tail[: SR // 20] ** 2) > 1e-6  # the voice rings on after it stops


def test_gain_sets_the_level(voice):
    room = Room(0.2, (5.0, 4.0, 3.0), (2.0, 2.0, 1.5), (3.0, 2.0, 1.5))
    loud = Session(6.0, Microphone(60.0, 7500.0, 12), room)
    quiet = Session(-12.0, Microphone(60.0, 7500.0, 12), room)
    rir = loud.impulse_response(SR)
    ratio = np.mean(loud.apply(voice, SR, rir) ** 2) / np.mean(quiet.apply(voice, SR, rir) ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(18.0, abs=0.01)


def test_sessions_are_drawn_within_the_ranges_and_from_the_seed():
    options = SessionOptions()
    sessions = [draw_session(np.random.default_rng([4, i]), options) for i in range(200)]
    assert sessions[7] == draw_session(np.random.default_rng([4, 7]), options)
    assert all(-12.0 <= s.gain_db <= 6.0 for s in sessions)
    rooms = [s for s in sessions if s.room is not None]
    assert 0.3 < len(rooms) / len(sessions) < 0.5  # the others are dry
    assert all(0.2 <= s.room.rt60_s <= 0.8 for s in rooms)
    assert 0.05 < np.mean([s.room.rt60_s > 0.4 for s in rooms]) < 0.3  # a tail to 0.8 s
    phones = [s for s in sessions if s.microphone.telephone]
    assert 0.04 < len(phones) / len(sessions) < 0.17
    assert all(s.microphone.low_hz >= 200 and s.microphone.high_hz <= 3800 for s in phones)
    for s in rooms:
        distance = np.linalg.norm(np.subtract(s.room.source_m, s.room.mic_m))
        inside = all(0 < p < side for p, side in zip(s.room.mic_m, s.room.size_m, strict=True))
        assert inside and distance <= 1.2 + 1e-9
    noises = [draw_noise(np.random.default_rng(i), options) for i in range(200)]
    assert all(10.0 <= n.snr_db <= 30.0 for n in noises)
    assert 0.04 < np.mean([n.snr_db < 15.0 for n in noises]) < 0.2  # mostly 15-30 dB
    assert {n.kind for n in noises} == {"colour", "babble"}
    quiet = [draw_noise(np.random.default_rng(i), options, enrollment=True) for i in range(50)]
    assert all(n.kind == "colour" and n.snr_db >= 20.0 for n in quiet)


def test_bad_session_options_are_refused():
    with pytest.raises(ConfigError, match="gain_db"):
        SessionOptions(gain_db=(6.0, -12.0))
    with pytest.raises(ConfigError, match="reverse_share"):
        SessionOptions(reverse_share=1.5)
