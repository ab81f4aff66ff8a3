"""Tfq8Quantize / Tfq8Dequantize / Tfq8Requantize / Tfq8Lookup / Tfq8ChannelMul: every CPU path bit-exact vs numpy_ref over
lengths that hit SIMD bodies, tails and several parallel chunks; NaN / ±Inf / saturation; rounding
ties (half to even); bad attributes. Exact equality everywhere: the contract is bit-exact."""
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import AVAILABLE_ISAS, assert_all_equal, forced_isa, run_all_isas

F32 = np.float32
LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 1000, 40000]
QPARAMS = [(0.1, 128), (0.02, 0), (1.0, 255), (0.0037, 17), (250.0, 1)]


@pytest.mark.parametrize("n", LENGTHS)
def test_quantize_bit_exact(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10).astype(F32)
    for scale, zp in QPARAMS:
        got = run_all_isas(lambda: tfq8.ops.tfq8_quantize(x, scale=scale, zero_point=zp))
        assert_all_equal(got, ref.quantize(x, F32(scale), zp), f"n={n} {scale} {zp}")


def test_quantize_nan_inf_saturation_and_ties():
    special = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 3.4e38, -3.4e38,
                        1e-45, -1e-45], F32)
    ties = np.arange(-300, 301, dtype=F32) + F32(0.5)  # scale 1: every value is a tie
    x = np.concatenate([special, ties, special])
    for zp in (0, 128, 255):
        got = run_all_isas(lambda: tfq8.ops.tfq8_quantize(x, scale=1.0, zero_point=zp,
                                                          check_nan=False))
        exp = ref.quantize(x, F32(1.0), zp)
        assert_all_equal(got, exp, f"zp={zp}")
    exp = ref.quantize(x, F32(1.0), 128)
    assert exp[0] == 0 and exp[1] == 255 and exp[2] == 0  # NaN → 0, ±Inf saturate
    t = exp[len(special):len(special) + len(ties)]
    # 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → 0, -1.5 → -2 (plus zp 128).
    assert t[300] == 128 and t[301] == 130 and t[302] == 130 and t[299] == 128 and t[298] == 126
    # scale 0.1: the doc's worked example, 0.25 → 2.5 → 2 → 130; -20 saturates to 0.
    assert ref.quantize(np.array([0.25, -20], F32), F32(0.1), 128).tolist() == [130, 0]
    got = run_all_isas(lambda: tfq8.ops.tfq8_quantize(np.array([0.25, -20], F32), scale=0.1,
                                                      zero_point=128))
    assert_all_equal(got, np.array([130, 0], np.uint8), "doc example")


def test_quantize_refuses_nan_by_default_on_every_isa():
    """A NaN anywhere (SIMD body or tail, any chunk) fails the op with its name; Inf saturates
    and is fine. 70001 elements: several parallel chunks."""
    x = np.linspace(-5, 5, 70001).astype(F32)
    x[[0, -1]] = [np.inf, -np.inf]
    run_all_isas(lambda: tfq8.ops.tfq8_quantize(x, scale=0.1, zero_point=128))
    for at in (3, 40000, 70000):
        bad = x.copy()
        bad[at] = np.nan
        for isa in AVAILABLE_ISAS:
            with forced_isa(isa), pytest.raises(tf.errors.InvalidArgumentError,
                                             match=r"Tfq8Quantize.*contains NaN.*check_nan"):
                tfq8.ops.tfq8_quantize(bad, scale=0.1, zero_point=128)


@pytest.mark.parametrize("shape", [(0, 3), (1, 1, 3), (5, 7, 3), (2, 33, 33, 3), (4, 1),
                                   (3, 8), (2, 17), (6, 40), (1, 9, 1001), (70001, 1)])
