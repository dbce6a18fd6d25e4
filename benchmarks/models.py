"""Every model on every backend: encoder speed, one stream's real-time factor, torch-MLX parity.

    python benchmarks/models.py [--seconds 12] [--weights rf5-gru=gru-wrapped-f1f850.pth]

For each model in ``streamer.models.MODELS`` and each backend (torch on the CPU, one
thread; MLX when it is installed):

- encoder milliseconds per window at batch 1 and batch 32 (CPU time; median of the
  repeats that fit in ``--budget-s``, after a warm-up call);
- the real-time factor of one stream: CPU seconds per second of audio for a synthetic
  conversation of ``--seconds`` fed in 20 ms chunks through the whole pipeline (frontend,
  VAD, windows, encoder, tracker), in fast mode;
- parity: the largest absolute difference between the torch and MLX embeddings of the
  same real-speech windows with the same weights.

Models whose weights do not ship with streamer (rf5-gru, wespeaker-resnet34) run with
random weights unless ``--weights MODEL=PATH`` is given; the table says which. Speed and
parity do not depend on the weights being trained.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import publish
from rich.table import Table
from threadpoolctl import threadpool_limits

from streamer.errors import ModelError
from streamer.evaluation.synth import conversation, speech
from streamer.models import MODELS, Embedder, ModelSpec, get_spec
from streamer.models.backends import mlx_installed
from streamer.pipeline import track_chunks
from streamer.sources.file import array_chunks
from streamer.vad import SileroVAD
from streamer.worker import Engine

TURNS = [("alice", 4.0), ("bob", 3.0), ("carol", 4.0), ("dave", 3.0)]


def load_module(spec: ModelSpec, weights: Path | None) -> tuple[torch.nn.Module, str]:
    """The torch encoder and where its weights came from (``random`` when none ship)."""
    try:
        return spec.load(weights), str(weights) if weights else "shipped"
    except ModelError:
        if weights is not None or spec.untrained is None:
            raise
    torch.manual_seed(0)
    return spec.untrained().eval(), "random"


def real_windows(spec: ModelSpec, count: int) -> np.ndarray:
    """``count`` windows of features of synthetic speech, ``(count, frames, features)``."""
    audio = speech("alice", spec.window_s + 3.0, seed=1, sample_rate=spec.sample_rate)
    frames = spec.frontend().push(audio)
    starts = np.linspace(0, len(frames) - spec.window_frames, num=8).astype(int)
    windows = np.stack([frames[s : s + spec.window_frames] for s in starts])
    return np.resize(windows, (count, *windows.shape[1:])).astype(np.float32)


def encoder_ms(embedder: Embedder, windows: np.ndarray, budget_s: float) -> float:
    """Median CPU milliseconds per window for batches of ``len(windows)``."""
    embedder.embed(windows[:1].copy())  # warm-up
    times: list[float] = []
    started = time.process_time()
    while not times or (len(times) < 7 and time.process_time() - started < budget_s):
        begin = time.process_time()
        embedder.embed(windows.copy())
        times.append(time.process_time() - begin)
    return 1000 * float(np.median(times)) / len(windows)


def stream_rtf(embedder: Embedder, vad: SileroVAD, seconds: float) -> float:
    """CPU seconds per second of audio for one stream through the whole pipeline."""
    rate = embedder.spec.sample_rate
    scale = seconds / sum(s for _, s in TURNS)
    audio, _ = conversation([(w, s * scale) for w, s in TURNS], gap_s=0.4, sample_rate=rate)
    engine = Engine(embedder, vad)
    threadpool_limits(1)  # numpy's BLAS too, as build_engine does, or its idle pool spins
    started = time.process_time()
    for _ in track_chunks(engine, array_chunks(audio, rate), "bench"):
        pass
    return (time.process_time() - started) / (len(audio) / rate)


def measure(name: str, weights: Path | None, backends: list[str], args) -> list[dict]:
    spec = get_spec(name)
    module, source = load_module(spec, weights)
    vad = SileroVAD()
    rows, outputs = [], {}
    probe = real_windows(spec, 8)
    for backend in backends:
        if backend == "mlx" and spec.to_mlx is None:
            continue
        embedder = Embedder(spec, backend=backend, module=module)
        outputs[backend] = embedder.embed(probe.copy())
        rows.append(
            {
                "model": name,
                "weights": source,
                "backend": embedder.describe(),
                "window_s": round(spec.window_s, 3),
                "hop_s": round(spec.hop_s, 3),
                "encoder_ms_batch1": encoder_ms(embedder, probe[:1], args.budget_s),
                "encoder_ms_batch32": encoder_ms(embedder, real_windows(spec, 32), args.budget_s),
                "rtf_one_stream": stream_rtf(embedder, vad, args.seconds),
            }
        )
    if len(outputs) == 2:
        parity = float(np.abs(outputs["torch"] - outputs["mlx"]).max())
        for row in rows:
            row["parity_max_abs_diff"] = parity
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--backends", nargs="+", choices=["torch", "mlx"], default=["torch", "mlx"])
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="weights for a model that ships none (default: random weights)",
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="conversation length")
    parser.add_argument("--budget-s", type=float, default=5.0, help="CPU seconds per timing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    weights = dict(item.split("=", 1) for item in args.weights)
    backends = [b for b in args.backends if b == "torch" or mlx_installed()]
    rows = []
    for name in args.models:
        path = Path(weights[name]) if name in weights else None
        rows += measure(name, path, backends, args)

    table = Table(title=f"streamer models ({torch.get_num_threads()} torch thread, CPU time)")
    columns = {
        "model": "model",
        "weights": "weights",
        "backend": "backend",
        "window_s": "window s",
        "hop_s": "hop s",
        "encoder_ms_batch1": "ms/window b1",
        "encoder_ms_batch32": "ms/window b32",
        "rtf_one_stream": "RTF 1 stream",
        "parity_max_abs_diff": "torch-MLX max|Δ|",
    }
    for title in columns.values():
        table.add_column(title, justify="left" if title in ("model", "weights") else "right")
    for row in rows:
        cells = []
        for key in columns:
            value = row.get(key, "")
            if key == "parity_max_abs_diff" and value != "":
                cells.append(f"{value:.1e}")
            else:
                cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        table.add_row(*cells)
    return publish(table, rows, args.json, width=140)


if __name__ == "__main__":
    sys.exit(main())
