"""Observers: statistics, signedness, degenerate inputs, errors, and batch-order independence.

minmax is exact; histogram methods are compared with observing the concatenated data at once
(tolerance: one bin of the coarser, incrementally grown histogram plus one of the other).
"""
import numpy as np
import pytest

from tfq8.calibration import (
    METHODS,
    EntropyObserver,
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
    qparams_from_amax,
)


def test_minmax_exact():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 5, 5, 3)).astype(np.float32) * s for s in (1, 3, 2)]
    obs = MinMaxObserver("conv1")
    for b in batches:
        obs.observe(b)
    x = np.concatenate(batches)
    assert obs.min == float(x.min()) and obs.max == float(x.max())
    assert obs.num_samples == 12 and obs.num_elements == x.size and obs.num_batches == 3
    qp = obs.qparams()
    amax = float(np.abs(x).max())
    assert qp == qparams_from_amax(amax, True, "minmax")[0]
    assert qp.signed and qp.zero_point == 128 and qp.scale == float(np.float32(amax / 127))
    relu = MinMaxObserver("relu")
    relu.observe(np.maximum(x, 0))
    qp = relu.qparams()
    assert not qp.signed and qp.zero_point == 0 and qp.amax == float(x.max())
    assert qp.scale == float(np.float32(x.max() / 255))


@pytest.mark.parametrize("method", METHODS)
def test_signed_decided_from_min_and_overridable(method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50_000)
    obs = make_observer(method, "t")
    obs.observe(np.maximum(x, 0))
    assert not obs.qparams().signed
    qs = obs.qparams(signed=True)  # same values, symmetric s8 scheme
    assert qs.signed and qs.zero_point == 128 and qs.method == method
    obs2 = make_observer(method, "t2")
    obs2.observe(x)
    assert obs2.qparams().signed
    # forced unsigned on a tensor seen negative: threshold of max(x, 0), not of |x|
    qu = obs2.qparams(signed=False)
    assert not qu.signed and qu.amax <= x.max()
    obs3 = make_observer(method, "t3")
    obs3.observe(np.maximum(x, 0))
    assert abs(qu.amax - obs3.qparams().amax) <= 2 * obs3.max / 1024 + 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_tensor(method):
    obs = make_observer(method, "zeros")
    obs.observe(np.zeros((2, 8)))
    obs.observe(np.zeros((3, 8), np.float32))
    qp, notes = obs.qparams_with_notes()
    assert qp.scale == 1.0 and qp.zero_point == 0 and qp.amax == 0.0 and not qp.signed
    assert len(notes) == 1 and "scale set to 1.0" in notes[0]
    assert obs.num_samples == 5


@pytest.mark.parametrize("method", METHODS)
def test_all_negative_forced_unsigned(method):
    obs = make_observer(method, "neg")
    obs.observe(-np.arange(1, 100, dtype=np.float32) * 0.5)
    qp, notes = obs.qparams_with_notes(signed=False)
    assert qp.scale == 1.0 and notes
    qs = obs.qparams()
    assert qs.signed and 0 < qs.amax <= 49.5
    if method == "minmax":
        assert qs.amax == 49.5


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_raise_naming_tensor(method, bad):
    obs = make_observer(method, "block3/conv2/Relu:0")
    obs.observe(np.ones(4))
    x = np.ones((2, 3), np.float32)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=r"'block3/conv2/Relu:0'.*NaN/Inf.*batch 1"):
        obs.observe(x)
    assert obs.num_batches == 1 and obs.num_elements == 4  # the bad batch left no trace


def test_errors():
    obs = EntropyObserver("empty")
    obs.observe(np.zeros((0, 3)))  # ignored
    with pytest.raises(ValueError, match="'empty'.*no data"):
        obs.qparams()
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        make_observer("kl")
    with pytest.raises(ValueError, match="percentile"):
        PercentileObserver(percentile=0)
    with pytest.raises(TypeError, match="dtype"):
        MinMaxObserver("s").observe(np.array(["a"]))


def test_integer_and_half_inputs():
    obs = MinMaxObserver("i16")
    obs.observe(np.array([-32768, 5], np.int16))  # |−32768| must not overflow
    assert obs.qparams().amax == 32768.0
    obs = PercentileObserver("h", percentile=100)
    obs.observe(np.array([1.5, -3.0], np.float16))
    assert obs.qparams().amax == 3.0


@pytest.mark.parametrize("method", METHODS)
def test_integer_valued_tensors_get_scale_one_and_quantize_losslessly(method):
    rng = np.random.default_rng(5)
    # a uint8 image cast to float: mostly dark, a few saturated pixels that every histogram
    # method would clip
    img = np.minimum(rng.exponential(20.0, (4, 16, 16, 3)), 255).round().astype(np.float32)
    img[0, 0, 0] = 255.0
    obs = make_observer(method, "image")
    obs.observe(img[:2])
    obs.observe(img[2:].astype(np.uint8))
    qp = obs.qparams()
    assert (qp.scale, qp.zero_point, qp.signed) == (1.0, 0, False)
    assert qp.method == method + "+integers"
    np.testing.assert_array_equal(qp.dequantize(qp.quantize(img)), img)
    # signed integers within −128…127: scale 1, zero point 128, lossless as well
    ids = rng.integers(-128, 128, (64,)).astype(np.float32)
    obs = make_observer(method, "ids")
    obs.observe(ids)
    qs = obs.qparams()
    assert (qs.scale, qs.zero_point, qs.signed) == (1.0, 128, True)
    np.testing.assert_array_equal(qs.dequantize(qs.quantize(ids)), ids)
    # any other asymmetric/symmetric request for the same values gives the same exact answer
    assert obs.qparams(scheme="asymmetric") == qs


