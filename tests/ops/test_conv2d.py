"""Tfq8Conv2D: every CPU path bit-exact vs tests/ops/numpy_ref.py over a shape/attribute sweep,
agreement with TF's float conv, tf.function with unknown batch, SavedModel in a fresh process,
concurrent calls, weight-cache invalidation, and error messages for bad inputs.

Tolerances: the INT8 paths must equal the numpy reference exactly (docs/int8_numerics.md is a
bit-exact contract). Against TF's f32 conv on the dequantized tensors a uint8 output may differ
by at most one output quantization step (f32 summation order moves a value across a rounding
boundary at most once).
"""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tfq8.calibration.qparams import u8_pair_kernel_eligible
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import (
    AVAILABLE_ISAS,
    CONV_PATHS,
    assert_all_equal,
    forced_isa,
    run_all_isas,
)

OUT_TYPES = {"uint8": tf.uint8, "float32": tf.float32, "int32": tf.int32}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def u8_safe(wt):
    """The weights with every same-sign pair of input channels (2j, 2j+1) cut to
    |w0| + |w1| ≤ 128 (the second one shrinks): what QuantConfig(u8_safe_pairs=True) produces,
    and what lets the avx2 path take its vpmaddubsw kernel."""
    w = wt.astype(np.int32).copy()
    a, b = w[:, :, 0:w.shape[2] // 2 * 2:2], w[:, :, 1:w.shape[2] // 2 * 2:2]
    over = (a * b > 0) & (np.abs(a) + np.abs(b) > 128)
    b[over] = np.sign(b[over]) * (128 - np.abs(a[over]))
    w[:, :, 1:w.shape[2] // 2 * 2:2] = b
    return w.astype(np.int8)


def make_case(rng, n, h, w, ic, oc, kh, kw, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
              zp_in=128, per_tensor=False, int_bias=False, safe_pairs=False):
    x = rng.integers(0, 256, size=(n, h, w, ic), dtype=np.uint8)
    wt = rng.integers(-127, 128, size=(kh, kw, ic, oc), dtype=np.int8)
    if safe_pairs:
        wt = u8_safe(wt)
    s_in = np.float32(0.02)
    fs = (np.full([1], 0.004, np.float32) if per_tensor
          else rng.uniform(0.001, 0.01, size=[oc]).astype(np.float32))
    bias = (rng.integers(-5000, 5000, size=[oc], dtype=np.int32) if int_bias
            else rng.uniform(-1.0, 1.0, size=[oc]).astype(np.float32))
    acc = ref.conv2d_acc(x, wt, zp_in, strides, dilations, pads)
    real = acc * np.float64(s_in) * np.broadcast_to(fs.astype(np.float64), (oc,))
    amax = float(np.percentile(np.abs(real), 99)) if real.size else 1.0
    s_out = np.float32(max(amax, 1e-3) / 100.0)  # some values saturate, most do not
    return dict(x=x, w=wt, bias=bias, fs=fs, s_in=s_in, zp_in=zp_in, strides=strides,
                dilations=dilations, pads=pads, s_out=s_out, oshape=acc.shape)


def op_kwargs(case, activation, out_type, zp_out, s_sum, zp_sum, clip):
    return dict(input_scale=float(case["s_in"]), input_zero_point=case["zp_in"],
                strides=list(case["strides"]), dilations=list(case["dilations"]),
                explicit_paddings=list(case["pads"]), summand_scale=s_sum,
                summand_zero_point=zp_sum, activation=activation, clip_min=clip[0],
                clip_max=clip[1], out_type=OUT_TYPES[out_type],
                output_scale=float(case["s_out"]), output_zero_point=zp_out)


def run_op(case, *, activation="NONE", out_type="uint8", summand=None, zp_out=0, s_sum=0.05,
           zp_sum=128, clip=(-1.0, 2.0)):
    # tf.constant keeps an int32 bias int32.
    return tfq8.ops.tfq8_conv2d(
        case["x"], case["w"], tf.constant(case["bias"]), case["fs"],
        [] if summand is None else [summand],
        **op_kwargs(case, activation, out_type, zp_out, s_sum, zp_sum, clip)).numpy()


def expected(case, *, activation="NONE", out_type="uint8", summand=None, zp_out=0, s_sum=0.05,
             zp_sum=128, clip=(-1.0, 2.0)):
    return ref.conv2d(case["x"], case["w"], case["bias"], case["fs"],
                      input_scale=case["s_in"], input_zero_point=case["zp_in"],
                      strides=case["strides"], dilations=case["dilations"], pads=case["pads"],
                      summand=summand, summand_scale=s_sum, summand_zero_point=zp_sum,
                      activation=activation, clip_min=clip[0], clip_max=clip[1],
                      out_type=out_type, output_scale=case["s_out"], output_zero_point=zp_out)


def check(case, rng, **kw):
    summand = None
    if kw.pop("with_summand", False):
        summand = rng.integers(0, 256, size=case["oshape"], dtype=np.uint8)
    got = run_all_isas(lambda: run_op(case, summand=summand, **kw), CONV_PATHS)
    want = expected(case, summand=summand, **kw)
    assert_all_equal(got, want, f"{case['x'].shape} {case['w'].shape} {kw}")
    return want


# (n, h, w, ic, oc, kh, kw, strides, dilations, pads)
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 5, 6, 3, 17, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 9, 7, 70, 33, 3, 3, (2, 2), (1, 1), (1, 0, 2, 1)),
    (1, 8, 8, 64, 64, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (3, 7, 5, 33, 70, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0)),
    (1, 11, 10, 17, 40, 5, 5, (1, 1), (2, 2), (4, 4, 4, 4)),
    (1, 15, 13, 3, 24, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3)),
    (2, 4, 3, 128, 16, 3, 3, (1, 2), (1, 1), (1, 1, 1, 1)),
    (1, 2, 2, 5, 7, 3, 3, (1, 1), (1, 1), (2, 2, 2, 2)),     # window mostly padding
    (1, 6, 6, 96, 32, 2, 3, (3, 1), (2, 1), (0, 1, 2, 0)),   # non-square, asymmetric
    # Enough pixels for tasks of several pixel blocks each (the AVX2 kernel's chunks), with and
    # without channel groups beside them: 1×1 stride 1 and 2 (rows widened per task), 3×3
    # (indirection rows), IC = 3 (im2col rows).
    (1, 20, 18, 16, 40, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 30, 28, 20, 24, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0)),
    (2, 17, 19, 24, 33, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 33, 31, 3, 16, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1)),
    # weights past 256 KB as u16: chunks of several pixel blocks split into channel groups
    (1, 9, 9, 128, 130, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    # 3×3 stride 1 (Winograd on avx2): odd IC (channel tail, K padding), odd output sizes
    # (partial 2×2 tiles), asymmetric padding; IC past kWinogradMaxIc (direct kernel)
    (2, 7, 5, 17, 20, 3, 3, (1, 1), (1, 1), (0, 2, 1, 0)),
    (1, 4, 3, 1030, 9, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:7])))
