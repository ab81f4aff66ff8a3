"""Quantization parameters: the one place where a threshold becomes a scale and a zero point.

tfq8's activation scheme is fixed (docs/int8_numerics.md):

* non-negative tensor (e.g. after ReLU): uint8, ``zero_point = 0``,   ``scale = amax / 255``
  (real 0 … amax ↦ q 0 … 255);
* tensor that can be negative, symmetric scheme: "s8 shifted by +128": uint8,
  ``zero_point = 128``, ``scale = amax / 127`` (real −amax … amax ↦ q 1 … 255, symmetric
  around 128; the quantizer may still emit q = 0, i.e. −128·scale, for values below
  −amax − scale/2);
* tensor that can be negative, asymmetric scheme (:func:`qparams_from_range`): separate
  thresholds ``lo`` (negative side) and ``hi`` (positive side), ``scale = (lo + hi) / 255``,
  ``zero_point = round(lo / scale)`` clamped to 1 … 254 (real −lo … hi ↦ q 0 … 255: all 256
  codes used, none wasted on a side that has no values).

Weights are int8 in −127 … 127 with per-output-channel (or per-tensor, shape ``[1]``) scales
``max|w| / 127``. With QuantConfig.u8_safe_pairs, conv and matmul weights are also kept
"u8-safe in pairs" (:func:`weight_scales`, :func:`fit_u8_pairs`): two same-sign weights of
input channels 2j and 2j + 1 (one tap, one output channel) have |w0| + |w1| ≤ 128, which lets
AVX2 CPUs without VNNI multiply with ``vpmaddubsw`` exactly.

Scales are rounded once to float32 here, because the graph stores them as float32 attributes
and the kernels compute their constants from those float32 values; the table therefore holds
exactly the scale the INT8 graph will use. ``amax`` stays a (double) Python float.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "QParams",
    "qparams_from_amax",
    "qparams_from_range",
    "qparams_from_scale",
    "weight_scales",
    "quantize_weights",
    "fit_u8_pairs",
    "u8_pair_kernel_eligible",
    "u8_pair_widening",
    "u8_pair_violations",
    "PAIR_LIMIT",
    "U8_PAIR_MAX_NOISE",
    "U8_LEVELS",
    "S8_LEVELS",
]

#: largest quantized magnitude of a non-negative (u8, zero point 0) tensor
U8_LEVELS = 255
#: largest quantized magnitude of a signed (s8 shifted by +128) tensor or an int8 weight
S8_LEVELS = 127

#: largest |w0| + |w1| of two same-sign weights in one u8-safe pair: 255 · 128 < 2¹⁵
PAIR_LIMIT = 128

#: QuantConfig.u8_safe_pairs makes a layer u8-safe only if widening its scales grows its weight
#: noise by at most this factor on average (mean over output channels of (s'/s)²); others keep
#: their plain scales and the exact s16 kernel
U8_PAIR_MAX_NOISE = 1.25

_F32_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class QParams:
    """Quantization parameters of one uint8 activation tensor.

    real = (q − zero_point) · scale.  ``amax`` is the clipping threshold the observer chose
    (|real| ≤ amax is representable without clipping), ``method`` the observer that chose it.
    """

    scale: float
    zero_point: int
    signed: bool
    amax: float
    method: str

    @property
    def levels(self) -> int:
        """Largest quantized magnitude: 127 (signed) or 255 (unsigned); for an asymmetric signed
        tensor, the levels of its larger side."""
        if self.signed and self.zero_point != 128:
            return max(self.zero_point, U8_LEVELS - self.zero_point)
        return S8_LEVELS if self.signed else U8_LEVELS

    def quantize(self, x) -> np.ndarray:
        """Reference f32 → u8 quantizer, exactly as docs/int8_numerics.md ("Quantize") writes it.

        inv = f32(1/double(scale)); t = x·inv (f32); clamp to [−zp, 255−zp]; round half to even.
        """
        x = np.asarray(x, dtype=np.float32)
        inv = np.float32(1.0 / float(self.scale))
        zp = np.float32(self.zero_point)
        with np.errstate(invalid="ignore", over="ignore"):
            t = x * inv
            t = np.where(np.isnan(t), -zp, t)  # NaN becomes q = 0, as in the kernels
        t = np.minimum(np.maximum(t, -zp), np.float32(255) - zp)
        return (np.rint(t) + zp).astype(np.uint8)

    def dequantize(self, q) -> np.ndarray:
        """Reference u8 → f32: f32(q − zp) · scale."""
        q = np.asarray(q).astype(np.int32)
        return (q - self.zero_point).astype(np.float32) * np.float32(self.scale)


def qparams_from_amax(amax: float, signed: bool, method: str) -> tuple[QParams, str | None]:
    """Shared qparam math of all observers: threshold → (QParams, note or None).

    A zero (or too tiny to give a normal float32 scale) threshold gets scale 1.0 and a note:
    every value of such a tensor quantizes to the zero point, which is exact for an all-zero
    tensor.
    """
    amax = float(amax)
    if not np.isfinite(amax) or amax < 0:
        raise ValueError(f"amax must be finite and >= 0, got {amax!r}")
    signed = bool(signed)
    levels = S8_LEVELS if signed else U8_LEVELS
    zero_point = 128 if signed else 0
    note = None
    scale = float(np.float32(amax / levels))
    if scale < _F32_TINY:
        note = (f"threshold {amax!r} is zero (all observed values are 0, or clipped to 0); "
                "scale set to 1.0, every value quantizes to the zero point")
        scale = 1.0
    return QParams(scale=scale, zero_point=zero_point, signed=signed, amax=amax,
                   method=method), note


def qparams_from_range(lo: float, hi: float, method: str) -> tuple[QParams, str | None]:
    """Asymmetric qparams of a signed tensor: real −lo … hi ↦ q 0 … 255 (lo, hi ≥ 0).

    ``scale = f32((lo + hi) / 255)``, ``zero_point = round(lo / scale)`` clamped to 1 … 254 so
    both signs keep at least one level. ``amax`` records max(lo, hi).
    """
    lo, hi = float(lo), float(hi)
    for v in (lo, hi):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"lo and hi must be finite and >= 0, got {lo!r}, {hi!r}")
    scale = float(np.float32((lo + hi) / U8_LEVELS))
    if scale < _F32_TINY:
        return qparams_from_amax(0.0, True, method)
    zero_point = int(np.clip(np.rint(lo / scale), 1, U8_LEVELS - 1))
    return QParams(scale=scale, zero_point=zero_point, signed=True, amax=max(lo, hi),
                   method=method), None


def qparams_from_scale(scale: float, zero_point: int, method: str) -> tuple[QParams, str | None]:
    """Signed qparams from a scale and zero point chosen directly (e.g. by an MSE search)."""
    scale = float(np.float32(scale))
    if not np.isfinite(scale) or scale < _F32_TINY:
        return qparams_from_amax(0.0, True, method)
    zero_point = int(np.clip(zero_point, 1, U8_LEVELS - 1))
    amax = scale * max(zero_point, U8_LEVELS - zero_point)
    return QParams(scale=scale, zero_point=zero_point, signed=True, amax=amax,
                   method=method), None


def _channel_axis(w: np.ndarray, axis: int) -> int:
    if w.ndim == 0:
        raise ValueError("weights must have at least one dimension")
    if not -w.ndim <= axis < w.ndim:
        raise ValueError(f"axis {axis} is out of range for weights of shape {w.shape}")
    return axis % w.ndim


def _check_weights(w, what="weights") -> np.ndarray:
    w = np.asarray(w)
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise TypeError(f"{what} must be a real numeric array, got dtype {w.dtype}")
    if w.size == 0:
        raise ValueError(f"{what} are empty (shape {w.shape})")
    if np.issubdtype(w.dtype, np.floating) and not np.all(np.isfinite(w)):
        raise ValueError(f"{what} contain NaN or Inf")
    return w


def weight_scales(w: np.ndarray, axis: int = -1, per_channel: bool = True,
                  u8_safe_pairs: bool = False) -> np.ndarray:
    """Symmetric int8 (−127…127) weight scales: max|w| / 127, as float32.

    ``axis`` is the output-channel axis: −1 for Conv2D (HWIO) and MatMul ((in, out)) weights.
    A DepthwiseConv2dNative filter (H, W, C, M) has C·M output channels: reshape it to
    (H, W, C·M) first. Returns shape ``[w.shape[axis]]`` (per channel) or ``[1]`` (per tensor).
    An all-zero channel (or tensor) gets scale 1.0 (its weights quantize to 0 either way).

    ``u8_safe_pairs`` (conv / matmul weights, input channels on axis −2): the scale is at least
    the largest same-sign pair sum |w0| + |w1| (input channels 2j, 2j + 1) / 128, so the pairs
    round to (nearly always) u8-safe int8 values (fit_u8_pairs fixes the rare off-by-one).
    Widening the scale costs less than moving the breaking pairs: on MobileNetV2's trained
    weights 2.3 dB of weight SQNR (42.6 → 40.3 dB) against 18 dB.
    """
    w = _check_weights(w)

    def largest(x, per_channel_axis):
        if not per_channel:
            return np.array([np.max(x)]) if x.size else np.zeros(1)
        reduce_axes = tuple(i for i in range(x.ndim) if i != per_channel_axis)
        return np.asarray(np.max(x, axis=reduce_axes) if reduce_axes else x,
                          dtype=np.float64).reshape(-1)

    ax = _channel_axis(w, axis)
    amax = largest(np.abs(w.astype(np.float64)), ax)
    if u8_safe_pairs and w.ndim >= 2 and w.shape[-2] >= 2:
        a, b = _pair_views(w.astype(np.float64), -2)     # input channels moved to axis 0
        pair = np.where(a * b > 0, np.abs(a) + np.abs(b), 0.0)
        pair_ax = ax + 1 if ax < w.ndim - 2 else (0 if ax == w.ndim - 2 else ax)
        amax = np.maximum(amax, largest(pair, pair_ax) * (S8_LEVELS / PAIR_LIMIT))
    scales = (amax / S8_LEVELS).astype(np.float32)
    scales[~(scales >= _F32_TINY)] = 1.0
    return scales


def u8_pair_kernel_eligible(kh: int, kw: int, strides, dilations, in_channels: int) -> bool:
    """Whether the AVX2 kernels run a conv with u8-safe weight pairs on the u8 kernel
    (custom_ops/kernels/cpu/conv2d.cc, PackConv — keep the two in step): not 3×3 stride-1
    undilated convs with 16…1024 input channels (exact Winograd is faster there), not
    multi-tap convs with fewer than 16 input channels (a network's first layer: dense im2col
    rows). Elsewhere widening the scales would cost accuracy for no speed. MatMuls are 1×1."""
    taps = int(kh) * int(kw)
    if taps > 1 and in_channels < 16:
        return False
    winograd = (int(kh) == 3 and int(kw) == 3 and list(map(int, strides)) == [1, 1]
                and list(map(int, dilations)) == [1, 1] and 16 <= in_channels <= 1024)
    return not winograd


def u8_pair_widening(w: np.ndarray) -> np.ndarray:
    """Per output channel (axis −1) of conv / matmul weights (input channels on axis −2): how
    much ``weight_scales(u8_safe_pairs=True)`` widens the scale, ≥ 1 (the weight noise grows
    by its square)."""
    plain = weight_scales(w, axis=-1).astype(np.float64)
    return weight_scales(w, axis=-1, u8_safe_pairs=True).astype(np.float64) / plain


def quantize_weights(w: np.ndarray, scales: np.ndarray, axis: int = -1) -> np.ndarray:
    """int8 weights: clip(round_half_to_even(w / scale), −127, 127).

    The division is done in double on the float32 scale (host-side constant math, see
    docs/int8_numerics.md). ``scales`` has shape ``[w.shape[axis]]`` or ``[1]`` / ``[]``
    (per tensor).
    """
    w = _check_weights(w)
    scales = np.asarray(scales, dtype=np.float32)
    if scales.ndim > 1:
        raise ValueError(f"scales must be 1-D, got shape {scales.shape}")
    if np.any(~(scales > 0)) or not np.all(np.isfinite(scales)):
        raise ValueError("scales must be finite and > 0")
    s = scales.astype(np.float64)
    if s.size != 1:
        ax = _channel_axis(w, axis)
        if s.size != w.shape[ax]:
            raise ValueError(f"{s.size} scales for {w.shape[ax]} channels on axis {axis} "
                             f"of weights with shape {w.shape}")
        shape = [1] * w.ndim
        shape[ax] = s.size
        s = s.reshape(shape)
    else:
        s = s.reshape(())
    q = np.rint(w.astype(np.float64) / s)
    return np.clip(q, -S8_LEVELS, S8_LEVELS).astype(np.int8)


def _pair_views(x: np.ndarray, axis: int):
    """(first, second): views of x's elements at input channels 2j and 2j + 1 along ``axis``
    (an odd last channel has no partner)."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0] // 2 * 2
    return x[0:n:2], x[1:n:2]