def test_quantize_channels_bit_exact(shape):
    """Every CPU path vs numpy_ref over channel counts whose pattern period (lcm(C, 16)) is
    short, equal to C, or long, shapes that end inside a vector, and several parallel chunks
    (each starting at another phase of the pattern); one channel entry broadcast too."""
    rng = np.random.default_rng(sum(shape))
    c = shape[-1]
    x = (rng.standard_normal(shape) * 60 + 100).astype(F32)
    mul = rng.uniform(-0.05, 0.05, c).astype(F32)
    add = rng.uniform(-2, 2, c).astype(F32)
    for scale, zp in [(0.02, 128), (0.013, 0), (0.5, 255)]:
        got = run_all_isas(lambda: tfq8.ops.tfq8_quantize_channels(
            x, scale=scale, zero_point=zp, channel_mul=mul.tolist(), channel_add=add.tolist()))
        assert_all_equal(got, ref.quantize_channels(x, scale, zp, mul, add), f"{shape} {zp}")
    got = run_all_isas(lambda: tfq8.ops.tfq8_quantize_channels(
        x, scale=0.02, zero_point=128, channel_mul=[0.0078125], channel_add=[-1.0]))
    assert_all_equal(got, ref.quantize_channels(x, 0.02, 128, [0.0078125], [-1.0]), "broadcast")