def test_shape_sweep_every_path(shape):
    n, h, w, ic, oc, kh, kw, st, dil, pads = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    case = make_case(rng, n, h, w, ic, oc, kh, kw, st, dil, pads)
    check(case, rng, activation="RELU")
    check(case, rng, activation="NONE", zp_out=128, with_summand=True)


@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6", "CLIP"])
@pytest.mark.parametrize("out_type", ["uint8", "float32"])
@pytest.mark.parametrize("summand", [False, True])
def test_epilogue_variants(activation, out_type, summand):
    rng = np.random.default_rng(7)
    case = make_case(rng, 2, 6, 5, 19, 37, 3, 3, pads=(1, 1, 1, 1), zp_in=3)
    check(case, rng, activation=activation, out_type=out_type, zp_out=128 if summand else 0,
          with_summand=summand, zp_sum=100, clip=(-0.5, 1.5))


@pytest.mark.parametrize("activation", ["NONE", "RELU6", "CLIP"])
@pytest.mark.parametrize("zp_out", [0, 100, 255])
@pytest.mark.parametrize("summand", [False, True])
def test_epilogue_extremes(activation, zp_out, summand):
    # Values far outside the output range (|t| past int32, ±inf), a CLIP range that misses the
    # output range entirely (lo > hi after intersecting), 1×1 convs whose pixel count is not a
    # multiple of any kernel's row block and channel counts with partial blocks.
    rng = np.random.default_rng(19 + zp_out)
    for ic, oc, h, w in ((8, 21, 5, 7), (40, 33, 3, 3)):
        case = make_case(rng, 1, h, w, ic, oc, 1, 1, zp_in=0)
        bias = case["bias"].copy()
        bias[0::4] = 1e30
        bias[1::4] = -1e30
        bias[2::7] = 3e38
        case["bias"] = bias
        clip = (-0.5, 1.5) if zp_out != 255 else (0.5, 1.5)  # zp 255: CLIP lies above 0
        check(case, rng, activation=activation, zp_out=zp_out, with_summand=summand,
              zp_sum=7, clip=clip)


