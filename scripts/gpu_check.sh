#!/usr/bin/env bash
# On a machine with CUDA: the node's fp16 parity and speed on the GPU, written to
# benchmarks/results/gpu_check.json (and its doc/vehicle.md section with --doc).
#   bash scripts/gpu_check.sh [--doc]
# Uses the python on PATH (a Jetson's or workstation's CUDA torch), not the CPU venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: $PYTHON's torch sees no CUDA device; run this on a machine with one" >&2
  exit 2
fi
exec "$PYTHON" -m benchmarks.gpu_check "$@"
