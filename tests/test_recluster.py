"""The look-back pass driven with synthetic vectors: no model, no audio."""

import numpy as np

from streamer.events import UNKNOWN, final_segments
from streamer.recluster import Entry, Reclusterer, ReclusterOptions, cluster
from streamer.sinks.rttm import RttmSink
from streamer.tracker import Tracker, TrackerOptions
from streamer.vad import GateUpdate
from streamer.worker import Window

DIM = 32
RNG = np.random.default_rng(7)
VOICES = [v / np.linalg.norm(v) for v in RNG.normal(size=(4, DIM))]


def near(voice: int, noise: float = 0.35) -> np.ndarray:
    v = VOICES[voice] + noise * RNG.normal(size=DIM) / np.sqrt(DIM) * 3
    return (v / np.linalg.norm(v)).astype(np.float32)


def fill(reclusterer, turns, ratio=1.0):
    """Segments ``(voice, seconds, label)`` one after another, with their full windows
    (1.6 s, every 0.2 s, wholly inside); returns the end time."""
    t = 0.0
    for voice, seconds, label in turns:
        end = t
        while end + 1.6 <= t + seconds:
            reclusterer.add_window(Window(end, end + 1.6, ratio, -30.0, near(voice)))
            end += 0.2
        reclusterer.add_segment(Entry(t, t + seconds, label, near(voice)))
        t += seconds + 0.5
    return t


def labels(reclusterer):
    return [e.label for e in reclusterer.entries]


def counter(start=1):
    count = iter(range(start, 100))
    return lambda: f"speaker-{next(count)}"


def test_right_labels_are_kept():
    r = Reclusterer(ReclusterOptions())
    turns = [(0, 5, "speaker-1"), (1, 5, "speaker-2"), (0, 4, "speaker-1"), (1, 6, "speaker-2")]
    repair = r.run(fill(r, turns), counter(3))
    assert repair.relabelled == [] and repair.created == [] and repair.merged == {}
    assert set(repair.centroids) == {"speaker-1", "speaker-2"}
    assert float(repair.centroids["speaker-1"] @ VOICES[0]) > 0.9


def test_one_voice_with_two_labels_is_merged_into_the_one_that_holds_more():
    r = Reclusterer(ReclusterOptions())
    turns = [(0, 6, "speaker-1"), (1, 5, "speaker-2"), (0, 4, "speaker-3"), (1, 5, "speaker-2")]
    turns += [(0, 5, "speaker-1")]
    repair = r.run(fill(r, turns), counter(4))
    assert repair.merged == {"speaker-3": "speaker-1"}
    assert [(e.start_s, old, e.label) for e, old in repair.relabelled] == [
        (12.0, "speaker-3", "speaker-1")
    ]
    assert labels(r) == ["speaker-1", "speaker-2", "speaker-1", "speaker-2", "speaker-1"]


def test_two_voices_under_one_label_are_split_and_the_lesser_gets_a_new_label():
    r = Reclusterer(ReclusterOptions())
    turns = [(0, 9, "speaker-1"), (2, 8, "speaker-1"), (0, 8, "speaker-1"), (1, 8, "speaker-2")]
    turns += [(2, 8, "speaker-1")]
    repair = r.run(fill(r, turns), counter(3))
    assert repair.created == ["speaker-3"]
    assert labels(r) == ["speaker-1", "speaker-3", "speaker-1", "speaker-2", "speaker-3"]
    assert float(repair.centroids["speaker-3"] @ VOICES[2]) > 0.9


def test_an_unknown_segment_with_clean_windows_takes_its_voice():
    r = Reclusterer(ReclusterOptions())
    turns = [(0, 6, "speaker-1"), (1, 5, "speaker-2"), (0, 3, UNKNOWN), (1, 5, "speaker-2")]
    r.run(fill(r, turns), counter(3))
    assert labels(r) == ["speaker-1", "speaker-2", "speaker-1", "speaker-2"]


def test_windows_mostly_silence_do_not_count():
    r = Reclusterer(ReclusterOptions(min_weight=0.6))
    end = fill(r, [(0, 6, "speaker-1"), (1, 6, "speaker-2")])
    end = fill_at(r, end, [(0, 4, "speaker-2")], ratio=0.4)  # bob's label, alice's voice
    r.run(end, counter(3))
    assert labels(r)[-1] == "speaker-2"