@pytest.mark.parametrize("int_bias", [False, True])
@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("out_type", ["uint8", "float32", "int32"])
def test_bias_and_scale_kinds(int_bias, per_tensor, out_type):
    rng = np.random.default_rng(11)
    case = make_case(rng, 1, 5, 5, 20, 45, 3, 3, pads=(1, 1, 1, 1), zp_in=128,
                     per_tensor=per_tensor, int_bias=int_bias)
    check(case, rng, out_type=out_type)


def test_bigger_shape_every_path():
    # One shape big enough for several pixel blocks and channel blocks on every path.
    rng = np.random.default_rng(3)
    case = make_case(rng, 2, 20, 20, 64, 96, 3, 3, pads=(1, 1, 1, 1))
    check(case, rng, activation="RELU6", with_summand=True)


@pytest.mark.parametrize("sign", [1, -1])
def test_winograd_accumulator_range(sign):
    """Exact Winograd keeps 4·acc in int32 up to IC = 1024 (kWinogradMaxIc): the largest
    accumulators (all inputs 255, all weights ±127) must come out exact, as raw int32."""
    rng = np.random.default_rng(12)
    case = make_case(rng, 1, 6, 6, 1024, 16, 3, 3, pads=(1, 1, 1, 1), zp_in=0, int_bias=True)
    case["x"][:] = 255
    case["w"][:] = 127 * sign
    case["w"][1, 1, :, 8:] = -127 * sign      # half the channels: mixed signs across taps
    case["bias"][:] = 0
    want = check(case, rng, out_type="int32")
    assert np.abs(want).max() == 9 * 255 * 127 * 1024


def test_first_layer_7x7():
    rng = np.random.default_rng(4)
    case = make_case(rng, 1, 32, 32, 3, 64, 7, 7, strides=(2, 2), pads=(3, 3, 3, 3))
    check(case, rng, activation="RELU")


def test_matches_float_model_within_one_step():
    rng = np.random.default_rng(5)
    case = make_case(rng, 2, 9, 9, 24, 40, 3, 3, strides=(2, 2), pads=(1, 1, 1, 1))
    got = run_op(case, activation="RELU")
    xf = (case["x"].astype(np.float32) - case["zp_in"]) * case["s_in"]
    wf = case["w"].astype(np.float32) * case["fs"]
    p = case["pads"]
    y = tf.nn.conv2d(xf, wf, strides=[1, 2, 2, 1],
                     padding=[[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]])
    y = tf.nn.relu(y + case["bias"]).numpy()
    q = ref.quantize(y, case["s_out"], 0)
    assert np.abs(got.astype(np.int32) - q.astype(np.int32)).max() <= 1


