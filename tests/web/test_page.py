"""The page in a real headless Chromium, its microphone a fake device playing synthetic
voices, against a real daemon: live labels, enrollment, naming, profiles, honest states.

Times: the fake microphone plays its WAV from when the page opens it, so the page's
stream time is the WAV's time (to the few tens of milliseconds the page takes to
connect). The events' times come from the audio, so they are checked closely; when the
DOM shows a label depends on the (shared, loaded) machine, so only its order is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from streamer.evaluation.synth import speech
from tests.conftest import label_share

from .conftest import Feeder, save_screenshot, silence, wait_until

ROOT = Path(__file__).resolve().parents[2]


def label_of(page) -> str:
    return page.get_attribute("#current-speaker", "data-label")


def events_of(page) -> list[dict]:
    return page.evaluate("window.streamerEvents")


def own_stream(page) -> str:
    return page.text_content("#own-stream")


def live(page, timeout_s: float = 30.0) -> None:
    page.wait_for_selector('#connection-state[data-state="live"]', timeout=timeout_s * 1000)


def record_labels(page, until, timeout_s: float, what: str) -> tuple[list[str], list[float]]:
    """The distinct labels ``#current-speaker`` showed, in order, until ``until(labels)``,
    and the level meter's readings meanwhile (dBFS)."""
    labels: list[str] = []
    levels: list[float] = []

    def seen():
        label = label_of(page)
        levels.append(float(page.get_attribute("#level", "aria-valuenow")))
        if label and (not labels or labels[-1] != label):
            labels.append(label)
        return until(labels)

    wait_until(seen, timeout_s, what)
    return labels, levels


def test_live_labels_then_promote_rename_and_delete(start_daemon, store_of, open_page):
    # alice (enrolled) 2-8 s, a stranger (erin) 9-15 s, erin again 17.5-21.5 s.
    mic = np.concatenate(
        [
            silence(2.0),
            speech("alice", 6.0, seed=21),
            silence(1.0),
            speech("erin", 6.0, seed=22),
            silence(2.5),
            speech("erin", 4.0, seed=23),
            silence(3.0),
        ]
    )
    store = store_of("alice", "bob")
    server = start_daemon(store)
    page = open_page(server.url, mic)
    live(page)
    assert page.is_visible('#profiles li[data-name="alice"]')
    page.click("#mic-toggle")
    page.wait_for_selector('#mic-toggle[data-state="on"]', timeout=10_000)
    assert page.get_attribute("#mic-toggle", "aria-pressed") == "true"
    # Another client's stream, watched from the stream picker.
    meeting = Feeder(
        server.port,
        "meeting",
        np.concatenate([speech("bob", 8.0, seed=24), silence(1.0), speech("dave", 20.0, seed=25)]),
    )
    meeting.start()
    page.check("#watch-meeting", timeout=10_000)
    page.wait_for_selector('[data-stream="meeting"] .speaker[data-label="bob"]', timeout=30_000)

    # The DOM names alice, then a voice of its own for the stranger.
    labels, levels = record_labels(
        page,
        lambda labels: any(label.startswith("speaker-") for label in labels),
        40,
        "a speaker-N label for the stranger",
    )
    assert labels[0] == "alice", labels
    assert max(levels) > -30  # the level meter moves
    stranger = next(label for label in labels if label.startswith("speaker-"))
    assert "alice" not in labels[labels.index(stranger) :], labels

    # Promote: wait until the stranger's first turn is a finished segment, then one
    # click on its label and a name.
    own = own_stream(page)
    wait_until(
        lambda: any(
            e["type"] == "segment" and e["label"] == stranger and e["stream"] == own
            for e in events_of(page)
        ),
        30,
        f"the segment of {stranger}",
    )
    chip = f'#unnamed .promote[data-stream="{own}"][data-label="{stranger}"]'
    page.click(chip)
    page.fill("#dialog-input", "erin")
    page.keyboard.press("Enter")  # keyboard use: the dialog's default button
    page.wait_for_selector('#profiles li[data-name="erin"]', timeout=20_000)
    page.wait_for_selector(chip, state="detached", timeout=5_000)
    assert sorted(store.names()) == ["alice", "bob", "erin"]

    # The stranger's next turn is named.
    wait_until(lambda: label_of(page) == "erin", 40, "erin's second turn to be named")
    page.wait_for_selector("#toasts:empty", state="attached", timeout=10_000)
    if_asked_update_docs(page)
    page.wait_for_selector(
        '[data-stream="meeting"] .speaker[data-label^="speaker-"]', timeout=30_000
    )
    meeting.stop()

    # The events place each voice at the right times.
    events = events_of(page)
    assert {e["stream"] for e in events} == {own, "meeting"}
    events = [e for e in events if e["stream"] == own]
    # The page's stream time is the WAV's, less what the fake microphone played before
    # the page listened: measured by the first onset (2 s into the WAV).
    lost = 2.0 - next(e["start_s"] for e in events if e["type"] == "speech_start")
    assert -0.3 < lost < 1.0, lost
    alice = label_share(events, 2.0 - lost, 8.0 - lost)
    first = label_share(events, 9.0 - lost, 15.0 - lost)
    assert alice.get("alice", 0) > 5.0, alice
    assert first.get(stranger, 0) + first.get("unknown", 0) > 4.5, first
    assert first.get("alice", 0) < 0.5, first
    speakers = [e for e in events if e["type"] == "speaker"]
    assert all(1.7 < e["start_s"] + lost < 8.0 for e in speakers if e["label"] == "alice")
    named = next(e for e in speakers if e["label"] == "erin")
    assert 17.0 < named["start_s"] + lost < 19.0, (named, lost)

    assert not page.is_visible(chip)  # late events of the voice do not bring it back
    # Rename and delete, from the page.
    page.click('button[aria-label="Rename erin"]')
    page.fill("#dialog-input", "erin b")
    page.click("#dialog-ok")
    page.wait_for_selector('#profiles li[data-name="erin b"]', timeout=10_000)
    page.click('button[aria-label="Delete alice"]')
    page.click("#dialog-ok")
    page.wait_for_selector('#profiles li[data-name="alice"]', state="detached", timeout=10_000)
    assert sorted(store.names()) == ["bob", "erin b"]
    # A name that is taken is refused in the dialog, which stays open to fix it.
    page.click('button[aria-label="Rename erin b"]')
    page.fill("#dialog-input", "unknown")
    page.click("#dialog-ok")
    page.wait_for_selector("#dialog-error:not(:empty)", timeout=10_000)
    assert page.is_visible("#dialog")
    page.keyboard.press("Escape")
    page.click("#mic-toggle")
    page.wait_for_selector('#mic-toggle[data-state="off"]', timeout=10_000)
    assert page.errors == []


