"""Asymmetric activation scheme: per-side thresholds, zero point 1…254."""
import numpy as np
import pytest

from tfq8.calibration import Calibrator, make_observer
from tfq8.calibration.histogram import AbsHistogram, asymmetric_mse, side_squared_errors, \
    expected_squared_errors
from tfq8.calibration.qparams import qparams_from_range


def test_qparams_from_range():
    qp, note = qparams_from_range(1.0, 3.0, "t")
    assert note is None and qp.signed
    assert qp.scale == pytest.approx(4.0 / 255, rel=1e-6)
    assert qp.zero_point == 64
    x = np.array([-1.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(qp.dequantize(qp.quantize(x)), x, atol=qp.scale)
    assert qparams_from_range(0.0, 2.0, "t")[0].zero_point == 1   # both sides keep a level
    assert qparams_from_range(0.0, 0.0, "t")[0].scale == 1.0


def test_side_errors_match_bin_edge_mse():
    rng = np.random.default_rng(0)
    h = AbsHistogram(256)
    h.add(rng.laplace(size=20000))
    c = h.pos + h.neg
    ks = np.array([20, 60, 200])
    ref = expected_squared_errors(c, h.bin_width, 127, ks)
    got = side_squared_errors(c, h.bin_width, ks * h.bin_width / 127, [127])[:, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_asymmetric_mse_follows_a_skewed_distribution():
    rng = np.random.default_rng(1)
    x = np.concatenate([-rng.exponential(0.5, 20000), rng.exponential(3.0, 20000)])
    h = AbsHistogram()
    h.add(x)
    scale, zp = asymmetric_mse(h.pos, h.neg, h.bin_width, x.max(), -x.min())
    assert 1 <= zp < 100   # most levels go to the wide positive side
    obs = make_observer("mse", "x")
    obs.observe(x)
    qa, qs = obs.qparams(scheme="asymmetric"), obs.qparams(scheme="symmetric")
    assert qs.zero_point == 128 and qa.zero_point == zp
    err = lambda q: np.mean((q.dequantize(q.quantize(x)) - x) ** 2)
    assert err(qa) < err(qs)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_every_method_gives_asymmetric_qparams(method):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-0.5, 0.2, 5000), rng.normal(2, 1, 5000)])
    cal = Calibrator(lambda b: {"x": b}, method, scheme="asymmetric", verbose=False)
    table = cal.calibrate([x[:5000], x[5000:]])
    qp = table["x"].qparams
    assert qp.signed and 1 <= qp.zero_point < 128
    assert table.metadata["scheme"] == "asymmetric"
    with pytest.raises(ValueError, match="scheme"):
        Calibrator(lambda b: {"x": b}, method, scheme="affine")