def test_tf_function_unknown_batch_and_cache():
    rng = np.random.default_rng(6)
    case = make_case(rng, 3, 6, 6, 16, 20, 3, 3, pads=(1, 1, 1, 1))
    kw = op_kwargs(case, "RELU", "uint8", 0, 0.05, 128, (0.0, 6.0))
    w = tf.Variable(case["w"])  # fed weights: a changed buffer must repack

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 16], tf.uint8)])
    def f(x):
        return tfq8.ops.tfq8_conv2d(x, w.read_value(), case["bias"], case["fs"], [], **kw)

    for n in (1, 3):
        got = f(case["x"][:n]).numpy()
        c = dict(case, x=case["x"][:n])
        np.testing.assert_array_equal(got, expected(c, activation="RELU"))
    w2 = rng.integers(-127, 128, size=case["w"].shape, dtype=np.int8)
    w.assign(w2)
    got = f(case["x"]).numpy()
    np.testing.assert_array_equal(got, expected(dict(case, w=w2), activation="RELU"))


def test_concurrent_calls():
    rng = np.random.default_rng(8)
    case = make_case(rng, 1, 10, 10, 32, 48, 3, 3, pads=(1, 1, 1, 1))
    kw = op_kwargs(case, "RELU", "uint8", 0, 0.05, 128, (0.0, 6.0))
    xs = [rng.integers(0, 256, size=case["x"].shape, dtype=np.uint8) for _ in range(6)]
    wants = [expected(dict(case, x=x), activation="RELU") for x in xs]

    @tf.function
    def f(x):
        return tfq8.ops.tfq8_conv2d(x, case["w"], case["bias"], case["fs"], [], **kw)

    errors = []

    def worker(i):
        try:
            for _ in range(3):
                np.testing.assert_array_equal(f(xs[i]).numpy(), wants[i])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_saved_model_fresh_process(tmp_path):
    rng = np.random.default_rng(9)
    case = make_case(rng, 1, 6, 6, 8, 12, 3, 3, pads=(1, 1, 1, 1))
    kw = op_kwargs(case, "RELU", "uint8", 0, 0.05, 128, (0.0, 6.0))
    mod = tf.Module()
    mod.w = tf.constant(case["w"])

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 8], tf.uint8)])
    def serve(x):
        return {"y": tfq8.ops.tfq8_conv2d(x, mod.w, case["bias"], case["fs"], [], **kw)}

    mod.serve = serve
    path = str(tmp_path / "sm")
    tf.saved_model.save(mod, path, signatures={"serving_default": serve})
    np.save(tmp_path / "x.npy", case["x"])
    np.save(tmp_path / "want.npy", expected(case, activation="RELU"))
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, tfq8
        x = np.load({str(tmp_path / 'x.npy')!r}); want = np.load({str(tmp_path / 'want.npy')!r})
        m = tf.saved_model.load({path!r})
        got = m.signatures["serving_default"](x=tf.constant(x))["y"].numpy()
        assert np.array_equal(got, want), "mismatch"
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def _bad(case, **over):
    args = dict(x=case["x"], w=case["w"], bias=tf.constant(case["bias"]), fs=case["fs"],
                summand=[])
    kw = op_kwargs(case, "NONE", "uint8", 0, 0.05, 128, (0.0, 6.0))
    for k, v in over.items():
        if k in args:
            args[k] = v
        else:
            kw[k] = v
    return tfq8.ops.tfq8_conv2d(args["x"], args["w"], args["bias"], args["fs"], args["summand"],
                                **kw)


