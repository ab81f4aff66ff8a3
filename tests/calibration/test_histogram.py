"""AbsHistogram re-binning and the threshold searches, against independent references.

References: np.percentile on the raw |x| (tolerance: one bin width, the histogram's resolution);
a loop-by-loop port of the KL search as NVIDIA's pytorch-quantization writes it
(tolerance 1e-9: same math, different summation order); a brute-force MSE over candidate
thresholds on the raw samples (tolerance: one bin width in threshold, 0.1% in error).
"""
from collections import Counter

import numpy as np
import pytest

from tfq8.calibration.histogram import (
    AbsHistogram,
    entropy_threshold,
    expected_squared_errors,
    kl_divergences,
    mse_threshold,
    percentile_threshold,
)


def _add_all(hist, batches):
    for b in batches:
        hist.add(b)
    return hist


def test_rebin_preserves_mass_and_equals_observing_at_once():
    rng = np.random.default_rng(0)
    # batch maxima grow: 1 → 2 (k=2) → 7.5 (k=4, range 8) → 8 (no growth)
    b1 = rng.uniform(-1, 1, 10_000); b1[0] = 1.0
    b2 = rng.uniform(-2, 2, 10_000); b2[0] = -2.0
    b3 = rng.uniform(-7.5, 7.5, 10_000); b3[0] = 7.5
    b4 = rng.uniform(-8, 8, 10_000); b4[0] = 8.0
    b5 = np.zeros(123)
    batches = [b1, b2, b3, b4, b5]
    inc = _add_all(AbsHistogram(2048), batches)
    assert inc.num_rebins == 2 and inc.range == 8.0
    assert inc.total == sum(b.size for b in batches)
    assert inc.zeros == 123
    once = AbsHistogram(2048)
    once.add(np.concatenate(batches))
    assert once.range == 8.0 and once.num_rebins == 0
    # same bins: only values within float rounding of an edge may land differently
    assert np.abs(inc.pos - once.pos).max() <= 1 and np.abs(inc.neg - once.neg).max() <= 1
    assert inc.pos.sum() == once.pos.sum() == np.count_nonzero(np.concatenate(batches) > 0)
    # and the same as numpy's histogram of |x| on the final range
    xs = np.concatenate(batches)
    ref_pos, _ = np.histogram(xs[xs > 0], bins=2048, range=(0, 8.0))
    assert np.abs(inc.pos - ref_pos).max() <= 1


def test_rebin_integer_factor_and_large_jump():
    h = AbsHistogram(16)
    h.add(np.array([0.5, 1.0, -0.25]))
    h.add(np.array([100.0]))  # k = 100: range 100, every 100 old bins (all 16) merge into bin 0
    assert h.range == 100.0 and h.total == 4
    assert h.pos[0] == 2 and h.neg[0] == 1 and h.pos[15] == 1
    h2 = AbsHistogram(16)
    h2.add(np.zeros(5))
    assert h2.range == 0.0 and h2.total == 5
    h2.add(np.array([3.0]))
    assert h2.range == 3.0 and h2.total == 6


def test_distribution_signed_and_unsigned():
    h = AbsHistogram(4)
    h.add(np.array([-3.5, -1.5, 0.0, 0.0, 1.2, 2.5, 4.0]))
    counts, zeros = h.distribution(signed=True)
    assert zeros == 2 and counts.tolist() == [0, 2, 1, 2]
    counts, zeros = h.distribution(signed=False)  # negatives clip to 0
    assert zeros == 4 and counts.tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("q", [50.0, 99.0, 99.9, 99.99, 99.999])
def test_percentile_within_one_bin_of_numpy(q):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.laplace(size=100_000), np.zeros(5_000)])
    batches = np.array_split(rng.permutation(x), 7)
    h = _add_all(AbsHistogram(2048), batches)
    counts, zeros = h.distribution(signed=True)
    got = percentile_threshold(counts, zeros, h.bin_width, q, np.abs(x).max())
    ref = np.percentile(np.abs(x), q)
    assert abs(got - ref) <= h.bin_width, (got, ref, h.bin_width)


