"""Assembling the pipeline: options, model, VAD and profiles -> an :class:`Engine`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .cohort import shipped
from .errors import ConfigError
from .events import Event
from .models import Embedder, get_spec
from .profiles import ProfileStore
from .tracker import Tracker, TrackerOptions
from .vad import GateOptions, SileroVAD
from .worker import Engine, WorkerOptions, drive

FILE_BATCH_S = 4.0
"""Seconds of a file the worker takes per step in fast mode: bigger encoder batches, the
same events (give the engine ``WorkerOptions(step_s=FILE_BATCH_S)`` so a step takes it all)."""


@dataclass
class PipelineOptions:
    """Everything that shapes a run; each group is documented where it is defined.

    Attributes:
        model: embedding model id (``streamer.models.MODELS``).
        weights: weights file for the model (``None``: the model's shipped weights).
        backend: ``auto`` (MLX on Apple Silicon when installed, else torch), ``torch``
            or ``mlx``.
        device: torch device for the encoder (``cpu``, ``cuda``, ``mps``; ``None``: cpu).
        precision: ``fp32``, or ``int8``: the encoder quantised on onnxruntime's CPU
            kernels (ge2e only; built once and cached, README: Cheaper encoder passes).
        threads: CPU threads for torch and for numpy's BLAS and OpenMP pools (process-wide);
            one is fastest per window on small machines — batch windows across streams
            instead of adding threads.
    """

    model: str = "ge2e"
    weights: str | Path | None = None
    backend: str = "auto"
    device: str | None = None
    precision: str = "fp32"
    threads: int = 1
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    gate: GateOptions = field(default_factory=GateOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)


def build_engine(options: PipelineOptions, store: ProfileStore | None = None) -> Engine:
    """Load the model and the VAD, the model's score cohort (when it ships one), and the
    store's profiles made with the same model."""
    if options.threads < 1:
        raise ConfigError(f"threads must be at least 1, got {options.threads}")
    torch.set_num_threads(options.threads)
    spec = get_spec(options.model)
    embedder = Embedder(
        spec, options.weights, options.device, options.backend, precision=options.precision
    )
    profiles = {}
    if store is not None:
        profiles = {p.name: p.embedding for p in store.for_model(spec.name)}
    engine = Engine(
        embedder,
        SileroVAD(),
        options=options.worker,
        gate_options=options.gate,
        tracker_options=options.tracker,
        profiles=profiles,
        cohort=shipped(spec.name, own_weights=options.weights is not None),
    )
    # Once every library is loaded: numpy's and scipy's BLAS pools would otherwise keep
    # their threads spinning between the small per-hop products (the mel filterbank),
    # a second core busy for nothing.
    threadpool_limits(options.threads)
    return engine


def track_chunks(
    engine: Engine,
    chunks: Iterable[np.ndarray],
    stream_id: str,
    realtime: bool = False,
    batch_s: float = FILE_BATCH_S,
    tracker: Tracker | None = None,
) -> Iterator[Event]:
    """Push chunks (mono float32 at the model's rate) through a new stream; yield events live.

    Pass ``tracker`` (e.g. ``engine.new_tracker(stream_id)``) to read its unknown voices
    afterwards.

    In fast mode the worker runs once ``batch_s`` of audio is waiting, so windows are
    embedded in batches; in real time it runs after every chunk. The events are the
    same either way.
    """
    stream = engine.open_stream(stream_id, tracker)
    threshold = 1 if realtime else int(batch_s * engine.embedder.spec.sample_rate)
    yield from drive(engine, stream, chunks, threshold)
