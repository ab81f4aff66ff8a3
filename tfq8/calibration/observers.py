"""Activation observers: ``observe(x)`` records statistics, ``qparams()`` turns them into QParams.

As in torch.ao.quantization, the qparam math lives once in the base class
(:func:`tfq8.calibration.qparams.qparams_from_amax`); the methods differ only in what they
collect and in how they choose the threshold ``amax``:

=============  ==========================  ==================================================
method         collects                    threshold
=============  ==========================  ==================================================
``minmax``     running min / max           max |x| (max x for an unsigned tensor)
``percentile`` + |x| histogram             ``percentile``-th percentile of |x| (99.99)
``entropy``    + |x| histogram             TensorRT's KL-divergence search (2048 bins)
``mse``        + |x| histogram             least expected squared error, clipping included
=============  ==========================  ==================================================

Whatever the method, a tensor whose observed values are all integers within the 8-bit range
(a uint8 image cast to float) gets scale 1: lossless (``Observer.integer_qparams``).

Memory is bounded (O(num_bins)); activations are never stored. "Signed" is decided from the
observed minimum (< 0 → signed, s8 shifted by +128) unless the caller says otherwise. For an
unsigned (u8) choice on a tensor that was seen negative, the negative values are treated as
clipped to 0, i.e. the threshold is chosen for the distribution of max(x, 0).
"""
from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np

from tfq8.calibration.histogram import (
    DEFAULT_NUM_BINS,
    AbsHistogram,
    asymmetric_mse,
    entropy_threshold,
    mse_threshold,
    percentile_threshold,
)
from tfq8.calibration.qparams import (
    S8_LEVELS,
    U8_LEVELS,
    QParams,
    qparams_from_amax,
    qparams_from_range,
    qparams_from_scale,
)

SCHEMES = ("asymmetric", "symmetric")
# QParams.method of an integer-valued tensor quantized losslessly (Observer.integer_qparams)
INTEGER_SUFFIX = "+integers"
# QParams.method of a tensor given its full observed range (Calibrator's ``full_range``)
FULL_RANGE_SUFFIX = "+max"

__all__ = [
    "Observer",
    "MinMaxObserver",
    "HistogramObserver",
    "PercentileObserver",
    "EntropyObserver",
    "MSEObserver",
    "OBSERVERS",
    "SCHEMES",
    "INTEGER_SUFFIX",
    "FULL_RANGE_SUFFIX",
    "make_observer",
]


