"""Bounded-memory |x| histogram and the threshold searches that run on it.

``AbsHistogram`` keeps, for one tensor, a fixed number of bins (2048 by default) over
[0, range]: one histogram for x > 0, one for x < 0 (both by |x|), and the count of exact
zeros. Memory is O(num_bins), whatever the number of batches.

Growing range, one pass: the first non-zero batch sets ``range`` to its max |x|. When a later
batch exceeds it, the range grows by the smallest integer factor k with ``k·range >= max|x|``
and every k adjacent old bins are summed into one new bin. Old bins nest exactly in new ones,
so re-binning moves no mass across bin edges and makes no within-bin assumption: the result is
the histogram one would have got with the final range from the start. The price is resolution:
the final range is < 2× the final max|x|, so the data spans between num_bins/2 and num_bins
bins (exactly num_bins when the first batch holds the maximum). (PyTorch's HistogramObserver
instead re-bins onto the exact new max by spreading old bins uniformly, keeping full resolution
but blurring the histogram a little at every growth.)

Threshold searches (all return a threshold ``amax`` ≤ the observed max):

* ``percentile_threshold``: the q-th percentile of |x|, the same order statistic and linear
  interpolation as ``np.percentile`` with each order statistic placed by uniform density inside
  its bin, so the answer is within one bin width of ``np.percentile``.
* ``entropy_threshold``: TensorRT's KL-divergence calibration (Migacz, "8-bit Inference with
  TensorRT", GTC 2017). For each candidate i (bins [0, i) kept), P = bins[:i] with the clipped
  mass added to bin i−1; Q = bins[:i] merged into ``levels+1`` equal chunks (chunk c starts at
  bin ceil(c·i/(levels+1)), as in NVIDIA's pytorch-quantization) and expanded back, each
  chunk's mass spread evenly over its non-empty bins; threshold = i·bin_width, the right edge
  of the last kept bin, for the i of least KL(P‖Q) (ties: the largest i). Candidates run from
  i = levels+1 up to the last non-empty bin. (The GTC slide writes the threshold as
  (m + 0.5)·bin_width, half a bin further; pytorch-quantization and MXNet use the edge.)
  Candidates where P has mass and Q none (the clipped mass lands in an empty bin) have
  KL = ∞ and are skipped (no smoothing). Exact zeros are left out of P and Q: 0 is exactly representable in
  both schemes, and the spike of zeros after a ReLU otherwise drags the threshold down
  (pytorch-quantization works around the same spike with ``bins[0] = bins[1]``).
  Number of target bins = number of quantization levels of |x|, zero included: 128 for a
  signed tensor (|q| = 0…127, TensorRT's int8 choice) and 256 for a non-negative u8 tensor
  (q = 0…255); the same 1 << (bits − 1 + unsigned) rule pytorch-quantization uses.
* ``mse_threshold``: the threshold minimizing the expected squared quantization error,
  rounding error inside [0, T] plus clipping error above T, computed in closed form assuming
  uniform density inside each bin (exact zeros contribute no error and are left out).
  Candidates are the bin edges k·bin_width, k = 1 … (bins in use).
* ``asymmetric_mse``: for a signed tensor quantized asymmetrically (zero point z, q = 0 … 255),
  the (scale, z) minimizing the same expected squared error, positive side on the grid
  s·{0 … 255 − z} clipped at (255 − z)·s, negative side on s·{0 … z} clipped at z·s. Searched
  over every z in 1 … 254 and a geometric grid of scales (``side_squared_errors`` gives one
  side's error for all (scale, levels) pairs at once, with cumulative sums).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "AbsHistogram",
    "percentile_threshold",
    "entropy_threshold",
    "kl_divergences",
    "mse_threshold",
    "expected_squared_errors",
    "side_squared_errors",
    "asymmetric_mse",
    "DEFAULT_NUM_BINS",
]

DEFAULT_NUM_BINS = 2048


class AbsHistogram:
    """Histogram of |x| with a fixed number of bins, split by sign; exact zeros counted apart."""

    def __init__(self, num_bins: int = DEFAULT_NUM_BINS):
        num_bins = int(num_bins)
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins = num_bins
        self.range = 0.0  # 0 until the first non-zero value is seen
        self.pos = np.zeros(num_bins, np.int64)  # x > 0, by |x|
        self.neg = np.zeros(num_bins, np.int64)  # x < 0, by |x|
        self.zeros = 0  # x == 0
        self.num_rebins = 0

    @property
    def bin_width(self) -> float:
        return self.range / self.num_bins

    @property
    def total(self) -> int:
        return int(self.pos.sum() + self.neg.sum()) + self.zeros

    def add(self, x: np.ndarray, absmax: float | None = None) -> None:
        """Adds a finite float array; ``absmax`` (max |x|), if the caller knows it, saves a pass."""
        x = np.asarray(x)
        if x.size == 0:
            return
        if absmax is None:
            absmax = float(np.max(np.abs(x)))
        nzeros = int(np.count_nonzero(x == 0))
        self.zeros += nzeros
        if absmax == 0.0:
            return
        if absmax > self.range:
            self._grow(absmax)
        n = self.num_bins
        r = np.float64(self.range)  # float64 edges: no value within the range can fall out
        h, _ = np.histogram(x, bins=2 * n, range=(-r, r))
        if int(h.sum()) != x.size:
            raise AssertionError("histogram lost values: "
                                 f"{x.size - int(h.sum())} outside [-{r!r}, {r!r}]")
        self.pos += h[n:]
        self.pos[0] -= nzeros  # zeros land in the first positive bin; they are counted apart
        self.neg += h[n - 1::-1]

    def _grow(self, absmax: float) -> None:
        if self.range == 0.0:
            self.range = float(absmax)
            return
        k = max(2, math.ceil(absmax / self.range))
        while self.range * k < absmax:
            k += 1
        self.pos = _merge(self.pos, k)
        self.neg = _merge(self.neg, k)
        self.range = self.range * k
        self.num_rebins += 1

    def distribution(self, signed: bool) -> tuple[np.ndarray, int]:
        """(non-zero counts by |value| bin, count of zeros) of what the quantizer sees.

        signed: |x|. Unsigned: max(x, 0); negative values are clipped to 0 and counted as zeros.
        """
        if signed:
            return self.pos + self.neg, self.zeros
        return self.pos.copy(), self.zeros + int(self.neg.sum())


def _merge(hist: np.ndarray, k: int) -> np.ndarray:
    n = hist.size
    groups = -(-n // k)
    padded = np.zeros(groups * k, hist.dtype)
    padded[:n] = hist
    out = np.zeros(n, hist.dtype)
    out[:groups] = padded.reshape(groups, k).sum(axis=1)
    return out


def _used_bins(hist: np.ndarray) -> int:
    nz = np.flatnonzero(hist)
    return int(nz[-1]) + 1 if nz.size else 0


# ---------------------------------------------------------------------------------------------
# percentile


def percentile_threshold(hist: np.ndarray, zeros: int, bin_width: float, percentile: float,
                         absmax: float) -> float:
    """The ``percentile``-th percentile of a distribution given as |x| bin counts plus zeros."""
    hist = np.asarray(hist, np.int64)
    total = int(hist.sum()) + int(zeros)
    if total == 0:
        raise ValueError("empty histogram")
    pos = percentile / 100.0 * (total - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, total - 1)
    frac = pos - lo
    cum = np.cumsum(hist)

    def order_stat(i: int) -> float:
        if i < zeros:
            return 0.0
        j = i - zeros
        b = int(np.searchsorted(cum, j, side="right"))
        before = int(cum[b]) - int(hist[b])
        return (b + (j - before + 0.5) / int(hist[b])) * bin_width

    v_lo = order_stat(lo)
    v = v_lo + frac * (order_stat(hi) - v_lo) if frac else v_lo
    return float(min(v, absmax))


# ---------------------------------------------------------------------------------------------
# entropy (KL divergence)


def kl_divergences(hist: np.ndarray, num_quant_bins: int,
                   stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """KL(P_i ‖ Q_i) for every candidate i in [num_quant_bins, stop] (see module docstring).

    Vectorized over candidates with prefix sums: for chunk c of candidate i, every bin with
    counts gets Q mass avg_c = chunk_sum/chunk_nonempty_bins, so
    Σ p log q = Σ_c S_c log avg_c (S_c = P mass of the chunk) and
    KL = (Σ p log p − Σ p log q)/Zp − log Zp + log Zq.
    Returns (candidates i, divergences), ∞ where P has mass that Q lacks.
    """
    h = np.asarray(hist, np.float64)
    nq = int(num_quant_bins)
    if stop is None:
        stop = h.size
    if stop < nq:
        return np.zeros(0, np.int64), np.zeros(0)
    total = h.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    c_sum = np.concatenate([[0.0], np.cumsum(h)])
    c_nz = np.concatenate([[0], np.cumsum(h > 0)])
    c_hlogh = np.concatenate([[0.0], np.cumsum(hlogh)])

    cand = np.arange(nq, stop + 1, dtype=np.int64)
    j = np.arange(nq + 1, dtype=np.int64)
    starts = -(-(j[None, :] * cand[:, None]) // nq)  # ceil(j·i/nq), shape (m, nq+1)
    sums = c_sum[starts[:, 1:]] - c_sum[starts[:, :-1]]
    nnz = c_nz[starts[:, 1:]] - c_nz[starts[:, :-1]]
    outliers = total - c_sum[cand]
    p_mass = sums.copy()
    p_mass[:, -1] += outliers
    with np.errstate(divide="ignore", invalid="ignore"):
        log_avg = np.log(np.where(nnz > 0, sums / np.maximum(nnz, 1), 1.0))
        sum_plogq = np.sum(np.where(sums > 0, p_mass * log_avg, 0.0), axis=1)
        last = h[cand - 1] + outliers
        last_log = np.log(np.where(last > 0, last, 1.0))
        sum_plogp = c_hlogh[cand - 1] + np.where(last > 0, last * last_log, 0.0)
        z_q = c_sum[cand]
        kl = (sum_plogp - sum_plogq) / total - np.log(total) + np.log(z_q)
    # clipped mass dropped into an empty last bin, where Q is 0
    kl = np.where((outliers > 0) & (h[cand - 1] == 0), np.inf, kl)
    kl = np.where(z_q > 0, kl, np.inf)
    return cand, np.maximum(kl, 0.0)


def entropy_threshold(hist: np.ndarray, bin_width: float, num_quant_bins: int,
                      absmax: float) -> float:
    """TensorRT's KL-divergence threshold on non-zero |x| counts (zeros left out)."""
    hist = np.asarray(hist)
    used = _used_bins(hist)
    if used <= num_quant_bins:
        # no more histogram bins than quantization levels: nothing worth clipping
        return float(absmax)
    cand, kl = kl_divergences(hist[:used], num_quant_bins)
    finite = np.isfinite(kl)
    if not finite.any():
        return float(absmax)
    best = np.min(kl[finite])
    i = int(cand[np.flatnonzero(kl == best)[-1]])  # ties: the largest threshold (least clipping)
    return float(min(i * bin_width, absmax))


