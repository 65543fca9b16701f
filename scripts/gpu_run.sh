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

# The machine's own PyTorch stays; what it lacks comes from the carried wheels.
if ! "$python" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('compressai', 'pytorch_msssim', 'rosbags'))))" 2>/dev/null; then
  site=${TMPDIR:-/tmp}/parahydra-site
  if ! "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
       --target "$site" "${GPU_WHEELS:-.whl}"/*.whl; then
    echo "cannot install the carried wheels from .whl/ (run scripts/gpu_prepare.sh here first)" | tee "$OUT/log.txt"
    exit 2
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

"$python" bench/gpu.py run --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
