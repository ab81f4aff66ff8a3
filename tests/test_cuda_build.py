"""CPU-side checks of the CUDA build (runs in CI, which has nvcc but no GPU):

* where nvcc is on the PATH, the op library was built with CUDA: it exports the CUDA C API and
  registers a DEVICE_GPU kernel for every Tfq8 op, and it still loads on a machine without a GPU;
* the standalone harness library (custom_ops/kernels/cuda/tools/build.sh, nvcc alone) builds,
  and its host-side functions agree with the ctypes mirrors of the C structs.
The kernels' numerics need a GPU: custom_ops/kernels/cuda/tools/test_cuda_kernels.py.
"""
import ctypes
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "custom_ops", "kernels", "cuda", "tools")
OPS = ["Tfq8Quantize", "Tfq8Dequantize", "Tfq8Requantize", "Tfq8Conv2D", "Tfq8DepthwiseConv2D",
       "Tfq8MatMul", "Tfq8MaxPool", "Tfq8AvgPool", "Tfq8Mean", "Tfq8Concat", "Tfq8Add",
       "Tfq8Lookup", "Tfq8ChannelMul"]

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")


def _cuda_disabled():
    return os.environ.get("TFQ8_CUDA", "auto").lower() in ("0", "off", "false", "no")


@needs_nvcc
@pytest.mark.skipif(_cuda_disabled(), reason="TFQ8_CUDA=0: CPU-only build requested")
def test_op_library_has_gpu_kernels():
    import tfq8  # noqa: F401 (loads the library: must work without a GPU)
    from tensorflow.python.framework import kernels
    from tfq8 import ops

    assert ops.built_with_cuda(), "nvcc is on the PATH but the build skipped CUDA"
    syms = subprocess.run(["nm", "-D", "--defined-only", ops.library_path()],
                          capture_output=True, text=True, check=True).stdout
    assert "tfq8_cuda_conv2d" in syms, "the CUDA C API is not in the op library"
    missing = [op for op in OPS
               if "GPU" not in {k.device_type
                                for k in kernels.get_registered_kernels_for_op(op).kernel}]
    assert not missing, f"no DEVICE_GPU kernel registered for {missing}"


@needs_nvcc
def test_standalone_harness_builds(tmp_path):
    env = dict(os.environ, TFQ8_CUDA_ARCHS="80")  # one architecture keeps CI fast
    subprocess.run(["bash", os.path.join(TOOLS, "build.sh"), str(tmp_path)], env=env,
                   check=True, capture_output=True)
    lib_path = tmp_path / "libtfq8_cuda_test.so"
    assert lib_path.exists()
    sys.path.insert(0, TOOLS)
    try:
        import cuda_lib
    finally:
        sys.path.remove(TOOLS)
    lib = cuda_lib.Lib(str(lib_path))
    s = cuda_lib.ConvShape(n=2, h=56, w=56, c=64, kh=3, kw=3, oc=64, stride_h=2, stride_w=2,
                           dilation_h=1, dilation_w=1, pad_t=1, pad_b=1, pad_l=1, pad_r=1)
    assert lib.L.tfq8_conv_shape_finish(ctypes.byref(s)) == 0
    assert (s.oh, s.ow) == (28, 28)
    # 3 per-channel arrays of 256 B + packed weights 64 x roundup(576, 64)
    assert lib.L.tfq8_cuda_conv2d_workspace_size(ctypes.byref(s)) == 3 * 256 + 64 * 576
    p = cuda_lib.PoolShape(n=1, h=7, w=7, c=8, kh=3, kw=3, stride_h=2, stride_w=2)
    lib.L.tfq8_pool_shape_finish(ctypes.byref(p), 1)
    assert (p.oh, p.ow, p.pad_t, p.pad_l) == (4, 4, 1, 1)
    assert lib.L.tfq8_cuda_conv_algo_name(6) == b"qu8_conv_mma_128x128c64"
    assert lib.L.tfq8_cuda_conv_algo_name(12) == b"qu8_conv_wgmma_128x128c64"
    assert lib.L.tfq8_cuda_conv_algo_name(14) == b"qu8_conv_mma1x1_128x128"
    assert cuda_lib.ALGO["mma1x1_128x64"] == 15
    # conv1 (7x7x3) packs its weights in the row-gather layout: 32 bytes per filter row
    s1 = cuda_lib.ConvShape(n=1, h=224, w=224, c=3, kh=7, kw=7, oc=64, stride_h=2, stride_w=2,
                            dilation_h=1, dilation_w=1, pad_t=3, pad_b=3, pad_l=3, pad_r=3)
    assert lib.L.tfq8_conv_shape_finish(ctypes.byref(s1)) == 0
    assert lib.L.tfq8_cuda_conv2d_workspace_size(ctypes.byref(s1)) == 3 * 256 + 64 * 256


@needs_nvcc
def test_wgmma_kernels_compile_for_sm90a(tmp_path):
    """The wgmma (sm_90a) kernels are only compiled for 90a: check they still do."""
    nvcc = os.environ.get("NVCC", "nvcc")
    subprocess.run([nvcc, "-c", "-x", "cu", os.path.join(ROOT, "custom_ops", "kernels", "cuda",
                                                         "conv.cu"),
                    "-o", str(tmp_path / "conv.o"), "-O3", "--std=c++17", "--fmad=false",
                    "-I" + ROOT, "-gencode", "arch=compute_90a,code=sm_90a",
                    "-DTFQ8_HAVE_SM90A=1"], check=True, capture_output=True)
