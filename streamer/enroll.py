"""Enrollment: speech in, a profile out, with Eagle-style feedback on the audio."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from .errors import NoSpeechError, ProfileError
from .events import Event
from .profiles import Profile, ProfileStore, check_name
from .tracker import Voice
from .vad import GateUpdate
from .variants import variants
from .worker import Engine, Window, drive

BLOCKING = ("too_little_speech", "clips_disagree")
"""Feedback codes that stop a profile from being saved (unless ``force``)."""

FEEDBACK = {
    "ok": "enough clear speech",
    "no_voice": "no speech found",
    "too_little_speech": "too little speech",
    "clips_disagree": "a clip does not sound like the others",
    "close_to_other": "the voice is very close to another profile",
}


@dataclass(frozen=True)
class EnrollOptions:
    """Quality checks.

    Attributes:
        min_speech_s: least speech a profile needs (in total, after extending).
        min_clip_agreement: a clip whose embedding scores below this against the
            others' mean is reported as ``clips_disagree``.
        max_other_score: a profile this close to another one gets ``close_to_other``.
        variant_weight: each channel variant of a clip (``streamer.variants``: how a
            telephone line, a room and noise hear it) adds its mean window to the
            profile weighing this share of the clip's own windows; 0: no variants.
            Chosen on the tune half of the tracking benchmark, both conditions.
    """

    min_speech_s: float = 4.0
    min_clip_agreement: float = 0.75
    max_other_score: float = 0.9
    variant_weight: float = 1 / 6


class Collector:
    """A :class:`~streamer.worker.StreamTracker` that keeps every speech window's
    embedding and counts speech (it makes no events).

    With a span (``start_s``, ``end_s``) only the windows that lie inside it are kept and
    only the speech inside it counts: live enrollment takes "the next N seconds" of a
    stream that is being tracked. ``variant_total`` is what the channel variants of its
    audio add to the profile (:func:`variant_steps`; ``0.0`` until they are embedded).
    """

    def __init__(self, start_s: float = 0.0, end_s: float = math.inf) -> None:
        self.embeddings: list[np.ndarray] = []
        self.variant_total: np.ndarray | float = 0.0
        self.speech_s = 0.0  # speech of the regions that ended
        self.start_s = start_s
        self.end_s = end_s
        self.level_dbfs: float | None = None  # speech level of the last window kept
        self._open_s: float | None = None  # onset of the speech region still open

    def gate(self, update: GateUpdate, now_s: float) -> list[Event]:
        if update.ended is not None:
            self.speech_s += self._inside(*update.ended)
            self._open_s = None
        if update.started_at_s is not None:
            self._open_s = update.started_at_s
        return []

    def window(self, window: Window, now_s: float) -> list[Event]:
        inside = self.start_s <= window.start_s and window.end_s <= self.end_s
        if window.embedding is not None and inside and not window.onset:
            self.embeddings.append(window.embedding)
            self.level_dbfs = window.level_dbfs
        return []

    def close(self, update: GateUpdate, now_s: float) -> list[Event]:
        return self.gate(update, now_s)

    def confident(self) -> bool:
        return False  # a profile takes every window

    def speech_until(self, now_s: float) -> float:
        """Seconds of speech so far, the open region counted up to ``now_s``."""
        if self._open_s is None:
            return self.speech_s
        return self.speech_s + self._inside(self._open_s, now_s)

    def finish(self, now_s: float) -> None:
        """Stop here: count the open region up to ``now_s`` (live enrollment's last second)."""
        self.speech_s = self.speech_until(now_s)
        self._open_s = None

    def _inside(self, start_s: float, end_s: float) -> float:
        return max(0.0, min(end_s, self.end_s) - max(start_s, self.start_s))


def collect(engine: Engine, audio: np.ndarray, stream_id: str = "enroll") -> Collector:
    """Run ``audio`` (mono float32 at the model's rate) through the worker and collect."""
    collector = Collector()
    stream = engine.open_stream(stream_id, tracker=collector)
    step = int(engine.options.step_s * stream.sample_rate)
    chunks = (audio[start : start + step] for start in range(0, len(audio), step))
    for _ in drive(engine, stream, chunks):
        pass
    return collector


@dataclass
class Feedback:
    code: str
    message: str


@dataclass
class EnrollmentReport:
    """What enrolling did and what the audio was like."""

    profile: Profile | None
    speech_s: float
    windows: int
    feedback: list[Feedback] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.feedback]


def enroll(
    store: ProfileStore,
    name: str,
    clips: list[tuple[str, np.ndarray]],
    engine: Engine,
    options: EnrollOptions | None = None,
    force: bool = False,
) -> EnrollmentReport:
    """Create or extend profile ``name`` from ``(label, audio)`` clips and save it.

    Raises :class:`NoSpeechError` when no clip has speech, and :class:`ProfileError` when
    the speech is too little or the clips disagree (unless ``force``). Nothing is written
    then.
    """
    options = options or EnrollOptions()
    model = engine.embedder.spec.name
    check_model(store, name, model)
    per_clip = []
    for label, audio in clips:
        collector = collect(engine, audio)
        collector.variant_total = variants_total(engine, audio, collector, options.variant_weight)
        per_clip.append((label, collector))
    return enroll_collected(
        store, name, per_clip, model, engine.embedder.spec.embedding_dim, options, force
    )


