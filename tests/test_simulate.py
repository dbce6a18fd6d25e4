"""The conversation simulator, driven by synthetic "voices" (noise and noise bursts)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.errors import AudioError, ConfigError
from streamer.evaluation.scoring import read_rttm
from streamer.evaluation.simulate import (
    Conversation,
    SimulationOptions,
    load_speaker_folder,
    simulate,
    simulate_from_folder,
    speaker_id,
)

SR = 16000
FADE = 160  # the simulator's 10 ms fade at each turn edge
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def noise_voices(n: int, seconds: float = 12.0, seed: int = 0) -> dict[str, np.ndarray]:
    """One recording of white noise per speaker: no silence, no two alike."""
    rng = np.random.default_rng(seed)
    return {
        f"spk{i}": (0.1 * rng.standard_normal(round(seconds * SR))).astype(np.float32)
        for i in range(n)
    }


def options(**overrides) -> SimulationOptions:
    base = dict(n_speakers=3, duration_s=30.0, enroll_s=2.0, overlap_prob=0.3, seed=7)
    return SimulationOptions(**{**base, **overrides})


def test_same_seed_same_conversation_other_seed_other_one():
    voices = noise_voices(4)
    a = simulate(voices, options())
    b = simulate(voices, options())
    assert np.array_equal(a.audio, b.audio)
    assert a.turns == b.turns
    assert a.enrollment.keys() == b.enrollment.keys()
    c = simulate(voices, options(seed=8))
    assert c.turns != a.turns
    d = simulate(voices, options(), index=1)
    assert d.turns != a.turns and d.file_id == "sim0001"


BOUNDS_CASES = [dict(seed=seed, overlap_prob=0.4) for seed in range(4)] + [
    # long overlaps against short turns: an overlap is capped at half of either turn
    dict(seed=seed, overlap_prob=0.8, overlap_max_s=2.0, turn_min_s=0.5, turn_max_s=3.0)
    for seed in range(4)
]


@pytest.mark.parametrize("case", BOUNDS_CASES)
def test_turns_respect_length_gap_and_overlap_bounds(case):
    opts = options(n_strangers=1, duration_s=60.0, **case)
    seed = opts.seed
    conv = simulate(noise_voices(6, seed=seed), opts)
    turns = conv.turns
    tick = 1 / SR
    assert len(conv.audio) == round(opts.duration_s * SR)
    assert conv.audio.dtype == np.float32
    assert len(turns) >= 6
    assert {t.speaker for t in turns} == set(conv.enrollment) | set(conv.strangers)
    assert turns[0].start_s <= opts.gap_max_s + tick
    assert turns[-1].end_s <= opts.duration_s
    for t in turns:
        assert opts.turn_min_s - tick <= t.duration_s <= opts.turn_max_s + tick
    for prev, cur in zip(turns, turns[1:], strict=False):
        assert cur.speaker != prev.speaker
        gap = cur.start_s - prev.end_s
        assert -opts.overlap_max_s - tick <= gap <= opts.gap_max_s + tick
        assert -gap <= min(prev.duration_s, cur.duration_s) / 2 + tick
    for before, after in zip(turns, turns[2:], strict=False):
        assert after.start_s >= before.end_s - tick  # never three voices at once


def test_overlaps_happen_as_often_as_asked():
    gaps = []
    for seed in range(10):
        turns = simulate(noise_voices(3), options(seed=seed, overlap_prob=0.3)).turns
        gaps += [b.start_s - a.end_s for a, b in zip(turns, turns[1:], strict=False)]
    overlapping = np.mean(np.array(gaps) < 0)
    assert 0.1 < overlapping < 0.5
    none = simulate(noise_voices(3), options(overlap_prob=0.0)).turns
    assert all(b.start_s >= a.end_s for a, b in zip(none, none[1:], strict=False))


def test_short_turns_are_the_most_common():
    durations = []
    for seed in range(10):
        conv = simulate(noise_voices(3, seconds=20.0), options(seed=seed, duration_s=60.0))
        durations += [t.duration_s for t in conv.turns]
    # log-uniform in [1.5, 8] s: half the turns are under 3.5 s (uniform: under a third)
    assert 0.45 < np.mean(np.array(durations) < 3.5) < 0.75
    assert np.mean(durations) > np.median(durations)


def test_turn_audio_is_the_material_sample_for_sample():
    voices = noise_voices(3)
    opts = options(overlap_prob=0.0)
    conv = simulate(voices, opts)
    enroll_n = round(opts.enroll_s * SR)
    seen = set()
    for turn in conv.turns:
        if turn.speaker in seen:
            continue
        seen.add(turn.speaker)  # a speaker's first turn is the start of their material
        start, end = round(turn.start_s * SR), round(turn.end_s * SR)
        n = end - start
        material = voices[turn.speaker][enroll_n : enroll_n + n]
        assert np.array_equal(conv.audio[start + FADE : end - FADE], material[FADE:-FADE])
        assert np.all(np.abs(conv.audio[start:end]) <= np.abs(material) + 1e-7)  # faded only
    assert len(seen) == 3


def _peak_correlation(audio: np.ndarray, chunk: np.ndarray) -> float:
    """Largest cross-correlation of ``chunk`` against ``audio``, relative to its energy."""
    size = 1 << int(np.ceil(np.log2(len(audio) + len(chunk))))
    corr = np.fft.irfft(np.fft.rfft(audio, size) * np.conj(np.fft.rfft(chunk, size)), size)
    return float(np.max(corr) / np.dot(chunk, chunk))


def test_enrollment_audio_never_occurs_in_the_conversation():
    voices = noise_voices(3, seconds=9.0)  # 7 s of material: turns wrap around it
    opts = options(duration_s=40.0, enroll_s=2.0)
    conv = simulate(voices, opts)
    enroll_n = round(opts.enroll_s * SR)
    half_s = SR // 2
    assert sorted(conv.enrollment) == sorted(voices)
    for speaker, enrollment in conv.enrollment.items():
        assert np.array_equal(enrollment, voices[speaker][:enroll_n])
        for at in range(0, enroll_n - half_s + 1, half_s):
            assert _peak_correlation(conv.audio, enrollment[at : at + half_s]) < 0.2
        # the control: material right after the enrollment part is found
        material = voices[speaker][enroll_n : enroll_n + half_s]
        assert _peak_correlation(conv.audio, material) > 0.9


def phrase_voices(on_s: float, off_s: float, seconds: float = 14.0) -> dict[str, np.ndarray]:
    """Three "readers": noise phrases of ``on_s`` seconds, each followed by ``off_s`` of
    silence, the recording starting at the top of a phrase."""
    rng = np.random.default_rng(3)
    pattern = np.concatenate([np.ones(round(on_s * SR)), np.zeros(round(off_s * SR))])
    n = round(seconds * SR)
    return {
        f"spk{i}": (0.1 * rng.standard_normal(n) * np.resize(pattern, n)).astype(np.float32)
        for i in range(3)
    }


def test_trimmed_turns_start_and_end_on_speech():
    voices = phrase_voices(0.7031, 0.4173)
    opts = options(overlap_prob=0.0, turn_min_s=1.0, turn_max_s=4.0, seed=1)
    conv = simulate(voices, opts)
    assert len(conv.turns) > 5
    for turn in conv.turns:
        start, end = round(turn.start_s * SR), round(turn.end_s * SR)
        assert np.any(conv.audio[start : start + FADE])  # its first and last 10 ms hold sound
        assert np.any(conv.audio[end - FADE : end])
    silent = np.ones(len(conv.audio), dtype=bool)
    for turn in conv.turns:
        silent[round(turn.start_s * SR) : round(turn.end_s * SR)] = False
    assert not np.any(conv.audio[silent])  # no audio outside the reference turns


@pytest.mark.parametrize("seed", range(3))
def test_turns_hold_whole_phrases_unless_cut_anywhere(seed):
    # 1.3 s phrases, 0.3 s pauses; the 2 s enrollment ends 0.4 s into a phrase, so the
    # material starts mid-phrase. A turn of whole phrases lasts k * 1.6 - 0.3 s.
    voices = phrase_voices(1.3, 0.3, seconds=20.0)
    case = dict(overlap_prob=0.0, turn_min_s=1.0, turn_max_s=3.5, seed=seed)

    def fractions(conv):  # how far each turn is from whole phrases, in phrase periods
        spans = [(t.duration_s + 0.3) / 1.6 for t in conv.turns[:-1]]  # last one: clipped
        return np.abs(np.array(spans) - np.round(spans))

    whole = fractions(simulate(voices, options(**case)))
    assert len(whole) >= 8 and np.all(whole < 1e-3)
    anywhere = fractions(simulate(voices, options(**case, cut_at_pauses=False)))
    assert np.mean(anywhere > 0.05) > 0.5


def test_strangers_take_turns_without_enrollment():
    conv = simulate(noise_voices(5), options(n_speakers=2, n_strangers=2, duration_s=60.0))
    assert len(conv.enrollment) == 2 and len(conv.strangers) == 2
    assert not set(conv.enrollment) & set(conv.strangers)
    spoken = {t.speaker for t in conv.turns}
    assert set(conv.strangers) <= spoken and set(conv.enrollment) <= spoken


def test_explicit_participants_are_used():
    voices = noise_voices(4)
    conv = simulate(voices, options(), enrolled=["spk3", "spk1"], strangers=["spk0"])
    assert list(conv.enrollment) == ["spk3", "spk1"] and conv.strangers == ["spk0"]
    assert {t.speaker for t in conv.turns} == {"spk0", "spk1", "spk3"}


def test_rttm_round_trip_and_save(tmp_path):
    conv = simulate(noise_voices(3), options(n_strangers=0))
    parsed = read_rttm(conv.to_rttm())
    assert list(parsed) == [conv.file_id]
    assert len(parsed[conv.file_id]) == len(conv.speech) >= len(conv.turns)
    for (start, end, label), turn in zip(parsed[conv.file_id], conv.speech, strict=True):
        assert label == turn.speaker
        assert start == pytest.approx(turn.start_s, abs=5e-4)
        assert end == pytest.approx(turn.end_s, abs=1e-3)
    line = conv.to_rttm().splitlines()[0].split()
    assert line[:3] == ["SPEAKER", conv.file_id, "1"] and line[5:7] == ["<NA>", "<NA>"]

    wav = conv.save(tmp_path)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == SR and len(audio) == len(conv.audio)
    assert np.max(np.abs(audio - conv.audio)) < 1e-4  # 16-bit PCM
    assert read_rttm(tmp_path / f"{conv.file_id}.rttm") == parsed
    assert sorted(p.stem for p in (tmp_path / "enroll").glob("*.wav")) == sorted(conv.enrollment)


def test_too_short_recording_and_too_few_voices_are_refused():
    voices = noise_voices(3)
    voices["spk1"] = voices["spk1"][: 3 * SR]  # 2 s enrollment + 1 s < 1.5 s turn
    with pytest.raises(AudioError, match="spk1"):
        simulate(voices, options(), enrolled=["spk0", "spk1"], strangers=["spk2"])
    with pytest.raises(ConfigError, match="need 4"):
        simulate(noise_voices(3), options(n_strangers=1))
    with pytest.raises(ConfigError):
        SimulationOptions(turn_min_s=5.0, turn_max_s=2.0)
    with pytest.raises(ConfigError):
        SimulationOptions(n_speakers=1, n_strangers=0)


def test_speaker_ids_from_file_names(tmp_path):
    assert speaker_id("19-198-0000.flac") == "19"
    assert speaker_id("/x/alice.wav") == "alice"
    assert speaker_id("two-parts.wav") == "two-parts"
    with pytest.raises(AudioError, match="no .flac/.wav files"):
        load_speaker_folder(tmp_path)


def write_folder(folder: Path, seconds: float = 12.0) -> None:
    """Five speakers as files; one speaker in two files, one at 8 kHz stereo."""
    rng = np.random.default_rng(5)
    for name in ["19-198-0000", "19-198-0001", "26-495-0000", "bob", "carol"]:
        sf.write(folder / f"{name}.flac", 0.1 * rng.standard_normal(round(seconds * SR)), SR)
    stereo = 0.1 * rng.standard_normal((round(seconds * 8000), 2))
    sf.write(folder / "dave.wav", stereo, 8000)
    sf.write(folder / "tiny.wav", 0.1 * rng.standard_normal(SR), SR)  # too short to use


def test_simulate_from_folder(tmp_path):
    write_folder(tmp_path)
    assert list(load_speaker_folder(tmp_path)) == ["19", "26", "bob", "carol", "dave", "tiny"]
    opts = options(n_speakers=3, n_strangers=2, duration_s=20.0)
    first = simulate_from_folder(tmp_path, opts, 0)
    again = simulate_from_folder(tmp_path, opts, 0)
    other = simulate_from_folder(tmp_path, opts, 3)
    assert np.array_equal(first.audio, again.audio) and first.turns == again.turns
    assert other.turns != first.turns and other.file_id == "sim0003"
    voices = set(first.enrollment) | set(first.strangers)
    assert voices == {"19", "26", "bob", "carol", "dave"}  # "tiny" is skipped


def test_cli_writes_conversations(tmp_path):
    from streamer.cli import simulate as command

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_folder(src)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(
        ["simulate", str(src), str(out), "--count", "2", "--duration-s", "15", "--enroll-s", "3"]
    )
    assert args.func(args) == 0
    for file_id in ["sim0000", "sim0001"]:
        assert (out / file_id / f"{file_id}.wav").is_file()
        assert len(list((out / file_id / "enroll").glob("*.wav"))) == 3
    assert sorted(read_rttm(out / "reference.rttm")) == ["sim0000", "sim0001"]


def test_cli_cuts_at_pauses_unless_told_to_cut_anywhere(tmp_path):
    from streamer.cli import simulate as command

    for name, audio in phrase_voices(1.0, 0.3, seconds=20.0).items():
        sf.write(tmp_path / f"{name}.wav", audio, SR)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    spans = {}
    for flags in ([], ["--cut-anywhere"]):
        out = tmp_path / ("out" + "".join(flags))
        argv = ["simulate", str(tmp_path), str(out), "--count", "1", "--enroll-s", "2"]
        args = parser.parse_args([*argv, "--strangers", "0", "--overlap-prob", "0", *flags])
        assert args.func(args) == 0
        turns = read_rttm(out / "reference.rttm")["sim0000"][:-1]
        spans[bool(flags)] = np.array([(end - start + 0.3) / 1.3 for start, end, _ in turns])
    assert np.allclose(spans[False], np.round(spans[False]), atol=2e-3)
    assert not np.allclose(spans[True], np.round(spans[True]), atol=2e-3)


@pytest.mark.skipif(
    not (SHARED_DATA / "librispeech-train-clean-100").is_dir(), reason="no dev data"
)
def test_librispeech_conversation_has_speech_in_its_turns():
    conv: Conversation = simulate_from_folder(
        SHARED_DATA / "librispeech-train-clean-100", SimulationOptions(n_strangers=1), 0
    )
    assert len(conv.enrollment) == 3 and len(conv.strangers) == 1
    inside = np.zeros(len(conv.audio), dtype=bool)
    for turn in conv.turns:
        inside[round(turn.start_s * SR) : round(turn.end_s * SR)] = True
    assert np.sqrt(np.mean(conv.audio[inside] ** 2)) > 0.01
    assert not np.any(conv.audio[~inside])


def test_reference_speech_bridges_short_pauses_and_splits_at_long_ones():
    for off_s, pieces_per_s in ((0.2, 0.0), (0.5, 1 / 1.5)):
        voices = phrase_voices(1.0, off_s, seconds=20.0)
        opts = options(n_speakers=2, overlap_prob=0.0, bridge_s=0.3, cut_at_pauses=False)
        conv = simulate(dict(list(voices.items())[:2]), opts)
        for turn in conv.turns:
            inside = [s for s in conv.speech if turn.start_s <= s.start_s < turn.end_s]
            assert all(s.speaker == turn.speaker and s.end_s <= turn.end_s for s in inside)
            if pieces_per_s == 0.0:  # 0.2 s pauses are bridged: one region per turn
                assert len(inside) == 1 and inside[0][:2] == pytest.approx(turn[:2], abs=0.011)
            else:  # 0.5 s pauses are not: one region per 1 s phrase
                assert len(inside) >= turn.duration_s * pieces_per_s - 1
                assert all(s.duration_s <= 1.0 + 0.02 for s in inside)  # 10 ms frames
                gaps = [b.start_s - a.end_s for a, b in zip(inside, inside[1:], strict=False)]
                assert all(gap == pytest.approx(off_s, abs=0.02) for gap in gaps)


def test_enrollment_length_is_drawn_and_leaves_material():
    voices = noise_voices(4, seconds=14.0)
    opts = options(n_speakers=4, enroll_s=5.0, enroll_max_s=10.0)
    lengths = [len(clip) / SR for clip in simulate(voices, opts).enrollment.values()]
    assert all(5.0 <= n <= 14.0 - opts.turn_max_s / 2 + 1e-9 for n in lengths)
    assert len(set(lengths)) == 4


def test_mismatched_condition_puts_one_side_through_another_session():
    from streamer.evaluation.augment import SessionOptions

    voices = noise_voices(4)
    clean = simulate(voices, options(n_strangers=1))
    forward = simulate(voices, options(n_strangers=1, session=SessionOptions(reverse_share=0.0)))
    again = simulate(voices, options(n_strangers=1, session=SessionOptions(reverse_share=0.0)))
    assert np.array_equal(forward.audio, again.audio) and forward.conditions == again.conditions
    assert forward.turns == clean.turns and forward.speech == clean.speech
    assert not np.allclose(forward.audio, clean.audio, atol=1e-3)
    for speaker, clip in forward.enrollment.items():  # enrolled as recorded
        assert np.array_equal(clip, clean.enrollment[speaker])
        assert forward.conditions[speaker].startswith("conversation through")
    assert forward.conditions["spk3"].startswith("conversation through")  # the stranger
    assert "dB SNR" in forward.conditions["noise"]

    reverse = simulate(voices, options(n_strangers=1, session=SessionOptions(reverse_share=1.0)))
    for speaker, clip in reverse.enrollment.items():
        assert len(clip) == len(clean.enrollment[speaker])
        assert not np.allclose(clip, clean.enrollment[speaker], atol=1e-3)
        assert reverse.conditions[speaker].startswith("enrollment through")


def test_a_speakers_session_does_not_depend_on_who_else_takes_part():
    from streamer.evaluation.augment import SessionOptions

    voices = noise_voices(4)
    opts = options(n_speakers=2, session=SessionOptions())
    one = simulate(voices, opts, enrolled=["spk0", "spk1"])
    other = simulate(voices, opts, enrolled=["spk2", "spk0"])
    assert one.conditions["spk0"] == other.conditions["spk0"]
    assert one.conditions["spk1"] != other.conditions["spk2"]


def test_speaker_halves_split_the_speakers_for_good(tmp_path):
    from streamer.evaluation.simulate import speaker_half

    names = [str(n) for n in range(1000, 1200)]
    halves = {name: speaker_half(name) for name in names}
    assert halves == {name: speaker_half(name) for name in names}
    assert 80 < sum(h == "tune" for h in halves.values()) < 120
    rng = np.random.default_rng(0)
    for name in names[:12]:
        sf.write(tmp_path / f"{name}-1-0000.flac", 0.1 * rng.standard_normal(12 * SR), SR)
    for half in ("tune", "report"):
        opts = options(n_speakers=2, duration_s=10.0, speakers=half)
        conv = simulate_from_folder(tmp_path, opts, 0)
        assert {speaker_half(s) for s in conv.enrollment} == {half}
    with pytest.raises(ConfigError, match="speakers must be one of"):
        options(speakers="both")


def test_benchmark_conversations_look_like_unseen_ones():
    from streamer.evaluation.simulate import benchmark_options

    layouts = [benchmark_options(i) for i in range(12)]
    assert [o.n_speakers for o in layouts[:3]] == [2, 3, 4]
    assert sorted({o.n_strangers for o in layouts}) == [0, 1, 2]
    assert sum(o.n_strangers > 0 for o in layouts) == 6
    assert all(60.0 <= o.duration_s <= 120.0 and o.session is not None for o in layouts)
    assert benchmark_options(5, clean=True).session is None
    nobody = benchmark_options(4, enrolled=False)
    assert nobody.n_speakers == 0 and nobody.n_strangers == 3


def test_cli_mismatched_writes_other_audio_and_says_what_each_speaker_got(tmp_path):
    import json

    from streamer.cli import simulate as command

    src = tmp_path / "src"
    src.mkdir()
    write_folder(src)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    audio = {}
    for flags in ([], ["--mismatched"]):
        out = tmp_path / ("out" + "".join(flags))
        argv = ["simulate", str(src), str(out), "--count", "1", "--duration-s", "15"]
        args = parser.parse_args([*argv, "--enroll-s", "3", *flags])
        assert args.func(args) == 0
        audio[bool(flags)], _ = sf.read(out / "sim0000" / "sim0000.wav")
        conditions = out / "sim0000" / "conditions.json"
        assert conditions.is_file() == bool(flags)
    said = json.loads((tmp_path / "out--mismatched" / "sim0000" / "conditions.json").read_text())
    assert "noise" in said and len(said) == 1 + 3  # the noise and 3 enrolled speakers
    assert audio[True].shape == audio[False].shape
    assert not np.allclose(audio[True], audio[False], atol=1e-3)
