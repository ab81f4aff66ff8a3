"""Fuzzing of the depthwise/pool/concat/add ops (no crash; bad inputs raise InvalidArgumentError
with a message; valid ones match numpy_ref), and the framework-free micro-kernel harness
(custom_ops/kernels/cpu/dwconv_test.cc) for the AVX512 and AVX2 depthwise, pooling, add and
elementwise (quantize/dequantize/requantize) kernels.

The AVX512 kernels run natively where the CPU has AVX512-VNNI; elsewhere the harness is compiled
with SIMDe emulating the AVX512 intrinsics (tests/ops/simde_avx512_shim), so their lane logic
(unpack order, vpdpbusd, packs, masks) is still checked bit for bit against the reference.
"""
import concurrent.futures
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import AVAILABLE_ISAS, forced_isa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KDIR = os.path.join(ROOT, "custom_ops", "kernels", "cpu")
SHIM = os.path.join(ROOT, "tests", "ops", "simde_avx512_shim")
AVX2 = ["-mavx2", "-mfma"]
AVX512 = AVX2 + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]


def _simde_available():
    return any(os.path.exists(os.path.join(d, "simde", "x86", "avx512.h"))
               for d in ("/usr/include", "/usr/local/include"))


def _build_harness(tmp, emulate_avx512):
    flags = ["-std=c++17", "-O1", "-ffp-contract=off", f"-I{ROOT}", "-w"]

    def compile_one(f):
        extra = []
        if f.endswith("_avx2"):
            extra = AVX2
        elif f.endswith("_avx512"):
            extra = [f"-I{SHIM}"] if emulate_avx512 else AVX512
        obj = os.path.join(tmp, f + ".o")
        subprocess.run(["g++", "-c", os.path.join(KDIR, f + ".cc"), "-o", obj] + flags + extra,
                       check=True, capture_output=True)
        return obj

    names = ["dwconv_avx512", "elementwise_avx512", "pool_avx512", "add_avx512", "dwconv",
             "dwconv_ref", "pool_ref", "add_ref", "elementwise_ref", "isa", "dwconv_test",
             "dwconv_avx2", "pool_avx2", "add_avx2", "elementwise_avx2"]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        objs = list(pool.map(compile_one, names))
    exe = os.path.join(tmp, "dwconv_test")
    subprocess.run(["g++"] + objs + ["-o", exe], check=True, capture_output=True)
    return exe


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpu_kernels_native_harness(tmp_path):
    native = "avx512vnni" in AVAILABLE_ISAS
    if not native and not _simde_available():
        msg = "no AVX512 on this CPU and SIMDe (libsimde-dev) is not installed"
        if os.environ.get("TFQ8_REQUIRE_TEST_DATA") == "1":
            pytest.fail(msg + " (CI installs it; TFQ8_REQUIRE_TEST_DATA=1)")
        pytest.skip(msg)
    exe = _build_harness(str(tmp_path), emulate_avx512=not native)
    isas = ["avx512vnni"] + (["avx2"] if "avx2" in AVAILABLE_ISAS else [])
    for isa in isas:
        out = subprocess.run([exe, isa], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith("OK"), (isa, out.stdout, out.stderr)


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _expect_ok_or_invalid(call):
    """Runs call(); returns its result or None when it raised InvalidArgumentError (with a message)."""
    try:
        return call()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        assert str(e).strip(), "error without a message"
        return None


@FUZZ
@given(n=st.integers(0, 2), h=st.integers(0, 7), w=st.integers(0, 7), c=st.integers(1, 40),
       m=st.integers(1, 2), kh=st.integers(1, 5), kw=st.integers(1, 5),
       stride=st.integers(1, 3), dil=st.integers(1, 2),
       pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       zp_in=st.integers(-2, 257), zp_out=st.integers(-1, 256),
       s_out=st.sampled_from([0.05, 0.0, -1.0, float("inf"), 1e-30]),
       act=st.sampled_from(["NONE", "RELU", "RELU6", "CLIP"]),
       out_type=st.sampled_from([tf.uint8, tf.float32, tf.int32]),
       bad_weight=st.booleans(), chan_mismatch=st.booleans(), summand=st.booleans(),
       isa=st.sampled_from(AVAILABLE_ISAS), seed=st.integers(0, 2**31))
def test_fuzz_depthwise(n, h, w, c, m, kh, kw, stride, dil, pads, zp_in, zp_out, s_out, act,
                        out_type, bad_weight, chan_mismatch, summand, isa, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    wt = rng.integers(-127, 128, (kh, kw, c + int(chan_mismatch), m), dtype=np.int8)
    if bad_weight:
        wt.flat[0] = -128
    oc = c * m
    bias = rng.uniform(-1, 1, oc).astype(np.float32)
    fs = rng.uniform(0.001, 0.01, oc).astype(np.float32)
    oh = (h + pads[0] + pads[1] - (kh - 1) * dil - 1) // stride + 1
    ow = (w + pads[2] + pads[3] - (kw - 1) * dil - 1) // stride + 1
    sm = [rng.integers(0, 256, (n, max(oh, 0), max(ow, 0), oc), dtype=np.uint8)] if summand else []
    with forced_isa(isa):
        y = _expect_ok_or_invalid(lambda: tfq8.ops.tfq8_depthwise_conv2d(
            x, wt, bias, fs, sm, input_scale=0.02, input_zero_point=zp_in, strides=[stride] * 2,
            dilations=[dil] * 2, explicit_paddings=pads, activation=act, out_type=out_type,
            output_scale=s_out, output_zero_point=zp_out, summand_zero_point=128,
            summand_scale=0.03))
    valid = (not bad_weight and not chan_mismatch and 0 <= zp_in <= 255 and oh >= 1 and ow >= 1
             and (out_type != tf.uint8 or (0 <= zp_out <= 255 and 0 < s_out < float("inf")))
             and (out_type != tf.int32 or (act == "NONE" and not summand)))
    assert (y is not None) == valid
    if valid:
        exp = ref.depthwise_conv2d(
            x, wt, bias, fs, input_scale=np.float32(0.02), input_zero_point=zp_in,
            strides=(stride, stride), dilations=(dil, dil), pads=pads,
            summand=sm[0] if summand else None, summand_scale=np.float32(0.03),
            summand_zero_point=128, activation=act, clip_min=np.float32(0.0),
            clip_max=np.float32(6.0), out_type=out_type.name, output_scale=np.float32(s_out),
            output_zero_point=zp_out)
        got = y.numpy()
        assert got.shape == exp.shape
        assert np.array_equal(got.view(np.uint8), exp.view(np.uint8))


@FUZZ
@given(n=st.integers(0, 2), h=st.integers(0, 6), w=st.integers(0, 6), c=st.integers(0, 70),
       kh=st.integers(0, 4), kw=st.integers(1, 4), stride=st.integers(0, 3),
       padding=st.sampled_from(["VALID", "SAME"]), op=st.sampled_from(["max", "avg", "mean"]),
       isa=st.sampled_from(AVAILABLE_ISAS), seed=st.integers(0, 2**31))
def test_fuzz_pool(n, h, w, c, kh, kw, stride, padding, op, isa, seed):
    x = np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)
    with forced_isa(isa):
        if op == "mean":
            y = _expect_ok_or_invalid(lambda: tfq8.ops.tfq8_mean(x))
            if h * w > 0 or n * c == 0:
                assert y is not None
                if h * w > 0:
                    np.testing.assert_array_equal(y.numpy(), ref.mean(x))
            else:
                assert y is None
            return
        fn = tfq8.ops.tfq8_max_pool if op == "max" else tfq8.ops.tfq8_avg_pool
        y = _expect_ok_or_invalid(lambda: fn(x, ksize=[kh, kw], strides=[stride, stride],
                                             padding=padding))
    valid = kh >= 1 and stride >= 1 and (padding == "SAME" or (h >= kh and w >= kw))
    assert (y is not None) == valid
    if valid and y.numpy().size:
        r = ref.max_pool if op == "max" else ref.avg_pool
        np.testing.assert_array_equal(y.numpy(), r(x, (kh, kw), (stride, stride), padding))


@FUZZ
@given(shapes=st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=3), min_size=1,
                       max_size=3),
       axis=st.integers(-4, 3), nscales=st.integers(0, 4),
       zps=st.lists(st.integers(-1, 256), min_size=3, max_size=3),
       isa=st.sampled_from(AVAILABLE_ISAS), seed=st.integers(0, 2**31))
