"""What another recording session does to a voice: level, microphone, room and noise.

A :class:`Session` is drawn once per speaker and side (enrollment or conversation) from
a seeded generator, so the same seed gives the same conditions. Its parts come from
maintained libraries: the microphone responses are audiomentations' Butterworth and
shelving filters, the room is a pyroomacoustics shoebox whose wall absorption is set by
Sabine's formula for the drawn RT60, and coloured noise is audiomentations' decaying
white noise. The benchmark's *mismatched* condition is built from these (see
:mod:`streamer.evaluation.simulate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

MAX_IMAGE_ORDER = 40
"""Image-source reflections kept per RIR: RT60 lands within ~20 % of the target in
0.1 s of compute (the full order Sabine asks for takes seconds and overshoots)."""
_ROOM_M = ((3.0, 8.0), (3.0, 7.0), (2.4, 3.5))
_WALL_GAP_M = 0.5
_MIC_DISTANCE_M = (0.3, 1.2)
_RIR_LEAD_S = 0.001  # kept before the direct path when the RIR is trimmed to it


@dataclass(frozen=True)
class SessionOptions:
    """The ranges sessions are drawn from (uniform unless said otherwise).

    Attributes:
        gain_db: Level change of the voice.
        rt60_s: Reverberation time of the room: a share ``long_rt60_share`` is drawn
            from ``long_rt60_s``, the rest from ``rt60_s``.
        reverb_share: Share of sessions in a room at all (the others are dry, as with a
            headset).
        telephone_share: Share of sessions with a 200-300 Hz to 3.4-3.8 kHz band limit;
            the others get a gentle tilt (high shelf of ``tilt_db``) and a mild band limit.
        tilt_db: Gain of the high shelf of the other microphones.
        snr_db: Noise of a conversation, against its speech (reference speech frames);
            a share ``low_snr_share`` is drawn from ``low_snr_db`` instead.
        enroll_snr_db: Noise of an enrollment clip recorded in another session (people
            enroll in a quiet moment).
        babble_share: Share of conversation noise that is babble of other speakers; the
            rest is coloured noise (white to brown).
        babble_voices: Voices summed into one babble.
        reverse_share: Share of enrolled speakers whose ENROLLMENT is the degraded side
            (their turns stay as recorded); the others enroll as recorded and speak
            through a session.
    """

    gain_db: tuple[float, float] = (-12.0, 6.0)
    rt60_s: tuple[float, float] = (0.2, 0.4)
    long_rt60_s: tuple[float, float] = (0.4, 0.8)
    long_rt60_share: float = 0.15
    reverb_share: float = 0.4
    telephone_share: float = 0.1
    tilt_db: tuple[float, float] = (-6.0, 6.0)
    snr_db: tuple[float, float] = (15.0, 30.0)
    low_snr_db: tuple[float, float] = (10.0, 15.0)
    low_snr_share: float = 0.1
    enroll_snr_db: tuple[float, float] = (20.0, 35.0)
    babble_share: float = 0.5
    babble_voices: int = 4
    reverse_share: float = 0.25

    def __post_init__(self) -> None:
        ranges = ("gain_db", "rt60_s", "long_rt60_s", "tilt_db", "snr_db", "low_snr_db")
        ranges += ("enroll_snr_db",)
        bad = [name for name in ranges if getattr(self, name)[0] > getattr(self, name)[1]]
        shares = ("telephone_share", "babble_share", "reverse_share", "reverb_share")
        shares += ("long_rt60_share", "low_snr_share")
        bad += [name for name in shares if not 0.0 <= getattr(self, name) <= 1.0]
        if self.rt60_s[0] <= 0:
            bad.append("rt60_s")
        if self.babble_voices < 1:
            bad.append("babble_voices")
        if bad:
            raise ConfigError(
                "bad session options: " + ", ".join(bad) + " (ranges need low <= high, "
                "shares lie in [0, 1], rt60_s and babble_voices are positive)"
            )


@dataclass(frozen=True)
class Microphone:
    """A microphone's response: a band limit, and a high shelf at ``shelf_hz``."""

    low_hz: float
    high_hz: float
    rolloff_db_per_octave: int
    shelf_hz: float = 2000.0
    shelf_db: float = 0.0

    @property
    def telephone(self) -> bool:
        return self.high_hz <= 4000.0


