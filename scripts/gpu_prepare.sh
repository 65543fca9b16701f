#!/usr/bin/env bash
# Prepare, on this CPU, everything one GPU run (scripts/gpu_run.sh) carries:
#   .whl/  wheels of what the GPU machine's Python lacks (scripts/fetch_gpu_wheels.py)
#   .gpu/  payloads encoded here with this CPU's decodes, the training recipe and its init
#          weights, the training photographs re-encoded to fit the 64 MiB carry
# Options go to `bench/gpu.py prepare` (--init CKPT, --recipe "ARGS", --photos DIR, --model CKPT),
# e.g. to continue a run in progress: bash scripts/gpu_prepare.sh --init /work/runs/s7/latest.pt
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/env.sh ] && source .venv/env.sh
python scripts/fetch_gpu_wheels.py --dest .whl
python bench/gpu.py prepare "$@"
echo "then, with a GPU lent: the run tool, command 'bash scripts/gpu_run.sh', carry [\".whl\", \".gpu\"], timeout_s 600"
