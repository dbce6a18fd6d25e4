"""Checks for the espeak-ng test-speech helper (streamer/evaluation/synth.py)."""

from __future__ import annotations

import itertools
import threading

import librosa
import numpy as np
import pytest

from streamer.errors import ConfigError
from streamer.evaluation import synth

SR = 16000
TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def _frame_rms(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))


def _longest_quiet_s(x: np.ndarray, sr: int = SR, floor_db: float = -40.0) -> float:
    hop = sr // 100
    rms = _frame_rms(x, hop)
    quiet = rms < rms.max() * 10 ** (floor_db / 20)
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest * hop / sr


def test_synthesize_returns_float_mono_speech():
    audio = synth.synthesize(TEXT, "en+m3")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.5 < len(audio) / SR < 6.0  # 13 words at 160 wpm is about 3-4 s
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # not silence


def test_sample_rate_and_speaking_rate_are_honoured():
    at_16k = synth.synthesize(TEXT, "en+f2", sample_rate=16000)
    at_8k = synth.synthesize(TEXT, "en+f2", sample_rate=8000)
    assert len(at_8k) / 8000 == pytest.approx(len(at_16k) / 16000, abs=0.01)
    slow = synth.synthesize(TEXT, "en+f2", rate_wpm=110)
    fast = synth.synthesize(TEXT, "en+f2", rate_wpm=260)
    assert len(slow) > 1.6 * len(fast)


def test_pitch_parameter_moves_f0():
    low = synth.synthesize(TEXT, "en+m3", pitch=20)
    high = synth.synthesize(TEXT, "en+m3", pitch=90)
    f0_low = np.median(librosa.yin(low, fmin=50, fmax=500, sr=SR))
    f0_high = np.median(librosa.yin(high, fmin=50, fmax=500, sr=SR))
    assert f0_high > 1.3 * f0_low


def test_synthesis_is_deterministic_without_the_cache():
    first = synth.synthesize(TEXT, "en+klatt")
    synth._synth_cached.cache_clear()
    synth.synthesize("Something else entirely, to change the engine's state.", "en+m7")
    again = synth.synthesize(TEXT, "en+klatt")
    np.testing.assert_array_equal(first, again)


def test_returned_arrays_do_not_alias_the_cache():
    audio = synth.synthesize(TEXT, "en+f3")
    audio[:] = 0.0
    assert np.abs(synth.synthesize(TEXT, "en+f3")).max() > 0.1


def test_concurrent_synthesis_matches_serial():
    texts = [synth.SENTENCES[i] for i in range(6)]
    serial = [synth.synthesize(t, "en+f4") for t in texts]
    synth._synth_cached.cache_clear()
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = synth.synthesize(texts[i], "en+f4")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, expected in enumerate(serial):
        np.testing.assert_array_equal(results[i], expected)


def test_unknown_voices_are_rejected():
    with pytest.raises(ConfigError):
        synth.synthesize(TEXT, "en+no_such_variant")
    with pytest.raises(ConfigError):
        synth.speech("Mallory", 1.0)


def test_speech_length_seed_and_pauses():
    a = synth.speech("alice", 7.3, seed=4)
    assert a.dtype == np.float32 and len(a) == round(7.3 * SR)
    np.testing.assert_array_equal(a, synth.speech("alice", 7.3, seed=4))
    assert not np.array_equal(a, synth.speech("alice", 7.3, seed=5))
    assert len(synth.speech("bob", 2.0, sample_rate=8000)) == 16000
    assert len(synth.speech("bob", 0.0)) == 0
    # continuous speech: no silence longer than a sentence pause, speech at both ends
    assert _longest_quiet_s(a) <= 0.3
    rms = _frame_rms(a, SR // 20)
    assert rms[0] > 0.01 and rms[-1] > 0.01


def test_speech_never_ends_in_a_pause(monkeypatch):
    # With a single sentence, cutting just past its end would land in the following pause;
    # speech() must then drop the pause and carry on with the next sentence instead.
    monkeypatch.setattr(synth, "SENTENCES", ("Hello there, nice to meet you.",))
    synth._sentence.cache_clear()
    try:
        one = synth._sentence(0, synth.VOICES["alice"], SR)
        x = synth.speech("alice", (len(one) + 0.06 * SR) / SR)
        np.testing.assert_array_equal(
            x[SR // 100 : len(one) - SR // 100], one[SR // 100 : -SR // 100]
        )
        assert np.abs(x[len(one) + SR // 100 :]).max() > 0.05
    finally:
        synth._sentence.cache_clear()


def test_conversation_reference_matches_audio():
    turns = [("alice", 2.0), ("bob", 1.5), ("carol", 3.0), ("alice", 1.0)]
    audio, ref = synth.conversation(turns, gap_s=0.5, seed=2)
    assert len(audio) == round((2.0 + 1.5 + 3.0 + 1.0 + 3 * 0.5) * SR)
    assert [who for _, _, who in ref] == [who for who, _ in turns]
    expected_starts = [0.0, 2.5, 4.5, 8.0]
    for (start, end, _), (_, secs), t0 in zip(ref, turns, expected_starts, strict=True):
        assert start == pytest.approx(t0, abs=0.02)
        assert end == pytest.approx(t0 + secs, abs=0.1)
        assert end <= t0 + secs + 1e-9
    for (_, end, _), (start, _, _) in itertools.pairwise(ref):
        gap = audio[int(end * SR) : int(start * SR)]
        assert len(gap) >= 0.5 * SR - 1 and np.abs(gap).max() == 0.0
    # the same speaker in two turns says different sentences
    first, last = ref[0], ref[3]
    assert not np.array_equal(
        audio[int(first[0] * SR) : int(first[0] * SR) + SR],
        audio[int(last[0] * SR) : int(last[0] * SR) + SR],
    )


def _voice_features(x: np.ndarray) -> tuple[np.ndarray, float]:
    mfcc = librosa.feature.mfcc(y=x, sr=SR, n_mfcc=20)
    f0 = float(np.median(librosa.yin(x, fmin=60, fmax=500, sr=SR)))
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]), f0


def test_voices_are_clearly_different():
    assert len(synth.VOICES) == 5
    feats = {
        name: [_voice_features(synth.speech(name, 6.0, seed=s)) for s in (1, 2)]
        for name in synth.VOICES
    }
    # timbre: every voice is further from every other voice than from itself on new sentences
    within = max(np.linalg.norm(f[0][0] - f[1][0]) for f in feats.values())
    across = min(
        np.linalg.norm(feats[a][0][0] - feats[b][1][0]) for a, b in itertools.permutations(feats, 2)
    )
    assert across > 1.5 * within, (within, across)
    # pitch: the female voices sit well above the male ones
    f0 = {name: f[0][1] for name, f in feats.items()}
    highest_male = max(f0["bob"], f0["dave"], f0["erin"])
    assert f0["alice"] > 1.3 * highest_male, f0
    assert f0["carol"] > 1.3 * f0["alice"], f0
