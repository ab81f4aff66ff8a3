"""Tfq8DepthwiseConv2D: every CPU path bit-exact vs tests/ops/numpy_ref.py, agreement with TF's
float depthwise conv, graph mode with unknown batch, weight-cache invalidation, bad inputs.

Tolerances: the INT8 paths must equal the numpy reference exactly (the contract in
docs/int8_numerics.md is bit-exact). Against TF's f32 op, a uint8 output may differ by at most
one output quantization step (rounding of the requantized value plus f32 summation order), and
f32 output by f32 rounding noise only.
"""
import itertools

import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import AVAILABLE_ISAS, assert_all_equal, run_all_isas

OUT_TYPES = {"uint8": tf.uint8, "float32": tf.float32, "int32": tf.int32}


def make_case(rng, n, h, w, c, m, kh, kw, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
              zp_in=128, per_tensor=False, int_bias=False):
    x = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    wt = rng.integers(-127, 128, size=(kh, kw, c, m), dtype=np.int8)
    oc = c * m
    s_in = np.float32(0.02)
    fs = (np.full([1], 0.004, np.float32) if per_tensor
          else rng.uniform(0.001, 0.01, size=[oc]).astype(np.float32))
    if int_bias:
        bias = rng.integers(-5000, 5000, size=[oc], dtype=np.int32)
    else:
        bias = rng.uniform(-1.0, 1.0, size=[oc]).astype(np.float32)
    acc = ref.depthwise_acc(x, wt, zp_in, strides, dilations, pads)
    real = acc * np.float64(s_in) * np.broadcast_to(fs.astype(np.float64), (oc,))
    amax = float(np.percentile(np.abs(real), 99)) if real.size else 1.0
    s_out = np.float32(max(amax, 1e-3) / 100.0)  # some values saturate, most do not
    return dict(x=x, w=wt, bias=bias, fs=fs, s_in=s_in, zp_in=zp_in, strides=strides,
                dilations=dilations, pads=pads, s_out=s_out, oshape=acc.shape)


def run_op(case, *, activation="NONE", out_type="uint8", summand=None, zp_out=0,
           s_sum=0.05, zp_sum=128, clip=(-1.0, 2.0)):
    # tf.constant keeps an int32 bias int32 (a numpy array would be converted to Tbias's default).
    return tfq8.ops.tfq8_depthwise_conv2d(
        case["x"], case["w"], tf.constant(case["bias"]), case["fs"],
        [] if summand is None else [summand],
        input_scale=float(case["s_in"]), input_zero_point=case["zp_in"],
        strides=list(case["strides"]), dilations=list(case["dilations"]),
        explicit_paddings=list(case["pads"]), summand_scale=s_sum, summand_zero_point=zp_sum,
        activation=activation, clip_min=clip[0], clip_max=clip[1],
        out_type=OUT_TYPES[out_type], output_scale=float(case["s_out"]),
        output_zero_point=zp_out)


def expected(case, *, activation="NONE", out_type="uint8", summand=None, zp_out=0, s_sum=0.05,
             zp_sum=128, clip=(-1.0, 2.0)):
    # The op's attributes are f32: give numpy_ref (which computes constants in double from what
    # it is given) the same f32 values.
    s_sum, clip = np.float32(s_sum), (np.float32(clip[0]), np.float32(clip[1]))
    return ref.depthwise_conv2d(
        case["x"], case["w"], case["bias"], case["fs"], input_scale=case["s_in"],
        input_zero_point=case["zp_in"], strides=case["strides"], dilations=case["dilations"],
        pads=case["pads"], summand=summand, summand_scale=s_sum, summand_zero_point=zp_sum,
        activation=activation, clip_min=clip[0], clip_max=clip[1], out_type=out_type,
        output_scale=case["s_out"], output_zero_point=zp_out)


