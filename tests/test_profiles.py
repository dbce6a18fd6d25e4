import json
import os
import stat

import numpy as np
import pytest

from streamer.errors import ProfileError
from streamer.profiles import Profile, ProfileStore, check_name, default_store_path


def make(name="alice", model="ge2e", dim=4):
    return Profile(name=name, model=model, total=np.ones(dim), count=1, speech_s=5.0)


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "a\\b", "", ".hidden", "x" * 65, "a\nb", None, ["a"]]
)
def test_unsafe_names_are_refused(name):
    with pytest.raises(ProfileError, match="invalid profile name"):
        check_name(name)


@pytest.mark.parametrize("name", ["unknown", "Unknown", "speaker-1", "speaker-12", "SPEAKER-3"])
def test_unknown_voice_labels_are_reserved(name, tmp_path):
    with pytest.raises(ProfileError, match="reserved"):
        check_name(name)
    store = ProfileStore(tmp_path)
    store.save(make("alice"))
    with pytest.raises(ProfileError, match="reserved"):
        store.rename("alice", name)
    assert store.names() == ["alice"]


def test_a_label_may_be_a_file_for_save_unknown(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(make("speaker-2"))  # what track --save-unknown writes, to be renamed
    store.rename("speaker-2", "dave")
    assert store.names() == ["dave"]


def test_orphan_temp_files_are_removed_at_start_and_never_read(tmp_path):
    import subprocess
    import sys

    store = ProfileStore(tmp_path)
    store.save(make("alice"))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f".tmp-{dead.stdout.strip()}-abc.json"
    orphan.write_text(json.dumps(make("mallory").to_json()))
    legacy = tmp_path / ".tmp-q1w2e3.json"  # the old naming, before the writer's pid
    legacy.write_text("{")
    live = tmp_path / f".tmp-{os.getpid()}-writing.json"  # this process is mid-write
    live.write_text("{")
    assert store.names() == ["alice"]  # temp files are never profiles
    again = ProfileStore(tmp_path)  # start-up
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["alice.json", live.name])
    assert again.names() == ["alice"]


@pytest.mark.parametrize("name", ["alice", "Bob Smith", "jean-luc", "zoë", "speaker.2"])
def test_ordinary_names_are_accepted(name):
    assert check_name(name) == name


def test_save_is_private_and_atomic(tmp_path):
    store = ProfileStore(tmp_path / "store")
    path = store.save(make())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o700
    assert [p.name for p in store.path.iterdir()] == ["alice.json"]  # no temp files left
    again = store.get("alice")
    np.testing.assert_allclose(again.embedding, np.full(4, 0.5))


def test_failed_write_keeps_the_old_profile(tmp_path, monkeypatch):
    store = ProfileStore(tmp_path)
    store.save(make())
    before = (tmp_path / "alice.json").read_text()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(ProfileError, match="No space left"):
        store.save(make(dim=4))
    assert (tmp_path / "alice.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json"]


def test_extend_is_the_renormalised_mean_of_all_unit_vectors(tmp_path):
    a, b, c = np.eye(3)
    profile = Profile("x", "ge2e", total=np.zeros(3), count=0, speech_s=0)
    profile.extend(np.stack([a, b]), 4.0)
    profile.extend(c[None], 2.0)
    np.testing.assert_allclose(profile.embedding, np.ones(3) / np.sqrt(3), rtol=1e-6)
    assert profile.count == 3 and profile.speech_s == 6.0


def test_the_store_keeps_the_speech_seconds_that_enrollment_printed(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(Profile("x", "ge2e", total=np.ones(3), count=1, speech_s=5.149))
    assert f"{store.get('x').speech_s:.1f}" == "5.1"  # not 5.15, shown as 5.2


def test_rename_remove_and_unknown_names(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(make("alice"))
    store.save(make("bob"))
    store.rename("alice", "carol")
    assert store.names() == ["bob", "carol"]
    with pytest.raises(ProfileError, match="exists already"):
        store.rename("carol", "bob")
    store.remove("bob")
    with pytest.raises(ProfileError, match="no profile named 'bob'.*known: carol"):
        store.get("bob")


def test_models_never_mix(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(make("alice", model="ge2e"))
    store.save(make("bob", model="wespeaker-resnet34"))
    assert [p.name for p in store.for_model("ge2e")] == ["alice"]


def test_damaged_file_and_store_that_is_a_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ProfileError, match="damaged"):
        ProfileStore(tmp_path).get("bad")
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(ProfileError, match="not a folder"):
        ProfileStore(regular)
    with pytest.raises(ProfileError, match="cannot write"):
        ProfileStore(regular / "sub").save(make())


def test_store_location_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_PROFILES", str(tmp_path))
    assert default_store_path() == tmp_path
    monkeypatch.delenv("STREAMER_PROFILES")
    # Run from this checkout: the checkout's own profiles/ folder.
    assert default_store_path().name == "profiles"


def test_damaged_profile_can_be_removed_and_temp_files_are_not_profiles(tmp_path):
    store = ProfileStore(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / ".tmp-abc123.json").write_text("{}")
    assert store.names() == ["bad"]
    store.remove("bad")
    assert store.names() == []


WRITER = """
import sys
import numpy as np
from streamer.profiles import Profile, ProfileStore
store = ProfileStore(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:
    for name in ("alice", "bob", "carol"):
        total = rng.normal(size=256)
        store.save(Profile(name, "ge2e", total=total, count=1, speech_s=float(total[0] ** 2)))
"""


def test_kill_9_during_writes_leaves_nothing_corrupt_nor_orphaned(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for round_ in range(9):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(0.05 + 0.03 * round_)  # killed at a different point of a write each time
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        store = ProfileStore(tmp_path)  # the restart
        assert not list(tmp_path.glob(".tmp-*")), "orphan temp files after a restart"
        for profile in store.all():  # every profile reads back whole
            assert profile.total.shape == (256,) and profile.count == 1
    assert store.names() == ["alice", "bob", "carol"]
