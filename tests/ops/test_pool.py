"""Tfq8MaxPool / Tfq8AvgPool / Tfq8Mean: every CPU path bit-exact vs numpy_ref (integer
arithmetic: exact equality), agreement with TF's float pooling, graph mode, bad inputs.

Against TF's f32 ops: max pool is exact (a monotonic map of the bytes); average pool and mean
differ by at most half a quantization step plus f32 noise (round half up of the exact mean).
"""
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import assert_all_equal, run_all_isas

# (n, h, w, c, ksize, strides): channels off the 16/32/64 grid, windows larger than the input
# (SAME), strides larger than the window.
CASES = [
    (1, 7, 7, 16, (3, 3), (2, 2)),
    (2, 8, 9, 17, (2, 2), (2, 2)),
    (3, 5, 6, 40, (3, 3), (1, 1)),
    (1, 1, 1, 3, (3, 3), (1, 1)),
    (1, 4, 3, 96, (5, 5), (3, 3)),
    (2, 9, 9, 130, (3, 2), (1, 2)),
    (1, 6, 6, 65, (1, 1), (2, 2)),
    (1, 14, 14, 33, (7, 7), (7, 7)),
]


@pytest.mark.parametrize("case", CASES, ids=[f"c{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_pool_bit_exact(case, padding):
    n, h, w, c, k, s = case
    x = np.random.default_rng(hash(case) % 2**32).integers(0, 256, (n, h, w, c), dtype=np.uint8)
    if padding == "VALID" and (h < k[0] or w < k[1]):
        # No output position exists: a named error, as TF's own pools give.
        for op in (tfq8.ops.tfq8_max_pool, tfq8.ops.tfq8_avg_pool):
            with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="larger than the input"):
                op(x, ksize=list(k), strides=list(s), padding=padding)
        return
    for op, fn in [(tfq8.ops.tfq8_max_pool, ref.max_pool), (tfq8.ops.tfq8_avg_pool, ref.avg_pool)]:
        got = run_all_isas(lambda: op(x, ksize=list(k), strides=list(s), padding=padding))
        assert_all_equal(got, fn(x, k, s, padding), f"{op.__name__} {case} {padding}")


@pytest.mark.parametrize("shape", [(1, 7, 7, 1280), (2, 1, 1, 17), (3, 5, 3, 40), (1, 2, 9, 3)])
@pytest.mark.parametrize("keep_dims", [False, True])
def test_mean_bit_exact(shape, keep_dims):
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = run_all_isas(lambda: tfq8.ops.tfq8_mean(x, keep_dims=keep_dims))
    assert_all_equal(got, ref.mean(x, keep_dims), f"mean {shape}")


def test_mean_large_window_and_ties():
    # 300×300 = 90 000 elements: above the f32-division bound, the SIMD paths fall back to
    # integer division. All-255 input: the largest sums.
    x = np.full((1, 300, 300, 20), 255, np.uint8)
    x[0, 0, 0, :10] = 0
    assert_all_equal(run_all_isas(lambda: tfq8.ops.tfq8_mean(x)), ref.mean(x), "large")
    # Ties: n = 2, sums odd → round half up.
    y = np.array([[[[1, 3, 254]], [[2, 4, 255]]]], np.uint8)  # (1, 2, 1, 3)
    exp = ref.mean(y)
    assert exp.tolist() == [[2, 4, 255]]
    assert_all_equal(run_all_isas(lambda: tfq8.ops.tfq8_mean(y)), exp, "ties")
    assert_all_equal(run_all_isas(lambda: tfq8.ops.tfq8_avg_pool(
        y, ksize=[2, 1], strides=[1, 1], padding="VALID")), exp.reshape(1, 1, 1, 3), "ties")


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_agrees_with_tf_float(padding):
    scale, zp = 0.05, 128
    x = np.random.default_rng(2).integers(0, 256, (2, 9, 10, 24), dtype=np.uint8)
    xf = ref.dequantize(x, scale, zp)
    got = ref.dequantize(tfq8.ops.tfq8_max_pool(x, ksize=[3, 3], strides=[2, 2],
                                                padding=padding).numpy(), scale, zp)
    np.testing.assert_array_equal(got, tf.nn.max_pool2d(xf, 3, 2, padding).numpy())
    got = ref.dequantize(tfq8.ops.tfq8_avg_pool(x, ksize=[3, 3], strides=[2, 2],
                                                padding=padding).numpy(), scale, zp)
    assert np.abs(got - tf.nn.avg_pool2d(xf, 3, 2, padding).numpy()).max() <= scale * 0.5001
    got = ref.dequantize(tfq8.ops.tfq8_mean(x).numpy(), scale, zp)
    assert np.abs(got - tf.reduce_mean(xf, axis=[1, 2]).numpy()).max() <= scale * 0.5001


def test_tf_function_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 20], tf.uint8)])
    def f(x):
        return (tfq8.ops.tfq8_max_pool(x, ksize=[3, 3], strides=[2, 2], padding="SAME"),
                tfq8.ops.tfq8_avg_pool(x, ksize=[2, 2], strides=[2, 2], padding="VALID"),
                tfq8.ops.tfq8_mean(x, keep_dims=True))

    x = np.random.default_rng(4).integers(0, 256, (3, 8, 8, 20), dtype=np.uint8)
    for b in (1, 3):
        mx, av, mn = f(x[:b])
        np.testing.assert_array_equal(mx.numpy(), ref.max_pool(x[:b], (3, 3), (2, 2), "SAME"))
        np.testing.assert_array_equal(av.numpy(), ref.avg_pool(x[:b], (2, 2), (2, 2), "VALID"))
        np.testing.assert_array_equal(mn.numpy(), ref.mean(x[:b], True))


def test_empty_batch():
    x = np.zeros((0, 4, 4, 8), np.uint8)
    assert tfq8.ops.tfq8_max_pool(x, ksize=[2, 2], strides=[2, 2], padding="VALID").shape == (
        0, 2, 2, 8)
    assert tfq8.ops.tfq8_mean(x).shape == (0, 8)


@pytest.mark.parametrize("call,message", [
    (lambda: tfq8.ops.tfq8_max_pool(np.zeros((4, 4, 8), np.uint8), ksize=[2, 2], strides=[1, 1],
                                    padding="VALID"), "must be 4-D"),
    (lambda: tfq8.ops.tfq8_avg_pool(np.zeros((1, 2, 2, 8), np.uint8), ksize=[3, 3],
                                    strides=[1, 1], padding="VALID"), "larger than the input"),
    (lambda: tfq8.ops.tfq8_max_pool(np.zeros((1, 4, 4, 8), np.uint8), ksize=[2, 2, 2],
                                    strides=[1, 1], padding="VALID"), "ksize must be"),
    (lambda: tfq8.ops.tfq8_avg_pool(np.zeros((1, 4, 4, 8), np.uint8), ksize=[2, 2],
                                    strides=[0, 1], padding="VALID"), "strides must be"),
    (lambda: tfq8.ops.tfq8_mean(np.zeros((1, 0, 4, 8), np.uint8)), "non-empty spatial"),
    (lambda: tfq8.ops.tfq8_mean(np.zeros((4, 8), np.uint8)), "must be 4-D"),
])
def test_bad_inputs(call, message):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        call()