@pytest.mark.parametrize("over, message", [
    (dict(w="neg128"), "weights must be in -127..127"),
    (dict(fs=np.ones([3], np.float32)), "filter_scale must have shape"),
    (dict(fs=-np.ones([1], np.float32)), "filter_scale must be finite and > 0"),
    (dict(bias=tf.zeros([5], tf.float32)), "bias must have shape"),
    (dict(summand=[np.zeros([1, 2, 2, 8], np.uint8)]), "summand must have the output's shape"),
    (dict(input_zero_point=300), "input_zero_point must be in [0, 255]"),
    (dict(output_scale=0.0), "output_scale must be a finite number > 0"),
    (dict(out_type=tf.int32, activation="RELU"), "out_type int32"),
    (dict(x="wrong_channels"), "input channels"),
    (dict(x="rank3"), "rank 4"),
    (dict(explicit_paddings=[0, 0, 0, 0], dilations=[9, 9]), "does not fit"),
])
def test_bad_inputs_raise(over, message):
    rng = np.random.default_rng(10)
    case = make_case(rng, 1, 4, 4, 8, 6, 3, 3, pads=(1, 1, 1, 1))
    if isinstance(over.get("w"), str):
        w = case["w"].copy()
        w[0, 0, 0, 0] = -128
        over["w"] = w
    if isinstance(over.get("x"), str):
        over["x"] = {"wrong_channels": np.zeros([1, 4, 4, 5], np.uint8),
                     "rank3": np.zeros([4, 4, 8], np.uint8)}[over["x"]]
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message.replace(
            "[", r"\[").replace("]", r"\]")):
        _bad(case, **over)


def _grouped_expected(x, w, bias, fs, groups, summand, **kw):
    """numpy_ref.conv2d per group on its channel slices, concatenated (the op's definition)."""
    icg, ocg = w.shape[2], w.shape[3] // groups
    parts = []
    for g in range(groups):
        o = slice(g * ocg, (g + 1) * ocg)
        parts.append(ref.conv2d(
            x[..., g * icg:(g + 1) * icg], w[..., o], bias[o], fs if fs.size == 1 else fs[o],
            summand=None if summand is None else summand[..., o], **kw))
    return np.concatenate(parts, -1)


# (groups, n, h, w, ic, oc, k, stride, pads): 2 and 3 groups run one after another with
# parallel convs; 8 and 46 (RegNet's group width 8) run the groups as the parallel tasks;
# 16 channels per group, 3×3 stride 1, is Winograd on avx2.
GROUPED = [(2, 1, 9, 8, 16, 32, 3, 1, (1, 1, 1, 1)), (3, 2, 7, 7, 12, 9, 3, 2, (0, 1, 0, 1)),
           (2, 1, 8, 7, 32, 48, 3, 1, (1, 1, 1, 1)),
           (8, 1, 10, 9, 64, 64, 3, 1, (1, 1, 1, 1)), (46, 1, 6, 6, 368, 368, 3, 1, (1, 1, 1, 1)),
           (4, 2, 5, 5, 32, 16, 1, 1, (0, 0, 0, 0))]


