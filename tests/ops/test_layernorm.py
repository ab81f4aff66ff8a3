"""Tfq8LayerNorm: every CPU path bit-exact vs numpy_ref.layer_norm (channel counts hitting the
32-byte sum loop, the 8-wide output loop and their tails; rows over several parallel tasks), the
value it claims (float64 layer norm of the dequantized input) within one output step, constant
rows, the 65536-channel bound, and errors that name the problem."""
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import assert_all_equal, run_all_isas

F32 = np.float32
QP = [(0.05, 0, 0.02, 128, 1e-6), (0.013, 37, 0.05, 100, 1e-3), (0.2, 255, 0.011, 3, 0.0)]


def _ln(q, gamma, beta, si, zi, so, zo, eps):
    return tfq8.ops.tfq8_layer_norm(q, gamma, beta, input_scale=si, input_zero_point=zi,
                                    output_scale=so, output_zero_point=zo, epsilon=eps)


def _float_ln(q, gamma, beta, si, zi, eps):
    x = (q.astype(np.float64) - zi) * np.float64(F32(si))
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + np.float64(F32(eps))) * gamma + beta


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 8), (4, 31), (2, 3, 3, 32), (5, 33),
                                   (2, 7, 7, 96), (3, 100), (2, 4, 768), (1, 9, 1000),
                                   (2, 40, 40, 24)])
def test_layer_norm_bit_exact(shape):
    rng = np.random.default_rng(sum(shape))
    c = shape[-1]
    # codes around a row-dependent centre, as a real activation's are; some rows saturated
    centre = rng.integers(20, 236, shape[:-1] + (1,))
    q = np.clip(centre + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
    gamma = rng.uniform(-2, 2, c).astype(F32)
    beta = rng.uniform(-1, 1, c).astype(F32)
    for si, zi, so, zo, eps in QP:
        got = run_all_isas(lambda: _ln(q, gamma, beta, si, zi, so, zo, eps))
        exp = ref.layer_norm(q, gamma, beta, si, so, zo, eps)
        assert_all_equal(got, exp, f"{shape} {si} {zi} {so} {zo} {eps}")
        # and it is what it claims: within one output step of the float64 layer norm
        # (A is rounded to f32 and three f32 operations follow: a few ulps, never a full step)
        want = np.clip(np.rint(_float_ln(q, gamma, beta, si, zi, eps) / np.float64(F32(so)))
                       + zo, 0, 255)
        if c > 1:
            assert np.abs(exp.astype(np.int32) - want).max(initial=0) <= 1


def test_constant_rows_large_channels_and_zero_point_independence():
    c = 65536  # the bound: Σq² of 255s still exact, C·q − S1 exact in f32
    rng = np.random.default_rng(1)
    q = np.stack([rng.integers(0, 256, c), np.full(c, 255), np.full(c, 7)]).astype(np.uint8)
    gamma = rng.uniform(0.5, 1.5, c).astype(F32)
    beta = rng.uniform(-0.5, 0.5, c).astype(F32)
    got = run_all_isas(lambda: _ln(q, gamma, beta, 0.03, 0, 0.01, 128, 1e-5))
    exp = ref.layer_norm(q, gamma, beta, 0.03, 0.01, 128, 1e-5)
    assert_all_equal(got, exp, "65536 channels")
    # a constant row normalizes to 0: the output is beta
    np.testing.assert_array_equal(exp[1], np.clip(np.rint(beta / F32(0.01)) + 128, 0, 255))
    # the input zero point cancels in x − mean(x)
    for zi in (0, 200):
        assert_all_equal(run_all_isas(lambda: _ln(q, gamma, beta, 0.03, zi, 0.01, 128, 1e-5)),
                         exp, f"input_zero_point {zi}")
    # ε = 0 on a constant row: 0 · inf = NaN → the lowest code, as documented
    z = run_all_isas(lambda: _ln(q[1:], gamma, beta, 0.03, 0, 0.01, 128, 0.0))
    assert_all_equal(z, ref.layer_norm(q[1:], gamma, beta, 0.03, 0.01, 128, 0.0), "eps 0")
    assert (z["ref"] == 0).all()


def test_bad_arguments_name_the_problem():
    q = np.zeros((2, 8), np.uint8)
    g = np.ones(8, F32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="gamma and beta"):
        _ln(q, np.ones(7, F32), g, 0.1, 0, 0.1, 0, 1e-3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="epsilon must"):
        _ln(q, g, g, 0.1, 0, 0.1, 0, -1.0)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="output_scale must"):
        _ln(q, g, g, 0.1, 0, 0.0, 0, 1e-3)
    big = np.zeros((1, 65537), np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="65537 values.*keep_fp32"):
        _ln(big, np.ones(65537, F32), np.ones(65537, F32), 0.1, 0, 0.1, 0, 1e-3)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8), tf.TensorSpec(None, tf.float32)])
    def f(x, v):  # unknown shapes at graph build: the kernel checks and names the node
        return _ln(x, v, v, 0.1, 0, 0.1, 0, 1e-3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Tfq8LayerNorm.*gamma and beta"):
        f(q, np.ones(9, F32))
