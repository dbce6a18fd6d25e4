#!/usr/bin/env bash
# The capacity benchmark on a CUDA machine, in under 5 minutes; prints the table
# (streams held with every stream's p95 event lag < 1 s, RSS) and the GPU's utilisation.
#
#     bash benchmarks/gpu.sh [SPEECH_FOLDER]     # default: LibriSpeech in ../shared/data
#
# One engine worker per GPU (streamer serve --device cuda), 512 windows per encoder
# call, the clients spread over every CPU core. Needs a torch with CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${1:-../shared/data/librispeech-train-clean-100}
[ -d "$DATA" ] || DATA=shared/data/librispeech-train-clean-100
[ -d "$DATA" ] || { echo "gpu.sh: no speech folder $DATA; pass one" >&2; exit 2; }
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu.sh: torch sees no CUDA GPU here")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
UTIL=$(mktemp)
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 >"$UTIL" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true; rm -f "$UTIL"' EXIT
timeout 270 "$PY" benchmarks/capacity.py "$DATA" --configs default --seconds 15 \
    --start 512 --most 16384 --client-processes "$(nproc)" --daemon-args --device cuda \
    || echo "gpu.sh: the benchmark stopped early (exit $?); the rounds above are what it measured"
"$PY" - "$UTIL" <<'PY'
import sys
rows = [line.split(",") for line in open(sys.argv[1]) if line.strip()]
util = [float(r[0]) for r in rows]
memory = [float(r[1]) for r in rows]
if util:
    print(f"GPU utilisation: mean {sum(util) / len(util):.0f} %, max {max(util):.0f} %; "
          f"memory used up to {max(memory):.0f} MiB ({len(util)} samples, 1 per s)")
PY
