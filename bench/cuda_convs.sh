#!/usr/bin/env bash
# One command on a GPU machine (numpy + nvcc; PyTorch for the cuDNN columns; no TensorFlow):
#   bash bench/cuda_convs.sh [extra args for bench_cuda_convs.py]
# builds the standalone CUDA library, checks every kernel bit-exactly against the numpy
# reference, then times the ResNet-50 convolutions at batch 1/16/64/256 vs cuDNN FP16/FP32.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/custom_ops/kernels/cuda/tools"
PY="${PYTHON:-python3}"
[ -f "$TOOLS/build/libtfq8_cuda_test.so" ] || bash "$TOOLS/build.sh"
"$PY" "$TOOLS/test_cuda_kernels.py" --cases "${TFQ8_TEST_CASES:-40}"
"$PY" "$TOOLS/bench_cuda_convs.py" "$@"
