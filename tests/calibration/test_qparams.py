"""QParams math, reference quantizer, weight scales and weight quantization.

References are plain numpy written from the scheme's definition (docs/int8_numerics.md);
tolerances: scales are compared exactly after the one float32 rounding the scheme specifies.
"""
import numpy as np
import pytest

from tfq8.calibration import QParams, qparams_from_amax, quantize_weights, weight_scales


def test_unsigned_and_signed_scheme():
    qp, note = qparams_from_amax(5.1, signed=False, method="minmax")
    assert note is None
    assert qp == QParams(scale=float(np.float32(5.1 / 255)), zero_point=0, signed=False,
                         amax=5.1, method="minmax")
    assert qp.levels == 255
    qp, _ = qparams_from_amax(2.54, signed=True, method="mse")
    assert qp.zero_point == 128 and qp.signed and qp.levels == 127
    assert qp.scale == float(np.float32(2.54 / 127))
    assert isinstance(qp.scale, float) and isinstance(qp.zero_point, int)


def test_degenerate_zero_threshold_gets_scale_one_and_note():
    for signed in (False, True):
        qp, note = qparams_from_amax(0.0, signed, "minmax")
        assert qp.scale == 1.0 and qp.amax == 0.0
        assert "scale set to 1.0" in note
    qp, note = qparams_from_amax(1e-45, False, "minmax")  # would give a subnormal f32 scale
    assert qp.scale == 1.0 and note


@pytest.mark.parametrize("amax", [-1.0, float("nan"), float("inf")])
def test_bad_amax(amax):
    with pytest.raises(ValueError, match="amax"):
        qparams_from_amax(amax, True, "minmax")


def test_reference_quantizer_matches_numerics_doc_examples():
    # docs/int8_numerics.md: scale 0.1, zp 128: 0.25 -> 2.5 -> rne 2 -> 130; -20 -> clamp -> 0
    qp = QParams(scale=0.1, zero_point=128, signed=True, amax=12.7, method="minmax")
    np.testing.assert_array_equal(qp.quantize([0.25, -20.0, 0.0, 12.7, 1e9, np.nan]),
                                  [130, 0, 128, 255, 255, 0])
    np.testing.assert_allclose(qp.dequantize([130, 128, 1]), [0.2, 0.0, -12.7], rtol=1e-6)
    qu = QParams(scale=0.02, zero_point=0, signed=False, amax=5.1, method="minmax")
    x = np.linspace(-1, 6, 101, dtype=np.float32)
    ref = np.clip(np.rint(x * np.float32(1 / 0.02)), 0, 255)
    np.testing.assert_array_equal(qu.quantize(x), ref.astype(np.uint8))


def test_weight_scales_per_channel_vs_numpy():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    w[..., 5] = 0.0  # all-zero output channel
    s = weight_scales(w)
    ref = (np.abs(w.astype(np.float64)).max(axis=(0, 1, 2)) / 127).astype(np.float32)
    ref[5] = 1.0
    assert s.dtype == np.float32 and s.shape == (16,)
    np.testing.assert_array_equal(s, ref)
    # another axis, and per-tensor
    s0 = weight_scales(w, axis=0)
    np.testing.assert_array_equal(
        s0, (np.abs(w.astype(np.float64)).max(axis=(1, 2, 3)) / 127).astype(np.float32))
    st = weight_scales(w, per_channel=False)
    assert st.shape == (1,) and st[0] == np.float32(np.abs(w).max() / 127)
    np.testing.assert_array_equal(weight_scales(np.zeros((4, 2))), [1.0, 1.0])


def test_quantize_weights_vs_numpy_round_half_even_and_clip():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    s = weight_scales(w)
    q = quantize_weights(w, s)
    ref = np.clip(np.rint(w.astype(np.float64) / s.astype(np.float64)), -127, 127)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, ref.astype(np.int8))
    assert np.abs(q).max(axis=0).tolist() == [127] * 7  # the max of each channel maps to ±127
    # ties go to even, values beyond the scale range clip to ±127 (never -128)
    ties = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 300.0, -300.0], np.float32)
    np.testing.assert_array_equal(quantize_weights(ties, np.array([1.0], np.float32)),
                                  [0, 2, 2, 0, -2, 127, -127])
    # per-tensor scale given as a scalar, and on axis 0
    np.testing.assert_array_equal(quantize_weights(w, np.float32(0.05)),
                                  np.clip(np.rint(w / np.float64(np.float32(0.05))), -127, 127))
    s0 = weight_scales(w, axis=0)
    np.testing.assert_array_equal(
        quantize_weights(w, s0, axis=0),
        np.clip(np.rint(w.astype(np.float64) / s0.astype(np.float64)[:, None]), -127, 127))


