"""Unknown voices through the whole pipeline: labels, returns, promotion (real model)."""

import numpy as np
import pytest

from streamer.enroll import promote
from streamer.evaluation.synth import conversation
from streamer.events import UNKNOWN, final_segments
from streamer.profiles import ProfileStore
from streamer.recluster import ReclusterOptions
from streamer.tracker import TrackerOptions
from tests.conftest import label_share, run_stream

# Nobody enrolled; carol returns after two others spoke, alice after a long silence.
TURNS = [
    ("alice", 4.0),
    ("bob", 3.5),
    ("carol", 4.0),
    ("bob", 3.0),
    ("carol", 3.0),
    ("alice", 3.5),
]


@pytest.fixture(scope="module")
def convo():
    audio, turns = conversation(TURNS, gap_s=0.6, seed=11)
    # A long silence before alice's return.
    cut = int(turns[-1][0] * 16000) - 4000
    silence = np.zeros(20 * 16000, np.float32)
    audio = np.concatenate([audio[:cut], silence, audio[cut:]])
    turns = [*turns[:-1], (turns[-1][0] + 20, turns[-1][1] + 20, turns[-1][2])]
    return audio, turns


@pytest.fixture(scope="module")
def events(make_engine, convo):
    return run_stream(make_engine(), convo[0])


def majority(events, start, end):
    shares = label_share(events, start, end)
    return max(shares, key=shares.get), shares


def test_each_voice_gets_one_stable_label_in_order_of_appearance(events, convo):
    labels = [majority(events, start, end)[0] for start, end, _ in convo[1]]
    assert labels == ["speaker-1", "speaker-2", "speaker-3", "speaker-2", "speaker-3", "speaker-1"]
    named = {e.label for e in events if e.type == "segment"}
    assert named <= {"speaker-1", "speaker-2", "speaker-3", "unknown"}


def test_labels_cover_the_turns(events, convo):
    for start, end, speaker in convo[1]:
        label, shares = majority(events, start, end)
        assert shares[label] >= 0.8 * (end - start), (speaker, shares)


def test_a_promoted_voice_is_named_on_another_stream(make_engine, tmp_path):
    engine = make_engine()
    store = ProfileStore(tmp_path / "profiles")
    stream = engine.open_stream("room")
    audio, _ = conversation([("erin", 7.0), ("bob", 4.0)], gap_s=0.6, seed=5)
    stream.push(audio)
    engine.drain()
    assert "speaker-1" in stream.identity.voices
    report = promote(store, "erin", engine.settle("room", "speaker-1"), "ge2e")
    assert report.profile is not None and report.speech_s >= 4.0
    assert store.get("erin").model == "ge2e"
    engine.adopt("room", "speaker-1", {"erin": report.profile.embedding})
    assert "speaker-1" not in stream.identity.voices
    # Another stream (and any later engine loading the store) now names erin.
    later = make_engine({p.name: p.embedding for p in store.all()})
    other, _ = conversation([("erin", 4.0)], seed=21)
    labels = {e.label for e in run_stream(later, other) if e.type == "segment"}
    assert labels == {"erin"}


def test_promoting_a_voice_that_does_not_exist_says_which_exist(make_engine):
    from streamer.errors import ProfileError

    engine = make_engine()
    engine.open_stream("room")
    with pytest.raises(ProfileError, match="has no unknown voice 'speaker-9'; it has: none"):
        engine.settle("room", "speaker-9")


def voice_after(engine, audio):
    """The first unknown voice's centroid once ``audio`` was streamed and closed."""
    tracker = engine.new_tracker("s")
    engine.open_stream("s", tracker).push(audio)
    engine.close_stream("s")
    return tracker.voice("speaker-1").centroid


def test_overlapped_speech_does_not_pull_a_voice(make_engine):
    alice, _ = conversation([("alice", 6.0)], seed=31)
    bob, _ = conversation([("bob", 6.0)], seed=32)
    n = min(len(alice), len(bob))
    clean = voice_after(make_engine(), alice)
    # The same alice, then alice and bob at once: the overlap must not drag her centroid.
    mixed = np.concatenate([alice, 0.5 * (alice[:n] + bob[:n])]).astype(np.float32)
    assert float(voice_after(make_engine(), mixed) @ clean) > 0.98


def test_the_look_back_gives_a_voice_taken_for_another_its_own_label(make_engine, convo):
    # Live decisions so loose that every voice is taken for the first one heard: the
    # look-back must find the three voices in the windows and re-emit their segments.
    loose = TrackerOptions(
        accept_score=-1.0,
        short_accept_score=-1.0,
        margin=0.0,
        short_margin=0.0,
        look_back=ReclusterOptions(),
    )
    events = run_stream(make_engine(tracker_options=loose), convo[0])
    live = {e.label for e in events if e.type == "segment" and e.previous is None}
    assert "speaker-1" in live
    corrections = [e for e in events if e.type == "segment" and e.previous is not None]
    assert corrections
    labels = [majority(events, start, end)[0] for start, end, _ in convo[1]]
    first = {}
    for label, (*_, who) in zip(labels, convo[1], strict=True):
        first.setdefault(who, label)
    assert len(set(first.values())) == 3, labels
    assert labels == [first[who] for *_, who in convo[1]]
    assert {label for *_, label in final_segments(events)} >= set(first.values())


def test_a_short_turn_heard_before_its_voice_was_learnt_is_corrected(make_engine):
    # bob's first turn is too short to make a voice (it stays `unknown` live); once his
    # long turn has made one, the short turn is sent again with his label, not carol's.
    audio, turns = conversation(
        [("alice", 4.0), ("bob", 1.2), ("carol", 3.0), ("bob", 4.5)], gap_s=0.6, seed=3
    )
    events = run_stream(make_engine(), audio)
    live = {
        (e.start_s, e.end_s): e.label for e in events if e.type == "segment" and e.previous is None
    }
    start, end, _ = turns[1]
    assert label_share(events, start, end).keys() == {"speaker-3"}
    assert any(label == UNKNOWN and s < end and e > start for (s, e), label in live.items())
    corrected = [e for e in events if e.type == "segment" and e.previous == UNKNOWN]
    assert [e.label for e in corrected] == ["speaker-3"]
    assert corrected[0].emitted_at > turns[3][0]  # once bob's long turn made his voice


def test_a_voice_heard_only_in_short_turns_gets_a_label(make_engine):
    # bob never says enough at once to make a voice; his alike `unknown` turns make one.
    turns = [("alice", 4.0), ("bob", 1.2), ("alice", 3.0), ("bob", 1.2)] * 2
    audio, reference = conversation(turns, gap_s=0.6, seed=4)
    events = run_stream(make_engine(), audio)
    labels = [majority(events, start, end)[0] for start, end, _ in reference]
    assert labels == ["speaker-1", "speaker-2"] * 4
    live = [e for e in events if e.type == "segment" and e.previous is None]
    assert live[-1].label == "speaker-2"  # bob's last turn is named as it is heard
