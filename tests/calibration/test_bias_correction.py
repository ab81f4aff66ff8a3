"""Bias correction: the tap-mean shortcut equals the mean of the real op; Δ is the op's mean error."""
import numpy as np
import pytest
import tensorflow as tf

from tfq8.calibration.bias_correction import (
    BiasCorrector,
    CorrectionSite,
    dequantized_weights,
    mean_output,
)
from tfq8.calibration.qparams import qparams_from_range


def _conv(kind, x, w, strides, dilations, pads):
    x = np.pad(x, [(0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)])
    st = [1, strides[0], strides[1], 1]
    if kind == "depthwise":
        return tf.nn.depthwise_conv2d(x, w, st, "VALID", dilations=list(dilations)).numpy()
    return tf.nn.conv2d(x, w, st, "VALID", dilations=list(dilations)).numpy()


@pytest.mark.parametrize("kind,strides,dilations,pads", [
    ("conv", (1, 1), (1, 1), (1, 1, 1, 1)),
    ("conv", (2, 2), (1, 1), (0, 1, 0, 1)),
    ("depthwise", (2, 2), (1, 1), (1, 1, 1, 1)),
    ("depthwise", (1, 1), (2, 2), (2, 2, 2, 2)),
])
def test_mean_output_matches_the_op(kind, strides, dilations, pads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7, 9, 3)).astype(np.float32) + 0.5
    w = rng.normal(size=(3, 3, 3, 2 if kind == "depthwise" else 5)).astype(np.float32)
    site = CorrectionSite("l", kind, "x", None, w, strides=strides, dilations=dilations,
                          pads=pads)
    ref = _conv(kind, x, w, strides, dilations, pads).mean(axis=(0, 1, 2))
    got = mean_output(site, x.mean(axis=0), w)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_deltas_are_the_mean_error_of_the_quantized_op():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(6, 8, 8, 4)) * 2 + 0.3).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    q, _ = qparams_from_range(1.5, 3.0, "test")            # clips both tails: a biased error
    s = rng.normal(size=(6, 8, 8, 6)).astype(np.float32) * 3
    qs, _ = qparams_from_range(2.0, 2.0, "test")
    site = CorrectionSite("l", "conv", "x", q, w, pads=(1, 1, 1, 1), summand="s",
                          summand_qparams=qs)
    bc = BiasCorrector([site])
    assert bc.tensors == ["s", "x"]
    bc.observe({"x": x[:3], "s": s[:3]})
    bc.observe({"x": x[3:], "s": s[3:]})
    d = bc.deltas()["l"]
    wq = dequantized_weights("conv", w).astype(np.float32)
    fq = lambda v, p: p.dequantize(p.quantize(v))
    ref = (_conv("conv", fq(x, q), wq, (1, 1), (1, 1), (1, 1, 1, 1)) + fq(s, qs)
           - _conv("conv", x, w, (1, 1), (1, 1), (1, 1, 1, 1)) - s).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(d, ref, rtol=1e-3, atol=1e-4)
    assert np.max(np.abs(d)) > 1e-3


def test_matmul_and_empty():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    q, _ = qparams_from_range(1.0, 1.0, "test")
    site = CorrectionSite("fc", "matmul", "x", q, w)
    bc = BiasCorrector([site])
    assert bc.deltas() == {}
    x = rng.normal(size=(10, 5)).astype(np.float32)
    bc.observe({"x": x})
    fq = q.dequantize(q.quantize(x))
    ref = (fq @ dequantized_weights("matmul", w) - x @ w).mean(0)
    np.testing.assert_allclose(bc.deltas()["fc"], ref, rtol=1e-4, atol=1e-5)
