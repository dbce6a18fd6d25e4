"""Fewer and cheaper encoder passes: what each option costs in accuracy and saves in CPU.

    python benchmarks/passes.py ../shared/data/librispeech-train-clean-100 --count 20

Two tables, one run, one torch thread:

1. **int8 variants of the GE2E encoder** against fp32 on real speech windows (1.6 s
   windows of the folder's recordings, level-normalised as the worker does): median and
   5th-percentile cosine to the fp32 embedding, CPU milliseconds per window at batch 32,
   and the speed-up. torch ``quantize_dynamic`` of the whole LSTM (per-tensor and
   per-channel), and of the layers after the first only;
   onnxruntime's fp32 and dynamic int8 kernels when the ``onnx`` package (needed to
   export and quantise) is importable.
2. **Tracking with each option** (``WorkerOptions.confident_stride=2``, the encoder on
   onnxruntime in fp32 and int8) on the same ``--count`` simulated
   conversations as ``benchmarks/tracking.py`` (scored as it does): identity accuracy,
   change F1, windows embedded and held, and encoder CPU seconds per second of audio in
   fast mode (4 s steps), and live: every conversation a stream of one engine, 100 ms
   of each per step (the daemon's case without sockets), with the onset windows' share.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import add_condition_arguments, condition_title, publish
from rich.console import Console
from rich.table import Table
from tracking import run_conversation

from streamer.audio import load_audio
from streamer.evaluation.cohort import speaker_entries, without
from streamer.evaluation.scoring import ChangeScores, IdentityScores, change_scores, identity_scores
from streamer.evaluation.simulate import benchmark_options, simulate_from_folder
from streamer.events import final_segments
from streamer.models import Embedder, get_spec
from streamer.pipeline import FILE_BATCH_S, PipelineOptions, build_engine
from streamer.sinks.rttm import MERGE_GAP_S, merge_gaps
from streamer.worker import WorkerOptions

VARIANTS = {  # name: (WorkerOptions fields, precision)
    "every window, fp32": ({}, "fp32"),
    "confident_stride=2": ({"confident_stride": 2}, "fp32"),
    "fp32-onnx": ({}, "fp32-onnx"),
    "int8": ({}, "int8"),
}


class LayeredLSTM(torch.nn.Module):
    """A batch-first ``nn.LSTM`` as a stack of one-layer LSTMs, the layers from
    ``first_int8`` on dynamically quantised to int8; called like the original. Layer 1
    stays fp32: it reads raw power mel features, whose range one per-tensor scale cannot
    hold (quantising it is what ruins the whole-LSTM variants)."""

    def __init__(self, lstm: torch.nn.LSTM, first_int8: int = 1) -> None:
        from torch.ao.quantization import quantize_dynamic

        super().__init__()
        layers = []
        for i in range(lstm.num_layers):
            size = lstm.input_size if i == 0 else lstm.hidden_size
            layer = torch.nn.LSTM(size, lstm.hidden_size, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l{i}").data)
            if i >= first_int8:
                layer = quantize_dynamic(torch.nn.Sequential(layer), {torch.nn.LSTM})[0]
            layers.append(layer)
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, hc=None):
        hs, cs = [], []
        for i, layer in enumerate(self.layers):
            x, (h, c) = layer(x, None if hc is None else (hc[0][i : i + 1], hc[1][i : i + 1]))
            hs.append(h)
            cs.append(c)
        return x, (torch.cat(hs), torch.cat(cs))


def speech_windows(folder: Path, embedder: Embedder, files: int = 40) -> np.ndarray:
    """Up to 4 level-normalised 1.6 s windows from each of the first ``files`` recordings."""
    spec = embedder.spec
    windows, levels = [], []
    for path in sorted(folder.glob("*.flac"))[:files]:
        audio = load_audio(path, spec.sample_rate)
        frames = spec.frontend().push(audio)
        for start in list(range(0, len(frames) - spec.window_frames, 240))[:4]:
            windows.append(frames[start : start + spec.window_frames])
            hop = spec.frame_hop_samples
            piece = audio[start * hop : (start + spec.window_frames) * hop]
            levels.append(10 * np.log10(np.mean(piece.astype(np.float64) ** 2) + 1e-10))
    batch = np.stack(windows).astype(np.float32)
    embedder._normalise(batch, np.array(levels))
    return batch


def cpu_ms(run, batch: np.ndarray, repeats: int = 9) -> float:
    """Median CPU milliseconds per window of ``run(batch)`` (after a warm-up call)."""
    run(batch)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run(batch)
        times.append(time.process_time() - started)
    return 1000 * float(np.median(times)) / len(batch)


def torch_variants(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    whole = quantize_dynamic(copy.deepcopy(module), {torch.nn.LSTM, torch.nn.Linear})
    channel = quantize_dynamic(
        copy.deepcopy(module),
        {torch.nn.LSTM: per_channel_dynamic_qconfig, torch.nn.Linear: per_channel_dynamic_qconfig},
    )
    layered = copy.deepcopy(module)
    layered.lstm = LayeredLSTM(module.lstm)
    return {
        "torch fp32": module,
        "torch int8, whole LSTM": whole,
        "torch int8 per-channel, whole LSTM": channel,
        "torch int8, layer 1 fp32": layered,
    }


def onnx_variants(module: torch.nn.Module, folder: Path) -> dict[str, object]:
    """onnxruntime sessions (one thread) of the encoder, fp32 and dynamic int8."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = folder / "ge2e.onnx"
    torch.onnx.export(
        module,
        torch.zeros(2, 160, 40),
        fp32,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch", 1: "frames"}},
    )
    import onnx

    first = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "LSTM"][:1]
    paths = {"onnxruntime fp32": fp32}
    for name, options in {
        "onnxruntime int8, whole LSTM": {},
        "onnxruntime int8 per-channel, whole LSTM": {"per_channel": True},
        "onnxruntime int8, layer 1 fp32": {"nodes_to_exclude": first},
        "onnxruntime int8 per-channel, layer 1 fp32": {
            "per_channel": True,
            "nodes_to_exclude": first,
        },
    }.items():
        paths[name] = folder / f"q{len(paths)}.onnx"
        quantize_dynamic(fp32, paths[name], weight_type=QuantType.QInt8, **options)
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = settings.inter_op_num_threads = 1
    return {
        name: ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }


