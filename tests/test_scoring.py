"""Benchmark scores on hand-made references whose answers are worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import StreamerError
from streamer.evaluation.scoring import (
    ChangeScores,
    DerScores,
    IdentityScores,
    MissedByLength,
    change_points,
    change_scores,
    der,
    identity_scores,
    missed_by_length,
    read_rttm,
    read_uem,
)

AMI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ami-debug-train"
TWO = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]


def test_identity_of_a_hypothesis_late_by_0_3_s():
    late = [(0.3, 10.3, "A"), (10.3, 20.3, "B")]
    scores = identity_scores(TWO, late, enrolled={"A", "B"})
    assert scores.enrolled_s == pytest.approx(20.0)
    assert scores.accuracy == pytest.approx(19.4 / 20)
    assert scores.missed == pytest.approx(0.3 / 20)  # 0-0.3 s has no label
    assert scores.wrong_name == pytest.approx(0.3 / 20)  # 10-10.3 s is still called A
    assert scores.unknown == 0.0
    assert scores.false_alarm_s == pytest.approx(0.3)  # 20-20.3 s
    assert math.isnan(scores.stranger_unknown)  # no strangers to score


def test_identity_of_strangers_and_unknown_labels():
    reference = [(0.0, 10.0, "A"), (10.0, 20.0, "C")]  # C is a stranger
    hypothesis = [
        (0.0, 5.0, "A"),
        (5.0, 10.0, "unknown"),
        (10.0, 12.0, "B"),  # a stranger given an enrolled name
        (12.0, 18.0, "speaker-3"),  # an automatic label counts as unknown
    ]
    scores = identity_scores(reference, hypothesis, enrolled={"A", "B"})
    assert (scores.accuracy, scores.unknown, scores.wrong_name) == pytest.approx((0.5, 0.5, 0))
    assert scores.stranger_s == pytest.approx(10.0)
    assert scores.stranger_wrong_name == pytest.approx(0.2)
    assert scores.stranger_unknown == pytest.approx(0.6)
    assert scores.stranger_missed == pytest.approx(0.2)
    assert scores.false_alarm_s == 0.0


def test_identity_skips_overlapped_reference_and_latest_hypothesis_wins():
    reference = [(0.0, 10.0, "A"), (8.0, 12.0, "B")]
    hypothesis = [(0.0, 12.0, "A"), (9.0, 12.0, "B")]  # B starts later: it holds 9-12 s
    scores = identity_scores(reference, hypothesis, enrolled={"A", "B"})
    assert scores.enrolled_s == pytest.approx(10.0)  # 0-8 s A alone, 10-12 s B alone
    assert scores.accuracy == pytest.approx(1.0)


def test_identity_totals_are_time_weighted():
    a = identity_scores(TWO, TWO, {"A", "B"})
    b = identity_scores([(0.0, 5.0, "A")], [], {"A"})
    total = IdentityScores.combine([a, b])
    assert total.enrolled_s == pytest.approx(25.0)
    assert total.accuracy == pytest.approx(20 / 25)
    assert total.as_dict()["missed"] == pytest.approx(5 / 25)


def test_der_of_a_perfect_and_of_a_label_swapped_hypothesis_is_zero():
    assert der(TWO, TWO).der == 0.0
    swapped = [(0.0, 10.0, "B"), (10.0, 20.0, "A")]  # DER maps labels optimally
    assert der(TWO, swapped).der == 0.0
    renamed = [(0.0, 10.0, "speaker-7"), (10.0, 20.0, "speaker-2")]
    assert der(TWO, renamed).der == 0.0


def test_der_of_one_label_for_two_speakers():
    scores = der(TWO, [(0.0, 20.0, "X")], collar_s=0.0)
    assert (scores.confusion_s, scores.total_s, scores.der) == pytest.approx((10, 20, 0.5))
    # collar 0.25 removes +-0.125 s around 0, 10 and 20 s: 0.5 s of 20, 0.25 s of B
    collared = der(TWO, [(0.0, 20.0, "X")])
    assert collared.total_s == pytest.approx(19.5)
    assert collared.confusion_s == pytest.approx(9.75)


def test_der_collar_is_pyannote_total_width():
    late = [(0.2, 10.0, "A"), (10.0, 20.0, "B")]
    assert der(TWO, late, collar_s=0.0).missed_s == pytest.approx(0.2)
    assert der(TWO, late).missed_s == pytest.approx(0.2 - 0.125)
    assert der(TWO, [(0.1, 10.0, "A"), (10.0, 20.0, "B")]).der == 0.0


def test_der_scores_only_inside_the_uem():
    hypothesis = [(0.0, 10.0, "A"), (10.0, 20.0, "A")]  # 10-20 s is confused
    scores = der(TWO, hypothesis, collar_s=0.0, uem=[(0.0, 10.0)])
    assert (scores.der, scores.total_s) == pytest.approx((0.0, 10.0))
    missed = der(TWO, [], collar_s=0.0)
    assert (missed.der, missed.missed_s) == pytest.approx((1.0, 20.0))
    total = DerScores.combine([scores, missed])
    assert total.der == pytest.approx(20 / 30)


TURNS = [
    (0.0, 5.0, "A"),
    (5.0, 10.0, "B"),
    (10.0, 15.0, "A"),
    (15.5, 20.0, "A"),  # same speaker again: not a change
    (19.8, 25.0, "B"),  # an overlapping start is the change time
]


def test_change_points_are_starts_of_a_new_speaker():
    assert change_points(TURNS) == [5.0, 10.0, 19.8]
    assert change_points(list(reversed(TURNS))) == [5.0, 10.0, 19.8]


def test_change_f1_with_one_missed_and_one_false_change():
    predicted = [(5.2, 5.6), (13.0, 13.1), (19.6, 20.2)]  # 10 s missed, 13 s false
    scores = change_scores(TURNS, predicted)
    assert (scores.n_reference, scores.n_predicted, scores.n_matched) == (3, 3, 2)
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert sorted(scores.latencies_s) == pytest.approx([0.4, 0.6])
    assert scores.latency_mean_s == pytest.approx(0.5)
    assert scores.latency_p90_s == pytest.approx(np.percentile([0.4, 0.6], 90))


def test_change_matching_is_one_to_one_within_tolerance():
    predicted = [(4.8, 5.0), (5.1, 5.5), (10.6, 11.0)]  # two near 5 s, one 0.6 s late
    scores = change_scores(TURNS, predicted, tolerance_s=0.5)
    assert scores.n_matched == 1
    assert scores.latencies_s == pytest.approx([0.5])  # the closest one, 5.1 s, is kept
    assert change_scores(TURNS, predicted, tolerance_s=0.7).n_matched == 2


def test_change_scores_without_events():
    nothing = change_scores(TURNS, [])
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 0.0, 0.0)
    assert math.isnan(nothing.latency_mean_s)
    assert change_scores([(0.0, 3.0, "A")], []).f1 == 1.0
    total = ChangeScores.combine([nothing, change_scores(TURNS, [(5.0, 5.3)])])
    assert (total.n_reference, total.n_matched, total.latencies_s) == (6, 1, [pytest.approx(0.3)])


RTTM = """\
;; a comment
SPEAKER trn00 1 3.168 0.800 <NA> <NA> MÉO069 <NA> <NA>
SPEAKER trn00 1 1.000 0.500 <NA> <NA> FEE005 <NA> <NA>

