#!/usr/bin/env bash
# The one command for a lent GPU machine (README, "On a GPU"); prepared here by
# scripts/gpu_prepare.sh, it carries .whl/ and .gpu/ and writes into $OUT:
#   summary.json correctness.json speed.json train_speed.json training.json <model>-gpu.pt log.txt
# About 9 minutes (--minutes); options go to `bench/gpu.py run`. The CPU rehearsal:
#   bash scripts/gpu_run.sh --device cpu --minutes 1 --config tiny --dir DIR
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export OUT=${OUT:-out/gpu}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

# The machine's own PyTorch stays; what it lacks comes from the carried wheels, when they
# are built for this Python (the CPU rehearsal here uses the venv's packages instead).
wheels=${GPU_WHEELS:-.whl}
if "$python" -c "import glob, sys; sys.exit(not glob.glob('$wheels/*-cp%d%d-*.whl' % sys.version_info[:2]))"; then
  site=${TMPDIR:-/tmp}/parahydra-site
  if ! "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
       --target "$site" "$wheels"/*.whl; then
    echo "cannot install the carried wheels of $wheels" | tee "$OUT/log.txt"
    exit 2
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
elif [ ! -d "$wheels" ]; then
  echo "no $wheels/: without compressai's wheels this machine cannot import the codec (scripts/gpu_prepare.sh)"
fi

# OpenMP threads that wait passively: busy-waiting ones slow a step tenfold (or more) as
# soon as another process (a batch worker, another job) wants one of their cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# The entropy path switches deterministic algorithms on process-wide while it runs (see
# model/determinism.py); a CUDA matmul of another thread at that moment needs this set.
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
"$python" bench/gpu.py run --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}
rm -f "$OUT"/.*.tmp "$OUT"/*.tmp  # a write cut off by a kill: at most 8 files come back
exit "$status"
