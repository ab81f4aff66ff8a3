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
``max|w| / 127``.

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
    "U8_LEVELS",
    "S8_LEVELS",
]

#: largest quantized magnitude of a non-negative (u8, zero point 0) tensor
U8_LEVELS = 255
#: largest quantized magnitude of a signed (s8 shifted by +128) tensor or an int8 weight
S8_LEVELS = 127

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


def weight_scales(w: np.ndarray, axis: int = -1, per_channel: bool = True) -> np.ndarray:
    """Symmetric int8 (−127…127) weight scales: max|w| / 127, as float32.

    ``axis`` is the output-channel axis: −1 for Conv2D (HWIO) and MatMul ((in, out)) weights.
    A DepthwiseConv2dNative filter (H, W, C, M) has C·M output channels: reshape it to
    (H, W, C·M) first. Returns shape ``[w.shape[axis]]`` (per channel) or ``[1]`` (per tensor).
    An all-zero channel (or tensor) gets scale 1.0 (its weights quantize to 0 either way).
    """
    w = _check_weights(w)
    if per_channel:
        ax = _channel_axis(w, axis)
        reduce_axes = tuple(i for i in range(w.ndim) if i != ax)
        amax = np.max(np.abs(w.astype(np.float64)), axis=reduce_axes) if reduce_axes else \
            np.abs(w.astype(np.float64))
        amax = np.asarray(amax, dtype=np.float64).reshape(-1)
    else:
        amax = np.array([np.max(np.abs(w.astype(np.float64)))])
    scales = (amax / S8_LEVELS).astype(np.float32)
    scales[~(scales >= _F32_TINY)] = 1.0
    return scales


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
