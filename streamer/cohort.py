"""Score normalisation against a cohort of impostor voices (adaptive S-norm, top-K).

A raw cosine between a profile and a window moves with the recording session: another
microphone or room lowers a voice's score against its own profile into the range of
other voices. Both sides of a comparison are scored against a fixed cohort of other
speakers' embeddings; the score's distance above each side's ``top_k`` closest cohort
scores (in their standard deviations) is what a session changes much less::

    z = ((s - mean_a) / std_a + (s - mean_b) / std_b) / 2

The tracker maps ``z`` back onto the raw cosine scale (``TrackerOptions.norm_mean`` and
``norm_scale``), so its bars keep their meaning. Cohort entries this close to a vector
(``same_voice``) are that voice, not an impostor, and are left out of its statistics.
"""

from __future__ import annotations

import sys
from importlib import resources

import numpy as np


class Cohort:
    """Unit embeddings of impostor voices, ``(n, dim)``, and the top-K statistics."""

    def __init__(self, embeddings: np.ndarray, top_k: int, same_voice: float) -> None:
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.top_k = min(top_k, len(self.embeddings))
        self.same_voice = same_voice

    def stats(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the ``top_k`` highest cohort scores of each
        row of ``vectors`` (``(m, dim)`` or ``(dim,)``)."""
        scores = vectors @ self.embeddings.T
        scores = np.where(scores >= self.same_voice, -1.0, scores)
        top = np.partition(scores, -self.top_k, axis=-1)[..., -self.top_k :]
        return top.mean(axis=-1), np.maximum(top.std(axis=-1), 1e-3)


def shipped(model: str, own_weights: bool = False) -> np.ndarray | None:
    """The cohort shipped for ``model`` with its shipped weights (``streamer/models/
    cohorts/<model>.npy``), or ``None`` with a note on stderr (none for the model, or
    ``own_weights``: the user's weights): its scores stay raw."""
    path = resources.files("streamer.models") / "cohorts" / f"{model}.npy"
    if own_weights or not path.is_file():
        print(
            f"streamer: no score cohort for model {model!r} (or for its weights); "
            "decisions use raw cosine scores, whose thresholds were tuned for ge2e",
            file=sys.stderr,
        )
        return None
    with path.open("rb") as f:
        return np.load(f).astype(np.float32)