def if_asked_update_docs(page) -> None:
    """Saves the live page as a test artifact; with ``STREAMER_UPDATE_SCREENSHOT=1``, also
    as the README's screenshot."""
    shot = save_screenshot(page, "web-live.png")
    if os.environ.get("STREAMER_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "web.png")


def test_a_voice_enrolled_from_the_page_is_named(start_daemon, store_of, open_page):
    # carol speaks 9 s (8 s of it are enrolled), pauses, then speaks again.
    mic = np.concatenate(
        [speech("carol", 9.0, seed=31), silence(1.5), speech("carol", 5.0, seed=32), silence(2.0)]
    )
    store = store_of()
    server = start_daemon(store)
    page = open_page(server.url, mic)
    live(page)
    assert page.is_visible("#no-profiles")
    page.fill("#enroll-name", "carol")
    page.select_option("#enroll-seconds", "8")
    page.click("#enroll-record")  # starts the microphone too
    page.wait_for_selector('#mic-toggle[data-state="on"]', timeout=10_000)
    progress = wait_until(
        lambda: float(page.get_attribute("#enroll-progress", "value") or 0) or None,
        20,
        "enrollment progress",
    )
    assert 0 < progress < 1
    assert page.is_visible("#enroll-cancel")
    page.wait_for_selector("#enroll-feedback li.summary", timeout=40_000)
    summary = page.text_content("#enroll-feedback li.summary")
    assert summary.startswith("Saved carol"), summary
    assert page.is_visible('#enroll-feedback li[data-code="ok"]')
    page.wait_for_selector('#profiles li[data-name="carol"]', timeout=10_000)
    assert store.names() == ["carol"]
    wait_until(lambda: label_of(page) == "carol", 40, "carol to be named")
    named = [e for e in events_of(page) if e["type"] == "speaker" and e["label"] == "carol"]
    # Named once the profile exists: decided after the enrolled span ended (the segment it
    # opens may start at the window that first matched, inside the span's last second).
    assert named[0]["emitted_at"] >= 8.0 and named[0]["start_s"] >= 7.0, named[0]
    assert page.errors == []


def test_too_little_speech_says_what_to_do(start_daemon, store_of, open_page):
    server = start_daemon(store_of())
    page = open_page(server.url, np.concatenate([speech("bob", 1.0, seed=41), silence(9.0)]))
    live(page)
    page.fill("#enroll-name", "bob")
    page.select_option("#enroll-seconds", "6")
    page.click("#enroll-record")
    page.wait_for_selector("#enroll-feedback li.summary", timeout=40_000)
    assert page.text_content("#enroll-feedback li.summary") == "bob was not saved."
    advice = page.text_content('#enroll-feedback li[data-code="too_little_speech"]')
    assert "Record again and keep talking" in advice
    assert page.is_visible("#no-profiles")


def test_the_page_reconnects_after_the_daemon_restarts(start_daemon, store_of, open_page):
    mic = np.concatenate([speech("alice", 30.0, seed=51), silence(2.0)])
    server = start_daemon(store_of("alice"))
    page = open_page(server.url, mic)
    live(page)
    page.click("#mic-toggle")
    wait_until(lambda: label_of(page) == "alice", 30, "alice to be named")
    first_stream = own_stream(page)

    server.stop()
    page.wait_for_selector('#connection-state[data-state="reconnecting"]', timeout=10_000)
    page.wait_for_selector('#alert[data-code="reconnecting"]', timeout=5_000)
    assert page.get_attribute("#mic-toggle", "data-state") == "reconnecting"
    before = len(events_of(page))

    server.restart()
    live(page)
    page.wait_for_selector('#mic-toggle[data-state="on"]', timeout=15_000)
    assert page.is_hidden("#alert")
    assert own_stream(page) == first_stream  # the same stream id, again
    # The microphone's audio flows into the new daemon: alice is named again.
    wait_until(
        lambda: any(e["type"] == "speaker" for e in events_of(page)[before:]),
        30,
        "a speaker event after the restart",
    )
    assert label_of(page) in ("alice", "")

    # Restarted with a token the page does not have: it says so and stops retrying.
    server.restart(token="another-token")
    page.wait_for_selector('#alert[data-code="unauthorized"]', timeout=20_000)
    assert "Wrong or missing token" in page.text_content("#alert")
    assert "?token=YOUR_TOKEN" in page.text_content("#alert")
    assert page.get_attribute("#connection-state", "data-state") == "failed"
    assert page.errors == []


def test_token_stream_limit_and_denied_microphone(start_daemon, store_of, open_page):
    server = start_daemon(store_of(), token="s3cret-token", max_streams=1)
    wrong = open_page(server.url + "?token=wrong-token")
    assert "This daemon needs its token" in wrong.text_content("#alert")
    assert "?token=YOUR_TOKEN" in wrong.text_content("#alert")

    page = open_page(server.url + "?token=s3cret-token", silence(10.0))
    live(page)
    hello = '{"type":"hello","role":"stream","sample_rate":16000,"token":"s3cret-token"}'
    with connect(f"ws://127.0.0.1:{server.port}/") as other:  # takes the only stream
        other.send(hello)
        assert '"ready"' in other.recv(timeout=10)
        page.click("#mic-toggle")
        page.wait_for_selector('#alert[data-code="limit"]', timeout=15_000)
        assert "limit" in page.text_content("#alert")
        page.wait_for_selector('#mic-toggle[data-state="off"]', timeout=5_000)
    # Once the other stream is gone, the microphone starts.
    wait_until(lambda: not server.server.sessions, 10, "the other stream to end")
    page.click("#mic-toggle")
    page.wait_for_selector('#mic-toggle[data-state="on"]', timeout=10_000)
    assert page.is_hidden("#alert")

    denied = open_page(server.url + "?token=s3cret-token", allow_mic=False)
    live(denied)
    denied.click("#mic-toggle")
    denied.wait_for_selector('#alert[data-code="mic_denied"]', timeout=10_000)
    assert "blocked" in denied.text_content("#alert .title")
    assert denied.get_attribute("#mic-toggle", "data-state") == "denied"
    for p in (page, denied):
        assert p.errors == []