def test_weight_errors():
    w = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="3 channels"):
        quantize_weights(w, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="out of range"):
        weight_scales(w, axis=2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        weight_scales(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="empty"):
        weight_scales(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="> 0"):
        quantize_weights(w, np.zeros(3, np.float32))


def _pair_reference(w):
    """Largest same-sign |w[..,2j,o]| + |w[..,2j+1,o]| per output channel o, by loops."""
    w2 = np.asarray(w, np.float64).reshape(-1, w.shape[-2], w.shape[-1])
    out = np.zeros(w.shape[-1])
    for t in range(w2.shape[0]):
        for j in range(0, w.shape[-2] - 1, 2):
            for o in range(w.shape[-1]):
                a, b = w2[t, j, o], w2[t, j + 1, o]
                if a * b > 0:
                    out[o] = max(out[o], abs(a) + abs(b))
    return out


@pytest.mark.parametrize("shape", [(3, 3, 8, 5), (16, 7), (1, 1, 9, 4), (2, 2, 1, 3)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_u8_safe_pair_scales_vs_loops(shape, per_channel):
    """Scales widened to max(max|w|, largest same-sign pair · 127/128) / 127 (a loop reference),
    and the int8 weights at those scales break the pair rule at most by rounding, which
    fit_u8_pairs removes without touching any other weight."""
    from tfq8.calibration.qparams import fit_u8_pairs, u8_pair_violations
    rng = np.random.default_rng(sum(shape) + per_channel)
    w = rng.uniform(-1, 1, size=shape).astype(np.float32)
    got = weight_scales(w, per_channel=per_channel, u8_safe_pairs=True)
    amax = np.abs(w.astype(np.float64)).reshape(-1, shape[-1]).max(0)
    pair = _pair_reference(w)
    if not per_channel:
        amax, pair = amax.max(keepdims=True), pair.max(keepdims=True)
    want = (np.maximum(amax, pair * 127 / 128) / 127).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    q = quantize_weights(w, got)
    t = w.astype(np.float64) / got.astype(np.float64)
    f = fit_u8_pairs(q, t)
    assert u8_pair_violations(f) == 0
    changed = f != q
    assert changed.sum() <= 2 * u8_pair_violations(q)
    assert np.abs(f.astype(int) - q).max(initial=0) <= 1    # only rounding's off-by-one


def test_fit_u8_pairs_is_the_nearest_safe_pair():
    """A breaking pair moves to the integer pair on |q0| + |q1| = 128 nearest its targets
    (brute force over every safe pair); safe pairs and odd last channels are untouched."""
    from tfq8.calibration.qparams import fit_u8_pairs
    rng = np.random.default_rng(11)
    t = rng.uniform(-127, 127, size=(1, 1, 41, 6))
    t[0, 0, 0, 0], t[0, 0, 1, 0] = 120.4, 99.7          # certainly breaking
    q = np.clip(np.rint(t), -127, 127).astype(np.int8)
    f = fit_u8_pairs(q, t)
    np.testing.assert_array_equal(f[..., 40, :], q[..., 40, :])
    cand = np.arange(-127, 128)
    for j in range(0, 40, 2):
        for o in range(6):
            a, b = int(q[0, 0, j, o]), int(q[0, 0, j + 1, o])
            if a * b <= 0 or abs(a) + abs(b) <= 128:
                assert (f[0, 0, j, o], f[0, 0, j + 1, o]) == (a, b)
                continue
            x, y = np.meshgrid(cand, cand, indexing="ij")
            ok = (x * y <= 0) | (np.abs(x) + np.abs(y) <= 128)
            err = np.where(ok, (x - t[0, 0, j, o]) ** 2 + (y - t[0, 0, j + 1, o]) ** 2, np.inf)
            best = err.min()
            e = (f[0, 0, j, o] - t[0, 0, j, o]) ** 2 + (f[0, 0, j + 1, o] - t[0, 0, j + 1, o]) ** 2
            assert e <= best + 1e-9, (j, o, f[0, 0, j, o], f[0, 0, j + 1, o])
