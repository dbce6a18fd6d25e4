"""Build the score cohort shipped for GE2E (``streamer/models/cohorts/ge2e.npy``).

    python scripts/build_cohort.py ../shared/data/librispeech-train-clean-100

Two embeddings per speaker of the TUNE half only (``streamer.evaluation.cohort``; the
report half never feeds the cohort), as recorded: a cohort with degraded copies too
scored worse on the tune half (README: Tracking). Stored as float16.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from streamer.evaluation.cohort import speaker_entries, without
from streamer.models import Embedder, get_spec
from streamer.vad import SileroVAD
from streamer.worker import Engine

OUT = Path(__file__).resolve().parent.parent / "streamer" / "models" / "cohorts" / "ge2e.npy"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of single-speaker recordings")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    engine = Engine(Embedder(get_spec("ge2e")), SileroVAD())
    cohort = without(speaker_entries(engine, args.data), ())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, cohort.astype(np.float16))
    print(f"{len(cohort)} embeddings -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