def int8_table(folder: Path) -> Table:
    embedder = Embedder(get_spec("ge2e"), backend="torch")
    windows = speech_windows(folder, embedder)
    runs = {}
    for name, module in torch_variants(embedder.module).items():
        runs[name] = lambda x, m=module: m(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sessions = onnx_variants(embedder.module, Path(tmp))
        except ImportError as exc:
            Console(stderr=True).print(f"onnxruntime rows skipped: {exc}")
            sessions = {}
        for name, session in sessions.items():
            runs[name] = lambda x, s=session: s.run(None, {"x": x})[0]
        table = Table(title=f"GE2E encoder variants on {len(windows)} real speech windows")
        for column in ("variant", "median cos", "p5 cos", "ms/window @32", "speed-up"):
            table.add_column(column, justify="left" if column == "variant" else "right")
        with torch.inference_mode():
            reference = runs["torch fp32"](windows)
            base_ms = cpu_ms(runs["torch fp32"], windows[:32])
            for name, run in runs.items():
                out = np.concatenate([run(windows[i : i + 32]) for i in range(0, len(windows), 32)])
                cos = np.sum(out * reference, axis=1) / np.linalg.norm(out, axis=1)
                ms = base_ms if name == "torch fp32" else cpu_ms(run, windows[:32])
                table.add_row(
                    name,
                    f"{np.median(cos):.4f}",
                    f"{np.percentile(cos, 5):.4f}",
                    f"{ms:.2f}",
                    f"{base_ms / ms:.2f}x",
                )
    return table


class EncoderClock:
    """Thread CPU seconds spent in an embedder's ``embed`` (full windows, and late ones)
    and ``resume`` (onset windows), and the calls of each."""

    def __init__(self, embedder: Embedder) -> None:
        self.seconds = {"embed": 0.0, "resume": 0.0}
        self.calls = {"embed": 0, "resume": 0}
        for name in self.seconds:
            setattr(embedder, name, self._timed(name, getattr(embedder, name)))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)

    def _timed(self, name: str, fn):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.thread_time() - started
                self.calls[name] += 1

        return timed


def live_cost(engine, conversations, clock: EncoderClock, frame_s: float = 0.1) -> dict:
    """Encoder CPU seconds per second of audio with every conversation a live stream of
    one engine (the daemon's case without sockets): each step pushes ``frame_s`` of every
    stream (their frame boundaries staggered) and runs the engine once."""
    rate = engine.embedder.spec.sample_rate
    frame = int(frame_s * rate)
    pieces = []
    for i, conversation in enumerate(conversations):
        stagger = frame * i // len(conversations)
        bounds = [0, *range(stagger or frame, len(conversation.audio), frame)]
        pieces.append([conversation.audio[a:b] for a, b in zip(bounds, bounds[1:])])
    streams = [engine.open_stream(f"live-{i}") for i in range(len(conversations))]
    clock.reset()
    for t in range(max(map(len, pieces))):
        for stream, chunks in zip(streams, pieces, strict=True):
            if t < len(chunks):
                stream.push(chunks[t])
        engine.step()
    for stream in streams:
        engine.close_stream(stream.id)
    audio_s = sum(c.duration_s for c in conversations)
    return {
        "live_streams": len(streams),
        "encoder_cpu_per_audio_s_live": clock.total / audio_s,
        "onset_cpu_per_audio_s_live": clock.seconds["resume"] / audio_s,
        "full_cpu_per_audio_s_live": clock.seconds["embed"] / audio_s,
        "encoder_calls_live": dict(clock.calls),
    }


