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


def region(tracker, vectors, start_s=0.0, hop_s=0.2, window_s=1.6, onsets=(), ratio=1.0):
    """Feed one speech region whose full windows carry ``vectors`` (``ratio`` of each is
    speech); ``onsets`` are ``(time_s, length_s, vector)`` onset windows, fed when their
    audio is in."""
    events = tracker.gate(GateUpdate(started_at_s=start_s), start_s + 0.3)
    windows = [
        Window(start_s + i * hop_s - window_s + 0.6, start_s + i * hop_s + 0.6, ratio, -30.0, v)
        for i, v in enumerate(vectors)
    ]
    windows += [Window(t, t + length, 1.0, -30.0, v, onset=True) for t, length, v in onsets]
    t = start_s
    for window in sorted(windows, key=lambda w: w.end_s):
        t = window.end_s
        events += tracker.window(window, t)
    events += tracker.gate(GateUpdate(ended=(start_s, t)), t + 0.4)
    return events


def drive(vectors, **kwargs):
    """One region through a fresh tracker with the two profiles."""
    return region(Tracker("s", TrackerOptions(), PROFILES), vectors, **kwargs)


def labels(events, kind="segment"):
    return [e.label for e in events if e.type == kind]


# Orthogonal voices, so a vector's score against each is exactly what a test sets.
AXES = np.eye(DIM, dtype=np.float32)
ORTHO = {"alice": AXES[0], "bob": AXES[1]}


def blend(rest=AXES[5], **scores):
    """A unit vector scoring ``scores`` against the named ``ORTHO`` profiles; the rest of
    it lies along ``rest``."""
    v = sum(score * ORTHO[name] for name, score in scores.items())
    return (v + np.sqrt(1 - float(v @ v)) * rest).astype(np.float32)


def changes(events):
    return [(e.previous, e.label, round(e.start_s, 2)) for e in events if e.type == "change"]


def test_enrolled_voice_is_named_and_stranger_gets_a_voice_label():
    assert labels(drive([near(PROFILES["alice"]) for _ in range(10)])) == ["alice"]
    assert labels(drive([near(STRANGER) for _ in range(10)])) == ["speaker-1"]


def test_a_stranger_is_unknown_until_there_is_enough_clean_speech():
    events = drive([near(STRANGER) for _ in range(10)])
    speaker = [e.label for e in events if e.type == "speaker"]
    assert speaker[0] == UNKNOWN and speaker[-1] == "speaker-1"
    assert not [e for e in events if e.type == "change"]


def test_one_ambiguous_window_does_not_flicker():
    # Unlike alice, leaning to bob, but not enough to name him: it waits for a second one.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    vectors = [near(ORTHO["alice"], 0.05) for _ in range(12)]
    vectors[6] = blend(alice=0.5, bob=0.72)
    events = region(tracker, vectors)
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
    first_bob_end = 15 * 0.2 + 0.6
    assert change.start_s < first_bob_end
    # The first window that confidently names bob makes the change; it waits for no other.
    assert change.emitted_at == first_bob_end


def test_a_turn_without_a_pause_is_dated_where_the_new_voice_overtakes_the_old():
    # The windows slide from alice to bob; bob's score passes alice's between the windows
    # ending at 2.8 s and 3.0 s, a fifth of the way from the first to the second.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    vectors = [blend(alice=0.9) for _ in range(10)] + [
        blend(alice=0.8, bob=0.5),
        blend(alice=0.7, bob=0.62),
        blend(alice=0.6, bob=0.72),
        blend(alice=0.5, bob=0.8),
        *[blend(bob=0.9) for _ in range(6)],
    ]
    events = region(tracker, vectors)
    assert labels(events) == ["alice", "bob"]
    [(previous, label, start_s)] = changes(events)
    assert (previous, label) == ("alice", "bob")
    crossing_s = 2.8 + 0.2 * 0.08 / 0.2
    assert abs(start_s - (crossing_s - TrackerOptions().crossing_lag_s)) < 0.02


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