def test_quantize_channels_equals_tf_mul_add_then_quantize():
    """A Mul then an Add in TF, then Tfq8Quantize: the same bytes as the fused op when
    channel_mul / scale and channel_add / scale are exact in f32 (power-of-two scale)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (2, 9, 9, 3)).astype(F32)
    mul = np.array([1 / 58.4, 1 / 57.1, 1 / 57.4], F32)
    add = np.array([-2.1, -2.0, -1.8], F32)
    want = tfq8.ops.tfq8_quantize(x * mul + add, scale=2.0 ** -5, zero_point=128)
    got = tfq8.ops.tfq8_quantize_channels(x, scale=2.0 ** -5, zero_point=128,
                                          channel_mul=mul.tolist(), channel_add=add.tolist())
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_quantize_channels_errors_name_the_problem():
    x = np.ones((2, 4), F32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="last dimension must be 3"):
        tfq8.ops.tfq8_quantize_channels(x, scale=0.1, channel_mul=[1.0] * 3,
                                        channel_add=[0.0] * 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same length"):
        tfq8.ops.tfq8_quantize_channels(x, scale=0.1, channel_mul=[1.0] * 4,
                                        channel_add=[0.0] * 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a finite f32"):
        tfq8.ops.tfq8_quantize_channels(x, scale=1e-30, channel_mul=[1e30] * 4,
                                        channel_add=[0.0] * 4)
    x[1, 2] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="contains NaN"):
        tfq8.ops.tfq8_quantize_channels(x, scale=0.1, channel_mul=[1.0] * 4,
                                        channel_add=[0.0] * 4)


@pytest.mark.parametrize("n", LENGTHS)
def test_dequantize_bit_exact(n):
    rng = np.random.default_rng(n + 1)
    q = rng.integers(0, 256, n, dtype=np.uint8)
    for scale, zp in QPARAMS:
        got = run_all_isas(lambda: tfq8.ops.tfq8_dequantize(q, scale=scale, zero_point=zp))
        assert_all_equal(got, ref.dequantize(q, F32(scale), zp), f"n={n}")
    a = rng.integers(-2**31, 2**31 - 1, n, dtype=np.int64).astype(np.int32)
    got = run_all_isas(lambda: tfq8.ops.tfq8_dequantize(a, scale=0.001))
    assert_all_equal(got, ref.dequantize(a, F32(0.001), 0), "int32")


@pytest.mark.parametrize("n", LENGTHS)
def test_requantize_bit_exact(n):
    rng = np.random.default_rng(n + 2)
    q = rng.integers(0, 256, n, dtype=np.uint8)
    for (si, zi), (so, zo) in [(QPARAMS[0], QPARAMS[1]), (QPARAMS[1], QPARAMS[0]),
                               (QPARAMS[3], QPARAMS[4]), (QPARAMS[2], QPARAMS[2]),
                               ((0.5, 128), (1.0, 128))]:
        got = run_all_isas(lambda: tfq8.ops.tfq8_requantize(
            q, input_scale=si, input_zero_point=zi, output_scale=so, output_zero_point=zo))
        assert_all_equal(got, ref.requantize(q, F32(si), zi, F32(so), zo), f"n={n} {si}->{so}")


def test_requantize_ties_and_identity():
    q = np.arange(256, dtype=np.uint8)
    exp = ref.requantize(q, F32(0.5), 128, F32(1.0), 128)
    assert exp[129] == 128 and exp[131] == 130 and exp[127] == 128  # 0.5→0, 1.5→2, -0.5→0
    assert_all_equal(run_all_isas(lambda: tfq8.ops.tfq8_requantize(
        q, input_scale=0.5, input_zero_point=128, output_scale=1.0, output_zero_point=128)),
        exp, "ties")
    assert_all_equal(run_all_isas(lambda: tfq8.ops.tfq8_requantize(
        q, input_scale=0.3, input_zero_point=7, output_scale=0.3, output_zero_point=7)),
        q, "identity")


@pytest.mark.parametrize("n", LENGTHS)
def test_lookup_bit_exact(n):
    rng = np.random.default_rng(n + 7)
    q = rng.integers(0, 256, n, dtype=np.uint8)
    for table in (rng.integers(0, 256, 256, dtype=np.uint8), np.arange(256, dtype=np.uint8)[::-1]):
        got = run_all_isas(lambda: tfq8.ops.tfq8_lookup(q, table))
        assert_all_equal(got, ref.lookup(q, table), f"n={n}")


def test_lookup_keeps_the_shape_and_refuses_a_bad_table():
    q = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    table = (255 - np.arange(256)).astype(np.uint8)
    got = tfq8.ops.tfq8_lookup(q, table).numpy()
    assert got.shape == q.shape
    np.testing.assert_array_equal(got, 255 - q)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="256"):
        tfq8.ops.tfq8_lookup(q, np.zeros(255, np.uint8))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8)] * 2)
    def f(x, t):  # unknown table shape at graph build: the kernel must check it
        return tfq8.ops.tfq8_lookup(x, t)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Tfq8Lookup.*256 entries"):
        f(q, np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (2, 5, 7, 8), (3, 4, 4, 17), (2, 9, 9, 96),
                                   (1, 2, 3, 4, 40), (2, 0, 3, 5), (4, 150, 130)])
def test_channel_mul_bit_exact(shape):
    """Per-sample and shared gates, channel counts that hit SIMD bodies and tails, rows that
    span several parallel tasks (2·9·9·96 … 4·150·130 elements)."""
    rng = np.random.default_rng(sum(shape))
    q = rng.integers(0, 256, shape, dtype=np.uint8)
    gshape = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
    for per_sample in (True, False):
        gate = rng.uniform(-1.5, 1.5, gshape if per_sample else (1,) + gshape[1:]).astype(F32)
        for si, zi, so, zo in ((0.02, 0, 0.015, 0), (0.05, 128, 0.03, 128), (0.1, 37, 0.007, 201)):
            got = run_all_isas(lambda: tfq8.ops.tfq8_channel_mul(
                q, gate, input_scale=si, input_zero_point=zi, output_scale=so,
                output_zero_point=zo))
            exp = ref.channel_mul(q, gate, si, zi, so, zo)
            assert_all_equal(got, exp, f"{shape} per_sample={per_sample} {si} {zi} {so} {zo}")
            # and it is what it claims: quantize(dequantize(q) · gate) within one step
            # (the reference's single f32 multiply vs float64 here)
            real = (q.astype(np.float64) - zi) * si * gate
            exact = np.clip(np.rint(real / so) + zo, 0, 255)
            assert np.abs(exp.astype(np.int32) - exact).max(initial=0) <= 1


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (2, 5, 7, 8), (3, 4, 4, 17), (2, 9, 9, 96),
                                   (4, 150, 130)])
def test_prelu_bit_exact(shape):
    """Channel counts that hit the SIMD body and the tail, rows over several tasks; slopes of
    both signs, zero, and a bias (a ReLU followed by a per-channel affine)."""
    rng = np.random.default_rng(sum(shape) + 7)
    q = rng.integers(0, 256, shape, dtype=np.uint8)
    c = shape[-1]
    slopes = np.stack([rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c)]).astype(F32)
    slopes[1, :1] = 0.0
    bias = rng.uniform(-0.3, 0.3, c).astype(F32)
    for si, zi, so, zo in ((0.02, 128, 0.015, 128), (0.05, 0, 0.03, 0), (0.1, 37, 0.007, 201)):
        got = run_all_isas(lambda: tfq8.ops.tfq8_prelu(
            q, slopes, bias, input_scale=si, input_zero_point=zi, output_scale=so,
            output_zero_point=zo))
        exp = ref.prelu(q, slopes, bias, si, zi, so, zo)
        assert_all_equal(got, exp, f"{shape} {si} {zi} {so} {zo}")
        # and it is what it claims, within one output step (f32 vs float64 here)
        x = (q.astype(np.float64) - zi) * si
        real = np.where(x >= 0, x * slopes[0], x * slopes[1]) + bias
        exact = np.clip(np.rint(real / so) + zo, 0, 255)
        assert np.abs(exp.astype(np.int32) - exact).max(initial=0) <= 1


def test_prelu_slopes_over_several_trailing_axes():
    """Keras' default PReLU has one slope per [H, W, C] position: P = H·W·C."""
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (3, 5, 6, 7), dtype=np.uint8)
    slopes = np.stack([np.ones(210), rng.uniform(0, 0.5, 210)]).astype(F32)
    bias = np.zeros(210, F32)
    got = run_all_isas(lambda: tfq8.ops.tfq8_prelu(q, slopes, bias, input_scale=0.05,
                                                  input_zero_point=128, output_scale=0.04,
                                                  output_zero_point=100))
    exp = ref.prelu(q.reshape(3, 210), slopes, bias, 0.05, 128, 0.04, 100).reshape(q.shape)
    assert_all_equal(got, exp, "per position")