class Observer:
    """Base class: running min/max, counts, the NaN/Inf check and the qparam math."""

    method: ClassVar[str] = ""

    def __init__(self, name: str = "tensor"):
        self.name = str(name)
        self.min = math.inf
        self.max = -math.inf
        self.num_elements = 0
        self.num_samples = 0  # along axis 0 (1 per batch for a scalar)
        self.num_batches = 0
        self.integral = True  # every value seen so far is an integer (checked until one is not)

    @classmethod
    def with_args(cls, **kwargs):
        """A factory ``name -> observer`` with fixed arguments (torch's ``Observer.with_args``)."""
        return functools.partial(cls, **kwargs)

    # -- recording ------------------------------------------------------------------------

    def observe(self, x) -> None:
        """Records one batch of values of this tensor (any shape; a 0-size array is ignored)."""
        x = np.asarray(x)
        if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                       or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"tensor {self.name!r}: cannot calibrate values of dtype {x.dtype}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        elif x.dtype.itemsize < 4:
            x = x.astype(np.float32)
        if x.size == 0:
            return
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            n_nan = int(np.count_nonzero(np.isnan(x)))
            n_inf = int(np.count_nonzero(np.isinf(x)))
            raise ValueError(
                f"tensor {self.name!r}: calibration values contain NaN/Inf ({n_nan} NaN, "
                f"{n_inf} Inf of {x.size} values in batch {self.num_batches}); check the model "
                "and the calibration data")
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.num_elements += x.size
        self.num_samples += x.shape[0] if x.ndim else 1
        self.num_batches += 1
        if self.integral:
            self.integral = bool(np.array_equal(x, np.rint(x)))
        self._collect(x, max(-lo, hi))

    def _collect(self, x: np.ndarray, absmax: float) -> None:
        """Subclasses record more statistics here; ``x`` is finite and non-empty."""

    # -- qparams --------------------------------------------------------------------------

    @property
    def has_data(self) -> bool:
        return self.num_elements > 0

    def is_signed(self) -> bool:
        """True when a negative value was observed."""
        return self.min < 0

    def max_abs(self, signed: bool) -> float:
        """Largest magnitude the quantizer has to cover: max |x| (signed) or max(x, 0)."""
        return max(-self.min, self.max) if signed else max(self.max, 0.0)

    def qparams(self, signed: bool | None = None, scheme: str = "symmetric") -> QParams:
        """QParams of this tensor; ``signed=None`` decides from the observed min (< 0 → signed).

        scheme: how a signed tensor is quantized: "symmetric" (zero point 128, one threshold
        for |x|) or "asymmetric" (one threshold per side, zero point 1 … 254). Unsigned
        tensors always get zero point 0.
        """
        return self.qparams_with_notes(signed, scheme)[0]

    def qparams_with_notes(self, signed: bool | None = None, scheme: str = "symmetric",
                           full_range: bool = False) -> tuple[QParams, list[str]]:
        """Like :meth:`qparams`, plus notes about degenerate cases (e.g. an all-zero tensor).
        full_range: the observed max |x| (each side's max, asymmetric) instead of the method's
        threshold; method "<method>+max"."""
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if not self.has_data:
            raise ValueError(f"tensor {self.name!r}: observer has seen no data")
        signed = self.is_signed() if signed is None else bool(signed)
        exact = self.integer_qparams(signed)
        if exact is not None:
            return exact, []
        if full_range:
            if signed and scheme == "asymmetric" and max(-self.min, self.max) > 0.0:
                qp, note = qparams_from_range(max(-self.min, 0.0), max(self.max, 0.0),
                                              self.method + FULL_RANGE_SUFFIX)
            else:
                qp, note = qparams_from_amax(self.max_abs(signed), signed,
                                             self.method + FULL_RANGE_SUFFIX)
            return qp, [note] if note else []
        if signed and scheme == "asymmetric" and max(-self.min, self.max) > 0.0:
            return self._asymmetric_qparams(max(-self.min, 0.0), max(self.max, 0.0))
        absmax = self.max_abs(signed)
        notes = []
        if absmax == 0.0:
            amax = 0.0
        else:
            amax = self._threshold(signed, absmax)
            if not amax > 0.0:
                notes.append(f"{self.method} threshold was {amax!r}; using max |x| = {absmax!r}")
                amax = absmax
        qp, note = qparams_from_amax(amax, signed, self.method)
        if note:
            notes.append(note)
        return qp, notes

    def integer_qparams(self, signed: bool) -> QParams | None:
        """Scale 1 for a tensor whose every observed value is an integer in the 8-bit range
        (a uint8 image cast to float, counts, class ids): each value is then its own code, so
        the quantization is lossless, which no threshold of any method can beat (the histogram
        methods would clip bright pixels). Binary and constant tensors (max − min < 2) keep
        the method's own scale, which is exact for them too and finer for values that the
        calibration data did not show. method: "<method>+integers"."""
        if not self.integral or self.max - self.min < 2:
            return None
        lo, hi = (-128.0, 127.0) if signed else (0.0, 255.0)
        if not (lo <= self.min and self.max <= hi):
            return None
        return qparams_from_amax(127.0 if signed else 255.0, signed,
                                 self.method + INTEGER_SUFFIX)[0]

    def _threshold(self, signed: bool, absmax: float) -> float:
        """The threshold of this method, 0 < result ≤ absmax; called only when absmax > 0."""
        raise NotImplementedError

    def _side_threshold(self, negative: bool, side_max: float) -> float:
        """Asymmetric scheme: this method's threshold for one side (max(±x, 0))."""
        return side_max

    def _asymmetric_qparams(self, neg_max: float, pos_max: float) -> tuple[QParams, list[str]]:
        notes = []
        lo = self._side_threshold(True, neg_max) if neg_max > 0 else 0.0
        hi = self._side_threshold(False, pos_max) if pos_max > 0 else 0.0
        qp, note = qparams_from_range(lo, hi, self.method)
        if note:
            notes.append(note)
        return qp, notes

    def stats(self) -> dict:
        return {"min": self.min, "max": self.max, "num_elements": self.num_elements,
                "num_samples": self.num_samples, "num_batches": self.num_batches}

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, min={self.min!r}, max={self.max!r}, "
                f"num_elements={self.num_elements})")