def test_an_onset_that_names_someone_else_is_a_change_dated_at_the_onset():
    alice = [near(PROFILES["alice"]) for _ in range(15)]
    bob = near(PROFILES["bob"], 0.05)
    events = drive(alice, onsets=[(3.6, 0.6, bob), (3.6, 0.8, bob)])
    change = next(e for e in events if e.type == "change")
    assert (change.previous, change.label, change.start_s) == ("alice", "bob", 3.6)
    assert change.emitted_at == 3.6 + 0.6  # as soon as the first onset window is in
    assert labels(events) == ["alice", "bob"]


def test_an_onset_that_names_the_current_speaker_settles_as_a_continuation():
    alice = [near(PROFILES["alice"]) for _ in range(15)]
    onsets = [(2.0, 0.6, near(PROFILES["alice"])), (2.0, 0.8, near(PROFILES["bob"]))]
    events = drive(alice, onsets=onsets)
    assert labels(events) == ["alice"]
    assert not [e for e in events if e.type == "change"]


def test_returning_voices_keep_their_labels_across_regions():
    other = unit(RNG.normal(size=DIM))
    tracker = Tracker("s", TrackerOptions(), PROFILES)
    events, t = [], 0.0
    for voice in [STRANGER, PROFILES["alice"], other, STRANGER, other, STRANGER]:
        events += region(tracker, [near(voice) for _ in range(10)], start_s=t)
        t += 10.0
    assert labels(events) == [
        "speaker-1",
        "alice",
        "speaker-2",
        "speaker-1",
        "speaker-2",
        "speaker-1",
    ]


def test_only_clean_windows_shape_a_voice():
    tracker = Tracker("s", TrackerOptions(), PROFILES)
    clean = [near(STRANGER) for _ in range(10)]
    events = region(tracker, clean)
    # Mostly-silent windows carrying another voice do not move the centroid.
    tracker.gate(GateUpdate(started_at_s=20.0), 20.3)
    for i in range(6):
        end = 20.6 + 0.2 * i
        tracker.window(Window(end - 1.6, end, 0.8, -30.0, near(STRANGER)), end)
        tracker.window(Window(end - 1.6, end, 0.55, -30.0, near(PROFILES["bob"], 0.5)), end)
    tracker.gate(GateUpdate(ended=(20.0, 22.0)), 22.4)
    assert labels(events) == ["speaker-1"]
    assert float(tracker.voice("speaker-1").centroid @ STRANGER) > 0.97


def test_voices_are_bounded_in_number_and_memory():
    options = TrackerOptions(max_voices=2, voice_memory_s=4.0)
    tracker = Tracker("s", options, {})
    strangers = [unit(RNG.normal(size=DIM)) for _ in range(3)]
    events = []
    for i, voice in enumerate(strangers):
        events += region(tracker, [near(voice) for _ in range(40)], start_s=20.0 * i)
    assert labels(events) == ["speaker-1", "speaker-2", "speaker-3"]
    assert sorted(tracker.voices) == ["speaker-2", "speaker-3"]  # the oldest is forgotten
    assert all(v.weight_s <= 4.0 for v in tracker.voices.values())


def test_a_forgotten_voice_is_matched_by_its_profile_instead():
    tracker = Tracker("s", TrackerOptions(), PROFILES)
    events = region(tracker, [near(STRANGER) for _ in range(10)])
    assert labels(events) == ["speaker-1"]
    centroid = tracker.voice("speaker-1").centroid
    tracker.forget("speaker-1")
    tracker.set_profiles({**PROFILES, "carol": centroid})
    events = region(tracker, [near(STRANGER) for _ in range(10)], start_s=20.0)
    assert labels(events) == ["carol"]


def test_an_unsure_onset_unlike_the_speaker_splits_the_segment():
    # Bob's onset scores 0.66: too low to name him from 0.6 s, too high to be a stranger;
    # but it is nothing like alice, so the turn is found at the onset all the same.
    alice = [near(ORTHO["alice"], 0.05) for _ in range(15)]
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, alice, onsets=[(3.6, 0.6, blend(bob=0.66))])
    assert [(e.label, e.end_s) for e in events if e.type == "segment"][0] == ("alice", 3.6)
    assert changes(events) == [("alice", UNKNOWN, 3.6)]
    kinds = [(e.type, e.label) for e in events]
    after = kinds[kinds.index(("change", UNKNOWN)) + 1 :]
    assert after[:2] == [("speaker", UNKNOWN), ("segment", UNKNOWN)]
    assert [e.emitted_at for e in events] == sorted(e.emitted_at for e in events)
    # The same onset sounding like alice is a continuation.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, alice, onsets=[(3.6, 0.6, blend(alice=0.66))])
    assert labels(events) == ["alice"] and not changes(events)


