"""Multi-voice synthetic English speech (espeak-ng) for the demo, the tests and examples.

The ``espeakng-loader`` wheel ships ``libespeak-ng.so`` and its ``espeak-ng-data``; this
module drives the library through ctypes (no system espeak, no subprocess, no network), so
the demo and the tests get real, varied speech from several clearly different voices.

Public API::

    synthesize(text, voice, sample_rate=16000, rate_wpm=160, pitch=None) -> float32 mono
    VOICES                      # name -> Voice(espeak, pitch, pitch_range, rate_wpm)
    speech(speaker, seconds, seed=0, sample_rate=16000) -> float32 mono of exactly that length
    conversation(turns, gap_s=0.3, seed=0, sample_rate=16000) -> (audio, [(start, end, who)])

Determinism: espeak-ng keeps synthesis state in static variables that neither
``espeak_Terminate`` nor ``espeak_Initialize`` resets, so the same call gives slightly different
samples (even a different length) depending on what was said before. Each synthesis therefore
loads the library afresh, seeds its noise generator, and unloads it (a few ms), which makes
every result byte-identical across calls, test orders and processes. Results are
cached in memory, so each (sentence, voice) pair is synthesised once per process.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soxr

from ..errors import ConfigError, SynthesisError

__all__ = [
    "SENTENCES",
    "VOICES",
    "Voice",
    "conversation",
    "speech",
    "synthesize",
]

# --- espeak-ng constants (speak_lib.h) -------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() when the data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_RATE_MIN, _RATE_MAX = 80, 450

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()  # espeak-ng is a process-global C library: one synthesis at a time
_chunks: list[np.ndarray] = []  # filled by the callback while _LOCK is held


def _on_audio(wav, n_samples, _events) -> int:
    if wav and n_samples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0  # 0 = continue synthesis


_CALLBACK = _SYNTH_CALLBACK(_on_audio)  # module-level so it outlives every library instance


@functools.cache
def _paths() -> tuple[str, Path]:
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SynthesisError(
            "tests/synth.py needs the 'espeakng-loader' package (pip install espeakng-loader)"
        ) from exc
    return espeakng_loader.get_library_path(), Path(espeakng_loader.get_data_path())


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_paths()[0], mode=ctypes.RTLD_LOCAL)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    return lib


def _unload(lib: ctypes.CDLL) -> None:
    """Drop this process's reference to the library so its static state starts over next time."""
    try:
        import _ctypes

        dlclose = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary  # POSIX / Windows
    except (ImportError, AttributeError):  # pragma: no cover - exotic platforms
        return
    dlclose(lib._handle)


def _check_voice(voice: str) -> None:
    """espeak silently ignores an unknown ``+variant``; catch typos here instead."""
    _, plus, variant = voice.partition("+")
    if plus and not (_paths()[1] / "voices" / "!v" / variant).is_file():
        raise ConfigError(f"unknown espeak-ng voice variant {variant!r} in {voice!r}")


def _synth_native(
    text: str, voice: str, rate_wpm: int, pitch: int | None, pitch_range: int | None
) -> tuple[np.ndarray, int]:
    """int16 samples at espeak's own rate, and that rate (uncached: see _synth_cached)."""
    _check_voice(voice)
    data_parent = str(_paths()[1].parent).encode()  # the directory holding espeak-ng-data
    encoded = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = _load()
        try:
            native_rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, _INITIALIZE_DONT_EXIT
            )
            if native_rate <= 0:
                raise SynthesisError(
                    f"espeak_Initialize failed ({native_rate}) for {data_parent!r}"
                )
            lib.espeak_SetSynthCallback(_CALLBACK)
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ConfigError(f"unknown espeak-ng voice {voice!r}")
            rate = int(np.clip(rate_wpm, _RATE_MIN, _RATE_MAX))
            lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, 50 if pitch is None else int(pitch), 0)
            lib.espeak_SetParameter(
                _PARAM_RANGE, 50 if pitch_range is None else int(pitch_range), 0
            )
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(1)
            _chunks.clear()
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != _EE_OK:
                raise SynthesisError(f"espeak_Synth failed ({status}) for {text!r}")
            lib.espeak_Synchronize()
            samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        finally:
            _chunks.clear()
            lib.espeak_Terminate()
            _unload(lib)
    return samples, native_rate


@functools.lru_cache(maxsize=512)
def _synth_cached(
    text: str,
    voice: str,
    sample_rate: int,
    rate_wpm: int,
    pitch: int | None,
    pitch_range: int | None,
) -> np.ndarray:
    raw, native_rate = _synth_native(text, voice, rate_wpm, pitch, pitch_range)
    audio = raw.astype(np.float32) / 32768.0
    if sample_rate != native_rate and len(audio):
        audio = soxr.resample(audio, native_rate, sample_rate, quality="HQ").astype(np.float32)
    np.clip(audio, -1.0, 1.0, out=audio)
    audio.setflags(write=False)
    return audio


