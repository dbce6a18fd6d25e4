"""Deterministic multi-speaker conversations built from single-speaker recordings.

Each participant's recording is split once: its first ``enroll_s`` seconds (or a length
drawn up to ``enroll_max_s``) become the enrollment clip, the rest is the material that
conversation turns are cut from, in order, starting again from the top of the material
when it runs out. Enrollment audio therefore never appears in the conversation. Cuts move
to the nearest pause in the material, so a turn starts at the beginning of a phrase and
ends at the end of one, as real turns do, rather than opening on the tail of a word. The
reference is written while the audio is built, so it is exact to the sample: the turns,
and the speech in them (an energy VAD on the clean material, pauses shorter than
``bridge_s`` bridged), which the benchmarks score against.

With ``session`` options (the benchmarks' default, *mismatched*) the two halves of a
recording become two sessions, as enrolling once and being tracked later on another
microphone in another room is: each speaker draws a session (level, microphone response,
room reverberation; :mod:`streamer.evaluation.augment`) that their conversation turns go
through while the enrollment clip stays as recorded, or, for a share of the enrolled
speakers, the other way round (the clip goes through the session and gets its own faint
noise, the turns stay as recorded). The conversation then gets its own noise, coloured or
babble of other speakers, at a drawn SNR against its speech. Each speaker's session is
drawn from the seed, the conversation index and the speaker's name.

Development speakers split in two fixed halves (:func:`speaker_half`): choices are made on
the ``tune`` half and figures reported on the ``report`` half.

The core, :func:`simulate`, works on in-memory float32 arrays; :func:`simulate_from_folder`
reads a folder of recordings (LibriSpeech-style ``SPEAKER-CHAPTER-UTT.flac``) first.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from ..audio import load_audio
from ..errors import AudioError, ConfigError, NoSpeechError
from .augment import Session, SessionOptions, add_noise, draw_noise, draw_session

AUDIO_SUFFIXES = (".flac", ".wav")
_LIBRISPEECH_NAME = re.compile(r"^([^-]+)-[^-]+-[^-]+$")
_TRIM_FRAME_S = 0.01
_FADE_S = 0.01
_PEAK_LIMIT = 0.99
_TRIM_ATTEMPTS = 3
_PAUSE_S = 0.15  # shortest quiet run between two phrases
_SNAP_S = 1.0  # farthest a cut moves to reach a pause
HALVES = ("all", "tune", "report")


@dataclass
class SimulationOptions:
    """How a simulated conversation is drawn.

    Attributes:
        n_speakers: Enrolled speakers: each gets enrollment audio and takes turns.
        n_strangers: Unenrolled voices that also take turns (no enrollment audio).
        duration_s: Length of the conversation audio.
        turn_min_s: Shortest turn drawn (a turn's silence trimmed away can make it
            shorter when a recording holds pauses).
        turn_max_s: Longest turn drawn. Turn lengths are log-uniform between
            ``turn_min_s`` and ``turn_max_s``, so short turns are the most common
            (median ``sqrt(turn_min_s * turn_max_s)``, 3.5 s by default).
        gap_max_s: Silence between consecutive turns is uniform in ``[0, gap_max_s]``.
        overlap_prob: Chance that a turn starts before the previous one ends instead.
        overlap_max_s: Longest such overlap (uniform in ``[0, overlap_max_s]``, and never
            more than half of either turn).
        enroll_s: Seconds at the start of each enrolled speaker's recording kept for
            enrollment and never used in the conversation. Strangers' recordings are
            split the same way, so a speaker's turns do not depend on their role.
        enroll_max_s: When set, each speaker's enrollment length is drawn uniformly in
            ``[enroll_s, enroll_max_s]``, and shortened to leave ``turn_max_s / 2`` of
            material (never below ``enroll_s``).
        trim_top_db: Leading and trailing audio more than this far below a piece's
            loudest 10 ms frame is trimmed, so reference turns start and end on speech.
        cut_at_pauses: Move each cut to the nearest pause (0.15 s or more this far below
            the recording's loudest frame) within 1 s, so turns hold whole phrases.
            ``False`` cuts at the drawn lengths exactly, often mid-word: turns then may
            open with a fragment of the previous phrase, a harder and less natural test.
        bridge_s: Pauses in a turn's speech shorter than this are part of the reference
            speech; longer ones are not (the VAD frame is 10 ms, speech within
            ``trim_top_db`` of the speaker's loudest frame).
        session: The mismatched condition's ranges; ``None`` keeps the recordings as
            they are (the clean condition).
        speakers: Which development speakers to draw from: ``all``, or the ``tune`` or
            ``report`` half (:func:`speaker_half`; only :func:`simulate_from_folder`).
        sample_rate: Sample rate of the recordings, the conversation and enrollment.
        seed: Seed of every random draw; the same inputs and seed give the same result.
    """

    n_speakers: int = 3
    n_strangers: int = 0
    duration_s: float = 60.0
    turn_min_s: float = 1.5
    turn_max_s: float = 8.0
    gap_max_s: float = 1.0
    overlap_prob: float = 0.1
    overlap_max_s: float = 0.5
    enroll_s: float = 6.0
    trim_top_db: float = 30.0
    cut_at_pauses: bool = True
    enroll_max_s: float | None = None
    bridge_s: float = 0.3
    session: SessionOptions | None = None
    speakers: str = "all"
    sample_rate: int = 16000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.n_speakers < 0 or self.n_strangers < 0:
            problems.append("n_speakers and n_strangers must not be negative")
        if self.n_speakers + self.n_strangers < 2:
            problems.append("a conversation needs at least 2 voices (speakers + strangers)")
        if self.duration_s <= 0:
            problems.append("duration_s must be positive")
        if not 0 < self.turn_min_s <= self.turn_max_s:
            problems.append("need 0 < turn_min_s <= turn_max_s")
        if self.gap_max_s < 0 or self.overlap_max_s < 0:
            problems.append("gap_max_s and overlap_max_s must not be negative")
        if not 0 <= self.overlap_prob <= 1:
            problems.append("overlap_prob must lie in [0, 1]")
        if self.enroll_s <= 0:
            problems.append("enroll_s must be positive")
        if self.enroll_max_s is not None and self.enroll_max_s < self.enroll_s:
            problems.append("enroll_max_s must not be below enroll_s")
        if self.bridge_s < 0:
            problems.append("bridge_s must not be negative")
        if self.speakers not in HALVES:
            problems.append(f"speakers must be one of {', '.join(HALVES)}")
        if self.trim_top_db <= 0:
            problems.append("trim_top_db must be positive")
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if problems:
            raise ConfigError("bad simulation options: " + "; ".join(problems))

    @property
    def min_recording_s(self) -> float:
        """Shortest recording usable here: enrollment plus one shortest turn."""
        return self.enroll_s + self.turn_min_s


class Turn(NamedTuple):
    """One reference turn; also the ``(start, end, label)`` triple that scoring takes."""

    start_s: float
    end_s: float
    speaker: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Conversation:
    """A simulated conversation and its reference."""

    audio: np.ndarray
    """Float32 mono mixture, ``duration_s * sample_rate`` samples long."""
    sample_rate: int
    turns: list[Turn]
    """Reference turns sorted by start; consecutive turns are by different speakers."""
    enrollment: dict[str, np.ndarray]
    """Enrollment audio of each enrolled speaker (strangers have none)."""
    strangers: list[str] = field(default_factory=list)
    file_id: str = "sim0000"
    speech: list[Turn] = field(default_factory=list)
    """The reference speech: each turn's speech regions (pauses under ``bridge_s``
    bridged), sorted by start. What identity, DER and changes are scored against."""
    conditions: dict[str, str] = field(default_factory=dict)
    """How each speaker's two sessions differ, in words (empty when clean)."""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def to_rttm(self) -> str:
        """The reference speech as RTTM text, one ``SPEAKER`` line per region."""
        return "".join(
            f"SPEAKER {self.file_id} 1 {t.start_s:.3f} {t.duration_s:.3f} "
            f"<NA> <NA> {t.speaker} <NA> <NA>\n"
            for t in self.speech
        )

    def save(self, folder: str | Path) -> Path:
        """Write ``<file_id>.wav``, ``<file_id>.rttm`` and ``enroll/<speaker>.wav``.

        Returns the path of the conversation WAV. WAVs are 16-bit PCM.
        """
        folder = Path(folder)
        (folder / "enroll").mkdir(parents=True, exist_ok=True)
        wav = folder / f"{self.file_id}.wav"
        sf.write(wav, self.audio, self.sample_rate, subtype="PCM_16")
        (folder / f"{self.file_id}.rttm").write_text(self.to_rttm(), encoding="utf-8")
        for speaker, audio in self.enrollment.items():
            sf.write(folder / "enroll" / f"{speaker}.wav", audio, self.sample_rate, "PCM_16")
        return wav


def speaker_id(path: str | Path) -> str:
    """Speaker of a recording: the part before the first '-' of a LibriSpeech-style
    ``SPEAKER-CHAPTER-UTT`` name, else the whole file stem."""
    stem = Path(path).stem
    match = _LIBRISPEECH_NAME.match(stem)
    return match.group(1) if match else stem


def speaker_half(speaker: str) -> str:
    """``tune`` or ``report``: the half of the development speakers ``speaker`` is in,
    by the parity of the CRC-32 of its name (134 and 117 of LibriSpeech's 251)."""
    return "tune" if zlib.crc32(speaker.encode("utf-8")) % 2 == 0 else "report"


def load_speaker_folder(path: str | Path) -> dict[str, list[Path]]:
    """Recordings under ``path`` (searched recursively) grouped by speaker, all sorted."""
    folder = Path(path)
    if not folder.is_dir():
        raise AudioError(f"{folder} is not a folder; pass a folder of single-speaker recordings")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise AudioError(
            f"no .flac/.wav files in {folder}; pass a folder of single-speaker recordings"
        )
    speakers: dict[str, list[Path]] = {}
    for file in files:
        speakers.setdefault(speaker_id(file), []).append(file)
    return dict(sorted(speakers.items()))


def pick_speakers(
    speakers: Sequence[str], options: SimulationOptions, index: int = 0
) -> tuple[list[str], list[str]]:
    """Enrolled speakers and strangers for conversation ``index``, drawn from the seed."""
    pool = sorted(speakers)
    wanted = options.n_speakers + options.n_strangers
    if len(pool) < wanted:
        raise ConfigError(
            f"{len(pool)} usable speakers, but {options.n_speakers} speakers + "
            f"{options.n_strangers} strangers need {wanted}; ask for fewer or add recordings"
        )
    rng = np.random.default_rng([options.seed, index, 0])
    chosen = [pool[i] for i in rng.permutation(len(pool))[:wanted]]
    return chosen[: options.n_speakers], chosen[options.n_speakers :]


def simulate(
    recordings: Mapping[str, np.ndarray],
    options: SimulationOptions,
    *,
    enrolled: Sequence[str] | None = None,
    strangers: Sequence[str] | None = None,
    index: int = 0,
    file_id: str | None = None,
    babble: Sequence[np.ndarray] = (),
) -> Conversation:
    """Build conversation ``index`` from one float32 mono recording per speaker.

    Recordings must be at ``options.sample_rate``. ``enrolled`` and ``strangers`` name the
    participants (no strangers when only ``enrolled`` is given); without them both are
    drawn from the recordings' speakers by :func:`pick_speakers`. ``babble`` holds
    recordings of other voices for babble noise (mismatched condition; without any,
    babble becomes pink noise). The same recordings, options and index give identical
    output.
    """
    if enrolled is None:
        enrolled, strangers = pick_speakers(list(recordings), options, index)
    elif strangers is None:
        strangers = []
    participants = [*enrolled, *strangers]
    if len(set(participants)) != len(participants) or len(participants) < 2:
        raise ConfigError("enrolled speakers and strangers must be at least 2 distinct names")
    missing = [s for s in participants if s not in recordings]
    if missing:
        raise ConfigError(f"no recording for speaker(s) {', '.join(missing)}")

    sr = options.sample_rate
    voices: dict[str, _Voice] = {}
    enrollment: dict[str, np.ndarray] = {}
    conditions: dict[str, str] = {}
    for speaker in participants:
        recording = np.asarray(recordings[speaker], dtype=np.float32)
        if recording.ndim != 1:
            raise AudioError(f"recording of speaker {speaker} must be mono (1-D)")
        if len(recording) < round(options.min_recording_s * sr):
            raise AudioError(
                f"recording of speaker {speaker} is {len(recording) / sr:.1f} s; it needs "
                f"enroll_s + turn_min_s = {options.min_recording_s:.1f} s"
            )
        enroll_n = _enroll_samples(len(recording), options, [options.seed, index, 3], speaker)
        voice = _Voice(recording[enroll_n:], options)
        clip = recording[:enroll_n].copy()
        if options.session is not None:
            rng = np.random.default_rng([options.seed, index, 2, _name_key(speaker)])
            reverse = speaker in enrolled and rng.random() < options.session.reverse_share
            session = draw_session(rng, options.session)
            noise = draw_noise(rng, options.session, enrollment=True)
            if reverse:
                wet = session.apply(clip, sr)[: len(clip)]
                clip = _limit_peak(add_noise(wet, _speech_mask(clip, voice, options), noise, sr))
            else:
                voice.session = session
                voice.rir = session.impulse_response(sr)
            side = "enrollment" if reverse else "conversation"
            conditions[speaker] = f"{side} through {describe(session)}"
        voices[speaker] = voice
        if speaker in enrolled:
            enrollment[speaker] = clip

    rng = np.random.default_rng([options.seed, index, 1])
    total_n = round(options.duration_s * sr)
    audio = np.zeros(total_n, dtype=np.float32)
    speech_mask = np.zeros(total_n, dtype=bool)
    cursors = dict.fromkeys(participants, 0)
    turns: list[Turn] = []
    speech: list[Turn] = []
    queue = [participants[i] for i in rng.permutation(len(participants))]
    prev: tuple[int, int] | None = None  # (start, end) sample of the previous turn

    while True:
        # Every voice speaks once early on; then anyone but the previous speaker.
        if queue:
            speaker = queue.pop(0)
        else:
            others = [s for s in participants if s != turns[-1].speaker]
            speaker = others[rng.integers(len(others))]
        target_s = math.exp(rng.uniform(math.log(options.turn_min_s), math.log(options.turn_max_s)))
        overlaps = prev is not None and rng.random() < options.overlap_prob
        shift_s = rng.uniform(0, options.overlap_max_s if overlaps else options.gap_max_s)

        voice = voices[speaker]
        piece = _cut(voice.material, voice.pauses, cursors, speaker, target_s, options)
        if prev is None:
            start = round(shift_s * sr)
        elif overlaps:
            limit = min(prev[1] - prev[0], len(piece)) // 2
            start = prev[1] - min(round(shift_s * sr), limit)
        else:
            start = prev[1] + round(shift_s * sr)
        if start + len(piece) > total_n:
            piece = piece[: max(total_n - start, 0)]
            piece = piece[slice(*_speech_bounds(piece, sr, options.trim_top_db))]
            if len(piece) < round(options.turn_min_s * sr):
                break
        _fade(piece, sr)
        sound = piece if voice.session is None else voice.session.apply(piece, sr, voice.rir)
        sound = sound[: total_n - start]
        audio[start : start + len(sound)] += sound
        turns.append(Turn(start / sr, (start + len(piece)) / sr, speaker))
        for lo, hi in _speech_runs(piece, voice.quiet_power, options):
            speech.append(Turn((start + lo) / sr, (start + hi) / sr, speaker))
            speech_mask[start + lo : start + hi] = True
        prev = (start, start + len(piece))

    if options.session is not None:
        noise = draw_noise(np.random.default_rng([options.seed, index, 4]), options.session)
        audio = add_noise(audio, speech_mask, noise, sr, babble)
        conditions["noise"] = f"{noise.kind} at {noise.snr_db:.0f} dB SNR"
    return Conversation(
        audio=_limit_peak(audio),
        sample_rate=sr,
        turns=turns,
        enrollment=enrollment,
        strangers=list(strangers),
        file_id=file_id if file_id is not None else f"sim{index:04d}",
        speech=sorted(speech),
        conditions=conditions,
    )


def describe(session: Session) -> str:
    """A session in words, e.g. ``telephone 240-3650 Hz, RT60 0.45 s, -3 dB``."""
    mic = session.microphone
    band = f"{mic.low_hz:.0f}-{mic.high_hz:.0f} Hz"
    kind = f"telephone {band}" if mic.telephone else f"{band}, tilt {mic.shelf_db:+.0f} dB"
    room = "dry" if session.room is None else f"RT60 {session.room.rt60_s:.2f} s"
    return f"{kind}, {room}, {session.gain_db:+.0f} dB"


def simulate_from_folder(
    path: str | Path, options: SimulationOptions, index: int = 0
) -> Conversation:
    """Conversation ``index`` from a folder of single-speaker recordings.

    Speakers whose recordings (all files of a speaker, in name order) last less than
    ``enroll_s + turn_max_s / 2`` are skipped, so each voice has some material to vary
    its turns; with ``options.speakers`` set, only that half's speakers are drawn (the
    babble voices too). Only the picked speakers' files are read, and of a speaker with
    many files only enough for ``enroll_s + duration_s``.
    """
    files = load_speaker_folder(path)
    if options.speakers != "all":
        files = {s: fs for s, fs in files.items() if speaker_half(s) == options.speakers}
    durations = {s: sum(_duration_s(f) for f in fs) for s, fs in files.items()}
    needed_s = options.enroll_s + options.turn_max_s / 2
    usable = [s for s, d in durations.items() if d >= needed_s]
    enrolled, strangers = pick_speakers(usable, options, index)
    wanted_s = (options.enroll_max_s or options.enroll_s) + options.duration_s
    recordings = {
        s: _read_speaker(files[s], options.sample_rate, wanted_s) for s in [*enrolled, *strangers]
    }
    babble = []
    if options.session is not None:
        others = [s for s in usable if s not in recordings]
        rng = np.random.default_rng([options.seed, index, 5])
        picked = rng.permutation(len(others))[: options.session.babble_voices]
        babble = [_read_speaker(files[others[i]], options.sample_rate, 30.0) for i in picked]
    return simulate(
        recordings, options, enrolled=enrolled, strangers=strangers, index=index, babble=babble
    )


class _Voice:
    """A speaker's conversation material, its pauses, and the session it goes through."""

    def __init__(self, material: np.ndarray, options: SimulationOptions) -> None:
        self.material = material
        self.pauses = _pauses(material, options)
        _, power = _frame_power(material, options.sample_rate)
        self.quiet_power = float(power.max(initial=0.0)) * 10 ** (-options.trim_top_db / 10)
        self.session: Session | None = None
        self.rir: np.ndarray | None = None


def _read_speaker(files: Sequence[Path], sample_rate: int, wanted_s: float) -> np.ndarray:
    """A speaker's files joined, stopping once ``wanted_s`` seconds are read."""
    parts, held_s = [], 0.0
    for file in files:
        parts.append(load_audio(file, sample_rate))
        held_s += len(parts[-1]) / sample_rate
        if held_s >= wanted_s:
            break
    return np.concatenate(parts)


def _enroll_samples(n: int, options: SimulationOptions, key: list[int], speaker: str) -> int:
    """Samples of a recording of ``n`` samples given to enrollment."""
    sr = options.sample_rate
    if options.enroll_max_s is None:
        return round(options.enroll_s * sr)
    drawn_s = np.random.default_rng([*key, _name_key(speaker)]).uniform(
        options.enroll_s, options.enroll_max_s
    )
    room_s = n / sr - options.turn_max_s / 2
    return round(max(options.enroll_s, min(drawn_s, room_s)) * sr)


def _name_key(speaker: str) -> int:
    return zlib.crc32(speaker.encode("utf-8"))


def _speech_runs(
    piece: np.ndarray, quiet_power: float, options: SimulationOptions
) -> list[tuple[int, int]]:
    """Sample spans of the speech in ``piece``: 10 ms frames above ``quiet_power``, with
    pauses shorter than ``bridge_s`` bridged; the whole piece when it has no frame."""
    hop, power = _frame_power(piece, options.sample_rate)
    loud = power >= quiet_power
    if not loud.any():
        return [(0, len(piece))] if len(piece) else []
    edges = np.diff(np.concatenate([[0], loud.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    bridge = options.bridge_s / _TRIM_FRAME_S
    keep = np.concatenate([[True], starts[1:] - ends[:-1] >= bridge])
    runs = zip(starts[keep], np.concatenate([ends[:-1][keep[1:]], [ends[-1]]]), strict=True)
    last = len(power)  # a run to the last whole frame takes the partial frame too
    return [(int(a) * hop, len(piece) if b == last else int(b) * hop) for a, b in runs]


def _speech_mask(clip: np.ndarray, voice: _Voice, options: SimulationOptions) -> np.ndarray:
    """Boolean mask of the speech samples of ``clip`` (for an SNR against speech)."""
    mask = np.zeros(len(clip), dtype=bool)
    for lo, hi in _speech_runs(clip, voice.quiet_power, options):
        mask[lo:hi] = True
    return mask


def _limit_peak(audio: np.ndarray) -> np.ndarray:
    """``audio`` scaled down to peak at ``_PEAK_LIMIT`` if it is louder."""
    peak = float(np.max(np.abs(audio), initial=0.0))
    return audio * np.float32(_PEAK_LIMIT / peak) if peak > _PEAK_LIMIT else audio


def _duration_s(path: Path) -> float:
    try:
        return sf.info(str(path)).duration
    except (RuntimeError, OSError) as error:
        raise AudioError(f"cannot read {path}: {error}") from error


def _cut(
    material: np.ndarray,
    pauses: tuple[np.ndarray, np.ndarray],
    cursors: dict[str, int],
    speaker: str,
    target_s: float,
    options: SimulationOptions,
) -> np.ndarray:
    """The next piece of a speaker's material, trimmed to speech; advances the cursor.

    A piece whose speech is shorter than ``turn_min_s`` is replaced by the next one (a
    few tries); the longest try is kept.
    """
    sr = options.sample_rate
    length = min(round(target_s * sr), len(material))
    min_n = round(options.turn_min_s * sr)
    best = np.zeros(0, dtype=np.float32)
    for _ in range(_TRIM_ATTEMPTS):
        if cursors[speaker] + length > len(material):
            cursors[speaker] = 0
        begin, end = _snap_to_pauses(cursors[speaker], length, pauses, options)
        cursors[speaker] = end
        piece = material[begin:end]
        lo, hi = _speech_bounds(piece, sr, options.trim_top_db)
        if hi - lo > len(best):
            best = piece[lo:hi]
        if len(best) >= min_n:
            break
    if len(best) == 0:
        raise NoSpeechError(
            f"recording of speaker {speaker} is silent after its first "
            f"{options.enroll_s:g} s; drop it or pass a recording with speech"
        )
    return best.copy()


def _snap_to_pauses(
    begin: int, length: int, pauses: tuple[np.ndarray, np.ndarray], options: SimulationOptions
) -> tuple[int, int]:
    """The span of a piece drawn at ``begin`` with ``length`` samples, moved to pauses:
    it starts where the first pause within reach of ``begin`` ends and ends where the
    pause nearest ``length`` later starts (a side with no pause in reach stays put)."""
    sr = options.sample_rate
    reach = round(_SNAP_S * sr)
    pause_starts, pause_ends = pauses
    after = pause_ends[(pause_ends > begin) & (pause_starts <= begin + reach)]
    begin = int(after[0]) if len(after) else begin
    end = begin + length
    stops = pause_starts[
        (pause_starts >= begin + round(options.turn_min_s * sr))
        & (pause_starts <= begin + round(options.turn_max_s * sr))
        & (np.abs(pause_starts - end) <= reach)
    ]
    if len(stops):
        end = int(stops[np.argmin(np.abs(stops - end))])
    return begin, end


def _pauses(material: np.ndarray, options: SimulationOptions) -> tuple[np.ndarray, np.ndarray]:
    """Start and end samples of the pauses in ``material`` (none unless ``cut_at_pauses``)."""
    if not options.cut_at_pauses:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    hop, power = _frame_power(material, options.sample_rate)
    quiet = power < float(power.max(initial=0.0)) * 10 ** (-options.trim_top_db / 10)
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_enough = ends - starts >= round(_PAUSE_S / _TRIM_FRAME_S)
    return starts[long_enough] * hop, ends[long_enough] * hop


def _speech_bounds(piece: np.ndarray, sample_rate: int, top_db: float) -> tuple[int, int]:
    """Sample range from the first to the last 10 ms frame within ``top_db`` of the
    loudest frame; ``(0, 0)`` for silence."""
    hop, power = _frame_power(piece, sample_rate)
    n_frames = len(power)
    if n_frames == 0:
        return 0, 0
    peak = float(power.max())
    if peak <= 0:
        return 0, 0
    loud = np.flatnonzero(power >= peak * 10 ** (-top_db / 10))
    last = int(loud[-1])
    return int(loud[0]) * hop, len(piece) if last == n_frames - 1 else (last + 1) * hop


def _frame_power(audio: np.ndarray, sample_rate: int) -> tuple[int, np.ndarray]:
    """Samples per 10 ms frame, and the mean power of each whole frame of ``audio``."""
    hop = max(1, round(_TRIM_FRAME_S * sample_rate))
    n_frames = len(audio) // hop
    return hop, np.mean(np.square(audio[: n_frames * hop].reshape(n_frames, hop)), axis=1)


def _fade(piece: np.ndarray, sample_rate: int) -> None:
    """Short linear fade in and out, in place, so cut edges do not click."""
    n = min(round(_FADE_S * sample_rate), len(piece) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)[1:]
        piece[:n] *= ramp
        piece[len(piece) - n :] *= ramp[::-1]


def benchmark_options(
    index: int,
    *,
    seed: int = 0,
    clean: bool = False,
    speakers: str = "report",
    enrolled: bool = True,
    cut_at_pauses: bool = True,
) -> SimulationOptions:
    """Options of the benchmarks' conversation ``index``, shaped like unseen conversations:
    60-120 s (drawn), 2-4 voices (``2 + index % 3``) and, with ``enrolled``, all of
    them enrolled, plus 1-2 strangers in half the conversations (open set: indices
    3-5 of every 6 have 1, alternately 2); turns 1.5-8 s (log-uniform, ~20 per
    conversation, many of 1.5-2.6 s), gaps 0-1 s, a tenth overlapping by up to 0.5 s;
    one 5-10 s enrollment clip per speaker; the mismatched condition unless ``clean``."""
    voices = 2 + index % 3
    strangers = 0 if (index // 3) % 2 == 0 else 1 + (index // 6) % 2
    duration_s = float(np.random.default_rng([seed, index, 9]).uniform(60.0, 120.0))
    return SimulationOptions(
        n_speakers=voices if enrolled else 0,
        n_strangers=strangers if enrolled else voices,
        duration_s=round(duration_s, 1),
        enroll_s=5.0,
        enroll_max_s=10.0,
        session=None if clean else SessionOptions(),
        speakers=speakers,
        cut_at_pauses=cut_at_pauses,
        seed=seed,
    )
