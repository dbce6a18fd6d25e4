"""The JSON Lines sink: one event per line, flushed as it comes."""

from __future__ import annotations

import json

import pytest

from streamer.errors import ConfigError
from streamer.events import Event, final_segments
from streamer.sinks.jsonl import JsonlSink

EVENTS = [
    Event("speech_start", "talk", 0.0, 0.0, 0.288),
    Event("speaker", "talk", 0.0, 1.6, 1.6, "alice", 0.77312),
    Event("segment", "talk", 0.0, 4.0004, 4.4, "alice", 0.9),
    Event("speech_end", "talk", 0.0, 4.0, 4.4),
]


def test_each_event_is_one_line_of_its_dict(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlSink(path) as sink:
        for event in EVENTS:
            sink.write(event)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in EVENTS]
    assert sink.count == 4


def test_lines_are_readable_before_the_sink_closes(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    assert path.read_text() == ""  # created at once: empty, not missing
    sink.write(EVENTS[0])
    assert json.loads(path.read_text())["type"] == "speech_start"
    sink.close()
    sink.close()  # closing twice is harmless


def test_text_is_utf8_not_escaped(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlSink(path) as sink:
        sink.write(Event("speaker", "réunion", 0.0, 1.6, 1.6, "zoë", 0.8))
    raw = path.read_bytes().decode("utf-8")
    assert "réunion" in raw and "zoë" in raw


def test_an_existing_file_is_replaced(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    JsonlSink(path).close()
    assert path.read_text() == ""


def test_unwritable_paths_fail_at_once(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="cannot write events to .*does not exist"):
        JsonlSink(tmp_path / "missing" / "out.jsonl")
    with pytest.raises(ConfigError, match="a-file is a file, not a folder"):
        JsonlSink(a_file / "out.jsonl")
    with pytest.raises(ConfigError, match="that is a folder"):
        JsonlSink(tmp_path)


def test_a_correction_is_written_as_it_comes_and_names_what_it_replaces(tmp_path):
    events = [
        Event("segment", "talk", 0.0, 2.0, 2.3, "speaker-1", 0.9),
        Event("segment", "talk", 0.0, 2.0, 6.1, "speaker-2", 0.8, "speaker-1"),
    ]
    with JsonlSink(tmp_path / "e.jsonl") as sink:
        for event in events:
            sink.write(event)
    lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(e["label"], e["previous"]) for e in lines] == [
        ("speaker-1", None),
        ("speaker-2", "speaker-1"),
    ]
    assert final_segments(events) == [(0.0, 2.0, "speaker-2")]
