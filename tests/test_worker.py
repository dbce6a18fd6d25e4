"""The whole streaming pipeline on synthetic voices: real VAD, real model, real audio."""

import subprocess
import sys

import numpy as np
import pytest

from streamer.evaluation.synth import conversation
from streamer.worker import WorkerOptions, drive
from tests.conftest import ENROLLED, chunked, label_share, run_stream

TURNS = [
    ("alice", 4.0),
    ("bob", 3.0),
    ("carol", 5.0),
    ("alice", 2.5),
    ("dave", 3.5),  # a stranger
    ("bob", 4.0),
    ("carol", 3.0),
]


@pytest.fixture(scope="module")
def convo():
    return conversation(TURNS, gap_s=0.6, seed=7)


@pytest.fixture(scope="module")
def enrolled(voice_profiles):
    return {name: voice_profiles[name] for name in ENROLLED}


@pytest.fixture(scope="module")
def events(make_engine, enrolled, convo):
    return run_stream(make_engine(enrolled), convo[0])


def test_enrolled_speakers_are_named_through_turns(events, convo):
    for start, end, speaker in convo[1]:
        shares = label_share(events, start, end)
        if speaker in ENROLLED:
            assert shares.get(speaker, 0) >= 0.8 * (end - start), (speaker, shares)
        else:  # an unknown voice: a label of its own
            assert shares.get("speaker-1", 0) >= 0.8 * (end - start), (speaker, shares)


def test_strangers_are_unknown_not_the_nearest_name(events, convo):
    start, end, _ = next(t for t in convo[1] if t[2] == "dave")
    shares = label_share(events, start, end)
    assert sum(v for k, v in shares.items() if k in ENROLLED) < 0.1 * (end - start)


def test_no_flicker(events, convo):
    changes = [e for e in events if e.type == "change"]
    assert len(changes) <= len(convo[1]) - 1 + 1
    segments = [e for e in events if e.type == "segment"]
    assert min(e.end_s - e.start_s for e in segments) > 0.5


def test_timestamps_are_monotonic(events):
    emitted = [e.emitted_at for e in events]
    assert emitted == sorted(emitted)
    segments = [e for e in events if e.type == "segment"]
    for a, b in zip(segments, segments[1:]):
        assert a.start_s < a.end_s <= b.start_s
    for e in events:
        assert e.start_s <= e.end_s and e.end_s <= e.emitted_at + 1e-9


def test_changes_are_timely(events, convo):
    turns = convo[1]
    for prev, turn in zip(turns, turns[1:]):
        if prev[2] == turn[2]:
            continue
        matches = [e for e in events if e.type == "change" and abs(e.start_s - turn[0]) < 0.6]
        assert matches, f"no change near {turn[0]:.2f}"
        assert matches[0].emitted_at - turn[0] < 2.0


@pytest.mark.parametrize("chunk,step_every", [(160, 1), (1600, 3), (16000 * 60, 1)])
def test_result_does_not_depend_on_chunking(
    make_engine, enrolled, convo, events, chunk, step_every
):
    again = run_stream(make_engine(enrolled), convo[0], chunk=chunk, step_every=step_every)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in events]


def test_streams_batched_together_match_separate_runs(make_engine, enrolled, convo, events):
    engine = make_engine(enrolled)
    other_audio = conversation([("carol", 3.0), ("bob", 3.0)], seed=3)[0]
    alone = run_stream(make_engine(enrolled), other_audio)
    a, b = engine.open_stream("test"), engine.open_stream("other")
    together = []
    for i in range(0, max(len(convo[0]), len(other_audio)), 640):
        if i < len(convo[0]):
            a.push(convo[0][i : i + 640])
        if i < len(other_audio):
            b.push(other_audio[i : i + 640])
        for stepped in engine.run():
            together += stepped
    together += engine.close_stream("test") + engine.close_stream("other")
    assert [e.to_dict() for e in together if e.stream == "test"] == [e.to_dict() for e in events]
    other = [e.to_dict() for e in together if e.stream == "other"]
    assert other == [dict(e.to_dict(), stream="other") for e in alone]


