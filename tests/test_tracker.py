"""The tracker driven directly with vectors: no model, no audio."""

import numpy as np

from streamer.events import UNKNOWN
from streamer.tracker import Tracker, TrackerOptions
from streamer.vad import GateUpdate
from streamer.worker import Window

RNG = np.random.default_rng(0)
DIM = 16


def unit(v):
    return v / np.linalg.norm(v)


PROFILES = {name: unit(RNG.normal(size=DIM)) for name in ("alice", "bob")}
STRANGER = unit(RNG.normal(size=DIM))


def near(vector, noise=0.1):
    return unit(vector + noise * RNG.normal(size=DIM) / np.sqrt(DIM)).astype(np.float32)


def drive(vectors, hop_s=0.2, window_s=1.6):
    """Feed one speech region whose windows carry ``vectors``; return the events."""
    tracker = Tracker("s", TrackerOptions(), PROFILES)
    events = tracker.gate(GateUpdate(started_at_s=0.0), 0.3)
    t = 0.0
    for i, vector in enumerate(vectors):
        start = i * hop_s
        end = start + window_s
        t = end
        events += tracker.window(Window(start, end, 1.0, -30.0, vector), t)
    events += tracker.gate(GateUpdate(ended=(0.0, t)), t + 0.4)
    return events


def labels(events, kind="segment"):
    return [e.label for e in events if e.type == kind]


def test_enrolled_voice_is_named_and_stranger_is_unknown():
    assert labels(drive([near(PROFILES["alice"]) for _ in range(10)])) == ["alice"]
    assert labels(drive([near(STRANGER) for _ in range(10)])) == [UNKNOWN]


def test_one_odd_window_does_not_flicker():
    vectors = [near(PROFILES["alice"]) for _ in range(12)]
    vectors[6] = near(PROFILES["bob"])
    events = drive(vectors)
    assert labels(events) == ["alice"]
    assert not [e for e in events if e.type == "change"]


def test_a_real_turn_changes_the_label_and_is_dated_back():
    vectors = [near(PROFILES["alice"]) for _ in range(15)] + [
        near(PROFILES["bob"]) for _ in range(15)
    ]
    events = drive(vectors)
    assert labels(events) == ["alice", "bob"]
    change = next(e for e in events if e.type == "change")
    assert (change.previous, change.label) == ("alice", "bob")
    first_bob_end = 15 * 0.2 + 1.6
    assert change.start_s < first_bob_end <= change.emitted_at


def test_events_are_in_time_order_and_segments_tile():
    vectors = [near(PROFILES[n]) for n in ["alice"] * 10 + ["bob"] * 10 + ["alice"] * 10]
    events = drive(vectors)
    emitted = [e.emitted_at for e in events]
    assert emitted == sorted(emitted)
    segments = [e for e in events if e.type == "segment"]
    assert [s.label for s in segments] == ["alice", "bob", "alice"]
    for a, b in zip(segments, segments[1:]):
        assert a.end_s == b.start_s and a.start_s < a.end_s


def test_profiles_can_change_live():
    tracker = Tracker("s", TrackerOptions(), {})
    tracker.set_profiles(PROFILES)
    assert tracker.classify(near(PROFILES["bob"], 0.01), 0.75)[0] == "bob"