def _kl_reference(bins, nq):
    """pytorch-quantization's _compute_amax_entropy loop, kept loop-by-loop (no smoothing)."""
    bins = np.asarray(bins, np.float64)
    out = []
    for i in range(nq, len(bins) + 1):
        space = np.linspace(0, i, num=nq + 1)
        digitized = np.digitize(np.arange(i), space) - 1
        digitized[bins[:i] == 0] = -1
        density = np.zeros(nq)
        for idx, d in enumerate(digitized):
            if d != -1:
                density[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                density[key] /= val
        q = np.array([density[d] if d != -1 else 0.0 for d in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p /= p.sum()
        if q.sum() == 0:
            out.append(np.inf)
            continue
        q /= q.sum()
        kl = 0.0
        for a, b in zip(p, q):
            if a > 0:
                if b == 0:
                    kl = np.inf
                    break
                kl += a * np.log(a / b)
        out.append(kl)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_search_matches_bruteforce_reference(seed):
    rng = np.random.default_rng(seed)
    hist = rng.poisson(rng.uniform(0, 30, 150) * np.exp(-np.arange(150) / 25.0))
    hist[-1] = 3  # data reaches the last bin
    cand, kl = kl_divergences(hist, 16)
    ref = _kl_reference(hist, 16)
    assert cand.tolist() == list(range(16, 151))
    assert np.array_equal(np.isinf(kl), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(kl[fin], ref[fin], rtol=1e-9, atol=1e-12)
    # the chosen threshold is the reference's argmin (ties: the largest)
    best = np.flatnonzero(ref == ref[fin].min())[-1] + 16
    assert entropy_threshold(hist, 0.5, 16, 150 * 0.5) == best * 0.5


def test_entropy_thresholds_plausible():
    # N(0, 1) and Laplace(b = 1), 400k samples, 128 levels: KL clips the sparse tail but never
    # into the body (3σ for the normal, 5b for the Laplacian); a lone outlier at 60 is dropped.
    rng = np.random.default_rng(2)
    for x, lower in [(rng.standard_normal(400_000), 3.0), (rng.laplace(size=400_000), 5.0)]:
        h = _add_all(AbsHistogram(2048), np.array_split(x, 4))
        absmax = np.abs(x).max()
        t = entropy_threshold(h.distribution(True)[0], h.bin_width, 128, absmax)
        assert lower < t < absmax - h.bin_width
    x = np.concatenate([rng.standard_normal(200_000), [60.0, -55.0]])
    h = _add_all(AbsHistogram(2048), [x])
    t = entropy_threshold(h.distribution(True)[0], h.bin_width, 128, 60.0)
    assert 3.0 < t < 10.0


def test_entropy_few_bins_returns_max():
    assert entropy_threshold(np.array([3, 0, 1, 0]), 0.25, 128, 0.7) == 0.7


def _bruteforce_mse(a, levels, thresholds):
    out = []
    for t in thresholds:
        s = t / levels
        out.append(np.mean((a - np.clip(np.rint(a / s), 0, levels) * s) ** 2))
    return np.array(out)


def _samples(dist, n, rng):
    return {"laplace": rng.laplace(size=n), "normal": rng.standard_normal(n),
            "relu": np.maximum(rng.standard_normal(n), 0), "uniform": rng.uniform(-1, 1, n)}[dist]


def _bruteforce_argmin(a, levels, w):
    """Every bin-edge threshold near the optimum of a coarse sweep over the whole range."""
    ks = np.arange(8, 2049, 8)
    k0 = ks[np.argmin(_bruteforce_mse(a, levels, ks * w))]
    fine_k = np.arange(max(1, k0 - 24), min(2048, k0 + 24) + 1)
    fine = _bruteforce_mse(a, levels, fine_k * w)
    return fine_k, fine


@pytest.mark.parametrize("dist,signed", [("laplace", True), ("normal", True), ("relu", False),
                                         ("uniform", True)])
def test_mse_matches_bruteforce_on_raw_samples(dist, signed):
    rng = np.random.default_rng(3)
    x = _samples(dist, 200_000, rng)
    h = _add_all(AbsHistogram(2048), np.array_split(x, 3))
    levels = 127 if signed else 255
    counts, zeros = h.distribution(signed)
    w = h.bin_width
    t = mse_threshold(counts, w, levels, np.abs(x).max())
    a = np.abs(x)
    fine_k, fine = _bruteforce_argmin(a, levels, w)
    t_bf = fine_k[np.argmin(fine)] * w
    # Near its minimum the empirical MSE curve is flat to ~0.2 % sampling noise, so the two
    # argmins may sit a few bins apart; what must hold is that our threshold is as good.
    assert abs(t - t_bf) <= 8 * w, (t, t_bf, w)
    assert _bruteforce_mse(a, levels, [t])[0] <= fine.min() * 1.003
    # the closed-form expected error tracks the empirical one
    model = expected_squared_errors(counts, w, levels, fine_k) / a.size
    np.testing.assert_allclose(model, fine, rtol=0.01)


@pytest.mark.parametrize("dist,signed", [("laplace", True), ("relu", False)])
def test_mse_within_one_bin_of_bruteforce_when_density_is_uniform_in_bins(dist, signed):
    # Samples placed evenly inside each bin (the model's assumption, no sampling noise): the
    # brute-force argmin over the raw samples must be within one bin of ours.
    rng = np.random.default_rng(4)
    h = _add_all(AbsHistogram(2048), [_samples(dist, 100_000, rng)])
    levels = 127 if signed else 255
    counts, _ = h.distribution(signed)
    w = h.bin_width
    a = np.concatenate([(j + (np.arange(c) + 0.5) / c) * w
                        for j, c in enumerate(counts) if c])
    t = mse_threshold(counts, w, levels, a.max())
    fine_k, fine = _bruteforce_argmin(a, levels, w)
    assert abs(t - fine_k[np.argmin(fine)] * w) <= w + 1e-12


def test_expected_squared_errors_closed_form_cases():
    # one bin [0, 1) holding 12 values, T = 1, levels 1: rounding error of U(0,1) to {0, 1}
    # is 1/12 per value; T = 0.5 with 2 bins: clipping error of U(0.5, 1) at 0.5 is 1/12 … etc.
    e = expected_squared_errors(np.array([12.0]), 1.0, 1, [1])
    np.testing.assert_allclose(e, [12 / 12])
    # two bins of width 0.5, all mass in bin 1 = U(0.5, 1); T = 0.5 clips: ∫(x-.5)² = 1/24 /0.5
    e = expected_squared_errors(np.array([0.0, 6.0]), 0.5, 1, [1])
    np.testing.assert_allclose(e, [6 * (0.5 ** 2) / 3])
