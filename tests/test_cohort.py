"""Scores normalised against a cohort of impostor voices (streamer.cohort)."""

import numpy as np
import pytest

from streamer.cohort import Cohort, shipped
from streamer.enroll import collect
from streamer.evaluation.augment import Microphone, Room, Session
from streamer.evaluation.synth import speech
from streamer.events import UNKNOWN
from streamer.models.ge2e_lstm import default_weights_path
from streamer.pipeline import PipelineOptions, build_engine
from streamer.tracker import Tracker, TrackerOptions, Voice

DIM = 16
AXES = np.eye(DIM, dtype=np.float32)
PROFILES = {"alice": AXES[0], "bob": AXES[1]}


def unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def cohort_of(rng, n=60, spread=0.3):
    """Impostor voices: random directions away from alice and bob (all about as far
    from the axes 0 and 1 as from any other)."""
    return np.array(
        [unit(rng.normal(size=DIM) * spread + AXES[rng.integers(2, DIM)]) for _ in range(n)]
    )


def test_stats_are_the_top_k_cohort_scores_less_the_voice_itself():
    rng = np.random.default_rng(1)
    embeddings = np.array([unit(rng.normal(size=DIM)) for _ in range(40)])
    vector = unit(rng.normal(size=DIM))
    cohort = Cohort(np.vstack([embeddings, vector]), top_k=10, same_voice=0.95)
    mean, std = cohort.stats(vector)
    top = np.sort(embeddings @ vector)[-10:]  # the vector's own entry (score 1) left out
    assert mean == pytest.approx(top.mean(), abs=1e-6)
    assert std == pytest.approx(top.std(), abs=1e-6)
    means, _ = cohort.stats(np.array([vector, -vector]))
    assert means[0] == pytest.approx(mean, abs=1e-6)  # rows at once, as for the profiles


def test_a_voice_every_score_of_which_a_session_lowered_is_named_with_a_cohort():
    cohort = cohort_of(np.random.default_rng(2))
    # 0.70 against alice: below the raw accept bar (0.74), but far above what this
    # window scores against any impostor voice.
    window = unit(0.70 * AXES[0] + 0.714 * unit(AXES[2] - AXES[3]))
    raw = Tracker("s", TrackerOptions(), PROFILES)
    normalised = Tracker("s", TrackerOptions(), PROFILES, cohort)
    assert raw.classify(window, 1.6)[0] != "alice"
    assert normalised.classify(window, 1.6)[0] == "alice"
    # cohort_top_k=0 switches it off; a stranger (nowhere near alice or bob) stays unknown
    off = Tracker("s", TrackerOptions(cohort_top_k=0), PROFILES, cohort)
    assert off.classify(window, 1.6) == raw.classify(window, 1.6)
    stranger = unit(AXES[2] + AXES[4])
    assert normalised.classify(stranger, 1.6)[0] not in PROFILES


def test_a_voice_as_close_to_the_cohort_as_to_the_profile_is_not_named():
    """A raw 0.78 is a name without a cohort; with impostor voices closer to the window
    than alice is (none so close as to be left out as its own voice), it is no evidence
    for her."""
    rng = np.random.default_rng(3)
    window = unit(0.78 * AXES[0] + 0.626 * AXES[2])
    crowd = np.array([unit(window + 0.3 * rng.normal(size=DIM) / np.sqrt(DIM)) for _ in range(60)])
    options = TrackerOptions(cohort_same_voice=1.01)
    raw = Tracker("s", options, PROFILES)
    normalised = Tracker("s", options, PROFILES, np.vstack([crowd, cohort_of(rng)]))
    assert raw.classify(window, 1.6)[0] == "alice"
    assert normalised.classify(window, 1.6)[0] != "alice"


def test_unknown_voices_score_raw():
    """Learnt in the session, an unknown voice's scores need no normalisation."""
    rng = np.random.default_rng(4)
    trackers = [Tracker("s", TrackerOptions(), PROFILES, c) for c in (cohort_of(rng), None)]
    for tracker in trackers:
        tracker.voices = {"speaker-1": Voice("speaker-1", AXES[7] * 3.0, 3.0, 0.0)}
        tracker._refresh()
    window = unit(AXES[7] + 0.5 * AXES[0])
    normalised, raw = (t._scores(window) for t in trackers)
    assert normalised[2] == pytest.approx(raw[2])  # speaker-1
    assert normalised[0] != pytest.approx(raw[0])  # alice


# Real voices through a real session: the shipped GE2E cohort


@pytest.fixture(scope="module")
def session_voices(make_engine):
    """Clean profiles of five synthetic voices, and each voice heard through another
    session: a room (RT60 0.5 s, 1.2 m away) and a dull microphone (100-6000 Hz, -6 dB
    above 2 kHz)."""
    engine = make_engine()

    def embed(audio):
        mean = np.mean(collect(engine, audio).embeddings, axis=0)
        return unit(mean)

    names = ("alice", "bob", "carol", "dave", "erin")
    profiles = {n: embed(speech(n, 8.0, seed=101)) for n in names}
    session = Session(
        0.0,
        Microphone(100.0, 6000.0, 12, 2000.0, -6.0),
        Room(0.5, (6.0, 5.0, 3.0), (2.0, 2.0, 1.5), (3.2, 2.9, 1.4)),
    )
    heard = {n: embed(session.apply(speech(n, 6.0, seed=7), 16000)) for n in names}
    return profiles, heard


def test_a_voice_from_another_session_is_named_with_the_shipped_cohort(session_voices):
    profiles, heard = session_voices
    enrolled = {n: profiles[n] for n in ("alice", "bob", "carol")}
    cohort = shipped("ge2e")
    raw = Tracker("s", TrackerOptions(), enrolled)
    normalised = Tracker("s", TrackerOptions(), enrolled, cohort)
    # raw scores leave alice and carol unnamed (undecided or unknown) through the session
    assert [raw.classify(heard[n], 1.6)[0] for n in ("alice", "carol")] == [None, None]
    for name in ("alice", "bob", "carol"):
        assert normalised.classify(heard[name], 1.6)[0] == name
    for stranger in ("dave", "erin"):  # nobody's name, either way
        assert normalised.classify(heard[stranger], 1.6)[0] in (None, UNKNOWN)
        assert raw.classify(heard[stranger], 1.6)[0] in (None, UNKNOWN)


def test_the_engine_gets_the_shipped_cohort_only_for_shipped_weights(rf5_checkpoint, capsys):
    engine = build_engine(PipelineOptions())
    assert engine.cohort is not None and engine.cohort.shape[1] == 256
    assert engine.new_tracker("s").cohort is not None
    assert "no score cohort" not in capsys.readouterr().err
    for model, path in (("ge2e", default_weights_path()), ("rf5-gru", rf5_checkpoint)):
        engine = build_engine(PipelineOptions(model=model, weights=path))
        assert engine.cohort is None and engine.new_tracker("s").cohort is None
        assert f"no score cohort for model {model!r}" in capsys.readouterr().err