def u8_pair_violations(q: np.ndarray, axis: int = -2) -> int:
    """How many pairs of int8 weights (input channels 2j, 2j + 1 along ``axis``: −2 for HWIO
    conv and (in, out) matmul weights) have the same sign and |w0| + |w1| > PAIR_LIMIT."""
    a, b = _pair_views(np.asarray(q, np.int32), axis)
    return int(np.count_nonzero((a * b > 0) & (np.abs(a) + np.abs(b) > PAIR_LIMIT)))


def fit_u8_pairs(q: np.ndarray, target: np.ndarray, axis: int = -2) -> np.ndarray:
    """int8 weights ``q`` with every pair that breaks the u8-safe rule moved onto it.

    The rule: for input channels 2j and 2j + 1 along ``axis`` (per tap and output channel),
    same-sign weights have |w0| + |w1| ≤ PAIR_LIMIT (128), so that u8 · w0 + u8 · w1 fits
    int16: AVX2 without VNNI multiplies u8 by s8 with ``vpmaddubsw``, which saturates such
    pair sums, so the kernels use it only on weights that follow the rule (PackConv checks).
    ``target`` holds the unrounded values w / scale (same shape). A breaking pair becomes the
    nearest integer pair on |w0| + |w1| = 128: both magnitudes move down by half the excess,
    (|t0| − |t1| + 128) / 2 rounded for the first, 128 minus that for the second — the least
    squared error to the targets. Pairs that follow the rule are returned unchanged. At plain
    max|w| / 127 scales many pairs break it (2.7 % of trained MobileNetV2's, 24 % of uniformly
    initialised ResNet50's) and moving them costs far more than widening the scales
    (weight_scales(u8_safe_pairs=True)); at the widened scales only rounding's off-by-one is
    left for this function.
    """
    q = np.array(q, np.int8)
    t = np.asarray(target, np.float64)
    if q.shape != t.shape:
        raise ValueError(f"weights {q.shape} and targets {t.shape} differ in shape")
    a, b = _pair_views(q, axis)               # views into q: assignments write through
    ta, tb = _pair_views(t, axis)
    ai, bi = a.astype(np.int32), b.astype(np.int32)
    bad = (ai * bi > 0) & (np.abs(ai) + np.abs(bi) > PAIR_LIMIT)
    if not bad.any():
        return q
    sign = np.sign(ai[bad])
    fa = np.minimum(np.abs(ta[bad]), S8_LEVELS)
    fb = np.minimum(np.abs(tb[bad]), S8_LEVELS)
    ma = np.clip(np.rint((fa - fb + PAIR_LIMIT) / 2), PAIR_LIMIT - S8_LEVELS, S8_LEVELS)
    a[bad] = (sign * ma).astype(np.int8)
    b[bad] = (sign * (PAIR_LIMIT - ma)).astype(np.int8)
    return q
