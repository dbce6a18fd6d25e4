"""Enrollment with real speech: the profile and the Eagle-style feedback codes."""

import numpy as np
import pytest

from streamer.enroll import enroll
from streamer.errors import NoSpeechError, ProfileError
from streamer.evaluation.synth import speech
from streamer.profiles import Profile, ProfileStore


@pytest.fixture
def store(tmp_path):
    return ProfileStore(tmp_path)


def test_enroll_creates_then_extends(store, make_engine, voice_profiles):
    engine = make_engine()
    report = enroll(store, "alice", [("a1", speech("alice", 5.0, seed=11))], engine)
    assert report.codes == ["ok"] and report.speech_s > 4.0
    first = store.get("alice")
    assert float(first.embedding @ voice_profiles["alice"]) > 0.9
    enroll(store, "alice", [("a2", speech("alice", 3.0, seed=12))], engine)
    second = store.get("alice")
    assert second.count > first.count and second.speech_s > first.speech_s


def test_too_little_speech_saves_nothing(store, make_engine):
    report = enroll(store, "bob", [("b", speech("bob", 2.0, seed=13))], make_engine())
    assert "too_little_speech" in report.codes and report.profile is None
    assert store.names() == []


def test_no_voice_is_an_error(store, make_engine):
    with pytest.raises(NoSpeechError, match="no speech found in quiet"):
        enroll(store, "bob", [("quiet", np.zeros(16000 * 3, np.float32))], make_engine())


def test_clips_that_disagree_are_flagged(store, make_engine):
    clips = [("bob.wav", speech("bob", 5.0, seed=14)), ("carol.wav", speech("carol", 5.0, seed=14))]
    report = enroll(store, "bob", clips, make_engine())
    assert "clips_disagree" in report.codes and report.profile is None


def test_voice_close_to_another_profile_is_reported(store, make_engine):
    engine = make_engine()
    enroll(store, "dave", [("d", speech("dave", 5.0, seed=15))], engine)
    report = enroll(store, "dave2", [("d2", speech("dave", 5.0, seed=16))], engine)
    assert "close_to_other" in report.codes and report.profile is not None


def test_profile_from_another_model_is_refused(store, make_engine):
    store.save(Profile("erin", "rf5-gru", total=np.ones(256), count=1, speech_s=5))
    with pytest.raises(ProfileError, match="made with model 'rf5-gru'"):
        enroll(store, "erin", [("e", speech("erin", 5.0, seed=17))], make_engine())


def test_channel_variants_bring_the_profile_closer_to_other_sessions(tmp_path, make_engine):
    # Alice enrolls in a quiet moment; later she talks in a reverberant room through a
    # telephone-like microphone. Her profile with the clip's channel variants scores her
    # there higher than the clip alone would, and it is still mostly the clip itself.
    from streamer.enroll import EnrollOptions, collect
    from streamer.evaluation.augment import Microphone, Room, Session

    engine = make_engine()
    clip = speech("alice", 6.0, seed=21)
    profiles = {}
    for weight in (0.0, EnrollOptions().variant_weight):
        store = ProfileStore(tmp_path / str(weight))
        enroll(store, "alice", [("a", clip)], engine, EnrollOptions(variant_weight=weight))
        profiles[weight] = store.get("alice")
    plain, varied = profiles.values()
    assert plain.count == varied.count  # the variants weigh in, but are no windows of hers
    assert 0.95 < float(plain.embedding @ varied.embedding) < 0.9999
    room = Room(0.6, (6.0, 5.0, 3.0), (2.0, 2.0, 1.5), (4.5, 3.6, 1.3))
    later = Session(-6.0, Microphone(280.0, 3600.0, 24), room).apply(
        speech("alice", 6.0, seed=22), 16000
    )
    heard = np.mean(collect(engine, later).embeddings, axis=0)
    assert float(varied.embedding @ heard) > float(plain.embedding @ heard) + 0.03
    # One clip always makes one profile.
    again = ProfileStore(tmp_path / "again")
    enroll(again, "alice", [("a", clip)], engine)
    assert np.allclose(again.get("alice").total, varied.total)
