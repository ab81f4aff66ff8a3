#!/usr/bin/env bash
# Creates the benchmark's own virtual environment with the peers bench/models.py compares
# tfq8 against (TFLite ships with TensorFlow; ONNX Runtime via tf2onnx; Intel Neural Compressor).
# These are NOT tfq8 dependencies.
#
#   bash bench/peers/setup_env.sh                 # -> /tmp/tfq8-bench-venv
#   bash bench/peers/setup_env.sh /path/to/venv
#   TFQ8_BENCH_ISOLATED=1 bash bench/peers/setup_env.sh   # own copy of TensorFlow (~1.9 GB)
#
# By default the venv sees the system site-packages, so an installed tensorflow==2.21.* is
# reused instead of downloaded again; packages installed here shadow the system ones.
# Then:  /tmp/tfq8-bench-venv/bin/python bench/models.py
set -euo pipefail

VENV="${1:-${TFQ8_BENCH_VENV:-/tmp/tfq8-bench-venv}}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  if [[ "${TFQ8_BENCH_ISOLATED:-0}" == "1" ]]; then
    "$PY" -m venv "$VENV"
  else
    "$PY" -m venv --system-site-packages "$VENV"
  fi
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip

# TensorFlow (TFLite converter + interpreter with XNNPACK) and Keras 2 for the tf-keras graphs.
"$VPY" -m pip install -q "tensorflow==2.21.*" "tf-keras==2.21.*"

# Each peer on its own so that one that does not install leaves the others usable;
# bench/models.py reports a missing peer as "n/a (reason)".
install_peer() {
  local name="$1"; shift
  if "$VPY" -m pip install -q "$@"; then
    echo "setup_env: $name installed"
  else
    echo "setup_env: $name FAILED to install (bench/models.py will report it as n/a)" >&2
  fi
}
install_peer "onnx runtime"  onnx onnxruntime tf2onnx sympy
install_peer "neural compressor" neural-compressor-tf

# pip may have moved numpy/protobuf for a peer; keep TensorFlow importable.
"$VPY" - <<'PYEOF'
import importlib
for mod in ("tensorflow", "tf_keras", "onnx", "onnxruntime", "tf2onnx", "neural_compressor.tensorflow"):
    try:
        m = importlib.import_module(mod)
        print(f"setup_env: {mod} {getattr(m, '__version__', '')}")
    except Exception as e:  # noqa: BLE001
        print(f"setup_env: {mod} NOT importable: {type(e).__name__}: {e}")
PYEOF

# tfq8 from the repo: build the op library in place (the benchmark also adds the repo to sys.path).
if [[ "${TFQ8_BENCH_SKIP_TFQ8:-0}" != "1" ]]; then
  (cd "$REPO" && "$VPY" setup.py build_ext --inplace -q) \
    || echo "setup_env: tfq8 op library build FAILED (tfq8 will be n/a)" >&2
fi
echo "setup_env: done: $VPY $REPO/bench/models.py --help"
