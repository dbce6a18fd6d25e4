"""``streamer enroll``: the report, when nothing is saved, and bad inputs that fail fast."""

from __future__ import annotations

import json

import pytest


def test_enroll_saves_and_reports(cli, audio, tmp_path):
    store = tmp_path / "store"
    result = cli("enroll", "alice", audio["alice.wav"], "--profiles", store)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("alice: ") and "s of speech in" in lines[0]
    assert lines[1].split() == ["ok", "enough", "clear", "speech"]
    assert lines[-1].startswith("saved profile 'alice'")
    assert lines[-1].endswith(str(store / "alice.json"))
    data = json.loads((store / "alice.json").read_text())
    assert data["name"] == "alice" and data["model"] == "ge2e" and data["speech_s"] > 4
    # The audio's channel variants are in it: a sum of unit windows alone is never longer
    # than their count. --variant-weight 0 leaves them out.
    assert sum(x * x for x in data["total"]) ** 0.5 > 1.1 * data["count"]
    plain = tmp_path / "plain"
    result = cli(
        "enroll", "alice", audio["alice.wav"], "--profiles", plain, "--variant-weight", "0"
    )
    assert result.code == 0, result.err
    data = json.loads((plain / "alice.json").read_text())
    assert sum(x * x for x in data["total"]) ** 0.5 <= data["count"]


def test_enroll_again_extends_the_profile(cli, audio, store):
    before = json.loads((store / "alice.json").read_text())
    result = cli("enroll", "alice", audio["alice-more.wav"], "--profiles", store)
    assert result.code == 0, result.err
    assert "extended profile 'alice'" in result.out
    after = json.loads((store / "alice.json").read_text())
    assert after["speech_s"] > before["speech_s"] and after["count"] > before["count"]


def test_a_voice_close_to_another_profile_is_reported(cli, audio, store):
    result = cli("enroll", "alice two", audio["alice-more.wav"], "--profiles", store)
    assert result.code == 0
    assert "close_to_other" in result.out and "'alice'" in result.out
    assert (store / "alice two.json").is_file()


def test_too_little_speech_saves_nothing(cli, audio, tmp_path):
    store = tmp_path / "store"
    result = cli("enroll", "carol", audio["short.wav"], "--profiles", store)
    assert "too_little_speech" in result.out
    assert "profile 'carol' not saved" in result.error and "--force" in result.error
    assert not (store / "carol.json").exists()


@pytest.mark.parametrize("flag", [["--force"], ["--min-speech-s", "1"]])
def test_too_little_speech_can_be_accepted(cli, audio, tmp_path, flag):
    store = tmp_path / "store"
    result = cli("enroll", "carol", audio["short.wav"], "--profiles", store, *flag)
    assert result.code == 0, result.err
    assert (store / "carol.json").is_file()


def test_clips_of_two_people_disagree(cli, audio, tmp_path):
    store = tmp_path / "store"
    clips = [audio["alice.wav"], audio["bob.wav"]]
    result = cli("enroll", "mix", *clips, "--profiles", store)
    assert "clips_disagree" in result.out
    assert "not saved" in result.error
    assert not store.exists() or not any(store.iterdir())
    assert cli("enroll", "mix", *clips, "--profiles", store, "--force").code == 0


def test_silence_is_no_voice(cli, audio, tmp_path):
    result = cli("enroll", "carol", audio["silence.wav"], "--profiles", tmp_path)
    assert "no speech found" in result.error
    assert list(tmp_path.iterdir()) == []


def test_a_profile_of_another_model_is_not_extended(cli, audio, store):
    path = store / "bob.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model": "other"}))
    assert (
        "made with model 'other'"
        in cli("enroll", "bob", audio["bob.wav"], "--profiles", store).error
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "invalid profile name"),
        ("a/b", "invalid profile name"),
        (".hidden", "invalid profile name"),
        ("", "invalid profile name"),
        ("unknown", "is reserved"),
        ("speaker-3", "is reserved"),
    ],
)
def test_unsafe_names_fail_before_the_model_loads(cli, audio, tmp_path, no_model, name, message):
    result = cli("enroll", name, audio["alice.wav"], "--profiles", tmp_path / "store")
    assert message in result.error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.wav", "no such file"), ("empty.wav", "is empty"), ("corrupt.wav", "cannot decode")],
)
def test_bad_clips_fail_before_the_model_loads(cli, audio, tmp_path, no_model, name, message):
    clips = [audio["alice.wav"], audio["alice.wav"].parent / name]
    assert message in cli("enroll", "carol", *clips, "--profiles", tmp_path).error


def test_a_store_that_cannot_be_made_fails_before_the_model_loads(cli, audio, tmp_path, no_model):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    clip = audio["alice.wav"]
    assert "is a file" in cli("enroll", "carol", clip, "--profiles", a_file / "store").error
    assert "not a folder" in cli("enroll", "carol", clip, "--profiles", a_file).error


def test_usage_errors(cli, audio):
    assert cli("enroll", "carol").code == 2  # no clip
    assert cli("enroll", "carol", audio["alice.wav"], "--min-speech-s", "-1").code == 2