def tracking_table(args: argparse.Namespace) -> tuple[Table, dict]:
    conversations = [
        simulate_from_folder(
            args.data,
            benchmark_options(i, seed=args.seed, clean=args.clean, speakers=args.speakers),
            i,
        )
        for i in range(args.count)
    ]
    audio_s = sum(c.duration_s for c in conversations)
    table = Table(
        title=f"tracking with each option ({args.count} conversations, {audio_s:.0f} s, "
        f"{condition_title(args)}); encoder CPU s per s of audio, the same conversations "
        "as live streams of one engine (100 ms frames)"
    )
    columns = (
        "option",
        "identity accuracy",
        "change F1",
        "windows embedded",
        "held",
        "late",
        "encoder CPU s/s fast",
        "encoder CPU s/s live",
        "of it onsets",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "option" else "right")
    figures = {}
    entries: dict[str, dict] = {}
    for name in args.variants:
        options, precision = VARIANTS[name]
        engine = build_engine(
            PipelineOptions(
                worker=WorkerOptions(step_s=FILE_BATCH_S, **options), precision=precision
            )
        )
        # As benchmarks/tracking.py: the tune half is scored against the cohort less
        # each conversation's own speakers.
        cohort = engine.cohort
        if args.speakers == "tune" and cohort is not None and precision not in entries:
            entries[precision] = speaker_entries(engine, args.data)
        clock = EncoderClock(engine.embedder)
        embedded_before = engine.windows_embedded  # less the cohort's windows
        identity, changes, profiles = [], [], {}
        for conversation in conversations:
            if precision in entries:
                speakers = {t.speaker for t in conversation.turns}
                engine.cohort = without(entries[precision], speakers)
            events, _ = run_conversation(engine, conversation, realtime_batching=False)
            profiles |= engine.profiles
            reference = list(conversation.speech)
            hypothesis = merge_gaps(final_segments(events), MERGE_GAP_S)
            identity.append(identity_scores(reference, hypothesis, set(conversation.enrollment)))
            predicted = [(e.start_s, e.emitted_at) for e in events if e.type == "change"]
            changes.append(change_scores(reference, predicted, tolerance_s=0.5))
        fast_s = clock.total / audio_s  # enrollment included: the same for every option
        embedded = engine.windows_embedded - embedded_before
        held, late = engine.windows_held, engine.windows_late
        engine.set_profiles(profiles)  # every conversation's speakers, enrolled
        speakers = {t.speaker for c in conversations for t in c.turns}
        engine.cohort = without(entries[precision], speakers) if precision in entries else cohort
        live = live_cost(engine, conversations, clock)
        row = {
            "identity_accuracy": IdentityScores.combine(identity).accuracy,
            "change_f1": ChangeScores.combine(changes).f1,
            "windows_embedded": embedded,
            "windows_held": held,
            "windows_late": late,
            "encoder_cpu_per_audio_s_fast": fast_s,
            **live,
        }
        figures[name] = row
        table.add_row(
            name,
            f"{100 * row['identity_accuracy']:.1f} %",
            f"{100 * row['change_f1']:.1f} %",
            str(embedded),
            str(held),
            str(late),
            f"{fast_s:.4f}",
            f"{live['encoder_cpu_per_audio_s_live']:.4f}",
            f"{live['onset_cpu_per_audio_s_live']:.4f}",
        )
    return table, figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of single-speaker recordings")
    parser.add_argument("--count", type=int, default=20, help="conversations (default 20)")
    add_condition_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the tracking figures here")
    parser.add_argument("--skip-int8-table", action="store_true")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="NAME",
        help=f"tracking rows to run (default: all of {', '.join(map(repr, VARIANTS))})",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.skip_int8_table:
        Console(width=110).print(int8_table(args.data))
    table, figures = tracking_table(args)
    return publish(table, figures, args.json, width=140)


if __name__ == "__main__":
    sys.exit(main())