def test_fuzz_concat(shapes, axis, nscales, zps, isa, seed):
    rng = np.random.default_rng(seed)
    vals = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    scales = [float(v) for v in rng.uniform(0.01, 0.2, nscales).astype(np.float32)]
    zps = zps[:len(vals)]
    with forced_isa(isa):
        y = _expect_ok_or_invalid(lambda: tfq8.ops.tfq8_concat(
            vals, axis=axis, input_scales=scales, input_zero_points=zps, output_scale=0.1,
            output_zero_point=128))
    rank = len(shapes[0])
    ok_axis = -rank <= axis < rank
    valid = (nscales == len(vals) and all(0 <= z <= 255 for z in zps) and ok_axis
             and all(len(s) == rank for s in shapes))
    if valid:
        a = axis % rank
        valid = all(s[:a] + s[a + 1:] == shapes[0][:a] + shapes[0][a + 1:] for s in shapes)
    assert (y is not None) == valid
    if valid:
        exp = ref.concat(vals, axis, [np.float32(s) for s in scales], zps, np.float32(0.1), 128)
        np.testing.assert_array_equal(y.numpy(), exp)


@FUZZ
@given(sa=st.lists(st.integers(0, 5), max_size=4), sb=st.lists(st.integers(0, 5), max_size=4),
       za=st.integers(-1, 256), zo=st.integers(0, 255),
       so=st.sampled_from([0.1, 0.0, float("nan"), 0.003]),
       act=st.sampled_from(["NONE", "RELU", "RELU6"]), isa=st.sampled_from(AVAILABLE_ISAS),
       seed=st.integers(0, 2**31))
def test_fuzz_add(sa, sb, za, zo, so, act, isa, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, sa, dtype=np.uint8)
    b = rng.integers(0, 256, sb if rng.integers(0, 2) else sa, dtype=np.uint8)
    with forced_isa(isa):
        y = _expect_ok_or_invalid(lambda: tfq8.ops.tfq8_add(
            a, b, a_scale=0.05, a_zero_point=za, b_scale=0.07, b_zero_point=3, output_scale=so,
            output_zero_point=zo, activation=act))
    valid = a.shape == b.shape and 0 <= za <= 255 and so > 0
    assert (y is not None) == valid
    if valid:
        exp = ref.add(a, b, np.float32(0.05), za, np.float32(0.07), 3, np.float32(so), zo, act)
        np.testing.assert_array_equal(y.numpy(), exp)
