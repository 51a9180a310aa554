#!/usr/bin/env bash
# The GPU check of issue 6 (see benchmarks/README.md): SSR-Net (3,3,3) on a MORPH2-sized synthetic set (44,000 train
# / 11,000 test, batch 50, 90 epochs; goal < 60 s), the 25-config λ grid vmapped (goal < 5 min), and training
# images/s at batch 50, 512 and 4,096. Writes $OUT/gpu_check.json (and a log); keeps to about 7 minutes in all.
#
#   bash benchmarks/fetch_wheels.sh                          # here, once: ml-collections → .whl/
#   device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh           # a CPU test of this script: tiny sizes, < 2 min
#
# Works with the machine's own jax (0.11, CUDA) and with this repo's venv (jax 0.10.2) alike.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/runs/gpu_check}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
if [ -z "${GPU_CHECK_PYTHON:-}" ] && [ -x "$REPO/.venv/bin/python" ] && [ -n "${GPU_CHECK_SMOKE:-}" ]; then
  PYTHON="$REPO/.venv/bin/python"   # the CPU smoke test runs in the project's venv
fi
PYTHON=${GPU_CHECK_PYTHON:-$PYTHON}
WHEEL_DIR=${WHEEL_DIR:-.whl}

# What the machine lacks, from the carried wheels (the device README's recipe): only if it is really missing.
if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  if ! ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
    echo "ml_collections is missing and $WHEEL_DIR/ holds no wheels: run benchmarks/fetch_wheels.sh here and carry .whl" >&2
    exit 3
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEEL_DIR"/*.whl || exit 3
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# The GPU takes what it needs instead of 75 % up front, so peak_bytes_in_use is what the runs used.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}

ARGS=(--out "$OUT" --budget_s "${GPU_CHECK_BUDGET_S:-400}")
if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
  # XLA:CPU compile time dominates a tiny run: the lowest backend optimisation level about halves it.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0"
  ARGS+=(--smoke)
fi
{
  echo "== $(date -u +%FT%TZ) $(uname -n)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import sys, jax, flax, optax; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
} 2>&1 | tee "$OUT/gpu_check.log"
"$PYTHON" benchmarks/gpu_check.py "${ARGS[@]}" "$@" 2>&1 | tee -a "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
exit "$status"