# (n, h, w, c, m, kh, kw, strides, dilations, pads): channels off the 16/32/64 grid, tiny and odd
# spatial sizes, MobileNet/EfficientNet 3×3 and 5×5, stride 2, dilation, asymmetric padding.
SHAPES = [
    (1, 8, 8, 16, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 7, 9, 17, 1, 3, 3, (2, 2), (1, 1), (0, 1, 0, 1)),
    (1, 5, 6, 40, 1, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2)),
    (3, 9, 7, 96, 1, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1)),
    (1, 6, 6, 3, 1, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2)),
    (1, 1, 1, 130, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 2, 3, 64, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 11, 10, 33, 1, 5, 5, (2, 2), (1, 1), (1, 2, 2, 1)),
    (1, 4, 5, 1, 1, 3, 2, (1, 2), (1, 1), (0, 0, 1, 0)),
    (2, 6, 5, 5, 2, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 7, 7, 3, 4, 5, 5, (2, 1), (1, 2), (3, 1, 4, 0)),
    (1, 12, 12, 160, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"s{i}" for i in range(len(SHAPES))])
def test_shapes_bit_exact(shape):
    rng = np.random.default_rng(hash(shape) % 2**32)
    n, h, w, c, m, kh, kw, st, dl, pads = shape
    for zp_in, per_tensor, int_bias in [(128, False, False), (0, True, True), (37, False, True)]:
        case = make_case(rng, n, h, w, c, m, kh, kw, st, dl, pads, zp_in, per_tensor, int_bias)
        for activation, zp_out in [("NONE", 128), ("RELU6", 0)]:
            got = run_all_isas(lambda: run_op(case, activation=activation, zp_out=zp_out))
            assert_all_equal(got, expected(case, activation=activation, zp_out=zp_out),
                             f"{shape} zp_in={zp_in} {activation}")


@pytest.mark.parametrize("out_type", ["uint8", "float32", "int32"])
@pytest.mark.parametrize("int_bias", [False, True])
def test_epilogue_variants_bit_exact(out_type, int_bias):
    rng = np.random.default_rng(7)
    for c in (40, 96):
        case = make_case(rng, 2, 6, 7, c, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), zp_in=128,
                         int_bias=int_bias)
        acts = ["NONE"] if out_type == "int32" else ["NONE", "RELU", "RELU6", "CLIP"]
        sums = [None] if out_type == "int32" else [None, rng.integers(0, 256, case["oshape"],
                                                                      dtype=np.uint8)]
        for activation, summand, zp_out in itertools.product(acts, sums, [0, 128]):
            kw = dict(activation=activation, out_type=out_type, summand=summand, zp_out=zp_out)
            got = run_all_isas(lambda: run_op(case, **kw))
            assert_all_equal(got, expected(case, **kw),
                             f"c={c} {activation} {out_type} summand={summand is not None}")


def test_rounding_ties_and_saturation():
    # One tap, weight 1, scales chosen so t = acc * 0.5 hits .5 ties exactly, and large accs
    # saturate at both ends.
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(33, axis=3)
    w = np.ones((1, 1, 33, 1), np.int8)
    case = dict(x=x, w=w, bias=np.zeros(33, np.float32), fs=np.full([1], 0.5, np.float32),
                s_in=np.float32(1.0), zp_in=128, strides=(1, 1), dilations=(1, 1),
                pads=(0, 0, 0, 0), s_out=np.float32(1.0), oshape=(1, 1, 256, 33))
    for zp_out in (0, 128, 255):
        got = run_all_isas(lambda: run_op(case, zp_out=zp_out))
        exp = expected(case, zp_out=zp_out)
        assert_all_equal(got, exp, f"ties zp_out={zp_out}")
    # t = (x-128)*0.5: x=129 → 0.5 → rne 0; x=131 → 1.5 → 2.
    assert exp[0, 0, 129, 0] == 255 and exp[0, 0, 131, 0] == 255  # zp_out 255 saturates
    exp0 = expected(case, zp_out=128)
    assert exp0[0, 0, 129, 0] == 128 and exp0[0, 0, 131, 0] == 130