def fill_at(reclusterer, start_s, turns, ratio):
    shifted = Reclusterer(reclusterer.options)
    fill(shifted, turns, ratio)
    for w in shifted._windows:
        reclusterer.add_window(Window(w[0] + start_s, w[1] + start_s, w[2], -30.0, w[3]))
    for e in shifted.entries:
        reclusterer.add_segment(Entry(e.start_s + start_s, e.end_s + start_s, e.label, e.vector))
    return start_s + max(e.end_s for e in shifted.entries)


def test_one_voice_stays_one_cluster():
    vectors = np.array([near(0) for _ in range(120)], np.float64)
    assert set(cluster(vectors, ReclusterOptions()).tolist()) == {0}


def test_voices_are_counted_from_the_windows():
    vectors = np.array([near(i % 3) for i in range(150)], np.float64)
    found = cluster(vectors, ReclusterOptions())
    assert len(set(found.tolist())) == 3
    for voice in range(3):
        assert len(set(found[voice::3].tolist())) == 1


def test_the_history_is_bounded_and_passes_are_spaced():
    options = ReclusterOptions(history_s=30.0, every_s=4.0, max_points=40)
    r = Reclusterer(options)
    end = fill(r, [(i % 2, 5, f"speaker-{1 + i % 2}") for i in range(30)])
    assert len(r._windows) <= 2 * options.max_points
    assert r.due(end) and r.run(end, counter(3)) is not None
    assert all(e.end_s >= end - 30.0 for e in r.entries) and len(r.entries) <= 6
    assert not r.due(end + 3.9) and r.due(end + 4.0)


def test_too_little_history_is_no_pass():
    r = Reclusterer(ReclusterOptions())
    end = fill(r, [(0, 2, "speaker-1")])
    assert r.run(end, counter(2)) is None


# The tracker with its look-back, fed regions of vectors.

ON = ReclusterOptions()


def region(tracker, voice, start_s, seconds):
    events = tracker.gate(GateUpdate(started_at_s=start_s), start_s + 0.3)
    t = start_s + 1.6
    while t <= start_s + seconds:
        events += tracker.window(Window(t - 1.6, t, 1.0, -30.0, near(voice, 0.2)), t)
        t += 0.2
    return events + tracker.gate(GateUpdate(ended=(start_s, t - 0.2)), t + 0.2)


def test_the_tracker_repairs_a_voice_it_took_for_another_and_says_so(tmp_path):
    # Live decisions so loose that every stranger is taken for the first voice heard.
    loose = TrackerOptions(
        accept_score=-1.0, short_accept_score=-1.0, margin=0.0, short_margin=0.0, look_back=ON
    )
    tracker = Tracker("s", loose, {})
    events, t = [], 0.0
    for voice in (0, 1, 0, 1, 0, 1):
        events += region(tracker, voice, t, 5.0)
        t += 6.0
    events += tracker.close(GateUpdate(), t)
    live = [e.label for e in events if e.type == "segment" and e.previous is None]
    assert live[:2] == ["speaker-1"] * 2  # the live mistake (later ones know better)
    corrections = [e for e in events if e.type == "segment" and e.previous is not None]
    assert corrections and {e.previous for e in corrections} == {"speaker-1"}
    assert all(e.emitted_at >= e.end_s for e in corrections)
    assert [label for *_, label in final_segments(events)] == ["speaker-1", "speaker-2"] * 3
    sink = RttmSink(tmp_path / "s.rttm", "s", merge_gap_s=0.0)
    for event in events:
        sink.write(event)
    sink.close()
    written = [line.split()[7] for line in (tmp_path / "s.rttm").read_text().splitlines()]
    assert written == ["speaker-1", "speaker-2"] * 3


def test_segments_named_by_a_profile_are_never_corrected():
    profiles = {"alice": VOICES[0]}
    tracker = Tracker("s", TrackerOptions(look_back=ON), profiles)
    events, t = [], 0.0
    for voice in (0, 1, 0, 1, 0):
        events += region(tracker, voice, t, 5.0)
        t += 6.0
    events += tracker.close(GateUpdate(), t)
    assert [e.label for e in events if e.type == "segment"][::2] == ["alice"] * 3
    corrections = [e for e in events if e.type == "segment" and e.previous is not None]
    assert not any("alice" in (e.previous, e.label) for e in corrections)
    assert all(e.label != "alice" for e in tracker.look_back.entries)