def test_an_unknown_that_was_the_next_voice_heard_badly_is_no_second_change():
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(10)])
    # Half-silent windows at 0.68 to bob: never named, too few clean ones for a voice.
    events += region(tracker, [blend(bob=0.68)] * 6, start_s=10.0, ratio=0.7)
    events += region(tracker, [near(ORTHO["bob"], 0.05) for _ in range(10)], start_s=20.0)
    assert labels(events) == ["alice", UNKNOWN, "bob"]
    assert changes(events) == [("alice", UNKNOWN, 10.0)]
    # Had the unknown sounded more like alice, bob would be news.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(10)])
    events += region(tracker, [blend(alice=0.5, bob=0.45)] * 6, start_s=10.0, ratio=0.7)
    events += region(tracker, [near(ORTHO["bob"], 0.05) for _ in range(10)], start_s=20.0)
    assert changes(events)[-1] == (UNKNOWN, "bob", 20.0)


def test_profiles_adapt_to_the_session_only_from_confident_segments():
    options = TrackerOptions()
    tracker = Tracker("s", options, ORTHO)
    session = blend(alice=0.8)  # alice on this line: 0.8 to her enrollment
    assert labels(region(tracker, [session] * 10)) == ["alice"]
    assert np.array_equal(tracker.adapted("alice"), ORTHO["alice"])  # 0.8 < adapt_score
    confident = blend(alice=0.9)
    assert labels(region(tracker, [confident] * 10, start_s=10.0)) == ["alice"]
    adapted = tracker.adapted("alice")
    assert float(adapted @ confident) > 0.93  # she now sounds like the session (was 0.9)
    assert tracker.classify(confident, options.window_s) == ("alice", float(adapted @ confident))
    assert np.array_equal(tracker.profiles["alice"], ORTHO["alice"])  # the store's copy
    assert np.array_equal(tracker.adapted("bob"), ORTHO["bob"])
    # New profiles keep what the session taught the remaining ones.
    tracker.set_profiles({"alice": ORTHO["alice"]})
    assert np.array_equal(tracker.adapted("alice"), adapted)


def test_an_onset_too_weak_to_name_but_closest_to_the_speaker_is_no_change():
    # 0.5 to alice is below every bar, but she is still the best match: a bad 0.6 s of
    # her own voice, not a stranger.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    alice = [near(ORTHO["alice"], 0.05) for _ in range(15)]
    events = region(tracker, alice, onsets=[(3.6, 0.6, blend(alice=0.5, bob=0.3))])
    assert labels(events) == ["alice"] and not changes(events)


def test_an_unsure_onset_closer_to_another_voice_splits_the_segment():
    # 0.55 to alice is not unlike her (split_score), but bob is 0.12 closer.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    alice = [near(ORTHO["alice"], 0.05) for _ in range(15)]
    events = region(tracker, alice, onsets=[(3.6, 0.6, blend(alice=0.55, bob=0.67))])
    assert [(e.label, e.end_s) for e in events if e.type == "segment"][0] == ("alice", 3.6)
    assert changes(events) == [("alice", UNKNOWN, 3.6)]


def test_windows_reaching_back_over_a_change_do_not_undo_it():
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    # Full windows end every 0.2 s from 0.6 s; bob starts at 3.6 s (his onset window).
    alice = [near(ORTHO["alice"], 0.05) for _ in range(21)]  # windows ending up to 4.6 s
    bob = [near(ORTHO["bob"], 0.05) for _ in range(10)]
    events = region(tracker, alice + bob, onsets=[(3.6, 0.6, near(ORTHO["bob"], 0.05))])
    # The windows ending at 4.2-4.6 s are mostly alice's audio before 3.6 s.
    assert changes(events) == [("alice", "bob", 3.6)]
    assert [e.label for e in events if e.type == "speaker"] == ["alice", "bob"]
    assert labels(events) == ["alice", "bob"]


