"""Tfq8Concat / Tfq8Add / Tfq8Mul: every CPU path bit-exact vs numpy_ref, agreement with TF's
float concat/add/multiply within one output quantization step, graph mode, bad inputs."""
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import assert_all_equal, run_all_isas


F32 = np.float32


def _f32(*vals):
    # The ops take f32 attributes; numpy_ref computes host constants in double from what it is
    # given, so it must see the same f32 values.
    return [F32(v) for v in vals]


def _concat(vals, axis, scales, zps, so, zo):
    return tfq8.ops.tfq8_concat(vals, axis=axis, input_scales=scales, input_zero_points=zps,
                                output_scale=so, output_zero_point=zo)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_concat_bit_exact(axis):
    rng = np.random.default_rng(axis + 10)
    base = [2, 3, 5, 17]
    vals, scales, zps = [], [], []
    for i, (s, z) in enumerate([(0.1, 128), (0.05, 0), (0.1, 128), (0.3, 7)]):
        shape = list(base)
        shape[axis] = [1, 2, 3, 40][i]
        vals.append(rng.integers(0, 256, shape, dtype=np.uint8))
        scales.append(s)
        zps.append(z)
    for so, zo in [(0.1, 128), (0.2, 0), (0.013, 255)]:
        got = run_all_isas(lambda: _concat(vals, axis, scales, zps, so, zo))
        exp = ref.concat(vals, axis, _f32(*scales), zps, F32(so), zo)
        assert_all_equal(got, exp, f"axis {axis} {so}")


def test_concat_identical_qparams_is_a_copy_and_other_ranks():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 70), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    out = _concat([a, b], 1, [0.1, 0.1], [128, 128], 0.1, 128).numpy()
    np.testing.assert_array_equal(out, np.concatenate([a, b], 1))
    v = rng.integers(0, 256, (33,), dtype=np.uint8)
    assert_all_equal(run_all_isas(lambda: _concat([v, v[:4]], 0, [1.0, 0.5], [3, 0], 0.7, 1)),
                     ref.concat([v, v[:4]], 0, [1.0, 0.5], [3, 0], F32(0.7), 1), "rank 1")
    assert_all_equal(run_all_isas(lambda: _concat([a], 0, [0.3], [128], 0.1, 128)),
                     ref.concat([a], 0, _f32(0.3), [128], F32(0.1), 128), "N=1")


def test_concat_agrees_with_tf_float():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 4, 4, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 4, 4, 24), dtype=np.uint8)
    so = 0.1
    out = ref.dequantize(_concat([a, b], 3, [0.05, 0.08], [128, 0], so, 128).numpy(), so, 128)
    exp = tf.concat([ref.dequantize(a, 0.05, 128), ref.dequantize(b, 0.08, 0)], 3).numpy()
    exp = np.clip(exp, -128 * so, 127 * so)
    assert np.abs(out - exp).max() <= so * 0.5001


@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6"])
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 64, 100, 1000, 40000])
def test_add_bit_exact(activation, n):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 256, n, dtype=np.uint8)
    b = rng.integers(0, 256, n, dtype=np.uint8)
    for qp in [(0.1, 128, 0.05, 0, 0.12, 128), (0.02, 0, 0.02, 0, 0.04, 0),
               (0.5, 3, 0.25, 250, 0.01, 200)]:
        sa, za, sb, zb, so, zo = qp
        got = run_all_isas(lambda: tfq8.ops.tfq8_add(
            a, b, a_scale=sa, a_zero_point=za, b_scale=sb, b_zero_point=zb, output_scale=so,
            output_zero_point=zo, activation=activation))
        exp = ref.add(a, b, F32(sa), za, F32(sb), zb, F32(so), zo, activation)
        assert_all_equal(got, exp, f"{n} {qp}")


def test_add_rounding_ties():
    # s_a/s_out = 0.5: odd (a - zp) lands on .5 ties, rne picks the even neighbour.
    a = np.arange(256, dtype=np.uint8)
    b = np.full(256, 128, np.uint8)
    exp = ref.add(a, b, 0.5, 128, 1.0, 128, 1.0, 128)
    assert exp[129] == 128 and exp[131] == 130 and exp[127] == 128 and exp[125] == 126
    got = run_all_isas(lambda: tfq8.ops.tfq8_add(a, b, a_scale=0.5, a_zero_point=128,
                                                 b_scale=1.0, b_zero_point=128,
                                                 output_scale=1.0, output_zero_point=128))
    assert_all_equal(got, exp, "ties")