@pytest.mark.parametrize("method", METHODS)
def test_full_range_takes_the_observed_extremes(method):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(20_000) ** 3          # heavy tails that every method clips
    obs = make_observer(method, "t")
    obs.observe(x)
    qp = obs.qparams_with_notes(full_range=True)[0]
    assert qp.signed and qp.amax == np.abs(x).max() and qp.method == method + "+max"
    qa = obs.qparams_with_notes(scheme="asymmetric", full_range=True)[0]
    np.testing.assert_allclose(qa.dequantize(qa.quantize(np.array([x.min(), x.max()]))),
                               [x.min(), x.max()], rtol=0, atol=qa.scale / 2 * 1.0001)
    relu = make_observer(method, "r")
    relu.observe(np.maximum(x, 0))
    assert relu.qparams_with_notes(full_range=True)[0].amax == x.max()


@pytest.mark.parametrize("values", [
    np.array([0.0, 1.0, 1.0, 0.0]),             # binary: the method's own (finer) scale
    np.array([0.0, 3.0, 256.0]),                # beyond the u8 range
    np.array([-129.0, 3.0]),                    # beyond the s8 range
    np.array([0.0, 2.5, 100.0]),                # one non-integer
])
def test_integer_rule_only_for_integers_in_range(values):
    obs = MinMaxObserver("t")
    obs.observe(values[:2])
    obs.observe(values[2:])
    assert not obs.qparams().method.endswith("+integers")


def _mse(x, qp):
    a = np.abs(x) if qp.signed else np.maximum(x, 0)
    s = qp.amax / qp.levels
    return np.mean((a - np.clip(np.rint(a / s), 0, qp.levels) * s) ** 2)


@pytest.mark.parametrize("cls", [PercentileObserver, MSEObserver, EntropyObserver])
def test_rebinned_equals_at_once_when_final_ranges_agree(cls):
    # batch maxima 1 → 3 → 6: the range grows 1 → 3 → 6, exactly the at-once range, so the
    # merged histogram is the at-once histogram and every method must give the same answer
    rng = np.random.default_rng(5)
    batches = [rng.laplace(size=20_000) * s for s in (0.1, 0.3, 0.6)]
    for b, m in zip(batches, (1.0, 3.0, 6.0)):
        b *= m / np.abs(b).max()
    inc, once = cls("t"), cls("t")
    for b in batches:
        inc.observe(b)
    once.observe(np.concatenate(batches))
    assert inc.histogram.num_rebins == 2 and inc.histogram.range == once.histogram.range == 6.0
    assert np.abs(inc.histogram.pos - once.histogram.pos).max() <= 1
    a, b = inc.qparams().amax, once.qparams().amax
    assert abs(a - b) <= inc.histogram.bin_width, (a, b)


@pytest.mark.parametrize("cls", [PercentileObserver, MSEObserver, EntropyObserver])
def test_incremental_close_to_at_once(cls):
    rng = np.random.default_rng(2)
    x = rng.laplace(size=300_000).astype(np.float32)
    # first batch small-range so the histogram has to grow (and merge) onto another grid
    batches = [x[:1000] * 0.01] + np.array_split(x[1000:], 6)
    inc, once = cls("t"), cls("t")
    for b in batches:
        inc.observe(b)
    xs = np.concatenate(batches)
    once.observe(xs)
    assert inc.histogram.num_rebins >= 1 and once.histogram.num_rebins == 0
    assert inc.histogram.total == once.histogram.total == x.size
    qa, qb = inc.qparams(), once.qparams()
    if cls is PercentileObserver:  # both within one of their bins of the true percentile
        assert abs(qa.amax - qb.amax) <= inc.histogram.bin_width + once.histogram.bin_width
    elif cls is MSEObserver:  # flat optimum: compare the error actually achieved
        assert _mse(xs, qa) <= _mse(xs, qb) * 1.003
    else:  # KL's argmin moves with the bin grid itself
        assert abs(qa.amax - qb.amax) <= 0.05 * qb.amax


def test_percentile_observer_vs_numpy_and_zeros():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal(100_000), 0)  # half zeros
    for q in (90.0, 99.99):
        obs = PercentileObserver("r", percentile=q)
        for b in np.array_split(x, 5):
            obs.observe(b)
        assert abs(obs.qparams().amax - np.percentile(x, q)) <= obs.histogram.bin_width
    obs = PercentileObserver("z", percentile=10)  # the 10th percentile is 0 → falls back to max
    obs.observe(x)
    qp, notes = obs.qparams_with_notes()
    assert qp.amax == x.max() and "using max" in notes[0]


def test_with_args_factory():
    factory = PercentileObserver.with_args(percentile=99.0, num_bins=512)
    obs = factory("t")
    assert obs.percentile == 99.0 and obs.histogram.num_bins == 512 and obs.name == "t"


def test_entropy_ignores_the_zero_spike_after_relu():
    # 80 % exact zeros (a sparse ReLU output): counting them in bin 0, as plain TensorRT does,
    # pulls the KL threshold to ~0.5σ here; left out, the threshold stays in the tail.
    rng = np.random.default_rng(6)
    x = rng.standard_normal(300_000)
    x = np.where(rng.random(x.size) < 0.8, 0.0, np.abs(x))
    obs = EntropyObserver("relu")
    obs.observe(x)
    qp = obs.qparams()
    assert not qp.signed and 3.0 < qp.amax <= x.max()