def synthesize(
    text: str,
    voice: str,
    sample_rate: int = 16000,
    rate_wpm: int = 160,
    pitch: int | None = None,
    *,
    pitch_range: int | None = None,
) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice; float32 mono in [-1, 1] at ``sample_rate``.

    ``voice`` is an espeak-ng voice name, optionally with a variant: ``"en"``, ``"en-us"``,
    ``"en+m7"``, ``"en+f2"``, ``"en+klatt"``... ``pitch`` and ``pitch_range`` are espeak's 0-100
    scales (50 = the voice's own; ``None`` means 50). Leading/trailing silence is kept as espeak
    makes it (a few ms). The result is a fresh array; synthesis itself is cached.
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    return _synth_cached(text, voice, int(sample_rate), int(rate_wpm), pitch, pitch_range).copy()


# --- voices --------------------------------------------------------------------------------


class Voice(NamedTuple):
    espeak: str  # espeak-ng voice[+variant]
    pitch: int | None = None  # espeak 0-100 base pitch, 50 = the variant's own
    pitch_range: int | None = None  # espeak 0-100 intonation range, 50 = normal
    rate_wpm: int = 160


# Five speakers that differ in synthesiser (formant vs Klatt), formant scaling, pitch, pitch
# range and speaking rate. Picked from ~25 espeak variants as the set whose GE2E embeddings
# (resemblyzer's pretrained.pt, 8 s clips) are furthest apart: cross-speaker cosine <= 0.63,
# same speaker across different sentences >= 0.96.
VOICES: dict[str, Voice] = {
    "alice": Voice("en+steph", pitch=50, pitch_range=60, rate_wpm=160),  # female, F0 ~185 Hz
    "bob": Voice("en+Andy", pitch=50, pitch_range=50, rate_wpm=150),  # male ~97 Hz, flat
    "carol": Voice("en+f3", pitch=75, pitch_range=70, rate_wpm=170),  # female, ~280 Hz
    "dave": Voice("en+klatt", pitch=40, pitch_range=50, rate_wpm=155),  # Klatt male, ~97 Hz
    "erin": Voice("en+iven", pitch=50, pitch_range=45, rate_wpm=165),  # male ~100 Hz, dark
}

# Plain sentences (written for this suite) that speech() draws from.
SENTENCES: tuple[str, ...] = (
    "The train to the coast leaves a little after nine every morning.",
    "I left my umbrella on the bus again, so I got soaked on the way home.",
    "Could you send me the figures before the meeting starts tomorrow?",
    "Our neighbours painted their front door a bright shade of yellow.",
    "The bakery on the corner sells out of bread by noon on Saturdays.",
    "She practised the piano for an hour before anyone else woke up.",
    "We should check the weather forecast before we plan the hike.",
    "The library closes early on public holidays, so plan around that.",
    "He fixed the squeaky hinge with a few drops of oil.",
    "Most of the apples in the garden fell during the storm last night.",
    "Please remember to water the plants while I am away next week.",
    "The new bridge cut the drive across the river by twenty minutes.",
    "I have never seen so many stars as on that trip to the mountains.",
    "The printer on the second floor is out of paper again.",
    "They spent the whole afternoon building a kite with their children.",
    "A cup of strong tea is the best way to start a cold morning.",
    "The museum opened a new wing for old maps and travel journals.",
    "Let me know if the parcel has not arrived by Thursday.",
    "The cat sleeps on the warm windowsill for most of the day.",
    "Our team finished the project two days ahead of the deadline.",
    "The market was crowded, but we found fresh fish and ripe tomatoes.",
    "It took three tries to get the old engine running again.",
    "My grandmother still writes long letters by hand every month.",
    "The lecture on volcanoes was much more exciting than I expected.",
    "We walked along the harbour and watched the fishing boats come in.",
    "Turn left at the church, then follow the road past the school.",
    "The soup needs a little more salt and a squeeze of lemon.",
    "He reads the newspaper from the back page to the front.",
    "The children built a snowman with a carrot for its nose.",
    "I think the meeting room on the third floor is free after lunch.",
    "The orchestra played a short piece before the main concert began.",
    "Every spring the field behind the farm fills with wild flowers.",
    "The quiz asked which planet has the longest day of all.",
    "She keeps a small notebook in her pocket for ideas and lists.",
    "The shop around the corner repairs bicycles and sells spare parts.",
    "After the rain stopped, the whole street smelled of wet stone.",
    "We need to book the tickets early if we want seats together.",
    "The old clock in the hall loses about five minutes a week.",
    "His favourite part of the film was the chase across the rooftops.",
    "The recipe says to bake the bread until the crust sounds hollow.",
    "Nobody expected the little theatre to sell out on opening night.",
    "The river was so calm that it reflected every tree on the bank.",
)

_MAX_PAUSE_S = 0.25
_MIN_PAUSE_S = 0.08
_TARGET_RMS = 0.1  # about -20 dBFS over a sentence
_PEAK_LIMIT = 0.95
_FADE_S = 0.005


def _voice_of(speaker: str) -> Voice:
    """A VOICES entry, or a raw espeak voice name used as-is."""
    voice = VOICES.get(speaker)
    if voice is not None:
        return voice
    if "+" in speaker or (speaker.islower() and speaker.replace("-", "").isalpha()):
        return Voice(speaker)
    raise ConfigError(f"unknown speaker {speaker!r}; known: {sorted(VOICES)}")


def _active_extent(audio: np.ndarray, sample_rate: int, floor_db: float = -45.0) -> slice:
    """Span from the first to the last 5 ms frame within ``floor_db`` of the loudest frame."""
    hop = max(1, sample_rate // 200)
    n_frames = len(audio) // hop
    if n_frames == 0:
        return slice(0, 0)
    frames = audio[: n_frames * hop].reshape(n_frames, hop).astype(np.float64)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 20))
    if len(loud) == 0:
        return slice(0, 0)
    return slice(int(loud[0]) * hop, min(len(audio), (int(loud[-1]) + 1) * hop))