# ---------------------------------------------------------------------------------------------
# MSE


def _sawtooth_integral(u: np.ndarray) -> np.ndarray:
    """∫_0^u (v − round(v))² dv."""
    # u = n + r, n = round(u), r in [−½, ½): ∫_0^u = n·(1/12) + ∫_0^r v² dv = n/12 + r³/3
    n = np.floor(u + 0.5)
    r = u - n
    r3 = r * r
    r3 *= r
    r3 *= 1.0 / 3.0
    n *= 1.0 / 12.0
    n += r3
    return n


def expected_squared_errors(hist: np.ndarray, bin_width: float, levels: int,
                            candidates: np.ndarray, block: int = 64) -> np.ndarray:
    """Σ over values of (x − Q_T(x))², T = k·bin_width for each integer k in ``candidates``.

    Q_T rounds to the grid s·{0…levels}, s = T/levels, and clips at T. Density is uniform in
    each bin [j·w, (j+1)·w). Rounding error of bin j < k: c_j·(s³/w)·[H(u_{j+1}) − H(u_j)],
    u = edge/s, H the sawtooth integral; clipping error of bin j ≥ k:
    c_j·w²·((j−k)² + (j−k) + 1/3), summed with suffix sums of c, c·j, c·j².
    """
    c = np.asarray(hist, np.float64)
    n = c.size
    w = float(bin_width)
    cand = np.asarray(candidates, np.int64)
    if cand.size and (cand.min() < 1 or cand.max() > n):
        raise ValueError(f"candidates must be in 1..{n}")
    j = np.arange(n, dtype=np.float64)
    # clipping: suffix sums (index k = sum over j >= k)
    s0 = np.concatenate([np.cumsum(c[::-1])[::-1], [0.0]])
    s1 = np.concatenate([np.cumsum((c * j)[::-1])[::-1], [0.0]])
    s2 = np.concatenate([np.cumsum((c * j * j)[::-1])[::-1], [0.0]])
    kf = cand.astype(np.float64)
    clip = (s2[cand] - 2 * kf * s1[cand] + kf * kf * s0[cand]) + (s1[cand] - kf * s0[cand]) \
        + s0[cand] / 3.0
    # rounding inside [0, T]: only bins j < k, a block of candidates at a time
    inside = np.empty(cand.size)
    order = np.argsort(cand)
    for b0 in range(0, cand.size, block):
        idx = order[b0:b0 + block]
        k = kf[idx, None]
        m = int(cand[idx].max())
        saw = _sawtooth_integral(np.arange(m + 1, dtype=np.float64)[None, :] * (levels / k))
        per_bin = (saw[:, 1:] - saw[:, :-1]) * (k / levels) ** 3
        per_bin = np.where(j[None, :m] < k, per_bin, 0.0)
        inside[idx] = per_bin @ c[:m]
    return (inside + clip) * (w * w)