@dataclass(frozen=True)
class Room:
    """A shoebox room with a talker and a microphone in it."""

    rt60_s: float
    size_m: tuple[float, float, float]
    source_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]


@dataclass(frozen=True)
class Noise:
    """Additive noise at ``snr_db`` below the speech: ``colour`` or ``babble``."""

    kind: str
    snr_db: float
    decay_db_per_octave: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Session:
    """What one session does to a voice; :meth:`apply` runs it on a clip."""

    gain_db: float
    microphone: Microphone
    room: Room | None
    """``None``: a dry session (no room)."""

    def apply(self, audio: np.ndarray, sample_rate: int, rir: np.ndarray | None = None):
        """The clip through the room, the microphone and the level; float32, as long as
        the clip plus the reverberation tail. Pass ``rir`` (:meth:`impulse_response`)
        to reuse one room for many clips."""
        from scipy.signal import oaconvolve

        if rir is None:
            rir = self.impulse_response(sample_rate)
        wet = np.asarray(audio, np.float32)
        if rir is not None:
            wet = oaconvolve(wet, rir).astype(np.float32)
        wet = filter_microphone(wet, sample_rate, self.microphone)
        return wet * np.float32(10 ** (self.gain_db / 20))

    def impulse_response(self, sample_rate: int) -> np.ndarray:
        """The room's impulse response from the direct sound on, of unit energy; ``None``
        for a dry session."""
        import pyroomacoustics as pra

        room = self.room
        if room is None:
            return None
        absorption, order = pra.inverse_sabine(room.rt60_s, list(room.size_m))
        shoebox = pra.ShoeBox(
            list(room.size_m),
            fs=sample_rate,
            materials=pra.Material(absorption),
            max_order=min(order, MAX_IMAGE_ORDER),
        )
        shoebox.add_source(list(room.source_m))
        shoebox.add_microphone(list(room.mic_m))
        shoebox.compute_rir()
        rir = np.asarray(shoebox.rir[0][0], np.float64)
        start = max(0, int(np.argmax(np.abs(rir))) - round(_RIR_LEAD_S * sample_rate))
        rir = rir[start:]
        return (rir / np.linalg.norm(rir)).astype(np.float32)


def filter_microphone(audio: np.ndarray, sample_rate: int, mic: Microphone) -> np.ndarray:
    """``audio`` through the microphone's band limit and shelf (audiomentations)."""
    from audiomentations import HighPassFilter, HighShelfFilter, LowPassFilter

    rolloff = mic.rolloff_db_per_octave
    stages = [
        HighPassFilter(mic.low_hz, mic.low_hz, rolloff, rolloff, p=1.0),
        LowPassFilter(mic.high_hz, mic.high_hz, rolloff, rolloff, p=1.0),
    ]
    if mic.shelf_db:
        stages.append(
            HighShelfFilter(mic.shelf_hz, mic.shelf_hz, mic.shelf_db, mic.shelf_db, 0.7, 0.7, 1.0)
        )
    out = np.asarray(audio, np.float32)
    for stage in stages:
        out = stage(out, sample_rate)
    return out.astype(np.float32)


def draw_session(rng: np.random.Generator, options: SessionOptions) -> Session:
    """One session from ``options``' ranges."""
    if rng.random() < options.telephone_share:
        mic = Microphone(
            low_hz=float(rng.uniform(200.0, 300.0)),
            high_hz=float(rng.uniform(3400.0, 3800.0)),
            rolloff_db_per_octave=48,
        )
    else:
        mic = Microphone(
            low_hz=float(rng.uniform(50.0, 150.0)),
            high_hz=float(rng.uniform(5500.0, 7500.0)),
            rolloff_db_per_octave=12,
            shelf_hz=float(rng.uniform(1000.0, 3000.0)),
            shelf_db=float(rng.uniform(*options.tilt_db)),
        )
    size = tuple(float(rng.uniform(lo, hi)) for lo, hi in _ROOM_M)
    source = tuple(float(rng.uniform(_WALL_GAP_M, side - _WALL_GAP_M)) for side in size)
    mic_m = _mic_position(rng, size, source)
    long = rng.random() < options.long_rt60_share
    rt60_s = float(rng.uniform(*(options.long_rt60_s if long else options.rt60_s)))
    room = Room(rt60_s, size, source, mic_m) if rng.random() < options.reverb_share else None
    return Session(float(rng.uniform(*options.gain_db)), mic, room)