def test_prelu_bad_shapes_name_the_node():
    q = np.zeros((2, 3, 20), np.uint8)
    ok_s, ok_b = np.ones((2, 20), F32), np.zeros(20, F32)
    for s_, b_ in ((np.ones((2, 19), F32), ok_b), (np.ones((3, 20), F32), ok_b),
                   (ok_s, np.zeros(19, F32))):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
            tfq8.ops.tfq8_prelu(q, s_, b_, input_scale=0.1, output_scale=0.1)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8), tf.TensorSpec(None, tf.float32),
                                  tf.TensorSpec(None, tf.float32)])
    def f(x, s_, b_):  # unknown shapes at graph build: the kernel checks and names the node
        return tfq8.ops.tfq8_prelu(x, s_, b_, input_scale=0.1, output_scale=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Tfq8Prelu.*slopes must have"):
        f(q, np.ones((2, 7), F32), ok_b)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="output_scale must"):
        tfq8.ops.tfq8_prelu(q, ok_s, ok_b, input_scale=0.1, output_scale=0.0)


def test_channel_mul_special_gates_and_bad_shapes():
    q = np.arange(2 * 3 * 20, dtype=np.uint8).reshape(2, 3, 20) * 2
    gate = np.ones((2, 1, 20), F32)
    gate[0, 0, :5] = [np.nan, np.inf, -np.inf, 1e30, 0.0]
    got = run_all_isas(lambda: tfq8.ops.tfq8_channel_mul(
        q, gate, input_scale=0.1, input_zero_point=10, output_scale=0.1, output_zero_point=100))
    exp = ref.channel_mul(q, gate, 0.1, 10, 0.1, 100)
    assert_all_equal(got, exp, "special gates")
    # NaN → lowest code; +inf saturates up (q > zp) ... ; gate 1 with equal qparams re-centres
    assert exp[0, 0, 0] == 0 and exp[0, 1, 0] == 0
    assert exp[0, 1, 1] == 255 and exp[0, 1, 2] == 0 and exp[0, 1, 4] == 100
    np.testing.assert_array_equal(exp[1], np.clip(q[1].astype(int) - 10 + 100, 0, 255))
    for bad in (np.ones((2, 2, 20), F32), np.ones((2, 1, 19), F32), np.ones((3, 1, 20), F32)):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="gate"):
            tfq8.ops.tfq8_channel_mul(q, bad, input_scale=0.1, output_scale=0.1)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8), tf.TensorSpec(None, tf.float32)])
    def f(x, g):  # unknown shapes at graph build: the kernel must check and name the node
        return tfq8.ops.tfq8_channel_mul(x, g, input_scale=0.1, output_scale=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Tfq8ChannelMul.*gate must have"):
        f(q, np.ones((2, 20), F32))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="output_scale must"):
        tfq8.ops.tfq8_channel_mul(q, gate, input_scale=0.1, output_scale=0.0)


