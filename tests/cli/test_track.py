"""``streamer track``: outputs, the no-speech case, and bad inputs that fail fast."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import streamer.pipeline
from streamer.evaluation.scoring import read_rttm
from streamer.events import EVENT_TYPES, SCHEMA_VERSION, Event
from streamer.profiles import ProfileStore
from streamer.sinks.console import ConsoleSink
from streamer.sinks.rttm import MERGE_GAP_S, format_rttm, merge_gaps
from streamer.sinks.timeline import draw

from .conftest import TURNS


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def turn_labels(segments, reference) -> list[str]:
    """For each reference turn, the label that covers most of it."""
    labels = []
    for start, end in reference:
        cover: dict[str, float] = {}
        for s, e, label in segments:
            cover[label] = cover.get(label, 0.0) + max(0.0, min(e, end) - max(s, start))
        labels.append(max(cover, key=cover.get) if cover else "")
    return labels


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, audio, enrolled_store):
    """One fast run over the conversation with both outputs (shared by several tests)."""
    from streamer.cli import main

    out = tmp_path_factory.mktemp("tracked")
    args = ["track", audio["talk.wav"], "--profiles", enrolled_store]
    args += ["--jsonl", out / "talk.jsonl", "--rttm", out / "talk.rttm"]
    assert main([str(a) for a in args]) == 0
    return out


def test_jsonl_holds_every_event_in_decision_order(tracked):
    events = read_jsonl(tracked / "talk.jsonl")
    assert events, "no events"
    assert {e["v"] for e in events} == {SCHEMA_VERSION}
    assert {e["stream"] for e in events} == {"talk"}  # the file stem
    assert {e["type"] for e in events} <= set(EVENT_TYPES)
    decided = [e["emitted_at"] for e in events]
    assert decided == sorted(decided)
    starts = [e for e in events if e["type"] == "speech_start"]
    ends = [e for e in events if e["type"] == "speech_end"]
    assert len(starts) == len(ends) >= 1


def test_rttm_is_the_segment_events_sorted_and_joined_across_short_pauses(tracked):
    events = read_jsonl(tracked / "talk.jsonl")
    segments = merge_gaps(
        [(e["start_s"], e["end_s"], e["label"]) for e in events if e["type"] == "segment"],
        MERGE_GAP_S,
    )
    text = (tracked / "talk.rttm").read_text()
    assert text.startswith("SPEAKER talk 1 ")
    rttm = read_rttm(tracked / "talk.rttm")
    assert list(rttm) == ["talk"]
    assert [label for *_, label in rttm["talk"]] == [label for *_, label in segments]
    for (start, end, _), (r_start, r_end, _) in zip(segments, rttm["talk"]):
        assert r_start == pytest.approx(start, abs=1e-3)
        assert r_end == pytest.approx(end, abs=2e-3)


def test_the_enrolled_voices_are_named(tracked):
    from streamer.evaluation.synth import conversation

    _, reference = conversation(TURNS, gap_s=0.6, seed=7)
    segments = read_rttm(tracked / "talk.rttm")["talk"]
    spans = [(start, end) for start, end, _ in reference]
    assert turn_labels(segments, spans) == [who for *_, who in reference]


def test_prints_lines_and_a_summary_as_plain_text(cli, audio, store):
    result = cli("track", audio["talk.wav"], "--profiles", store)
    assert result.code == 0, result.err
    assert "\x1b[" not in result.out  # not a terminal: no colours or cursor moves
    lines = result.out.splitlines()
    assert lines[0].startswith(f"tracking {audio['talk.wav']}")
    assert any("change alice -> bob" in line for line in lines)
    assert "real-time factor" in result.out
    summary = next(line for line in lines if line.startswith("speakers: "))
    assert "alice" in summary and "bob" in summary
    assert result.err == ""


def test_quiet_prints_only_the_summary(cli, audio, store):
    result = cli("track", audio["talk.wav"], "--profiles", store, "--quiet")
    assert result.code == 0
    lines = result.out.splitlines()
    assert len(lines) == 2
    assert "real-time factor" in lines[0] and lines[1].startswith("speakers: ")


def test_realtime_gives_the_same_events(cli, audio, store, tmp_path, monkeypatch):
    monkeypatch.setattr("streamer.sources.file.time.sleep", lambda seconds: None)
    fast, paced = tmp_path / "fast.jsonl", tmp_path / "paced.jsonl"
    assert cli("track", audio["talk.wav"], "--profiles", store, "--jsonl", fast).code == 0
    result = cli("track", audio["talk.wav"], "--profiles", store, "--jsonl", paced, "--realtime")
    assert result.code == 0
    assert "paced in real time" in result.out
    assert read_jsonl(paced) == read_jsonl(fast)


def test_no_speech_still_writes_empty_outputs(cli, audio, store, tmp_path):
    jsonl, rttm = tmp_path / "out.jsonl", tmp_path / "out.rttm"
    result = cli(
        "track", audio["silence.wav"], "--profiles", store, "--jsonl", jsonl, "--rttm", rttm
    )
    assert result.code == 0
    assert result.err == f"no speech found in {audio['silence.wav']}\n"
    assert jsonl.read_text() == "" and rttm.read_text() == ""
    assert "speakers: none" in result.out


def test_without_profiles_voices_get_automatic_labels(cli, audio, tmp_path):
    rttm = tmp_path / "out.rttm"
    result = cli("track", audio["talk.wav"], "--profiles", tmp_path / "none", "--rttm", rttm, "-q")
    assert result.code == 0
    assert "no ge2e profiles" in result.err
    turns = read_rttm(rttm)["talk"]

    def label_at(t):
        return next(label for start, end, label in turns if start <= t < end)

    # alice, bob, alice (6 s, 6 s, 5 s): two voices, numbered in order of appearance.
    assert [label_at(t) for t in (3.0, 9.5, 15.5)] == ["speaker-1", "speaker-2", "speaker-1"]


def test_save_unknown_keeps_each_voice_as_a_profile(cli, audio, tmp_path):
    saved = tmp_path / "voices"
    result = cli(
        "track", audio["talk.wav"], "--profiles", tmp_path / "none", "--save-unknown", saved, "-q"
    )
    assert result.code == 0
    assert "voices get labels speaker-1, speaker-2" in result.err and "'unknown'" not in result.err
    assert "saved speaker-1 as profile 'speaker-1'" in result.out
    assert ProfileStore(saved).names() == ["speaker-1", "speaker-2"]
    # Each saved voice's clean speech is part of what the summary says it spoke, and the
    # store keeps the figure the run printed.
    spoke = dict(re.findall(r"(speaker-\d) ([\d.]+) s", result.out.split("speakers: ")[1]))
    for label, seconds in re.findall(r"saved (speaker-\d) .*\(([\d.]+) s of clean", result.out):
        assert float(seconds) <= float(spoke[label])
        assert f"{ProfileStore(saved).get(label).speech_s:.1f}" == seconds
    # Later runs that know those profiles name the voices by them.
    rttm = tmp_path / "again.rttm"
    assert cli("track", audio["talk.wav"], "--profiles", saved, "--rttm", rttm, "-q").code == 0
    assert {label for *_, label in read_rttm(rttm)["talk"]} <= {"speaker-1", "speaker-2"}


def test_name_promotes_one_voice_into_the_store(cli, audio, store, tmp_path):
    result = cli(
        "track", audio["carol.wav"], "--profiles", store, "--name", "speaker-1=robert", "-q"
    )
    assert result.code == 0, result.err
    assert "saved speaker-1 as profile 'robert'" in result.out
    assert "robert" in ProfileStore(store).names()
    missing = cli("track", audio["carol.wav"], "--profiles", store, "--name", "speaker-7=x", "-q")
    assert "not saved: no unknown voice 'speaker-7' in this run" in missing.out
    assert missing.code == 1  # a request that failed
    reserved = cli("track", audio["carol.wav"], "--name", "speaker-1=speaker-2")
    assert reserved.code == 1 and "reserved" in reserved.err
    usage = cli("track", audio["carol.wav"], "--name", "carol")
    assert usage.code == 2 and "expected LABEL=NAME" in usage.err


def test_profiles_of_another_model_are_ignored_with_a_warning(cli, audio, store, tmp_path):
    path = store / "bob.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "model": "other"}))
    rttm = tmp_path / "out.rttm"
    result = cli("track", audio["talk.wav"], "--profiles", store, "--rttm", rttm, "-q")
    assert result.code == 0
    assert "ignoring profiles made with another model: bob (other)" in result.err
    assert "bob" not in {label for *_, label in read_rttm(rttm)["talk"]}


def test_ctrl_c_exits_130_quietly_and_keeps_no_partial_rttm(
    cli, audio, store, tmp_path, monkeypatch
):
    real = streamer.pipeline.track_chunks

    def interrupted(*args, **kwargs):
        for n, event in enumerate(real(*args, **kwargs)):
            if n == 3:
                raise KeyboardInterrupt
            yield event

    monkeypatch.setattr(streamer.pipeline, "track_chunks", interrupted)
    jsonl, rttm = tmp_path / "out.jsonl", tmp_path / "out.rttm"
    args = ["--jsonl", jsonl, "--rttm", rttm, "--plot", tmp_path / "out.png"]
    result = cli("track", audio["talk.wav"], "--profiles", store, *args)
    assert result.code == 130
    assert result.err == ""
    assert len(read_jsonl(jsonl)) == 3  # what was decided before Ctrl-C
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "profiles"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.wav", "no such file"),
        ("empty.wav", "is empty"),
        ("corrupt.wav", "cannot decode audio"),
    ],
)
def test_bad_audio_fails_before_the_model_loads(cli, audio, no_model, tmp_path, name, message):
    path = audio["talk.wav"].parent / name
    result = cli("track", path, "--jsonl", tmp_path / "out.jsonl")
    assert result.code == 1
    assert message in result.error
    assert not (tmp_path / "out.jsonl").exists()


def test_a_folder_is_not_audio(cli, tmp_path, no_model):
    assert "is a folder" in cli("track", tmp_path).error


@pytest.mark.parametrize(
    ("flag", "name"), [("--jsonl", "out"), ("--rttm", "out"), ("--plot", "t.png")]
)
def test_unwritable_outputs_fail_before_the_model_loads(cli, audio, no_model, tmp_path, flag, name):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    talk = audio["talk.wav"]
    assert "is a file, not a folder" in cli("track", talk, flag, a_file / name).error
    assert "does not exist" in cli("track", talk, flag, tmp_path / "no" / name).error
    assert "is a folder" in cli("track", talk, flag, tmp_path).error
    assert "is the input file" in cli("track", talk, flag, talk).error
    assert sorted(os.listdir(tmp_path)) == ["a-file"]  # no temporary files left behind


def test_a_bad_jsonl_path_leaves_no_rttm_behind(cli, audio, no_model, tmp_path):
    result = cli(
        "track",
        audio["talk.wav"],
        "--rttm",
        tmp_path / "out.rttm",
        "--jsonl",
        tmp_path / "no" / "x",
    )
    assert "does not exist" in result.error
    assert os.listdir(tmp_path) == []


def test_bad_options(cli, audio, store):
    talk = audio["talk.wav"]
    assert cli("track", talk, "--hop-s", "-1").code == 2  # usage error
    assert cli("track", talk, "--threads", "0").code == 2
    assert cli("track", talk, "--model", "nope").code == 2
    # A hop is rounded to whole 10 ms frames (0.155 s: 16 frames); longer than the window: no.
    assert cli("track", audio["short.wav"], "--profiles", store, "--hop-s", "0.155").code == 0
    assert cli("track", talk, "--profiles", store, "--hop-s", "1.61").error == (
        "a hop of 1610 ms does not fit ge2e: it must be at least one frame (10 ms) and at most "
        "the window (1600 ms)"
    )
    assert "unknown device" in cli("track", talk, "--device", "toaster").error
    assert "not found" in cli("track", talk, "--weights", talk.parent / "none.pt").error
    assert "not a folder" in cli("track", talk, "--profiles", talk).error


def test_the_live_view_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    view = ConsoleSink(console, live=True)
    assert view._live is not None
    events = [
        Event("speech_start", "s", 0.0, 0.0, 0.3),
        Event("speaker", "s", 0.0, 1.6, 1.6, "alice", 0.81),
        Event("segment", "s", 0.0, 4.0, 4.6, "alice", 0.9),
        Event("change", "s", 4.0, 5.2, 5.2, "bob", 0.8, "alice"),
        Event("speaker", "s", 4.0, 5.2, 5.2, "bob", 0.8),
    ]
    for event in events:
        view.write(event)
    assert "bob" in view.__rich__().plain and "since 4.00 s" in view.__rich__().plain
    view.close()
    text = out.getvalue()
    assert "0.00 -     4.00" in text and "change" in text
    view.write(Event("speech_end", "s", 0.0, 8.0, 8.4))
    assert "silence" in view.__rich__().plain


def test_live_off_a_terminal_prints_each_new_speaker_once():
    out = io.StringIO()
    view = ConsoleSink(Console(file=out, width=100), live=True)
    assert view._live is None
    for event in [
        Event("speech_start", "s", 0.0, 0.0, 0.3),
        Event("speaker", "s", 0.0, 1.6, 1.6, "alice", 0.81),
        Event("segment", "s", 0.0, 4.0, 4.6, "alice", 0.9),
        Event("change", "s", 4.0, 5.2, 5.2, "bob", 0.8, "alice"),
        Event("speaker", "s", 4.0, 5.2, 5.2, "bob", 0.8),
    ]:
        view.write(event)
    view.close()
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert lines == [
        ["0.00", "speaker", "alice", "0.81", "(+1.60", "s)"],
        ["0.00", "-", "4.00", "alice", "0.90"],
        ["4.00", "change", "alice", "->", "bob", "0.80", "(+1.20", "s)"],
    ]


def test_ctrl_c_in_realtime_closes_the_stream_and_writes_what_was_heard(audio, store, tmp_path):
    import signal
    import subprocess
    import sys

    jsonl, rttm = tmp_path / "heard.jsonl", tmp_path / "heard.rttm"
    command = [sys.executable, "-m", "streamer", "track", str(audio["talk.wav"]), "--realtime"]
    command += ["--profiles", str(store), "--jsonl", str(jsonl), "--rttm", str(rttm)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout.readline().startswith("tracking ")  # the audio starts now
        time.sleep(8.0)  # a few seconds into the audio on a loaded machine
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted after" in err and "Traceback" not in err
    heard = float(err.split("interrupted after ")[1].split()[0])
    assert 2.0 < heard < 12.0
    events = read_jsonl(jsonl)
    types = [e["type"] for e in events]
    assert types.count("speech_start") == types.count("speech_end") >= 1  # closed
    assert max(e["end_s"] for e in events if e["type"] == "segment") <= heard + 0.05
    labels = [label for *_, label in read_rttm(rttm)["talk"]]
    assert labels[0] == "alice"
    assert f"wrote {len(events)} events to {jsonl}" in out


def test_plot_draws_the_labels_beside_the_reference(cli, audio, store, tmp_path):
    reference = tmp_path / "talk.rttm"
    starts = np.cumsum([0.0] + [seconds + 0.6 for _, seconds in TURNS])
    turns = [(s, s + seconds, name) for s, (name, seconds) in zip(starts, TURNS, strict=False)]
    reference.write_text(format_rttm("talk", turns))
    plot = tmp_path / "timeline.png"
    args = ["--profiles", store, "--plot", plot, "--reference", reference, "-q"]
    result = cli("track", audio["talk.wav"], *args)
    assert result.code == 0, result.err
    assert f"drew the timeline in {plot}" in result.out
    assert plot.read_bytes().startswith(b"\x89PNG")
    width, height = Image.open(plot).size
    assert width == 1320 and height > 100  # 11 in at 120 dpi
    assert sorted(os.listdir(tmp_path)) == ["profiles", "talk.rttm", "timeline.png"]


def test_the_timeline_has_a_lane_per_label_in_one_colour_per_name():
    reference = [(0.0, 6.0, "alice"), (6.6, 12.6, "bob"), (13.2, 18.2, "alice")]
    labels = [
        (0.0, 6.2, "alice"),
        (6.2, 9.0, "speaker-1"),
        (9.0, 12.5, "bob"),
        (13.0, 18.0, "unknown"),
    ]
    figure = draw(labels, "talk.wav", reference, end_s=20.0)
    top, bottom = figure.axes
    assert [t.get_text() for t in top.get_yticklabels()] == ["alice", "bob"]
    lanes = [t.get_text() for t in bottom.get_yticklabels()]
    assert lanes == ["alice", "speaker-1", "bob", "unknown"]
    colour = {}
    for ax, names in ((top, ["alice", "bob"]), (bottom, lanes)):
        for bars, name in zip(ax.collections, names, strict=True):
            colour.setdefault(name, set()).add(tuple(bars.get_facecolor()[0]))
    assert all(len(c) == 1 for c in colour.values())  # a name keeps its colour in both panels
    assert len({next(iter(c)) for c in colour.values()}) == 4
    assert bottom.get_xlim() == (0.0, 20.0)
    assert [len(bars.get_paths()) for bars in top.collections] == [2, 1]  # alice's two turns
    first = top.collections[0].get_paths()[0].vertices[:, 0]
    assert (first.min(), first.max()) == (0.0, 6.0)


def test_plot_errors_before_the_model_loads(cli, audio, no_model, tmp_path):
    talk = audio["talk.wav"]
    assert "not an image format" in cli("track", talk, "--plot", tmp_path / "t.txt").error
    needs = cli("track", talk, "--reference", tmp_path / "r.rttm").error
    assert "pass --plot" in needs
    missing = cli("track", talk, "--plot", tmp_path / "t.png", "--reference", tmp_path / "r.rttm")
    assert "--reference" in missing.error and "cannot read" in missing.error
    other = tmp_path / "other.rttm"
    other.write_text(format_rttm("a", [(0, 1, "x")]) + format_rttm("b", [(0, 1, "y")]))
    wrong = cli("track", talk, "--plot", tmp_path / "t.png", "--reference", other).error
    assert "has no turns of 'talk' (it has a, b)" in wrong
    assert (
        "is the --reference file"
        in cli(
            "track", talk, "--plot", tmp_path / "t.png", "--reference", other, "--rttm", other
        ).error
    )
    assert sorted(os.listdir(tmp_path)) == ["other.rttm"]


def test_a_progress_bar_on_a_terminal_only(audio, store):
    """Fast mode on a terminal (here a pseudo-terminal) shows the audio done, even with
    ``-q``; piped, it does not."""
    import pty
    import subprocess
    import sys

    command = [sys.executable, "-m", "streamer", "track", str(audio["talk.wav"]), "-q"]
    command += ["--profiles", str(store)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "100"}
    main, secondary = pty.openpty()
    process = subprocess.Popen(command, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    output = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the pseudo-terminal closed: the command ended
            break
        if not data:
            break
        output += data
    os.close(main)
    assert process.wait(timeout=60) == 0
    text = output.decode("utf-8", "replace")
    assert "tracking" in text and "s of audio" in text and "\u2501" in text  # the bar
    assert "speakers: alice" in text
    piped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert "s of audio" in piped.stdout and "\u2501" not in piped.stdout + piped.stderr