SPKR-INFO trn00 1 <NA> <NA> <NA> unknown MÉO069 <NA> <NA>
SPEAKER trn01 1 0.000 2.250 <NA> <NA> A <NA> <NA>
"""


def test_read_rttm_text_and_utf8_file(tmp_path):
    expected = {
        "trn00": [(1.0, 1.5, "FEE005"), (3.168, 3.968, "MÉO069")],
        "trn01": [(0.0, 2.25, "A")],
    }
    parsed = read_rttm(RTTM)
    assert parsed.keys() == expected.keys()
    for file_id, segments in expected.items():
        assert [s[2] for s in parsed[file_id]] == [s[2] for s in segments]
        assert np.allclose([s[:2] for s in parsed[file_id]], [s[:2] for s in segments])
    path = tmp_path / "ref.rttm"
    path.write_text(RTTM, encoding="utf-8")
    assert read_rttm(path) == parsed
    assert read_rttm(str(path)) == parsed
    with pytest.raises(StreamerError, match="line 2"):
        read_rttm("SPEAKER x 1 0 1 <NA> <NA> A\nSPEAKER x 1 zero 1.0 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(StreamerError, match="cannot read"):
        read_rttm(tmp_path / "missing.rttm")


def test_read_uem(tmp_path):
    path = tmp_path / "ref.uem"
    path.write_text("trn00 NA 0.000 30.000\ntrn01 1 2.5 10\ntrn01 1 0 1\n", encoding="utf-8")
    assert read_uem(path) == {"trn00": [(0.0, 30.0)], "trn01": [(0.0, 1.0), (2.5, 10.0)]}


@pytest.mark.skipif(not AMI.is_dir(), reason="no dev data")
def test_ami_reference_against_itself():
    reference = read_rttm(AMI / "reference.rttm")
    uem = read_uem(AMI / "reference.uem")
    assert sorted(reference) == [f"trn{i:02d}" for i in range(10)] == sorted(uem)
    for file_id, segments in reference.items():
        scores = der(segments, segments, uem=uem[file_id])
        assert scores.der == 0.0 and scores.total_s > 0


def test_missed_speech_is_binned_by_the_length_of_its_turn():
    turns = [(0.0, 1.0, "A"), (1.5, 3.5, "B"), (4.0, 10.0, "A")]
    # the reference speech of the long turn has a pause at 6-7 s
    speech = [(0.0, 1.0, "A"), (1.5, 3.5, "B"), (4.0, 6.0, "A"), (7.0, 10.0, "A")]
    hypothesis = [(0.5, 1.0, "A"), (1.5, 3.5, "x"), (5.0, 9.0, "A")]
    scores = missed_by_length(turns, speech, hypothesis)
    assert scores.labels() == ["0-1.5 s", "1.5-2.6 s", "2.6-4 s", ">= 4 s"]
    assert scores.turns == [1, 1, 0, 1]
    assert scores.speech_s == pytest.approx([1.0, 2.0, 0.0, 5.0])
    assert scores.missed_s == pytest.approx([0.5, 0.0, 0.0, 2.0])  # the pause is not speech
    shares = scores.shares
    assert shares[:2] == pytest.approx([0.5, 0.0]) and math.isnan(shares[2])
    both = MissedByLength.combine([scores, scores])
    assert both.missed_s == pytest.approx([1.0, 0.0, 0.0, 4.0]) and both.turns == [2, 2, 0, 2]