def _tf_float(case):
    xf = ref.dequantize(case["x"], case["s_in"], case["zp_in"])
    fs = np.broadcast_to(case["fs"], (case["w"].shape[2] * case["w"].shape[3],))
    wf = (case["w"].astype(np.float32) *
          fs.reshape(case["w"].shape[2], case["w"].shape[3]).astype(np.float32))
    t, b, l, r = case["pads"]
    y = tf.nn.depthwise_conv2d(xf, wf, strides=[1, *case["strides"], 1],
                               padding=[[0, 0], [t, b], [l, r], [0, 0]],
                               dilations=case["dilations"])
    return y.numpy() + case["bias"].astype(np.float32)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2], SHAPES[3], SHAPES[9]])
def test_agrees_with_tf_float(shape):
    rng = np.random.default_rng(3)
    n, h, w, c, m, kh, kw, st, dl, pads = shape
    case = make_case(rng, n, h, w, c, m, kh, kw, st, dl, pads, 128)
    yf = _tf_float(case)
    got_f = run_op(case, out_type="float32").numpy()
    np.testing.assert_allclose(got_f, yf, rtol=1e-5, atol=1e-5 * np.abs(yf).max())
    s_out = float(case["s_out"])
    got_q = ref.dequantize(run_op(case, zp_out=128).numpy(), s_out, 128)
    clipped = np.clip(yf, -128 * s_out, 127 * s_out)
    assert np.abs(got_q - clipped).max() <= s_out * (1 + 1e-4)
    relu6 = ref.dequantize(run_op(case, activation="RELU6").numpy(), s_out, 0)
    assert np.abs(relu6 - np.clip(yf, 0, min(6.0, 255 * s_out))).max() <= s_out * (1 + 1e-4)


def test_tf_function_unknown_batch_and_threads():
    rng = np.random.default_rng(11)
    case = make_case(rng, 3, 10, 10, 48, 1, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1))

    @tf.function(input_signature=[tf.TensorSpec([None, 10, 10, 48], tf.uint8)])
    def f(x):
        return tfq8.ops.tfq8_depthwise_conv2d(
            x, tf.constant(case["w"]), tf.constant(case["bias"]), tf.constant(case["fs"]), [],
            input_scale=float(case["s_in"]), input_zero_point=128, strides=[2, 2],
            explicit_paddings=[1, 1, 1, 1], activation="RELU6",
            output_scale=float(case["s_out"]))

    exp = expected(case, activation="RELU6")
    for isa_results in [run_all_isas(lambda: f(case["x"]))]:
        assert_all_equal(isa_results, exp, "tf.function")
    for b in (1, 2):
        assert_all_equal(run_all_isas(lambda: f(case["x"][:b])), exp[:b], f"batch {b}")


def test_weight_cache_follows_buffers():
    rng = np.random.default_rng(5)
    a = make_case(rng, 1, 6, 6, 24, 1, 3, 3, pads=(1, 1, 1, 1))
    b = dict(a, w=rng.integers(-127, 128, size=a["w"].shape, dtype=np.int8),
             bias=rng.uniform(-1, 1, size=a["bias"].shape).astype(np.float32))
    for case in (a, b, a, b):
        assert_all_equal(run_all_isas(lambda: run_op(case)), expected(case), "cache")
    # Same op in a graph with a variable filter that changes between calls.
    v = tf.Variable(a["w"])

    @tf.function
    def g(x):
        return tfq8.ops.tfq8_depthwise_conv2d(
            x, v.read_value(), a["bias"], a["fs"], [], input_scale=float(a["s_in"]),
            input_zero_point=128, explicit_paddings=[1, 1, 1, 1], output_scale=float(a["s_out"]))

    assert_all_equal(run_all_isas(lambda: g(a["x"])), expected(a), "variable a")
    v.assign(b["w"])
    assert_all_equal(run_all_isas(lambda: g(a["x"])), expected(dict(a, w=b["w"])), "variable b")