def draw_noise(
    rng: np.random.Generator, options: SessionOptions, *, enrollment: bool = False
) -> Noise:
    """Noise of a conversation (colour or babble) or of an enrollment clip (colour)."""
    low = rng.random() < options.low_snr_share
    snr_range = options.low_snr_db if low else options.snr_db
    snr = float(rng.uniform(*(options.enroll_snr_db if enrollment else snr_range)))
    seed = int(rng.integers(2**31))
    if not enrollment and rng.random() < options.babble_share:
        return Noise("babble", snr, seed=seed)
    return Noise("colour", snr, float(rng.uniform(-6.02, 0.0)), seed)


def add_noise(
    audio: np.ndarray,
    speech: np.ndarray,
    noise: Noise,
    sample_rate: int,
    babble: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """``audio`` plus noise at ``noise.snr_db`` below the mean power of its ``speech``
    samples (a boolean mask). Babble needs ``babble`` recordings; without any it falls
    back to pink noise."""
    n = len(audio)
    rng = np.random.default_rng(noise.seed)
    if noise.kind == "babble" and babble:
        track = babble_track(babble, n, rng)
    else:
        decay = noise.decay_db_per_octave if noise.kind == "colour" else -3.01
        track = coloured_noise(n, decay, sample_rate, noise.seed)
    power = float(np.mean(np.square(audio[speech], dtype=np.float64))) if speech.any() else 0.0
    if power <= 0:
        return np.asarray(audio, np.float32).copy()
    track_power = float(np.mean(np.square(track, dtype=np.float64)))
    scale = np.sqrt(power / 10 ** (noise.snr_db / 10) / track_power)
    return (audio + scale * track).astype(np.float32)


def coloured_noise(n: int, decay_db_per_octave: float, sample_rate: int, seed: int):
    """``n`` samples of unit-power noise whose spectrum falls ``decay_db_per_octave``
    (0 white, -3.01 pink, -6.02 brown), from audiomentations, reproducible by ``seed``."""
    from audiomentations.augmentations.add_color_noise import generate_decaying_white_noise

    with _numpy_seed(seed):
        track = generate_decaying_white_noise(n, decay_db_per_octave, sample_rate, n_fft=512)
    return track.astype(np.float32)


def babble_track(voices: Sequence[np.ndarray], n: int, rng: np.random.Generator):
    """The sum of ``voices`` (each looped from a random point to ``n`` samples and
    brought to unit power), as one background of talkers."""
    total = np.zeros(n, np.float32)
    for voice in voices:
        voice = np.asarray(voice, np.float32)
        looped = np.resize(np.roll(voice, -int(rng.integers(len(voice)))), n)
        power = float(np.mean(np.square(looped, dtype=np.float64)))
        if power > 0:
            total += looped / np.float32(np.sqrt(power))
    return total


def _mic_position(rng: np.random.Generator, size, source) -> tuple[float, float, float]:
    """A microphone 0.3-1.2 m from the source, inside the room's wall gap."""
    low = np.array([_WALL_GAP_M] * 3)
    high = np.array(size) - _WALL_GAP_M
    for _ in range(100):
        direction = rng.normal(size=3)
        direction[2] *= 0.3  # mostly level with the talker
        point = np.array(source) + rng.uniform(*_MIC_DISTANCE_M) * direction / np.linalg.norm(
            direction
        )
        if np.all(point >= low) and np.all(point <= high):
            return tuple(float(x) for x in point)
    return tuple(float(x) for x in np.clip(np.array(source) + 0.5, low, high))


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's legacy global generator (audiomentations draws from it) for one
    call, and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
