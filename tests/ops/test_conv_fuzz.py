"""Fuzzing Tfq8Conv2D with hypothesis: random shapes and attributes on the default path and the
reference. Valid combinations must equal tests/ops/numpy_ref.py exactly; invalid ones must raise
InvalidArgumentError / ValueError with a message, never crash."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfq8
from tests.ops import numpy_ref as ref
from tests.ops.isa_util import forced_isa

OUT = {"uint8": tf.uint8, "float32": tf.float32, "int32": tf.int32}


@st.composite
def conv_cases(draw):
    return dict(
        n=draw(st.integers(0, 2)), h=draw(st.integers(1, 7)), w=draw(st.integers(1, 7)),
        ic=draw(st.integers(1, 40)), oc=draw(st.integers(1, 40)),
        kh=draw(st.integers(1, 5)), kw=draw(st.integers(1, 5)),
        strides=[draw(st.integers(1, 3)), draw(st.integers(1, 3))],
        dilations=[draw(st.integers(1, 2)), draw(st.integers(1, 2))],
        pads=[draw(st.integers(0, 3)) for _ in range(4)],
        zp_in=draw(st.sampled_from([0, 128, 255, 300])),
        activation=draw(st.sampled_from(["NONE", "RELU", "RELU6", "CLIP"])),
        out_type=draw(st.sampled_from(["uint8", "float32", "int32"])),
        summand=draw(st.booleans()), per_tensor=draw(st.booleans()),
        int_bias=draw(st.booleans()), neg128=draw(st.integers(0, 9)) == 0,
        isa=draw(st.sampled_from(["ref", "default"])), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(conv_cases())
def test_fuzz(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.integers(0, 256, (c["n"], c["h"], c["w"], c["ic"]), dtype=np.uint8)
    w = rng.integers(-127, 128, (c["kh"], c["kw"], c["ic"], c["oc"]), dtype=np.int8)
    if c["neg128"]:
        w.flat[0] = -128
    oc = c["oc"]
    fs = rng.uniform(0.001, 0.01, [1 if c["per_tensor"] else oc]).astype(np.float32)
    bias = (rng.integers(-3000, 3000, [oc], dtype=np.int32) if c["int_bias"]
            else rng.uniform(-1, 1, [oc]).astype(np.float32))
    p = c["pads"]
    eh = (c["kh"] - 1) * c["dilations"][0] + 1
    ew = (c["kw"] - 1) * c["dilations"][1] + 1
    fits = c["h"] + p[0] + p[1] >= eh and c["w"] + p[2] + p[3] >= ew
    summand = None
    if c["summand"] and fits:
        oh = (c["h"] + p[0] + p[1] - eh) // c["strides"][0] + 1
        ow = (c["w"] + p[2] + p[3] - ew) // c["strides"][1] + 1
        summand = rng.integers(0, 256, (c["n"], oh, ow, oc), dtype=np.uint8)
    valid = (fits and c["zp_in"] <= 255 and not c["neg128"] and
             not (c["out_type"] == "int32" and (c["activation"] != "NONE" or c["summand"])))
    kw = dict(input_scale=0.02, input_zero_point=c["zp_in"], strides=c["strides"],
              dilations=c["dilations"], explicit_paddings=p, activation=c["activation"],
              clip_min=-0.5, clip_max=1.0, out_type=OUT[c["out_type"]], output_scale=0.3,
              output_zero_point=128, summand_scale=0.05, summand_zero_point=10)

    def call():
        s = [] if not c["summand"] else [summand if summand is not None
                                          else np.zeros([1, 1, 1, oc], np.uint8)]
        return tfq8.ops.tfq8_conv2d(x, w, tf.constant(bias), fs, s, **kw).numpy()

    if c["isa"] == "ref":
        with forced_isa("ref"):
            run = call
            if not valid:
                with pytest.raises((tf.errors.InvalidArgumentError, ValueError)) as e:
                    run()
                assert str(e.value)
                return
            got = run()
    else:
        if not valid:
            with pytest.raises((tf.errors.InvalidArgumentError, ValueError)) as e:
                call()
            assert str(e.value)
            return
        got = call()
    want = ref.conv2d(x, w, bias, fs, input_scale=np.float32(0.02), input_zero_point=c["zp_in"],
                      strides=c["strides"], dilations=c["dilations"], pads=p, summand=summand,
                      summand_scale=0.05, summand_zero_point=10, activation=c["activation"],
                      clip_min=-0.5, clip_max=1.0, out_type=c["out_type"], output_scale=0.3,
                      output_zero_point=128)
    assert got.shape == want.shape
    if got.dtype == np.float32:
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    else:
        assert np.array_equal(got, want)