def test_graph_mode_and_round_trip():
    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32)])
    def f(x):
        q = tfq8.ops.tfq8_quantize(x, scale=0.05, zero_point=128)
        r = tfq8.ops.tfq8_requantize(q, input_scale=0.05, input_zero_point=128,
                                     output_scale=0.1, output_zero_point=128)
        return q, tfq8.ops.tfq8_dequantize(r, scale=0.1, zero_point=128)

    x = np.random.default_rng(0).uniform(-6, 6, (4, 5)).astype(F32)
    q, y = f(x)
    np.testing.assert_array_equal(q.numpy(), ref.quantize(x, F32(0.05), 128))
    # Two roundings of at most half a step each (0.025 then 0.05) → within one output step.
    assert np.abs(y.numpy() - x).max() <= 0.1 * 0.75 + 1e-6
    assert f(x[:1])[0].shape == (1, 5)


@pytest.mark.parametrize("call,message", [
    (lambda: tfq8.ops.tfq8_quantize([1.0], scale=0.0), "scale must be a finite number > 0"),
    (lambda: tfq8.ops.tfq8_quantize([1.0], scale=-1.0), "scale must be a finite number > 0"),
    (lambda: tfq8.ops.tfq8_quantize([1.0], scale=float("nan")), "scale must be"),
    (lambda: tfq8.ops.tfq8_quantize([1.0], scale=float("inf")), "scale must be"),
    (lambda: tfq8.ops.tfq8_quantize([1.0], scale=1.0, zero_point=256), "zero_point must be"),
    (lambda: tfq8.ops.tfq8_dequantize(np.zeros(2, np.uint8), scale=1.0, zero_point=-1),
     "zero_point must be"),
    (lambda: tfq8.ops.tfq8_dequantize(np.zeros(2, np.int32), scale=1.0, zero_point=3),
     "int32 tensor needs zero_point 0"),
    (lambda: tfq8.ops.tfq8_requantize(np.zeros(2, np.uint8), input_scale=0.0, output_scale=1.0),
     "input_scale must be"),
    (lambda: tfq8.ops.tfq8_requantize(np.zeros(2, np.uint8), input_scale=1.0, output_scale=1.0,
                                      output_zero_point=300), "output_zero_point must be"),
])
def test_bad_attrs(call, message):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        call()


def test_forcing_an_unknown_isa_is_an_error():
    from tests.ops.isa_util import forced_isa
    with forced_isa("sse9"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="not a known path"):
            tfq8.ops.tfq8_quantize([1.0], scale=1.0)
