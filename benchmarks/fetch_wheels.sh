#!/usr/bin/env bash
# Downloads (here, where PyPI is reachable) the wheels that benchmarks/gpu_check.sh installs on the GPU machine,
# which has Python 3.12 with jax 0.11 (CUDA), flax, optax, orbax, absl-py, PyYAML, tqdm, numpy preinstalled and no
# network. ssr_jax's training path needs only ml-collections on top of those (checked by importing ssr_jax.bench
# and listing the modules it loads); tensorflow-datasets is imported only for prepared real datasets, never here.
#
#   bash benchmarks/fetch_wheels.sh            # → .whl/ (git-ignored through .git/info/exclude)
#   WHEEL_DIR=/tmp/w bash benchmarks/fetch_wheels.sh
#
# Then, with the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_DIR=${WHEEL_DIR:-.whl}
PYTHON=${PYTHON:-python3}
if [ "$WHEEL_DIR" = ".whl" ] && [ -d .git ]; then
  mkdir -p .git/info
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
fi
mkdir -p "$WHEEL_DIR"
# Pure-Python wheels; the platform tags only matter for packages with compiled parts (none here).
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHEEL_DIR" ml-collections==1.1.0
ls -l "$WHEEL_DIR"