def test_only_full_windows_count_towards_giving_up_on_a_name():
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(10)])
    # Alice again after a pause: her onset windows are too short to be sure (0.66), and
    # come every 50 ms; the full windows that follow name her.
    onsets = [(10.0, length, blend(alice=0.66)) for length in (0.6, 0.65, 0.7, 0.75, 0.8)]
    events += region(tracker, [blend(alice=0.8)] * 8, start_s=10.0, onsets=onsets)
    assert labels(events) == ["alice", "alice"]
    assert UNKNOWN not in [e.label for e in events if e.type == "speaker"]
    assert not changes(events)


def test_an_onset_that_names_someone_reports_what_reaching_back_hid():
    stranger = AXES[2]
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    # A stranger, heard too badly to make a voice of (half-silent windows): unknown.
    events = region(tracker, [near(stranger, 0.05)] * 8, ratio=0.7)
    # Bob after a pause, his voice 0.45 s into the region: the first full window still
    # sounds like the stranger, so the segment looks like the same unknown voice; bob's
    # onset then names him.
    events += tracker.gate(GateUpdate(started_at_s=10.0), 10.3)
    events += tracker.window(Window(9.7, 11.3, 0.6, -30.0, near(stranger, 0.05)), 11.3)
    assert [e.label for e in events if e.type == "speaker"] == [UNKNOWN, UNKNOWN]
    onset = Window(10.45, 11.35, 1.0, -30.0, near(ORTHO["bob"], 0.05), onset=True)
    events += tracker.window(onset, 11.35)
    assert changes(events) == [(UNKNOWN, "bob", 10.0)]


def test_an_unknown_that_was_a_known_unknown_voice_is_no_second_change():
    stranger = AXES[2]
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(stranger, 0.05) for _ in range(10)])
    events += region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(10)], start_s=10.0)
    # The stranger again, only 0.6 s and 0.67 to its voice: too short to name, unknown.
    heard_badly = (0.67 * stranger + np.sqrt(1 - 0.67**2) * AXES[5]).astype(np.float32)
    events += region(tracker, [], start_s=20.0, onsets=[(20.0, 0.6, heard_badly)])
    events += region(tracker, [near(stranger, 0.05) for _ in range(10)], start_s=30.0)
    assert labels(events) == ["speaker-1", "alice", UNKNOWN, "speaker-1"]
    assert changes(events) == [("speaker-1", "alice", 10.0), ("alice", UNKNOWN, 20.0)]


def test_a_voice_that_comes_to_match_an_unheard_profile_takes_its_name():
    # Alice heard badly: 0.70 to her profile, so her first region is an unknown voice;
    # her next one, at 0.84, is closer to that voice than to the profile, and folding it
    # in brings the voice to 0.77 of the profile (the name's bar is 0.76): it was her all
    # along. The segment that showed it closes with her name, and her first one is sent
    # again with it.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [blend(alice=0.70, rest=AXES[3])] * 15)
    events += region(tracker, [blend(alice=0.84, rest=AXES[3])] * 15, start_s=10.0)
    assert labels(events) == ["speaker-1", "alice", "alice"]
    first, corrected = (e for e in events if e.type == "segment" and e.start_s < 10)
    assert (corrected.previous, corrected.start_s) == ("speaker-1", first.start_s)
    assert not tracker.voices
    events = region(tracker, [blend(alice=0.77, rest=AXES[3])] * 15, start_s=20.0)
    assert labels(events) == ["alice"]
    # What the voice heard taught her profile how this session sounds: 0.73 to her
    # enrollment, below the name's bar, is her on this line.
    events = region(tracker, [blend(alice=0.73, rest=AXES[3])] * 15, start_s=30.0)
    assert labels(events) == ["alice"]