@functools.lru_cache(maxsize=512)
def _sentence(index: int, voice: Voice, sample_rate: int) -> np.ndarray:
    """One sentence in one voice: silence trimmed, level normalised, read-only."""
    audio = _synth_cached(
        SENTENCES[index], voice.espeak, sample_rate, voice.rate_wpm, voice.pitch, voice.pitch_range
    )
    audio = np.array(audio[_active_extent(audio, sample_rate)], dtype=np.float32)
    if len(audio):
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        peak = float(np.max(np.abs(audio)))
        audio *= min(_TARGET_RMS / max(rms, 1e-9), _PEAK_LIMIT / max(peak, 1e-9))
    audio.setflags(write=False)
    return audio


def _rng(seed: int, *salt: str) -> np.random.Generator:
    key = [int(seed) & 0xFFFFFFFF, *(zlib.crc32(s.encode()) for s in salt)]
    return np.random.default_rng(key)


def _fade(audio: np.ndarray, sample_rate: int) -> None:
    n = min(len(audio) // 2, int(_FADE_S * sample_rate))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]


def speech(speaker: str, seconds: float, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """About ``seconds`` (exactly ``round(seconds * sample_rate)`` samples) of continuous speech.

    Sentences are drawn without repetition (until the list is exhausted) from ``SENTENCES`` by a
    generator seeded from ``(seed, speaker)``, joined with pauses of 0.08-0.25 s, and cut to
    length. Speech starts at sample 0 and is still going at the last sample (a pause is never
    left dangling at the end); the cut ends are faded over 5 ms. ``speaker`` is a ``VOICES`` key
    (or a raw espeak voice name). Same arguments give the same samples.
    """
    if seconds < 0:
        raise ConfigError(f"seconds must be >= 0, got {seconds}")
    n_total = int(round(seconds * sample_rate))
    voice = _voice_of(speaker)
    rng = _rng(seed, speaker, "speech")
    pieces: list[np.ndarray] = []
    filled = 0
    order: list[int] = []
    while filled < n_total:
        if not order:
            order = list(rng.permutation(len(SENTENCES)))
        sentence = _sentence(int(order.pop()), voice, sample_rate)
        if pieces:
            pause = int(round(rng.uniform(_MIN_PAUSE_S, _MAX_PAUSE_S) * sample_rate))
            if filled + pause >= n_total:
                pause = 0  # end on speech, never on a pause
            pieces.append(np.zeros(pause, np.float32))
            filled += pause
        pieces.append(sentence)
        filled += len(sentence)
    out = np.concatenate(pieces)[:n_total] if pieces else np.zeros(0, np.float32)
    out = np.ascontiguousarray(out, dtype=np.float32)
    _fade(out, sample_rate)
    return out


def conversation(
    turns: list[tuple[str, float]],
    gap_s: float = 0.3,
    seed: int = 0,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Turns of ``speech(speaker, seconds)`` separated by ``gap_s`` of silence.

    Returns the audio and the reference ``(start_s, end_s, speaker)`` of each turn: the extent
    of its speech in the returned audio (the first turn starts at 0, no leading silence).
    Each turn gets its own sentences (the seed is mixed with the turn index).
    """
    if gap_s < 0:
        raise ConfigError(f"gap_s must be >= 0, got {gap_s}")
    gap = np.zeros(int(round(gap_s * sample_rate)), np.float32)
    pieces: list[np.ndarray] = []
    reference: list[tuple[float, float, str]] = []
    offset = 0
    for index, (speaker, seconds) in enumerate(turns):
        if pieces:
            pieces.append(gap)
            offset += len(gap)
        turn = speech(speaker, seconds, seed=int(seed) * 1009 + index, sample_rate=sample_rate)
        extent = _active_extent(turn, sample_rate)
        if extent.stop > extent.start:
            reference.append(
                (
                    (offset + extent.start) / sample_rate,
                    (offset + extent.stop) / sample_rate,
                    speaker,
                )
            )
        pieces.append(turn)
        offset += len(turn)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return audio.astype(np.float32, copy=False), reference
