"""The score cohort's embeddings from a folder of development speakers.

``scripts/build_cohort.py`` ships them for GE2E; the tracking benchmark, on the tune half
(whose speakers the shipped cohort holds), leaves each conversation's own speakers out of
it, as the report half's conversations never meet theirs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..enroll import collect
from ..worker import Engine
from .simulate import load_speaker_folder, speaker_half

SPLIT_S = 6.0
"""Each speaker's recording gives two entries: its first ``SPLIT_S`` and the rest."""


def speaker_entries(engine: Engine, folder: str | Path, half: str = "tune") -> dict:
    """``{speaker: (entries, dim)}`` for the ``half`` speakers of ``folder``: the mean unit
    window embedding of each part of their first recording, as recorded."""
    rate = engine.embedder.spec.sample_rate
    entries = {}
    for speaker, files in load_speaker_folder(folder).items():
        if speaker_half(speaker) != half:
            continue
        audio = load_audio(files[0], rate)
        split = int(SPLIT_S * rate)
        means = []
        for part in (audio[:split], audio[split:]):
            windows = collect(engine, part).embeddings
            if windows:
                mean = np.mean(windows, axis=0)
                means.append(mean / np.linalg.norm(mean))
        if means:
            entries[speaker] = np.array(means, np.float32)
    return entries


def without(entries: dict, speakers) -> np.ndarray:
    """The cohort of ``entries`` less the ``speakers``' own."""
    return np.concatenate([v for s, v in entries.items() if s not in set(speakers)])