def test_a_voice_enrolled_while_the_stream_runs_takes_the_name_at_once():
    # Carol is heard as an unknown voice, then enrolled (from this stream, say): the
    # voice is hers, so her next words are named at once, and her earlier segment is
    # sent again with her name when the next one closes.
    tracker = Tracker("s", TrackerOptions(), {"alice": ORTHO["alice"]})
    carol = blend(alice=0.2, rest=AXES[3])
    events = region(tracker, [near(carol, 0.05) for _ in range(15)])
    assert labels(events) == ["speaker-1"]
    tracker.set_profiles({"alice": ORTHO["alice"], "carol": unit(carol + 0.3 * AXES[4])})
    assert not tracker.voices
    events = region(tracker, [near(carol, 0.05) for _ in range(15)], start_s=10.0)
    assert labels(events, "speaker")[0] == "carol"
    assert [(e.label, e.previous) for e in events if e.type == "segment"] == [
        ("carol", None),
        ("carol", "speaker-1"),
    ]


def test_a_voice_near_a_profile_whose_speaker_was_heard_is_a_stranger():
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [blend(alice=0.9)] * 40)  # alice, confidently: she adapts
    # A stranger at 0.76 to alice's enrollment but 0.72 to her as this session hears
    # her: never named; a voice of its own, which stays one although it is as close to
    # the enrolled profile as a name needs.
    stranger = [blend(alice=0.76, rest=AXES[3])] * 15
    assert float(tracker.adapted("alice") @ stranger[0]) < TrackerOptions().accept_score
    events += region(tracker, stranger, start_s=10.0)
    events += region(tracker, stranger, start_s=20.0)
    assert labels(events) == ["alice", "speaker-1", "speaker-1"]
    assert float(tracker.voice("speaker-1").centroid @ ORTHO["alice"]) >= 0.76 - 1e-6


def announced(events):
    """The label each segment's last ``speaker`` event announced, by segment start."""
    return {e.start_s: e.label for e in events if e.type == "speaker"}


def test_windows_folded_back_after_a_false_alarm_announce_what_they_decide():
    # Unsure of alice (0.72) and half-silent: unknown. Two windows unlike the first
    # (another remainder) look like a turn, but name no one: they are folded back into
    # the segment, and with them its mean reaches alice. The subscriber must hear it.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    vectors = [blend(alice=0.72)] * 10 + [blend(alice=0.72, rest=AXES[6])] * 5
    events = region(tracker, vectors, ratio=0.7)
    assert labels(events) == ["alice"]
    assert announced(events) == {0.0: "alice"}


def test_a_window_mostly_before_a_region_does_not_name_it_before_its_onset():
    # Alice, a pause, then bob. The first full window of bob's region (0.6 s of it, the
    # rest alice and silence) still sounds like alice; bob's onset window names him
    # 0.1 s later. A subscriber hears once who speaks from 10.0 s: bob, a change.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(15)])
    events += tracker.gate(GateUpdate(started_at_s=10.0), 10.3)
    events += tracker.window(Window(9.05, 10.65, 1.0, -30.0, near(ORTHO["alice"], 0.05)), 10.65)
    onset = Window(10.05, 10.7, 1.0, -30.0, near(ORTHO["bob"], 0.05), onset=True)
    events += tracker.window(onset, 10.7)
    said = [(e.type, e.label) for e in events if e.start_s == 10.0]
    assert said == [("speech_start", None), ("change", "bob"), ("speaker", "bob")]
    # A window that names somebody new although it is mostly the audio before the
    # region is news at once: the change comes without waiting for the onset.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(15)])
    tracker.gate(GateUpdate(started_at_s=10.0), 10.3)
    events = tracker.window(Window(9.05, 10.65, 1.0, -30.0, near(ORTHO["bob"], 0.05)), 10.65)
    assert [(e.type, e.label, e.emitted_at) for e in events][0] == ("change", "bob", 10.65)


