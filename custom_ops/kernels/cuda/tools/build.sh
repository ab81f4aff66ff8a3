#!/usr/bin/env bash
# Builds the standalone test library libtfq8_cuda_test.so from the framework-free CUDA kernels
# (custom_ops/kernels/cuda/*.cu) plus the test helpers, with nvcc alone (no TensorFlow).
#   custom_ops/kernels/cuda/tools/build.sh [OUT_DIR]     (default: custom_ops/kernels/cuda/tools/build)
# TFQ8_CUDA_ARCHS (default "80;90a": A100-class and H100/H200 with the wgmma kernels) picks the SASS
# targets ("90" instead of "90a": H100 without wgmma); NVCC overrides the compiler.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
OUT="${1:-$HERE/build}"
NVCC="${NVCC:-nvcc}"
ARCHS="${TFQ8_CUDA_ARCHS:-80;90a}"
command -v "$NVCC" >/dev/null || { echo "build.sh: $NVCC not found on the PATH" >&2; exit 1; }
mkdir -p "$OUT"
GENCODE=()
IFS=';' read -ra LIST <<< "$ARCHS"
for a in "${LIST[@]}"; do GENCODE+=(-gencode "arch=compute_${a},code=sm_${a}"); done
# 90a (H100/H200 only): also compiles the wgmma kernels, which the host side then offers.
SM90A=()
case ";$ARCHS;" in *";90a;"*) SM90A=(-DTFQ8_HAVE_SM90A=1) ;; esac
# --fmad=false: no FMA contraction, the epilogue must round like the CPU reference.
# TFQ8_NVCC_FLAGS: extra nvcc flags (experiments, e.g. -DTFQ8_CVT_MODE=0).
FLAGS=(-O3 --std=c++17 --fmad=false -Xcompiler -fPIC -I"$ROOT" "${GENCODE[@]}" "${SM90A[@]}" ${TFQ8_NVCC_FLAGS:-})
OBJS=()
for src in "$ROOT"/custom_ops/kernels/cuda/*.cu; do
  obj="$OUT/$(basename "$src").o"
  "$NVCC" -c -x cu "$src" -o "$obj" "${FLAGS[@]}" &
  OBJS+=("$obj")
done
"$NVCC" -c -x c++ "$HERE/harness_api.cpp" -o "$OUT/harness_api.o" -O2 --std=c++17 \
  -Xcompiler -fPIC -I"$ROOT" &
OBJS+=("$OUT/harness_api.o")
for job in $(jobs -p); do wait "$job"; done
"$NVCC" -shared -o "$OUT/libtfq8_cuda_test.so" "${OBJS[@]}" "${GENCODE[@]}" -cudart static
echo "$OUT/libtfq8_cuda_test.so"