BAD = [
    (dict(w=np.full((3, 3, 8, 1), -128, np.int8)), "must be in -127..127"),
    (dict(w=np.zeros((3, 3, 7, 1), np.int8)), "input channels"),
    (dict(bias=np.zeros(5, np.float32)), "bias must have shape"),
    (dict(fs=np.ones(3, np.float32)), "filter_scale must have shape"),
    (dict(fs=np.zeros(8, np.float32)), "filter_scale values must be finite and > 0"),
    (dict(x=np.zeros((4, 4, 8), np.uint8)), "input must be 4-D"),
    (dict(w=np.zeros((9, 9, 8, 1), np.int8)), "does not fit"),
    (dict(input_zero_point=256), "input_zero_point must be in [0, 255]"),
    (dict(input_scale=0.0), "input_scale must be a finite number > 0"),
    (dict(output_zero_point=-1), "output_zero_point must be in [0, 255]"),
    (dict(out_type=tf.int32, activation="RELU"), "out_type int32"),
    (dict(summand=[np.zeros((1, 4, 4, 8), np.uint8)]), "summand must have the output shape"),
    (dict(activation="CLIP", clip_min=3.0, clip_max=1.0), "clip_min"),
]


@pytest.mark.parametrize("bad,message", BAD, ids=[m for _, m in BAD])
def test_bad_inputs(bad, message):
    args = dict(x=np.zeros((1, 5, 5, 8), np.uint8), w=np.zeros((3, 3, 8, 1), np.int8),
                bias=np.zeros(8, np.float32), fs=np.ones(8, np.float32), summand=[])
    attrs = dict(input_scale=0.1, output_scale=0.1)
    for k, v in bad.items():
        (args if k in args else attrs)[k] = v
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message.replace(
            "[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        tfq8.ops.tfq8_depthwise_conv2d(args["x"], args["w"], args["bias"], args["fs"],
                                       args["summand"], **attrs)


def test_every_isa_available_here():
    # The project machine has AVX512-VNNI and AMX; losing a path silently would hide bugs.
    assert "ref" in AVAILABLE_ISAS and "avx2" in AVAILABLE_ISAS


def test_concurrent_calls_share_one_kernel():
    # One graph kernel instance, many threads: the weight cache must hand out consistent packs.
    import concurrent.futures
    rng = np.random.default_rng(13)
    case = make_case(rng, 2, 9, 9, 72, 1, 3, 3, pads=(1, 1, 1, 1))
    w = tf.constant(case["w"])

    @tf.function
    def f(x):
        return tfq8.ops.tfq8_depthwise_conv2d(
            x, w, tf.constant(case["bias"]), tf.constant(case["fs"]), [],
            input_scale=float(case["s_in"]), input_zero_point=128,
            explicit_paddings=[1, 1, 1, 1], output_scale=float(case["s_out"]))

    exp = expected(case)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: f(case["x"]).numpy(), range(16)))
    for out in outs:
        np.testing.assert_array_equal(out, exp)


@pytest.mark.parametrize("activation", ["NONE", "RELU6", "CLIP"])
@pytest.mark.parametrize("zp_out", [0, 100, 255])
def test_epilogue_extremes(activation, zp_out):
    # 3×3 with C a multiple of 16 (the unrolled AVX2 path, a 16-channel last block included):
    # |t| past int32, ±inf, a CLIP range that misses the output range (lo > hi).
    rng = np.random.default_rng(23 + zp_out)
    for c, st in ((16, (1, 1)), (48, (2, 2)), (96, (1, 1))):
        case = make_case(rng, 1, 7, 6, c, 1, 3, 3, st, (1, 1), (1, 1, 1, 1), zp_in=0)
        bias = case["bias"].copy()
        bias[0::4] = 1e30
        bias[1::4] = -1e30
        bias[2::7] = 3e38
        case["bias"] = bias
        clip = (-0.5, 1.5) if zp_out != 255 else (0.5, 1.5)
        kw = dict(activation=activation, zp_out=zp_out, clip=clip)
        got = run_all_isas(lambda: run_op(case, **kw))
        assert_all_equal(got, expected(case, **kw), f"c={c} {activation} zp_out={zp_out}")