def test_a_stranger_then_an_enrolled_voice_after_a_pause_is_one_change():
    # The window reaching back over the pause mixes the stranger and alice: unknown;
    # alice's onset names her. One change, speaker-1 -> alice, not one to unknown first.
    stranger = AXES[2]
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(stranger, 0.05) for _ in range(10)])
    events += tracker.gate(GateUpdate(started_at_s=10.0), 10.3)
    mixed = 0.55 * ORTHO["alice"] + 0.55 * stranger + np.sqrt(1 - 2 * 0.55**2) * AXES[5]
    events += tracker.window(Window(9.05, 10.65, 1.0, -30.0, mixed), 10.65)
    onset = Window(10.05, 10.7, 1.0, -30.0, near(ORTHO["alice"], 0.05), onset=True)
    events += tracker.window(onset, 10.7)
    assert changes(events) == [("speaker-1", "alice", 10.0)]
    assert [e.label for e in events if e.type == "speaker" and e.start_s == 10.0] == ["alice"]


def test_a_label_is_announced_once_per_segment():
    # Bob's turn is found by full windows and dated back; his onset window then comes
    # in and re-decides the segment from his own audio: still bob, nothing new to say.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    alice = [near(ORTHO["alice"], 0.05) for _ in range(15)]
    bob = [near(ORTHO["bob"], 0.05) for _ in range(10)]
    events = region(tracker, alice + bob, onsets=[(3.2, 0.6, near(ORTHO["bob"], 0.05))])
    speakers = [(e.start_s, e.label) for e in events if e.type == "speaker"]
    assert len(speakers) == len(set(speakers)) == 2


def test_every_region_long_enough_ends_with_a_label():
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    events = region(tracker, [near(ORTHO["alice"], 0.05) for _ in range(10)])
    # 0.8 s of speech whose only window reaches back mostly into the pause, and whose
    # onset window never came: it names no one, and the region is still labelled.
    events += tracker.gate(GateUpdate(started_at_s=10.0), 10.3)
    events += tracker.window(Window(9.05, 10.65, 0.9, -30.0, blend(alice=0.5)), 10.65)
    events += tracker.gate(GateUpdate(ended=(10.0, 10.8)), 11.2)
    assert [(e.type, e.label) for e in events if e.start_s == 10.0][-2:] == [
        ("segment", UNKNOWN),
        ("speech_end", None),
    ]
    # No window at all (all too silent to embed): unknown, and no change from alice.
    events += tracker.gate(GateUpdate(started_at_s=20.0), 20.3)
    events += tracker.gate(GateUpdate(ended=(20.0, 20.6)), 21.0)
    assert [(e.type, e.label) for e in events if e.start_s == 20.0] == [
        ("speech_start", None),
        ("speaker", UNKNOWN),
        ("segment", UNKNOWN),
        ("speech_end", None),
    ]
    # A blip shorter than half a second is left alone.
    events = tracker.gate(GateUpdate(started_at_s=30.0), 30.3)
    events += tracker.gate(GateUpdate(ended=(30.0, 30.4)), 30.8)
    assert [e.type for e in events] == ["speech_start", "speech_end"]


def test_a_new_voice_that_is_a_profile_names_its_segment_at_once():
    # 0.77 to alice but 0.75 to carol (who sounds half like alice): too close a call for
    # a name, so the segment waits and becomes a voice; its centroid folds into alice's
    # profile at once, and the segment takes her name rather than a label now gone.
    carol = 0.5 * AXES[0] + np.sqrt(0.75) * AXES[1]
    tracker = Tracker("s", TrackerOptions(), {"alice": AXES[0], "carol": carol})
    b = (0.75 - 0.5 * 0.77) / np.sqrt(0.75)
    voice = (0.77 * AXES[0] + b * AXES[1] + np.sqrt(1 - 0.77**2 - b**2) * AXES[3]).astype(
        np.float32
    )
    events = region(tracker, [voice] * 15)
    assert labels(events) == ["alice"] and not tracker.voices
    assert "speaker-1" not in labels(events, "speaker")


def test_a_voice_just_above_the_old_bar_is_not_named():
    # 0.75 to alice's enrollment: on clean recordings as much as strangers who sound
    # alike score (the tune half's), so it keeps a voice of its own.
    tracker = Tracker("s", TrackerOptions(), ORTHO)
    assert labels(region(tracker, [blend(alice=0.75, rest=AXES[3])] * 15)) == ["speaker-1"]