@pytest.mark.parametrize("groups,n,h,w,ic,oc,k,stride,pads", GROUPED)
def test_grouped_conv_every_path(groups, n, h, w, ic, oc, k, stride, pads):
    """Tfq8GroupedConv2D equals numpy_ref's conv of every group's channel slices, bit for bit,
    on every path; per-channel and per-tensor scales, with and without a summand, u8 and f32
    out."""
    rng = np.random.default_rng(groups * 100 + ic)
    x = rng.integers(0, 256, (n, h, w, ic), dtype=np.uint8)
    wt = rng.integers(-127, 128, (k, k, ic // groups, oc), dtype=np.int8)
    bias = rng.uniform(-1, 1, oc).astype(np.float32)
    common = dict(input_scale=0.02, input_zero_point=128, strides=(stride, stride),
                  pads=pads, activation="RELU")
    for fs, out_type, with_summand in [(rng.uniform(0.001, 0.01, oc).astype(np.float32),
                                        "uint8", False),
                                       (np.full([1], 0.004, np.float32), "uint8", True),
                                       (rng.uniform(0.001, 0.01, oc).astype(np.float32),
                                        "float32", False)]:
        oshape = ref.conv2d_acc(x[..., :ic // groups], wt[..., :1], 128, (stride, stride),
                                (1, 1), pads).shape[:3] + (oc,)
        summand = rng.integers(0, 256, oshape, dtype=np.uint8) if with_summand else None
        out = dict(output_scale=0.5, output_zero_point=3) if out_type == "uint8" else {}
        want = _grouped_expected(x, wt, bias, fs, groups, summand, out_type=out_type,
                                 summand_scale=0.05, summand_zero_point=128, **common, **out)

        def run():
            return tfq8.ops.tfq8_grouped_conv2d(
                x, wt, bias, fs, [] if summand is None else [summand], groups=groups,
                input_scale=0.02, input_zero_point=128, strides=[stride, stride],
                explicit_paddings=list(pads), activation="RELU", summand_scale=0.05,
                summand_zero_point=128, out_type=OUT_TYPES[out_type],
                output_scale=out.get("output_scale", 1.0),
                output_zero_point=out.get("output_zero_point", 0)).numpy()
        assert_all_equal(run_all_isas(run, CONV_PATHS), want, f"groups {groups} {out_type}")


def test_grouped_conv_errors_name_the_problem():
    x = np.zeros((1, 4, 4, 12), np.uint8)
    w = np.zeros((3, 3, 4, 6), np.int8)
    kw = dict(input_scale=0.1, explicit_paddings=[1, 1, 1, 1], output_scale=0.1)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="4 input channels"):
        tfq8.ops.tfq8_grouped_conv2d(x, w, np.zeros(6, np.float32),
                                     np.ones(1, np.float32), [], groups=2, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not divide into 4 groups"):
        tfq8.ops.tfq8_grouped_conv2d(np.zeros((1, 4, 4, 16), np.uint8), w,
                                     np.zeros(6, np.float32), np.ones(1, np.float32), [],
                                     groups=4, **kw)


def _avx2_kernel(case, capfd):
    """The avx2 path's implementation name for this case (the op prints it when TFQ8_VERBOSE
    is set and it packs the weights)."""
    capfd.readouterr()
    os.environ["TFQ8_VERBOSE"] = "1"
    try:
        with forced_isa("avx2"):
            run_op(case)
    finally:
        del os.environ["TFQ8_VERBOSE"]
    return capfd.readouterr().err


@pytest.mark.skipif("avx2" not in AVAILABLE_ISAS, reason="this CPU has no AVX2")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:7])))
def test_u8_safe_pairs_every_path(shape, capfd):
    """Weights with u8-safe pairs (as the quantizer's u8_safe_pairs option makes them, the
    largest magnitudes included): the avx2 path runs them on its vpmaddubsw kernel, except
    where another kernel is the plan (3×3 stride-1 Winograd, small-IC first layers, 1–2 output
    rows), and every path still equals the reference bit for bit. The weights stay at the
    edge: pairs summing to exactly ±128 are common, so an s16 saturation would show."""
    n, h, w, ic, oc, kh, kw, st, dil, pads = shape
    rng = np.random.default_rng(hash(shape) % 2**32 + 1)
    case = make_case(rng, n, h, w, ic, oc, kh, kw, st, dil, pads, safe_pairs=True)
    wt = case["w"].astype(np.int32)
    if ic >= 2:
        a, b = wt[:, :, 0:ic // 2 * 2:2], wt[:, :, 1:ic // 2 * 2:2]
        assert np.max(np.where(a * b > 0, np.abs(a) + np.abs(b), 0)) <= 128
    kernel = _avx2_kernel(case, capfd)
    # the quantizer's mirror of the kernel choice (it widens only the layers this kernel runs)
    eligible = u8_pair_kernel_eligible(kh, kw, st, dil, ic)
    gemv = case["oshape"][0] * case["oshape"][1] * case["oshape"][2] <= 2
    if not eligible or gemv:
        assert "6x16c4__avx2" not in kernel, kernel
    else:
        assert "6x16c4__avx2 (u8-safe weight pairs)" in kernel, kernel
    check(case, rng, activation="RELU")
    check(case, rng, activation="NONE", with_summand=True, zp_out=128)
    check(case, rng, out_type="int32")


def test_unsafe_pairs_stay_on_the_exact_kernel(capfd):
    """One same-sign pair over 128 in the whole filter keeps the layer off the vpmaddubsw
    kernel (it would saturate there), and the result equals the reference."""
    if "avx2" not in AVAILABLE_ISAS:
        pytest.skip("this CPU has no AVX2")
    rng = np.random.default_rng(5)
    case = make_case(rng, 1, 8, 8, 64, 40, 1, 1, safe_pairs=True)
    case["w"][0, 0, 10, 7], case["w"][0, 0, 11, 7] = 100, 29            # 129
    assert "6x16c2s16" in _avx2_kernel(case, capfd)
    case["w"][0, 0, 11, 7] = 28                                          # 128: safe
    assert "6x16c4__avx2" in _avx2_kernel(case, capfd)
    # all inputs 255 against the pair at 128 and the rest: the s16 pair sums at their limit
    case["x"][:] = 255
    check(case, rng, out_type="int32")


def test_all_paths_listed():
    # On a machine without AVX512/AMX those paths are skipped by isa_util; say so in the log.
    assert "ref" in AVAILABLE_ISAS
    print("paths tested:", AVAILABLE_ISAS, "conv paths:", CONV_PATHS)


def test_simd_paths_emulated(tmp_path):
    """Runs every SIMD micro-kernel (avx2, avxvnni, avx512vnni, amx) through the C++ driver with
    AVX512 intrinsics emulated by SIMDe and AMX/AVX-VNNI by scalar models, and compares each
    bit for bit with the scalar reference, so paths this CPU lacks are still checked."""
    if not os.path.exists("/usr/include/simde/x86/avx512.h"):
        msg = "SIMDe headers (apt-get install libsimde-dev) are needed to emulate AVX512/AMX"
        if os.environ.get("TFQ8_REQUIRE_TEST_DATA") == "1":
            pytest.fail(msg + " (CI installs them; TFQ8_REQUIRE_TEST_DATA=1)")
        pytest.skip(msg)
    cpu = os.path.join(ROOT, "custom_ops", "kernels", "cpu")
    srcs = ["qu8_gemm_emulation_test.cc", "conv2d.cc", "isa.cc",
            "qu8_igemm_minmax_fp32_ukernel_8x32c4__avx512.cc",
            "qu8_igemm_minmax_fp32_ukernel_4x32c4__avxvnni.cc",
            "qu8_igemm_minmax_fp32_ukernel_2x32c4__avx2.cc",
            "qu8_winograd_f2x3_avx2.cc",
            "qu8_gemm_minmax_fp32_ukernel_32x32c4__amx.cc"]
    flags = ["-O1", "-std=c++17", f"-I{ROOT}", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off"]
    emulated = ["-include", os.path.join(cpu, "qu8_gemm_emulation_test.h")]
    procs, objs = [], []
    for src in srcs:
        obj = str(tmp_path / (src + ".o"))
        objs.append(obj)
        extra = emulated if ("avx512" in src or "vnni" in src or "amx" in src) else []
        procs.append(subprocess.Popen(["g++", "-c", os.path.join(cpu, src), "-o", obj] + flags
                                      + extra,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out = p.communicate()[0]
        assert p.returncode == 0, out[-3000:]
    exe = str(tmp_path / "emu")
    subprocess.run(["g++", "-o", exe] + objs, check=True)
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " 0 failed" in proc.stdout