def variant_steps(
    engine: Engine, audio: np.ndarray, collector: Collector, weight: float
) -> Generator[None, None, np.ndarray | float]:
    """What the channel variants of a clip's ``audio`` (:mod:`streamer.variants`) add to
    the profile its ``collector`` makes: each variant's mean window, weighing ``weight``
    times the clip's own windows (``0.0``: none). It runs ``engine`` (one that holds no
    other stream) a step at a time, yielding after each, so that a daemon can spread the
    work between its streams' steps."""
    windows = len(collector.embeddings)
    if weight <= 0 or not windows:
        return 0.0
    total = 0.0
    step = int(engine.options.step_s * engine.embedder.spec.sample_rate)
    for variant in variants(audio, engine.embedder.spec.sample_rate):
        heard = Collector()
        stream = engine.open_stream("enroll-variant", tracker=heard)
        for start in range(0, len(variant), step):
            stream.push(variant[start : start + step])
            for _ in engine.run():
                pass
            yield
        engine.close_stream(stream.id)
        if heard.embeddings:
            total = total + np.mean(heard.embeddings, axis=0) * (weight * windows)
    return total


def variants_total(
    engine: Engine, audio: np.ndarray, collector: Collector, weight: float
) -> np.ndarray | float:
    """:func:`variant_steps` all at once."""
    steps = variant_steps(engine, audio, collector, weight)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def check_model(
    store: ProfileStore, name: str, model: str, label_ok: bool = False
) -> Profile | None:
    """The existing profile ``name`` (``None`` if new); :class:`ProfileError` if it was made
    with another model or the name is not valid (:func:`~streamer.profiles.check_name`)."""
    check_name(name, label_ok=label_ok)
    existing = store.get(name) if name in store else None
    if existing is not None and existing.model != model:
        raise ProfileError(
            f"profile {name!r} was made with model {existing.model!r}, not {model!r}; "
            f"enroll under another name or pass --model {existing.model}"
        )
    return existing


def enroll_collected(
    store: ProfileStore,
    name: str,
    per_clip: list[tuple[str, Collector]],
    model: str,
    dim: int,
    options: EnrollOptions | None = None,
    force: bool = False,
) -> EnrollmentReport:
    """:func:`enroll` from clips already run through the worker (``(label, Collector)``).

    Live enrollment (a microphone, a daemon stream) collects while the audio arrives and
    then decides here, with the same checks and feedback as files.
    """
    options = options or EnrollOptions()
    existing = check_model(store, name, model)
    feedback: list[Feedback] = []
    for label, c in per_clip:
        if not c.embeddings:
            feedback.append(Feedback("no_voice", f"{label}: no speech found"))
    voiced = [(label, c) for label, c in per_clip if c.embeddings]
    speech_s = sum(c.speech_s for _, c in voiced)
    windows = sum(len(c.embeddings) for _, c in voiced)
    if not voiced:
        raise NoSpeechError(
            "no speech found in "
            + ", ".join(label for label, _ in per_clip)
            + "; record a few seconds of one person talking"
        )
    if len(voiced) > 1:
        means = {label: _unit(np.mean(c.embeddings, axis=0)) for label, c in voiced}
        for label, vector in means.items():
            others = _unit(np.sum([v for k, v in means.items() if k != label], axis=0))
            score = float(vector @ others)
            if score < options.min_clip_agreement:
                feedback.append(
                    Feedback(
                        "clips_disagree",
                        f"{label} does not sound like the other clips (similarity {score:.2f}); "
                        "is it the same person?",
                    )
                )
    profile = existing or Profile(
        name=name,
        model=model,
        total=np.zeros(dim),
        count=0,
        speech_s=0.0,
    )
    profile.extend(np.concatenate([np.stack(c.embeddings) for _, c in voiced]), speech_s)
    profile.total = profile.total + sum(c.variant_total for _, c in voiced)
    return _save(
        store, profile, EnrollmentReport(None, speech_s, windows, feedback), options, force
    )


def promote(
    store: ProfileStore,
    name: str,
    voice: Voice,
    model: str,
    options: EnrollOptions | None = None,
    force: bool = False,
    label_ok: bool = False,
) -> EnrollmentReport:
    """Save an unknown voice the tracker learnt (its clean windows only) as profile
    ``name``, or add it to that profile. The same checks as :func:`enroll` apply;
    ``label_ok`` allows a ``speaker-N`` name (``track --save-unknown``)."""
    options = options or EnrollOptions()
    existing = check_model(store, name, model, label_ok)
    speech_s = voice.speech_s
    profile = existing or Profile(
        name=name, model=model, total=np.zeros(len(voice.total)), count=0, speech_s=0.0
    )
    # The voice is a bounded running mean: its centroid stands for its clean windows.
    windows = max(1, voice.windows)
    profile.extend(np.repeat(voice.centroid[None, :], windows, axis=0), speech_s)
    return _save(store, profile, EnrollmentReport(None, speech_s, windows, []), options, force)


def _save(
    store: ProfileStore,
    profile: Profile,
    report: EnrollmentReport,
    options: EnrollOptions,
    force: bool,
) -> EnrollmentReport:
    """Check the finished profile against the store; save it unless a check blocks."""
    feedback = report.feedback
    for other in store.for_model(profile.model):
        if other.name != profile.name:
            score = float(profile.embedding @ other.embedding)
            if score >= options.max_other_score:
                feedback.append(
                    Feedback(
                        "close_to_other",
                        f"sounds very close to {other.name!r} (similarity {score:.2f}); "
                        "the tracker may confuse them",
                    )
                )
    if profile.speech_s < options.min_speech_s:
        feedback.append(
            Feedback(
                "too_little_speech",
                f"{profile.speech_s:.1f} s of speech; a profile needs at least "
                f"{options.min_speech_s:g} s — add clips",
            )
        )
    blocking = set(BLOCKING) & {f.code for f in feedback}
    if blocking and not force:
        return report
    if not feedback:
        feedback.append(Feedback("ok", FEEDBACK["ok"]))
    store.save(profile)
    report.profile = profile
    return report


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)
