"""The RTTM sink: the format, sorting, and atomic writes."""

from __future__ import annotations

import os
import stat

import pytest

from streamer.errors import ConfigError
from streamer.evaluation.scoring import read_rttm
from streamer.events import Event
from streamer.sinks.rttm import RttmSink, format_rttm, merge_gaps


def segment(start, end, label="alice", score=0.9) -> Event:
    return Event("segment", "talk", start, end, end + 0.3, label, score)


def test_format_rttm_sorts_and_rounds():
    text = format_rttm("talk", [(5.0, 7.25, "bob"), (0.1234, 4.9876, "alice")])
    assert text == (
        "SPEAKER talk 1 0.123 4.864 <NA> <NA> alice <NA> <NA>\n"
        "SPEAKER talk 1 5.000 2.250 <NA> <NA> bob <NA> <NA>\n"
    )


def test_format_rttm_keeps_fields_whitespace_free():
    text = format_rttm("my talk", [(0.0, 1.0, "Mary Ann")])
    assert text.split() == ["SPEAKER", "my_talk", "1", "0.000", "1.000"] + [
        "<NA>",
        "<NA>",
        "Mary_Ann",
        "<NA>",
        "<NA>",
    ]


def test_format_rttm_drops_empty_segments():
    assert format_rttm("talk", [(1.0, 1.0, "alice"), (2.0, 2.0004, "bob")]) == ""
    assert format_rttm("talk", []) == ""


def test_format_rttm_reads_back():
    segments = [(0.0, 2.5, "alice"), (2.5, 6.125, "unknown"), (7.0, 9.0, "zoë")]
    assert read_rttm(format_rttm("talk", segments)) == {"talk": segments}


def test_merge_gaps_joins_one_speakers_short_pauses_only():
    segments = [
        (3.2, 5.0, "alice"),  # 0.2 s after alice's first segment: joined
        (0.0, 3.0, "alice"),
        (5.4, 6.0, "bob"),  # another speaker: kept apart
        (6.5, 8.0, "alice"),
        (9.0, 9.5, "alice"),  # 1 s of silence: a pause too long to bridge
    ]
    assert merge_gaps(segments, 0.5) == [
        (0.0, 5.0, "alice"),
        (5.4, 6.0, "bob"),
        (6.5, 8.0, "alice"),
        (9.0, 9.5, "alice"),
    ]
    assert merge_gaps(segments, 0.0) == sorted(segments)
    assert len(merge_gaps(segments, 1.0)) == 3


def test_sink_joins_a_speakers_segments_across_short_pauses(tmp_path):
    for gap_s, expected in [
        (0.5, [(0.0, 4.0, "alice")]),
        (0.0, [(0.0, 1.8, "alice"), (2.2, 4.0, "alice")]),
    ]:
        path = tmp_path / f"gap{gap_s}.rttm"
        with RttmSink(path, "talk", merge_gap_s=gap_s) as sink:
            sink.write(segment(0.0, 1.8))
            sink.write(segment(2.2, 4.0))
        assert read_rttm(path) == {"talk": expected}


def test_sink_writes_the_segments_at_close(tmp_path):
    path = tmp_path / "out.rttm"
    sink = RttmSink(path, "talk")
    for event in [
        Event("speech_start", "talk", 0.0, 0.0, 0.3),
        segment(4.0, 6.0, "bob"),
        Event("change", "talk", 4.0, 5.0, 5.0, "bob", 0.8, "alice"),
        segment(0.0, 4.0),
        Event("speech_end", "talk", 0.0, 6.0, 6.4),
    ]:
        sink.write(event)
    assert not path.exists()  # nothing is visible until the run ends
    sink.close()
    assert read_rttm(path) == {"talk": [(0.0, 4.0, "alice"), (4.0, 6.0, "bob")]}
    assert sink.written == 2
    assert os.listdir(tmp_path) == ["out.rttm"]


def test_no_segments_give_an_empty_file(tmp_path):
    with RttmSink(tmp_path / "out.rttm", "talk"):
        pass
    assert (tmp_path / "out.rttm").read_text() == ""


def test_the_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with RttmSink(tmp_path / "out.rttm", "talk"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.rttm").st_mode) == 0o644


def test_an_error_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.rttm"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), RttmSink(path, "talk") as sink:
        sink.write(segment(0.0, 1.0))
        raise RuntimeError("stopped")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.rttm"]


def test_close_replaces_an_old_file(tmp_path):
    path = tmp_path / "out.rttm"
    path.write_text("old\n")
    with RttmSink(path, "talk") as sink:
        sink.write(segment(0.0, 1.0))
    assert read_rttm(path) == {"talk": [(0.0, 1.0, "alice")]}


def test_unwritable_paths_fail_at_once(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="folder .* does not exist"):
        RttmSink(tmp_path / "missing" / "out.rttm", "talk")
    with pytest.raises(ConfigError, match="a-file is a file, not a folder"):
        RttmSink(a_file / "out.rttm", "talk")
    with pytest.raises(ConfigError, match="that is a folder"):
        RttmSink(tmp_path, "talk")
    assert os.listdir(tmp_path) == ["a-file"]


def test_a_corrected_segment_replaces_its_span(tmp_path):
    path = tmp_path / "talk.rttm"
    with RttmSink(path, "talk", merge_gap_s=0.0) as sink:
        sink.write(segment(0.0, 2.0, "speaker-1"))
        sink.write(segment(3.0, 5.0, "speaker-1"))
        sink.write(Event("segment", "talk", 3.0, 5.0, 9.0, "speaker-2", 0.8, "speaker-1"))
        sink.write(segment(6.0, 8.0, "speaker-2"))
    labels = [label for *_, label in read_rttm(path)["talk"]]
    assert labels == ["speaker-1", "speaker-2", "speaker-2"]
