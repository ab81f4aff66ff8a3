"""Tfq8MatMul (a 1×1 convolution over N rows, same GEMM): every CPU path bit-exact vs
tests/ops/numpy_ref.py; agreement with a float matmul within one output step; bad inputs.

Tolerances: exact vs the numpy reference (bit-exact contract); ≤ 1 quantization step vs f32.
"""
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import assert_all_equal, run_all_isas

OUT_TYPES = {"uint8": tf.uint8, "float32": tf.float32, "int32": tf.int32}


def make(rng, n, k, oc, zp_in=128, int_bias=False, per_tensor=False):
    x = rng.integers(0, 256, size=(n, k), dtype=np.uint8)
    w = rng.integers(-127, 128, size=(k, oc), dtype=np.int8)
    fs = (np.full([1], 0.004, np.float32) if per_tensor
          else rng.uniform(0.001, 0.01, size=[oc]).astype(np.float32))
    bias = (rng.integers(-5000, 5000, size=[oc], dtype=np.int32) if int_bias
            else rng.uniform(-1, 1, size=[oc]).astype(np.float32))
    acc = ref.matmul_acc(x, w, zp_in) * 0.02 * fs.astype(np.float64)
    s_out = np.float32(max(float(np.percentile(np.abs(acc), 99)), 1e-3) / 100)
    return x, w, bias, fs, s_out


def run(x, w, bias, fs, s_out, zp_in, summand=None, **kw):
    out_type = kw.pop("out_type", "uint8")
    return tfq8.ops.tfq8_mat_mul(x, w, tf.constant(bias), fs, [] if summand is None else [summand],
                                 input_scale=0.02, input_zero_point=zp_in,
                                 output_scale=float(s_out), out_type=OUT_TYPES[out_type],
                                 summand_scale=0.05, summand_zero_point=128, **kw).numpy()


@pytest.mark.parametrize("n,k,oc", [(1, 1, 1), (1, 3, 17), (3, 70, 33), (5, 64, 1000),
                                    (33, 128, 70), (2, 2048, 40), (40, 100, 64)])
@pytest.mark.parametrize("variant", ["relu", "summand", "f32", "s32_intbias"])
def test_every_path_bit_exact(n, k, oc, variant):
    rng = np.random.default_rng(n * 1000 + k + oc)
    zp_in = 128 if variant != "f32" else 0
    x, w, bias, fs, s_out = make(rng, n, k, oc, zp_in, int_bias=variant == "s32_intbias",
                                 per_tensor=variant == "summand")
    kw, ekw, summand = {}, {}, None
    if variant == "relu":
        kw = ekw = dict(activation="RELU")
    elif variant == "summand":
        summand = rng.integers(0, 256, size=(n, oc), dtype=np.uint8)
        kw = dict(output_zero_point=128)
        ekw = dict(output_zero_point=128, summand=summand, summand_scale=0.05,
                   summand_zero_point=128)
    elif variant == "f32":
        kw = dict(out_type="float32", activation="RELU6")
        ekw = dict(out_type="float32", activation="RELU6")
    else:
        kw = ekw = dict(out_type="int32")
    got = run_all_isas(lambda: run(x, w, bias, fs, s_out, zp_in, summand, **dict(kw)))
    want = ref.matmul(x, w, bias, fs, input_scale=np.float32(0.02), input_zero_point=zp_in,
                      output_scale=s_out, **ekw)
    assert_all_equal(got, want, f"matmul {n}x{k}x{oc} {variant}")


def test_float_agreement_within_one_step():
    rng = np.random.default_rng(1)
    x, w, bias, fs, s_out = make(rng, 8, 96, 50)
    got = run(x, w, bias, fs, s_out, 128, activation="RELU")
    y = ((x.astype(np.float32) - 128) * np.float32(0.02)) @ (w.astype(np.float32) * fs) + bias
    q = ref.quantize(np.maximum(y, 0), s_out, 0)
    assert np.abs(got.astype(np.int32) - q.astype(np.int32)).max() <= 1


@pytest.mark.parametrize("args, message", [
    (dict(x=np.zeros([2, 5], np.uint8)), "input has K"),
    (dict(x=np.zeros([2, 3, 4], np.uint8)), "rank"),
    (dict(bias=np.zeros([3], np.float32)), "bias must have shape"),
    (dict(w=np.full([4, 6], -128, np.int8)), "weights must be in -127..127"),
])
def test_bad_inputs(args, message):
    base = dict(x=np.zeros([2, 4], np.uint8), w=np.ones([4, 6], np.int8),
                bias=np.zeros([6], np.float32), fs=np.ones([1], np.float32))
    base.update(args)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        tfq8.ops.tfq8_mat_mul(base["x"], base["w"], base["bias"], base["fs"], [],
                              input_scale=0.1).numpy()