def test_silence_and_noise_give_no_identity(make_engine, enrolled):
    rng = np.random.default_rng(1)
    sr = 16000
    audio = np.concatenate(
        [
            np.zeros(2 * sr),
            0.05 * rng.standard_normal(3 * sr),  # broadband noise
            0.3 * np.sin(2 * np.pi * 1000 * np.arange(2 * sr) / sr),  # a tone
            np.zeros(sr),
        ]
    ).astype(np.float32)
    for i in range(0, len(audio), sr // 2):  # clicks
        audio[i : i + 40] += 0.8
    events = run_stream(make_engine(enrolled), audio)
    assert not [e for e in events if e.type in ("speaker", "segment", "change")]


@pytest.mark.parametrize("step_every", [1, 200], ids=["realtime", "4s-steps"])
def test_onset_windows_resume_one_pass_per_onset(make_engine, convo, monkeypatch, step_every):
    """Each onset's frames go through the encoder once; its windows equal the same frames
    embedded alone, all at the level of its first window."""
    engine = make_engine()
    embedder, spec = engine.embedder, engine.embedder.spec
    assert spec.recurrent
    fed = []
    resume = embedder.resume

    def spy(frames, states, readouts, levels):
        fed.append(frames.shape[0] * frames.shape[1])
        return resume(frames, states, readouts, levels)

    monkeypatch.setattr(embedder, "resume", spy)
    stream = engine.open_stream("test")
    windows = []
    feed = stream.tracker.window
    stream.tracker.window = lambda w, now: (windows.append(w), feed(w, now))[1]
    audio = convo[0]
    for _ in drive(engine, stream, chunked(audio, 320), 320 * step_every):
        pass

    onsets = [w for w in windows if w.onset and w.embedding is not None]
    starts = sorted({w.start_s for w in onsets})
    assert len(starts) >= 6
    assert sum(fed) <= len(starts) * engine.onset_frames[-1]  # not once per window length
    frames = spec.frontend().push(audio)
    level = {}
    for w in sorted(windows, key=lambda w: w.length_s):
        if w.onset:
            level.setdefault(w.start_s, w.level_dbfs)
    for w in onsets:
        first, size = round(w.start_s / spec.frame_s), round(w.length_s / spec.frame_s)
        window = frames[None, first : first + size].copy()
        alone = embedder.embed(window, np.array([level[w.start_s]]))
        assert np.abs(alone[0] - w.embedding).max() <= 1e-5


def test_the_core_imports_without_torch():
    """The sans-I/O core (buffer, gate, worker, tracker, events, enrollment) loads neither
    torch nor silero-vad: a front end or a process that only routes audio stays light."""
    code = (
        "import sys\n"
        "import streamer.buffer, streamer.vad, streamer.worker, streamer.tracker\n"
        "import streamer.events, streamer.enroll\n"
        "print(sorted(m for m in ('torch', 'silero_vad') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("chunk,step_every", [(320, 1), (16000 * 60, 1)])
def test_adaptive_window_rate_holds_windows_and_keeps_events_independent_of_chunking(
    make_engine, enrolled, convo, chunk, step_every
):
    """With ``confident_stride=2`` the hold decisions are taken in audio-time order, so the
    events are the same however the audio comes (a wrong guess costs a late embedding)."""
    options = WorkerOptions(confident_stride=2)
    reference_engine = make_engine(enrolled, options=options)
    reference = run_stream(reference_engine, convo[0])
    engine = make_engine(enrolled, options=options)
    again = run_stream(engine, convo[0], chunk=chunk, step_every=step_every)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in reference]
    assert reference_engine.windows_held >= 10 and reference_engine.windows_late == 0
    for start, end, speaker in convo[1]:
        expected = speaker if speaker in ENROLLED else "speaker-1"
        assert label_share(reference, start, end).get(expected, 0) >= 0.8 * (end - start)