def mse_threshold(hist: np.ndarray, bin_width: float, levels: int, absmax: float) -> float:
    """Threshold (a bin edge) minimizing the expected squared error of non-zero |x| counts."""
    hist = np.asarray(hist)
    used = _used_bins(hist)
    if used == 0:
        return float(absmax)
    cand = np.arange(1, used + 1)
    err = expected_squared_errors(hist[:used], bin_width, levels, cand)
    k = int(cand[int(np.argmin(err))])
    return float(min(k * bin_width, absmax))


def side_squared_errors(hist: np.ndarray, bin_width: float, scales: np.ndarray,
                        levels: np.ndarray) -> np.ndarray:
    """E[k, i]: Σ (x − Q(x))² of one side's |x| counts on the grid scales[k]·{0 … levels[i]},
    clipped at T = levels[i]·scales[k] (any real T, not only bin edges).

    Uniform density in each bin: rounding error of a bin (part) below T is
    (c/w)·s³·[H(b/s) − H(a/s)], H the sawtooth integral; clipping error of a bin (part) above T
    is (c/w)·∫(x − T)² dx, summed over whole bins with suffix sums of c, c·j, c·j².
    """
    c = np.asarray(hist, np.float64)
    n = c.size
    w = float(bin_width)
    s = np.asarray(scales, np.float64).reshape(-1, 1)
    lv = np.asarray(levels, np.float64).reshape(1, -1)
    edges = np.arange(n + 1, dtype=np.float64) * w
    saw = _sawtooth_integral(edges[None, :] / s)
    per_bin = (saw[:, 1:] - saw[:, :-1]) * (s ** 3) * (c / w)[None, :]
    rounding = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(per_bin, axis=1)], axis=1)
    j = np.arange(n, dtype=np.float64)
    s0 = np.concatenate([np.cumsum(c[::-1])[::-1], [0.0]])
    s1 = np.concatenate([np.cumsum((c * j)[::-1])[::-1], [0.0]])
    s2 = np.concatenate([np.cumsum((c * j * j)[::-1])[::-1], [0.0]])
    t = lv * s                                           # (K, L) clipping thresholds
    m = np.floor(t / w).astype(np.int64)                 # bin holding T
    beyond = m >= n                                      # T past the data: no clipping
    mc = np.minimum(m, n - 1)
    em = mc * w
    cm = c[mc]
    part_round = cm / w * s ** 3 * (lv / 12.0 - _sawtooth_integral(em / s))
    part_clip = cm / w * (em + w - t) ** 3 / 3.0
    k1 = mc + 1                                          # whole bins above T: a = j·w − T
    a0, a1, a2 = s0[k1], s1[k1], s2[k1]
    clip = (a2 * w * w - 2 * a1 * w * t + a0 * t * t) + w * (a1 * w - a0 * t) + a0 * w * w / 3
    err = rounding[np.arange(s.shape[0])[:, None], mc] + part_round + part_clip + clip
    return np.where(beyond, rounding[:, n][:, None], err)


def asymmetric_mse(pos: np.ndarray, neg: np.ndarray, bin_width: float, pos_max: float,
                   neg_max: float, num_scales: int = 320) -> tuple[float, int]:
    """(scale, zero_point) of least expected squared error for a signed tensor, q = 0 … 255.

    pos / neg: |x| counts of x > 0 / x < 0 (same bins); exact zeros are exact and left out.
    Scales: ``num_scales`` geometric steps from (pos_max + neg_max)/255 (no clipping) down to
    1/64 of it; zero points 1 … 254.
    """
    top = (float(pos_max) + float(neg_max)) / 255.0
    if not top > 0:
        return 1.0, 128
    scales = top * np.geomspace(1.0 / 64, 1.0, int(num_scales))
    z = np.arange(1, 255)
    err = side_squared_errors(pos, bin_width, scales, 255 - z) \
        + side_squared_errors(neg, bin_width, scales, z)
    k, i = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(scales[k]), int(z[i])
