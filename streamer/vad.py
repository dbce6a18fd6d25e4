"""Voice activity: silero-vad probabilities and a speech/silence gate with hysteresis.

silero-vad ships its TorchScript model in its wheel. Its inner network is stateless
(``(audio with 64 samples of context, LSTM state) -> (probability, new state)``), so one
model serves every stream: each stream keeps its own :class:`VadState` and chunks of
several streams run as one batch.

torch is imported only once a VAD runs, so the gate (and the engine core that uses it)
imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import ModelError

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16_000
CHUNK_SAMPLES = 512  # 32 ms: what the 16 kHz silero model takes
CONTEXT_SAMPLES = 64


def _zeros(*shape: int) -> torch.Tensor:
    import torch

    return torch.zeros(*shape)


@dataclass
class VadState:
    """One stream's recurrent state and audio context."""

    context: torch.Tensor = field(default_factory=lambda: _zeros(1, CONTEXT_SAMPLES))
    hidden: torch.Tensor = field(default_factory=lambda: _zeros(2, 1, 128))


class SileroVAD:
    """Speech probability of each 32 ms chunk, batched across streams."""

    chunk_samples = CHUNK_SAMPLES
    sample_rate = SAMPLE_RATE

    def __init__(self) -> None:
        import torch

        self._torch = torch
        try:
            from silero_vad import load_silero_vad

            self._net = load_silero_vad(onnx=False)._model
        except Exception as exc:
            raise ModelError(
                f"cannot load silero-vad ({exc}); reinstall it: pip install silero-vad"
            ) from exc

    def warm_batched(self) -> None:
        """Run the batched path once, on silence and fresh states (nothing is kept). A
        batch of two or more chunks runs torch's oneDNN convolutions, whose code (about
        7 MB of libtorch's pages, once per process) a single stream never touches: a
        daemon calls this at start, so that the second stream to join does not page it in."""
        self([VadState(), VadState()], np.zeros((2, CHUNK_SAMPLES), np.float32))

    def __call__(self, states: list[VadState], chunks: np.ndarray) -> np.ndarray:
        """Probabilities for ``chunks`` (``(n, 512)``, one row per state), advancing each state."""
        torch = self._torch
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32))
            context = torch.cat([s.context for s in states])
            hidden = torch.cat([s.hidden for s in states], dim=1)
            x = torch.cat([context, audio], dim=1)
            probs, hidden = self._net(x, hidden)
            for i, state in enumerate(states):
                state.context = x[i : i + 1, -CONTEXT_SAMPLES:]
                state.hidden = hidden[:, i : i + 1]
            return probs[:, 0].numpy().copy()


@dataclass(frozen=True)
class GateOptions:
    """How chunk probabilities become speech regions.

    Attributes:
        onset: probability at or above which a chunk starts speech.
        offset: probability below which a chunk counts as silence once in speech.
        min_speech_s: shorter bursts are dropped as blips (no events, no identity).
        min_silence_s: shorter pauses do not end a speech region.
        pad_s: seconds added before each region onset and after each offset.
    """

    onset: float = 0.5
    offset: float = 0.35
    min_speech_s: float = 0.25
    min_silence_s: float = 0.4
    pad_s: float = 0.25


@dataclass
class GateUpdate:
    """What one chunk changed: a region confirmed to have started, or one that ended."""

    started_at_s: float | None = None
    ended: tuple[float, float] | None = None


class SpeechGate:
    """Turns a stream of chunk probabilities into speech regions (sans-I/O).

    A region is reported as started once it has lasted ``min_speech_s`` (with its true
    onset), and as ended once ``min_silence_s`` of silence followed it (with its true
    offset). ``voiced`` tells whether the last chunk was speech, for window gating.
    """

    def __init__(self, options: GateOptions, chunk_s: float) -> None:
        self.options = options
        self.chunk_s = chunk_s
        self.voiced = False
        self.in_region = False
        self.region_start_s = 0.0
        self._candidate_start_s: float | None = None
        self._silence_start_s: float | None = None

    def update(self, t_s: float, prob: float) -> GateUpdate:
        """Feed the probability of the chunk that starts at ``t_s``."""
        o = self.options
        end_s = t_s + self.chunk_s
        self.voiced = prob >= o.onset or (self.voiced and prob >= o.offset)
        update = GateUpdate()
        if self.voiced:
            self._silence_start_s = None
            if not self.in_region:
                if self._candidate_start_s is None:
                    self._candidate_start_s = t_s
                if end_s - self._candidate_start_s >= o.min_speech_s:
                    self.in_region = True
                    self.region_start_s = max(0.0, self._candidate_start_s - o.pad_s)
                    update.started_at_s = self.region_start_s
        else:
            if not self.in_region:
                self._candidate_start_s = None
            else:
                if self._silence_start_s is None:
                    self._silence_start_s = t_s
                if end_s - self._silence_start_s >= o.min_silence_s:
                    update.ended = (self.region_start_s, self._silence_start_s + o.pad_s)
                    self.in_region = False
                    self._candidate_start_s = None
                    self._silence_start_s = None
        return update

    def close(self, t_s: float) -> GateUpdate:
        """End of stream at ``t_s``: end the open region, if any."""
        update = GateUpdate()
        if self.in_region:
            end = self._silence_start_s if self._silence_start_s is not None else t_s
            update.ended = (self.region_start_s, min(t_s, end + self.options.pad_s))
            self.in_region = False
        return update
