"""Control over the websocket: live enrollment, cancel, profiles, status, promote."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamer.enroll import FEEDBACK, enroll
from streamer.errors import ProfileError
from streamer.evaluation.synth import conversation, speech
from streamer.profiles import ProfileStore
from streamer.tracker import Voice
from streamer.worker import WorkerOptions
from tests.conftest import label_share
from tests.server.conftest import SR, Client, daemon, run


def test_live_enrollment_then_identification_on_another_stream(make_engine, store_of, tmp_path):
    store = store_of("alice", "bob")
    carol = speech("carol", 9.0, seed=71)
    later = speech("carol", 3.0, seed=73)
    talk, turns = conversation([("carol", 4.0), ("bob", 3.5)], gap_s=0.6, seed=72)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            watcher = await Client.open(server, "subscribe", listen=True)
            first = await Client.open(server, listen=True, stream="studio", events=True)
            # "The next 8 seconds of this stream are carol."
            await first.send({"type": "enroll", "name": "carol", "seconds": 8, "id": "e1"})
            started = await first.next("enroll_started")
            await first.send_audio(carol)  # as fast as the daemon takes it
            done = await first.next("enroll_done")
            progress = [m for _, m in first.received if m["type"] == "enroll_progress"]
            profiles = await watcher.next("profiles")
            # Carol goes on talking on the same stream after her profile was saved.
            await first.send_audio(later)
            await first.end()
            # Another stream: carol is named from now on, bob as before.
            second = await Client.open(server, listen=True, stream="meeting", events=True)
            await second.send_audio(talk)
            await second.end()
            await watcher.send({"type": "status"})
            status = await watcher.next("status")
            for client in (watcher, first, second):
                await client.close()
            return started, done, progress, profiles, first, second, status

    started, done, progress, profiles, first, second, status = run(scenario())
    assert started == {
        "type": "enroll_started",
        "stream": "studio",
        "name": "carol",
        "seconds": 8.0,
        "start_s": 0.0,
        "id": "e1",
    }
    assert done["saved"] is True and done["id"] == "e1"
    assert [f["code"] for f in done["feedback"]] == ["ok"]
    assert 6.0 < done["speech_s"] <= 8.0 and done["recorded_s"] == pytest.approx(8.0, abs=0.1)
    assert done["profile"]["name"] == "carol" and "total" not in done["profile"]
    # Every 0.5 s of audio, at most once per engine step; a step takes up to 1 s of a
    # stream (WorkerOptions.step_s), which audio sent faster than real time fills.
    assert len(progress) >= 8 / WorkerOptions().step_s - 1
    recorded = [p["recorded_s"] for p in progress]
    assert recorded == sorted(recorded) and recorded[-1] <= 8.0
    assert progress[-1]["speech_s"] > 5 and progress[-1]["level_dbfs"] < 0
    assert [p["name"] for p in profiles["profiles"]] == ["alice", "bob", "carol"]
    assert "carol" in store.names()
    # Her profile has the channel variants of the 8 s in it, as `streamer enroll` of the
    # same audio would: a sum of unit windows alone is never longer than their count.
    saved = store.get("carol")
    assert np.linalg.norm(saved.total) > 1.1 * saved.count
    offline = ProfileStore(tmp_path / "offline")
    enroll(offline, "carol", [("clip", carol[: 8 * SR])], make_engine())
    assert float(saved.embedding @ offline.get("carol").embedding) > 0.99
    # While enrolling, the stream itself was tracked as usual (carol was unknown then);
    # once her profile was saved, the same stream named her.
    speakers = [e["label"] for e in first.events() if e["type"] == "speaker"]
    assert speakers[0] == "unknown" and speakers[-1] == "carol"
    for start, end, speaker in turns:
        shares = label_share(second.events(), start, end)
        assert shares.get(speaker, 0) >= 0.8 * (end - start), (speaker, shares)
    assert status["profiles"] == ["alice", "bob", "carol"]


def test_enrollment_feedback_and_cancel(make_engine, store_of):
    store = store_of("alice")
    quiet = np.zeros(3 * SR, np.float32)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            control = await Client.open(server, "control", listen=True)
            talker = await Client.open(server, stream="room")
            # Enrolled from another connection, which gets the answers.
            await control.send({"type": "enroll", "stream": "room", "name": "zed", "seconds": 2})
            await control.next("enroll_started")
            await talker.send_audio(quiet)
            silent = await control.next("enroll_done")
            # Too little speech: reported, nothing saved.
            await control.send({"type": "enroll", "stream": "room", "name": "zed", "seconds": 2})
            await control.next("enroll_started")
            await talker.send_audio(speech("bob", 2.5, seed=73))
            short = await control.next("enroll_done")
            # Cancelled half way: nothing saved, and the stream can be enrolled again.
            await control.send({"type": "enroll", "stream": "room", "name": "zed", "seconds": 8})
            await control.next("enroll_started")
            busy = await control.request({"type": "enroll", "stream": "room", "name": "x"})
            await talker.send_audio(speech("bob", 3.0, seed=74))
            await control.send({"type": "cancel", "stream": "room"})
            cancelled = await control.next("enroll_cancelled")
            status = await control.request({"type": "status"})
            await talker.end()
            for client in (control, talker):
                await client.close()
            return silent, short, busy, cancelled, status

    silent, short, busy, cancelled, status = run(scenario())
    assert silent["saved"] is False
    assert [f["code"] for f in silent["feedback"]] == ["no_voice"]
    assert short["saved"] is False and "too_little_speech" in [f["code"] for f in short["feedback"]]
    assert busy["type"] == "error" and busy["code"] == "busy"
    assert cancelled == {"type": "enroll_cancelled", "stream": "room", "name": "zed"}
    assert status["streams"][0]["enrolling"] is None
    assert store.names() == ["alice"]


def test_rename_and_remove_reach_every_stream_at_once(make_engine, store_of):
    store = store_of("alice", "bob")
    talk, turns = conversation([("alice", 3.5), ("bob", 3.5)], gap_s=0.6, seed=75)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            watcher = await Client.open(server, "subscribe", listen=True)
            talker = await Client.connect(server)
            await talker.hello(stream="live", events=True)  # open before the changes
            talker.listen()
            control = await Client.open(server, "control")
            renamed = await control.request(
                {"type": "rename", "name": "alice", "new_name": "alice smith"}
            )
            removed = await control.request({"type": "remove", "name": "bob"})
            listing = await control.request({"type": "profiles"})
            notices = [await watcher.next("profiles") for _ in range(2)]
            await talker.send_audio(talk)
            await talker.end()
            for client in (watcher, talker, control):
                await client.close()
            return renamed, removed, listing, notices, talker

    renamed, removed, listing, notices, talker = run(scenario())
    assert renamed == {"type": "renamed", "name": "alice", "new_name": "alice smith"}
    assert removed == {"type": "removed", "name": "bob"}
    assert [p["name"] for p in listing["profiles"]] == ["alice smith"]
    assert [p["name"] for p in notices[-1]["profiles"]] == ["alice smith"]
    expected = {"alice": "alice smith", "bob": "speaker-1"}  # bob is unknown now
    for start, end, speaker in turns:
        shares = label_share(talker.events(), start, end)
        assert shares.get(expected[speaker], 0) >= 0.8 * (end - start), (speaker, shares)


def test_promote_names_an_unknown_voice_for_every_stream(make_engine, store_of):
    store = store_of("alice")
    talk, _ = conversation([("alice", 3.0), ("dave", 5.0)], gap_s=0.6, seed=76)
    later, later_turns = conversation([("dave", 4.0)], seed=77)

    async def scenario():
        async with daemon(make_engine(), store) as server:
            talker = await Client.open(server, listen=True, stream="live", events=True)
            await talker.send_audio(talk)
            # The unknown voice's automatic label, once the tracker gave it one.
            unknown = ""
            while not unknown.startswith("speaker-"):
                unknown = (await talker.next("speaker"))["label"]
            await talker.send({"type": "promote", "label": unknown, "name": "dave", "id": 3})
            promoted = await talker.next("promoted", "error")
            await talker.send_audio(later)
            await talker.end()
            other = await Client.open(server, listen=True, stream="other", events=True)
            await other.send_audio(later)
            await other.end()
            await talker.send({"type": "promote", "label": "nobody", "name": "x"})
            bad = await talker.next("error")
            for client in (talker, other):
                await client.close()
            return promoted, bad, other

    promoted, bad, other = run(scenario())
    assert promoted["type"] == "promoted" and promoted["id"] == 3, promoted
    assert promoted["saved"] is True, promoted
    assert promoted["name"] == "dave" and "dave" in store.names()
    assert bad["type"] == "error"
    start, end, _ = later_turns[0]
    assert label_share(other.events(), start, end).get("dave", 0) >= 0.8 * (end - start)


def test_promote_settles_in_the_engine_thread_and_saves_in_the_store_thread(
    make_engine, store_of, voice_profiles
):
    """The daemon's side of promote, with a stand-in for ``Engine.settle``: the engine
    only hands the voice over; the profile is written off the engine's thread."""
    store = store_of("alice")
    engine = make_engine()
    calls = []

    def settle(stream_id, label):
        calls.append(("settle", stream_id, label, threading.current_thread().name))
        if label != "unknown-1":
            raise ProfileError(f"stream {stream_id!r} has no unknown voice {label!r}")
        return Voice(label, voice_profiles["dave"].astype(np.float64), 5.0, 1.0, 20, 5.0)

    save = store.save

    def save_in(profile):
        calls.append(("save", profile.name, threading.current_thread().name))
        save(profile)

    engine.settle = settle
    store.save = save_in
    dave, _ = conversation([("dave", 4.0)], seed=78)

    async def scenario():
        async with daemon(engine, store) as server:
            watcher = await Client.open(server, "subscribe", listen=True)
            talker = await Client.open(server, stream="live", events=True)
            request = {"type": "promote", "label": "unknown-1", "name": "dave", "id": 9}
            await talker.send(request)
            promoted = await talker.next("promoted")  # after a "profiles" notice
            await talker.send({"type": "promote", "label": "unknown-7", "name": "x"})
            bad = await talker.next("error")
            notice = await watcher.next("profiles")
            talker.listen()
            await talker.send_audio(dave)
            await talker.end()
            for client in (watcher, talker):
                await client.close()
            return promoted, bad, notice, talker

    promoted, bad, notice, talker = run(scenario())
    assert promoted == {
        "type": "promoted",
        "stream": "live",
        "label": "unknown-1",
        "name": "dave",
        "saved": True,
        "speech_s": 5.0,
        "windows": 20,
        "feedback": [{"code": "ok", "message": FEEDBACK["ok"]}],
        "profile": promoted["profile"],
        "id": 9,
    }
    assert calls[0] == ("settle", "live", "unknown-1", "streamer-engine")
    assert calls[1][:2] == ("save", "dave") and calls[1][2].startswith("streamer-store")
    assert bad["type"] == "error" and bad["code"] == "profile" and "unknown-7" in bad["message"]
    assert [p["name"] for p in notice["profiles"]] == ["alice", "dave"]
    assert {e["label"] for e in talker.events() if e["type"] == "segment"} == {"dave"}