class MinMaxObserver(Observer):
    """Max-abs calibration: the threshold is the largest observed magnitude (no clipping)."""

    method = "minmax"

    def _threshold(self, signed, absmax):
        return absmax


class HistogramObserver(Observer):
    """Base of the histogram methods: keeps an :class:`AbsHistogram` of the values."""

    def __init__(self, name: str = "tensor", num_bins: int = DEFAULT_NUM_BINS):
        super().__init__(name)
        self.histogram = AbsHistogram(num_bins)

    def _collect(self, x, absmax):
        self.histogram.add(x, absmax)

    def _threshold(self, signed, absmax):
        counts, zeros = self.histogram.distribution(signed)
        return self._threshold_from_histogram(counts, zeros, self.histogram.bin_width,
                                              S8_LEVELS if signed else U8_LEVELS, absmax)

    def _threshold_from_histogram(self, counts, zeros, bin_width, levels, absmax) -> float:
        raise NotImplementedError

    def _side_threshold(self, negative, side_max):
        # one side as an unsigned tensor: the other side counts as zeros; each side of an
        # asymmetric tensor has about half of the 255 steps, as |x| of a symmetric one does
        h = self.histogram
        side, other = (h.neg, h.pos) if negative else (h.pos, h.neg)
        zeros = h.zeros + int(other.sum())
        t = self._threshold_from_histogram(side.copy(), zeros, h.bin_width, S8_LEVELS, side_max)
        return t if t > 0 else side_max


class PercentileObserver(HistogramObserver):
    """The ``percentile``-th percentile of |x| (of max(x, 0) if unsigned), zeros included."""

    method = "percentile"

    def __init__(self, name: str = "tensor", num_bins: int = DEFAULT_NUM_BINS,
                 percentile: float = 99.99):
        super().__init__(name, num_bins)
        percentile = float(percentile)
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        self.percentile = percentile

    def _threshold_from_histogram(self, counts, zeros, bin_width, levels, absmax):
        if self.percentile == 100.0:
            return absmax
        return percentile_threshold(counts, zeros, bin_width, self.percentile, absmax)


class EntropyObserver(HistogramObserver):
    """TensorRT's KL-divergence (entropy) calibration; exact zeros left out of the search.

    Target bins: 128 for a signed tensor (|q| ≤ 127), 256 for an unsigned one (q ≤ 255).
    """

    method = "entropy"

    def _threshold_from_histogram(self, counts, zeros, bin_width, levels, absmax):
        return entropy_threshold(counts, bin_width, levels + 1, absmax)


class MSEObserver(HistogramObserver):
    """The threshold with the least expected squared quantization error (rounding + clipping)."""

    method = "mse"

    def _threshold_from_histogram(self, counts, zeros, bin_width, levels, absmax):
        return mse_threshold(counts, bin_width, levels, absmax)

    def _asymmetric_qparams(self, neg_max, pos_max):
        # joint search over (scale, zero point): the two sides share the scale
        h = self.histogram
        scale, zp = asymmetric_mse(h.pos, h.neg, h.bin_width, pos_max, neg_max)
        qp, note = qparams_from_scale(scale, zp, self.method)
        return qp, [note] if note else []


OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": MSEObserver,
}


def make_observer(method: str, name: str = "tensor", *, num_bins: int = DEFAULT_NUM_BINS,
                  percentile: float = 99.99) -> Observer:
    """An observer for ``method`` (one of ``OBSERVERS``); irrelevant arguments are ignored."""
    try:
        cls = OBSERVERS[method]
    except KeyError:
        raise ValueError(f"unknown calibration method {method!r}; choose one of "
                         f"{sorted(OBSERVERS)}") from None
    if cls is MinMaxObserver:
        return cls(name)
    if cls is PercentileObserver:
        return cls(name, num_bins=num_bins, percentile=percentile)
    return cls(name, num_bins=num_bins)