def test_add_agrees_with_tf_float_and_graph_mode():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, (3, 5, 5, 19), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 5, 5, 19), dtype=np.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 5, 19], tf.uint8)] * 2)
    def f(x, y):
        return tfq8.ops.tfq8_add(x, y, a_scale=0.05, a_zero_point=128, b_scale=0.03,
                                 b_zero_point=128, output_scale=0.06, output_zero_point=0,
                                 activation="RELU6")

    out = f(a, b).numpy()
    np.testing.assert_array_equal(out, ref.add(a, b, *_f32(0.05), 128, *_f32(0.03), 128, *_f32(0.06), 0, "RELU6"))
    real = tf.nn.relu6(ref.dequantize(a, 0.05, 128) + ref.dequantize(b, 0.03, 128)).numpy()
    assert np.abs(ref.dequantize(out, 0.06, 0) - np.minimum(real, 255 * 0.06)).max() <= 0.06 * 0.5001
    np.testing.assert_array_equal(f(a[:1], b[:1]).numpy(), out[:1])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 100, 40000])
def test_mul_bit_exact(n):
    rng = np.random.default_rng(n + 1)
    a = rng.integers(0, 256, n, dtype=np.uint8)
    b = rng.integers(0, 256, n, dtype=np.uint8)
    # symmetric × symmetric (tanh · sigmoid-like), unsigned × unsigned, zero points far from the
    # middle, and an output scale that saturates
    for qp in [(0.008, 128, 0.004, 0, 0.006, 128), (0.02, 0, 0.03, 0, 0.05, 0),
               (0.5, 3, 0.25, 250, 0.01, 200), (0.1, 128, 0.1, 128, 0.002, 128)]:
        sa, za, sb, zb, so, zo = qp
        got = run_all_isas(lambda: tfq8.ops.tfq8_mul(
            a, b, a_scale=sa, a_zero_point=za, b_scale=sb, b_zero_point=zb, output_scale=so,
            output_zero_point=zo))
        exp = ref.mul(a, b, F32(sa), za, F32(sb), zb, F32(so), zo)
        assert_all_equal(got, exp, f"{n} {qp}")


def test_mul_agrees_with_tf_float_in_graph_mode():
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (2, 7, 33), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 7, 33), dtype=np.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None, 7, 33], tf.uint8)] * 2)
    def f(x, y):
        return tfq8.ops.tfq8_mul(x, y, a_scale=1 / 127, a_zero_point=128, b_scale=1 / 255,
                                 b_zero_point=0, output_scale=1 / 127, output_zero_point=128)

    out = f(a, b).numpy()
    np.testing.assert_array_equal(out, ref.mul(a, b, *_f32(1 / 127), 128, *_f32(1 / 255), 0,
                                               *_f32(1 / 127), 128))
    real = ref.dequantize(a, 1 / 127, 128) * ref.dequantize(b, 1 / 255, 0)
    # one rounding of the product (|real| ≤ 1.01, the output range): half a step, plus f32
    assert np.abs(ref.dequantize(out, 1 / 127, 128) - np.clip(real, -128 / 127, 1)).max() \
        <= 0.5001 / 127


U8 = np.zeros((2, 3), np.uint8)


@pytest.mark.parametrize("call,message", [
    (lambda: _concat([U8, U8], 2, [1.0, 1.0], [0, 0], 1.0, 0), "out of range"),
    (lambda: _concat([U8, U8], 0, [1.0], [0, 0], 1.0, 0), "input_scales must have one entry"),
    (lambda: _concat([U8, U8], 0, [1.0, 1.0], [0], 1.0, 0), "input_zero_points must have one"),
    (lambda: _concat([U8, np.zeros((2, 4), np.uint8)], 0, [1.0, 1.0], [0, 0], 1.0, 0),
     "differs from values"),
    (lambda: _concat([U8, np.zeros((2, 3, 1), np.uint8)], 0, [1.0, 1.0], [0, 0], 1.0, 0),
     "rank"),
    (lambda: _concat([U8, U8], 0, [1.0, -1.0], [0, 0], 1.0, 0), "input_1_scale must be"),
    (lambda: _concat([U8, U8], 0, [1.0, 1.0], [0, 300], 1.0, 0), "input_1_zero_point must be"),
    (lambda: _concat([U8, U8], 0, [1.0, 1.0], [0, 0], 0.0, 0), "output_scale must be"),
    (lambda: tfq8.ops.tfq8_add(U8, np.zeros((3, 2), np.uint8), a_scale=1.0, b_scale=1.0,
                               output_scale=1.0), "same shape"),
    (lambda: tfq8.ops.tfq8_add(U8, U8, a_scale=1.0, b_scale=float("nan"), output_scale=1.0),
     "b_scale must be"),
    (lambda: tfq8.ops.tfq8_add(U8, U8, a_scale=1.0, b_scale=1.0, output_scale=1.0,
                               a_zero_point=-1), "a_zero_point must be"),
    (lambda: tfq8.ops.tfq8_mul(U8, np.zeros((2, 1), np.uint8), a_scale=1.0, b_scale=1.0,
                               output_scale=1.0), "same shape"),
    (lambda: tfq8.ops.tfq8_mul(U8, U8, a_scale=1.0, b_scale=1.0, output_scale=0.0),
     "output_scale must be"),
])
def test_bad_inputs(call, message):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        call()
