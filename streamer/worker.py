"""The sliding-window worker: ring buffers in, tracker events out, batched across streams.

Each stream's audio lands in its :class:`~streamer.buffer.RingBuffer` (``Stream.push``,
cheap, safe to call from an I/O thread). :meth:`Engine.step` then, for every stream:

1. turns the new samples into feature frames, each frame computed once;
2. runs the VAD on each new 32 ms chunk (batched across streams) and the speech gate;
   a model at another rate than the VAD's 16 kHz feeds it through a per-stream resampler;
3. cuts a window every ``hop_s`` over the stored frames, plus short "onset" windows that
   start where the voice resumes after a pause (0.6 s to 1.2 s long) so a new voice is
   recognised before a full window of it exists; embeds the windows that are mostly
   speech — all streams' windows in one encoder batch per window length. A recurrent
   encoder reads each onset's frames once: its longer onset windows resume from the
   state where the shorter ones ended;
4. hands gate updates and windows to the stream's tracker in audio-time order.

Every observation carries the stream time at which its inputs were complete, so events
and their ``emitted_at`` do not depend on how the audio was chunked or batched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import soxr

from .buffer import RingBuffer
from .errors import AudioError, ConfigError, ProfileError
from .events import Event
from .tracker import Tracker, TrackerOptions, Voice
from .vad import CHUNK_SAMPLES, GateOptions, GateUpdate, SileroVAD, SpeechGate, VadState

if TYPE_CHECKING:
    from .models import Embedder


@dataclass(frozen=True)
class WorkerOptions:
    """How windows are cut and which are embedded.

    Attributes:
        hop_s: seconds between window starts (``None``: the model's default).
        min_speech_ratio: windows with a smaller share of voiced frames are not embedded.
        buffer_s: seconds of audio each stream's ring buffer holds before the worker reads it.
        max_batch: most windows per encoder call.
        step_s: most seconds of a stream's audio one step takes (keeps steps fair and short).
        onset_windows_s: lengths of the windows cut from each voice onset (the first
            voiced chunk after a pause); an empty tuple turns them off. Each is cut once
            its audio is in; with a recurrent encoder the lengths cost only a readout each.
        confident_stride: inside a segment the tracker is confident about
            (``StreamTracker.confident``), embed only every this many full windows; each
            window in between holds the last embedding. Every window is embedded again
            after an onset window or once the tracker is unsure (a deviating window).
            1: embed every window.
    """

    hop_s: float | None = None
    min_speech_ratio: float = 0.5
    buffer_s: float = 30.0
    max_batch: int = 32
    step_s: float = 1.0
    onset_windows_s: tuple[float, ...] = (0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1, 1.2)
    confident_stride: int = 1


@dataclass
class Window:
    """One embedding window of a stream, in stream seconds.

    ``onset`` windows start at a voice onset and are shorter than the model's window.
    """

    start_s: float
    end_s: float
    speech_ratio: float
    level_dbfs: float
    embedding: np.ndarray | None = None
    onset: bool = False

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


class StreamTracker(Protocol):
    """What a stream's observations go to, in audio-time order, each with the stream time
    at which its inputs were complete: the identity :class:`~streamer.tracker.Tracker`,
    enrollment's :class:`~streamer.enroll.Collector`, the daemon's enroll tap."""

    def gate(self, update: GateUpdate, now_s: float) -> list[Event]: ...

    def window(self, window: Window, now_s: float) -> list[Event]: ...

    def close(self, update: GateUpdate, now_s: float) -> list[Event]:
        """End of stream (``update`` ends the open speech region, if any)."""
        ...

    def confident(self) -> bool:
        """Whether the next full window may hold the last embedding instead of its own
        (see ``WorkerOptions.confident_stride``); asked in audio-time order."""
        ...


@dataclass
class _Onset:
    """A voice onset and the onset windows cut from it so far."""

    first: int  # its first frame
    cut: int = 0  # onset windows cut
    run: int = 0  # frames a recurrent encoder has read from it
    state: np.ndarray | None = None  # the encoder's state after those frames
    level_dbfs: float = 0.0  # the level all its windows are normalised with


@dataclass(order=True)
class _Observation:
    time_s: float
    order: int  # gate updates before windows at the same time
    seq: int
    payload: object = field(compare=False)


class Stream:
    """One audio stream's buffers and state. Create it with :meth:`Engine.open_stream`.

    ``tracker`` gets the stream's observations (a caller may wrap it while the stream
    runs); ``identity`` is its identity tracker, if it has one, which holds its unknown
    voices and the profiles it matches.
    """

    def __init__(self, engine: Engine, stream_id: str, tracker: StreamTracker) -> None:
        spec = engine.embedder.spec
        self.id = stream_id
        self.tracker = tracker
        self.identity = tracker if isinstance(tracker, Tracker) else None
        self.sample_rate = spec.sample_rate
        self.ring = RingBuffer(int(engine.options.buffer_s * spec.sample_rate))
        self._lock = threading.Lock()
        self._read = 0  # samples the worker has taken from the ring
        self._frontend = spec.frontend()
        self._hop = spec.frame_hop_samples
        capacity = spec.window_frames + int(engine.options.step_s / spec.frame_s) + 64
        self.frames = RingBuffer(capacity, channels=self._frontend.n_features)
        self.energy = RingBuffer(capacity, dtype=np.float64)  # mean square of each frame hop
        self.voiced = RingBuffer(capacity, dtype=np.bool_)
        self._energy_tail = np.zeros(0, dtype=np.float32)
        self._vad_tail = np.zeros(0, dtype=np.float32)  # at the VAD's rate
        self._vad_rate = engine.vad.sample_rate
        self._to_vad_rate = (
            soxr.ResampleStream(spec.sample_rate, self._vad_rate, 1, dtype="float32")
            if spec.sample_rate != self._vad_rate
            else None
        )
        self.vad_state = VadState()
        self.vad_chunks = 0
        self.gate = SpeechGate(engine.gate_options, CHUNK_SAMPLES / self._vad_rate)
        self.next_window = 0  # first frame of the next window
        self.onsets: list[_Onset] = []
        self._voiced_since: int | None = None  # first chunk of the current voiced run
        self._onset_chunks = max(
            1, round(engine.gate_options.min_speech_s * self._vad_rate / CHUNK_SAMPLES)
        )
        self.closed = False
        # Adaptive window rate: full windows held in a row, the last full window's vector,
        # and (while cutting) the same count as predicted from the tracker's state then.
        self._held = 0
        self._last_vector: np.ndarray | None = None
        self._predicted_held = 0
        self._confident = False
        self._observations: list[_Observation] = []
        self._seq = 0
        self.recording: list[np.ndarray] | None = None
        """When a list, a copy of each piece of audio the worker takes goes to it (live
        enrollment keeps its span's audio this way); ``None``: nothing is kept."""

    @property
    def pending_samples(self) -> int:
        """Samples pushed but not yet processed."""
        return self.ring.end - self._read

    @property
    def time_s(self) -> float:
        """Stream seconds processed so far."""
        return self._read / self.sample_rate

    def push(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at the model's rate (called by sources)."""
        if self.closed:
            raise AudioError(f"stream {self.id!r} is closed; open a new stream")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError("push() takes mono float32 samples; down-mix first")
        with self._lock:
            if self.pending_samples + len(samples) > self.ring.capacity:
                behind_s = self.pending_samples / self.sample_rate
                raise AudioError(
                    f"stream {self.id!r}: the worker is {behind_s:.1f} s behind and the buffer is"
                    " full; send audio no faster than it is processed"
                )
            self.ring.write(samples)

    def _observe(self, time_s: float, order: int, payload: object) -> None:
        self._seq += 1
        self._observations.append(_Observation(time_s, order, self._seq, payload))

    def _take(self, max_samples: int) -> np.ndarray:
        with self._lock:
            stop = min(self.ring.end, self._read + max_samples)
            new = self.ring.read(self._read, stop)
            self._read = stop
            if stop == self.ring.end:  # all taken: the ring's memory follows the backlog
                self.ring.clear()
        if self.recording is not None:
            self.recording.append(new.copy())
        return new

    def _add_frames(self, new: np.ndarray) -> None:
        """Feature frames and per-hop energies for freshly taken samples."""
        frames = self._frontend.push(new)
        self.frames.write(frames)
        audio = np.concatenate([self._energy_tail, new])
        n_hops = len(audio) // self._hop
        hops = audio[: n_hops * self._hop].reshape(n_hops, self._hop)
        self.energy.write(np.einsum("ij,ij->i", hops, hops, dtype=np.float64) / self._hop)
        self._energy_tail = audio[n_hops * self._hop :]
        if self._to_vad_rate is not None:
            new = self._to_vad_rate.resample_chunk(new)
        self._vad_tail = np.concatenate([self._vad_tail, new])

    def _model_samples(self, vad_samples: int) -> int:
        """Model-rate samples up to VAD-rate sample ``vad_samples`` (rounded up)."""
        return -(-vad_samples * self.sample_rate // self._vad_rate)

    def _vad_chunks_ready(self) -> int:
        return len(self._vad_tail) // CHUNK_SAMPLES

    def _vad_chunk(self, i: int) -> np.ndarray:
        return self._vad_tail[i * CHUNK_SAMPLES : (i + 1) * CHUNK_SAMPLES]

    def _apply_vad(self, probs: list[float]) -> None:
        """Gate updates and per-frame voiced flags for the chunks just scored."""
        chunk_s = CHUNK_SAMPLES / self._vad_rate
        for prob in probs:
            k = self.vad_chunks
            update = self.gate.update(k * chunk_s, prob)
            if not self.gate.voiced:
                self._voiced_since = None
            elif self._voiced_since is None:
                self._voiced_since = k
            if self._voiced_since is not None and k - self._voiced_since + 1 == self._onset_chunks:
                # The voice resumed and held long enough not to be a blip: an onset.
                first_sample = self._model_samples(self._voiced_since * CHUNK_SAMPLES)
                self.onsets.append(_Onset(-(-first_sample // self._hop)))
            end_s = (k + 1) * chunk_s
            if update.started_at_s is not None or update.ended is not None:
                self._observe(end_s, 0, update)
            # Frames whose centre falls in this chunk take its voiced flag.
            first = -(-self._model_samples(k * CHUNK_SAMPLES) // self._hop)
            stop = -(-self._model_samples((k + 1) * CHUNK_SAMPLES) // self._hop)
            self.voiced.write(np.full(stop - first, self.gate.voiced))
            self.vad_chunks += 1
        self._vad_tail = self._vad_tail[len(probs) * CHUNK_SAMPLES :]


class Engine:
    """Runs many streams through one model, one VAD and their trackers (sans-I/O).

    Drive it with ``stream.push(samples)`` and :meth:`run` (or :func:`drive`, which
    does both for a stream fed from an iterable); each step returns the events of all
    streams, each stream's in order. Nothing here blocks, sleeps or touches disk:
    promoting a voice is :meth:`settle` here, a save by the caller, then :meth:`adopt`.
    """

    def __init__(
        self,
        embedder: Embedder,
        vad: SileroVAD | None = None,
        options: WorkerOptions | None = None,
        gate_options: GateOptions | None = None,
        tracker_options: TrackerOptions | None = None,
        profiles: dict[str, np.ndarray] | None = None,
        cohort: np.ndarray | None = None,
    ) -> None:
        """``cohort``: the model's impostor embeddings its trackers normalise scores
        against (``streamer.cohort.shipped``; ``None``: raw cosine scores)."""
        self.options = options or WorkerOptions()
        self.cohort = cohort
        self.embedder = embedder
        self.vad = vad or SileroVAD()
        self.gate_options = gate_options or GateOptions()
        self.tracker_options = tracker_options or TrackerOptions()
        spec = embedder.spec
        hop_s = self.options.hop_s or spec.hop_s
        self.onset_frames = [
            round(length / spec.frame_s) for length in self.options.onset_windows_s
        ]
        if self.onset_frames != sorted(set(self.onset_frames)) or any(
            not 0 < n < spec.window_frames for n in self.onset_frames
        ):
            raise ConfigError(
                f"onset_windows_s={self.options.onset_windows_s} must be increasing lengths "
                f"shorter than the model's {spec.window_s} s window"
            )
        # Windows start on feature frames: a hop is rounded to the nearest whole frame.
        if not spec.frame_s - 1e-9 <= hop_s <= spec.window_s + 1e-9:
            ms = [f"{round(s * 1000, 2):g}" for s in (hop_s, spec.frame_s, spec.window_s)]
            raise ConfigError(
                f"a hop of {ms[0]} ms does not fit {spec.name}: it must be at least one "
                f"frame ({ms[1]} ms) and at most the window ({ms[2]} ms)"
            )
        self.hop_frames = round(hop_s / spec.frame_s)
        if self.options.confident_stride < 1:
            raise ConfigError(
                f"confident_stride={self.options.confident_stride} must be at least 1 "
                "(1: embed every window)"
            )
        self.tracker_options = replace(
            self.tracker_options, window_s=spec.window_s, hop_s=self.hop_frames * spec.frame_s
        )
        self.profiles: dict[str, np.ndarray] = dict(profiles or {})
        self.streams: dict[str, Stream] = {}
        self._batch = np.zeros(
            (self.options.max_batch, spec.window_frames, spec.frontend().n_features), np.float32
        )
        self._filled = 0  # windows waiting in the batch buffer
        # Onset windows of a recurrent encoder: one pass per onset, resumed as audio comes.
        self._onset_jobs: list[tuple[Stream, _Onset, list[Window]]] = []
        longest = max(self.onset_frames, default=0)
        self._onset_buffer = np.zeros(
            self.options.max_batch * longest * spec.frontend().n_features, np.float32
        )
        self.windows_embedded = 0
        self.windows_held = 0  # full windows that held the last embedding
        self.windows_late = 0  # embedded alone when the tracker state was known

    # Streams

    def open_stream(self, stream_id: str, tracker: StreamTracker | None = None) -> Stream:
        """A new stream; ``tracker`` replaces the default identity tracker (e.g. for enrollment)."""
        if stream_id in self.streams:
            raise ConfigError(f"a stream named {stream_id!r} is open already; pick another id")
        stream = Stream(self, stream_id, tracker or self.new_tracker(stream_id))
        self.streams[stream_id] = stream
        return stream

    def new_tracker(self, stream_id: str) -> Tracker:
        """An identity tracker with this engine's options and profiles."""
        return Tracker(stream_id, self.tracker_options, self.profiles, self.cohort)

    def close_stream(self, stream_id: str) -> list[Event]:
        """Process what is left of a stream, close its open regions, and forget it."""
        stream = self.streams[stream_id]
        stream.closed = True
        # Its own audio only: the other streams go on.
        events = [event for events in self.run(streams=[stream]) for event in events]
        update = stream.gate.close(stream.time_s)
        events += stream.tracker.close(update, stream.time_s)
        del self.streams[stream_id]
        return events

    def settle(self, stream_id: str, label: str) -> Voice:
        """A copy of stream ``stream_id``'s unknown voice ``label`` with what its open
        segment heard so far: what :func:`streamer.enroll.promote` saves as a profile
        (the caller saves it, off the engine's thread; then :meth:`adopt`)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ConfigError(
                f"no open stream {stream_id!r}; open streams: {', '.join(self.streams) or 'none'}"
            )
        voices = stream.identity.voices if stream.identity is not None else {}
        if label not in voices:
            raise ProfileError(
                f"stream {stream_id!r} has no unknown voice {label!r}; "
                f"it has: {', '.join(voices) or 'none'}"
            )
        voice = stream.identity.settle(label)
        return replace(voice, total=voice.total.copy())

    def adopt(self, stream_id: str, label: str, profiles: dict[str, np.ndarray]) -> None:
        """Once stream ``stream_id``'s unknown voice ``label`` was saved as a profile: the
        stream forgets the voice, and every stream matches ``profiles`` (which hold it)."""
        stream = self.streams.get(stream_id)
        identity = stream.identity if stream is not None else None
        if identity is not None and label in identity.voices:
            identity.forget(label)
        self.set_profiles(profiles)

    def set_profiles(self, profiles: dict[str, np.ndarray]) -> None:
        """Replace the enrolled voices every stream's tracker matches against."""
        self.profiles = dict(profiles)
        for stream in self.streams.values():
            if stream.identity is not None:
                stream.identity.set_profiles(self.profiles)

    # Processing

    def pending(self, min_samples: int = 1, streams: list[Stream] | None = None) -> bool:
        """Whether some stream (of ``streams``, default all) has at least ``min_samples``
        pushed but not processed."""
        streams = self.streams.values() if streams is None else streams
        return any(s.pending_samples >= min_samples for s in streams)

    def run(
        self, min_pending_samples: int = 1, streams: list[Stream] | None = None
    ) -> Iterator[list[Event]]:
        """The drive loop: step while some stream (of ``streams``, default all) has
        ``min_pending_samples`` waiting (each step takes at most ``step_s`` of each
        stream); yield each step's events. Audio pushed meanwhile (from another thread,
        or between two steps) is taken too."""
        while self.pending(min_pending_samples, streams):
            yield self.step(streams)

    def drain(self) -> list[Event]:
        """Step until every pushed sample is processed."""
        return [event for events in self.run() for event in events]

    def step(self, streams: list[Stream] | None = None) -> list[Event]:
        """Process up to ``step_s`` of new audio per stream (of ``streams``, default all);
        return the events it decided."""
        spec = self.embedder.spec
        active = [
            s for s in (self.streams.values() if streams is None else streams) if s.pending_samples
        ]
        max_samples = int(self.options.step_s * spec.sample_rate)
        for stream in active:
            stream._add_frames(stream._take(max_samples))
        self._run_vad(active)
        windows: list[tuple[Stream, Window, int]] = []
        for stream in active:
            self._cut_windows(stream, windows)
        self._embed(windows)
        self._embed_onsets()
        events: list[Event] = []
        for stream in active:
            events += self._feed_tracker(stream)
        return events

    def _run_vad(self, streams: list[Stream]) -> None:
        ready = {s.id: s._vad_chunks_ready() for s in streams}
        probs: dict[str, list[float]] = {s.id: [] for s in streams}
        for i in range(max(ready.values(), default=0)):
            batch = [s for s in streams if ready[s.id] > i]
            chunks = np.stack([s._vad_chunk(i) for s in batch])
            for stream, p in zip(
                batch, self.vad([s.vad_state for s in batch], chunks), strict=False
            ):
                probs[stream.id].append(float(p))
        for stream in streams:
            stream._apply_vad(probs[stream.id])

    def _cut_windows(self, stream: Stream, out: list[tuple[Stream, Window, int]]) -> None:
        size = self.embedder.spec.window_frames
        # Which full windows will hold: predicted from the tracker's state now (it is
        # decided when they are fed; a wrong guess costs a late or a wasted embedding).
        stream._predicted_held = stream._held
        stream._confident = self.options.confident_stride > 1 and stream.tracker.confident()
        available = min(stream.frames.end, stream.voiced.end, stream.energy.end)
        while stream.next_window + size <= available:
            first = stream.next_window
            stream.next_window += self.hop_frames
            self._cut(stream, first, size, False, out)
        # Onset windows: every length from every onset, as soon as its audio is in.
        recurrent = self.embedder.spec.recurrent
        for onset in stream.onsets:
            cut = []
            while (
                onset.cut < len(self.onset_frames)
                and onset.first + self.onset_frames[onset.cut] <= available
            ):
                size = self.onset_frames[onset.cut]
                cut.append(self._cut(stream, onset.first, size, True, out, queue=not recurrent))
                onset.cut += 1
            if cut and recurrent:
                self._onset_jobs.append((stream, onset, cut))
        stream.onsets = [o for o in stream.onsets if o.cut < len(self.onset_frames)]

    def _cut(
        self, stream: Stream, first: int, size: int, onset: bool, out, queue: bool = True
    ) -> Window:
        """Cut the window of ``size`` frames from ``first``; queue it for embedding unless
        ``queue`` is false (the caller embeds it)."""
        spec = self.embedder.spec
        voiced = stream.voiced.read(first, first + size)
        ratio = float(voiced.mean())
        energy = stream.energy.read(first, first + size)
        speech_energy = energy[voiced].mean() if voiced.any() else energy.mean()
        window = Window(
            start_s=first * spec.frame_s,
            end_s=(first + size) * spec.frame_s,
            speech_ratio=ratio,
            level_dbfs=float(10 * np.log10(speech_energy + 1e-10)),
            onset=onset,
        )
        # Ready once the last frame's samples and its VAD chunk were both in.
        last_sample = (first + size - 1) * spec.frame_hop_samples
        frame_need = last_sample + spec.frame_hop_samples
        chunk = last_sample * self.vad.sample_rate // (spec.sample_rate * CHUNK_SAMPLES)
        vad_need = stream._model_samples((chunk + 1) * CHUNK_SAMPLES)
        ready_s = max(frame_need, vad_need) / spec.sample_rate
        slot = -1
        if (
            queue
            and ratio >= self.options.min_speech_ratio
            and not self._predict_hold(stream, onset)
        ):
            if self._filled == self.options.max_batch:
                self._embed(out)
            slot = self._filled
            self._filled += 1
            stream.frames.read(first, first + size, out=self._batch[slot, :size])
        out.append((stream, window, slot))
        stream._observe(ready_s, 1, window)
        return window

    def _predict_hold(self, stream: Stream, onset: bool) -> bool:
        if onset:
            return False
        hold = stream._confident and stream._predicted_held < self.options.confident_stride - 1
        stream._predicted_held = stream._predicted_held + 1 if hold else 0
        return hold

    def _embed(self, windows: list[tuple[Stream, Window, int]]) -> None:
        """Embed the batch filled so far (one encoder call per window length)."""
        todo = [(w, slot) for _, w, slot in windows if slot >= 0 and w.embedding is None]
        if not todo:
            return
        frame_s = self.embedder.spec.frame_s
        by_size: dict[int, list[tuple[Window, int]]] = {}
        for window, slot in todo:
            by_size.setdefault(round(window.length_s / frame_s), []).append((window, slot))
        for size, group in by_size.items():
            slots = [slot for _, slot in group]
            if slots == list(range(slots[0], slots[0] + len(slots))):
                batch = self._batch[slots[0] : slots[0] + len(slots), :size]
            else:
                batch = self._batch[slots, :size]
            if not batch.flags.c_contiguous:
                batch = np.ascontiguousarray(batch)
            levels = np.array([w.level_dbfs for w, _ in group])
            vectors = self.embedder.embed(batch, levels)
            for (window, _), vector in zip(group, vectors, strict=False):
                window.embedding = vector
        self.windows_embedded += len(todo)
        self._filled = 0

    def _embed_onsets(self) -> None:
        """Embed the onset windows just cut with a recurrent encoder: each onset's frames
        are read once, the state carried over to its next, longer windows. Onsets due the
        same number of new frames and readouts share one encoder call (a fresh onset
        starts from the zero state, which is the encoder's own start)."""
        jobs, self._onset_jobs = self._onset_jobs, []
        frame_s = self.embedder.spec.frame_s
        groups: dict[tuple[int, ...], list] = {}
        for stream, onset, windows in jobs:
            if onset.run == 0:
                onset.level_dbfs = windows[0].level_dbfs
            ends = tuple(round(w.length_s / frame_s) - onset.run for w in windows)
            groups.setdefault(ends, []).append((stream, onset, windows))
        n_features = self._batch.shape[2]
        for ends, group in groups.items():
            for at in range(0, len(group), self.options.max_batch):
                part = group[at : at + self.options.max_batch]
                size = ends[-1]
                frames = self._onset_buffer[: len(part) * size * n_features]
                frames = frames.reshape(len(part), size, n_features)
                for row, (stream, onset, _) in enumerate(part):
                    start = onset.first + onset.run
                    stream.frames.read(start, start + size, out=frames[row])
                known = next((o.state for _, o, _ in part if o.state is not None), None)
                states = None
                if known is not None:
                    zero = np.zeros_like(known)
                    states = np.stack([zero if o.state is None else o.state for _, o, _ in part])
                levels = np.array([o.level_dbfs for _, o, _ in part])
                vectors, states = self.embedder.resume(frames, states, list(ends), levels)
                for row, (_, onset, windows) in enumerate(part):
                    onset.state, onset.run = states[row], onset.run + size
                    for window, vector in zip(windows, vectors[row], strict=True):
                        if window.speech_ratio >= self.options.min_speech_ratio:
                            window.embedding = vector
                            self.windows_embedded += 1

    def _settle_vector(self, stream: Stream, window: Window) -> None:
        """Decide, in audio-time order, whether a full speech window holds the last
        embedding (``confident_stride``); embed it now if it was guessed to hold but
        must not. An onset window makes the next full window embed."""
        stride = self.options.confident_stride
        if window.onset:
            if window.embedding is not None:
                stream._held = stride - 1
            return
        if window.speech_ratio < self.options.min_speech_ratio:
            return
        if (
            stream._held < stride - 1
            and stream._last_vector is not None
            and stream.tracker.confident()
        ):
            window.embedding = stream._last_vector
            stream._held += 1
            self.windows_held += 1
            return
        if window.embedding is None:
            spec = self.embedder.spec
            first = round(window.start_s / spec.frame_s)
            frames = stream.frames.read(first, first + spec.window_frames)[None].copy()
            window.embedding = self.embedder.embed(frames, np.array([window.level_dbfs]))[0]
            self.windows_late += 1
            self.windows_embedded += 1
        stream._held = 0
        stream._last_vector = window.embedding

    def _feed_tracker(self, stream: Stream) -> list[Event]:
        events: list[Event] = []
        for obs in sorted(stream._observations):
            if isinstance(obs.payload, Window):
                self._settle_vector(stream, obs.payload)
                events += stream.tracker.window(obs.payload, obs.time_s)
            else:
                events += stream.tracker.gate(obs.payload, obs.time_s)
        stream._observations.clear()
        return events


def drive(
    engine: Engine, stream: Stream, chunks: Iterable[np.ndarray], min_pending_samples: int = 1
) -> Iterator[Event]:
    """Push ``chunks`` (mono float32 at the model's rate) into ``stream``, run the engine
    whenever ``min_pending_samples`` are waiting (more: bigger encoder batches, the same
    events), and close the stream at the end (also when the caller stops early)."""
    try:
        for chunk in chunks:
            stream.push(chunk)
            for events in engine.run(min_pending_samples):
                yield from events
    finally:
        events = engine.close_stream(stream.id)
    yield from events
