"""Bias correction: fold the mean error that quantization adds to each conv/matmul into its bias.

Quantizing a layer's weights and its input shifts the *mean* of its output (a clipped input
tail, rounding of weights that does not average out over a channel). The shift is systematic,
so it adds up along the network (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", 2019; the empirical variant). tfq8 keeps biases in f32, so
a correction is exact to apply.

What is corrected, per output channel o of every INT8 conv, depthwise conv and matmul whose
input is INT8::

    Δ_o = E[ op(Q(x), Ŵ) − op(x, W) ]_o   (+ E[Q(s) − s]_o for a fused residual summand s)
    bias_o ← bias_o − Δ_o

where x is the layer's FP32 input on the calibration data, Q the fake quantizer of the
input's (scale, zero point) as the INT8 graph uses it, Ŵ the dequantized int8 weights, and E
the mean over samples and output positions. This is the error the layer itself adds given an
exact input (a *local* correction): errors from upstream layers are theirs to correct, so one
pass over the data suffices and nothing is corrected twice.

The mean is computed exactly without running any convolution on the data: an op is linear,
so E over samples commutes with it and the mean over output positions is Σ_taps Ŵ·(mean of
the input over the positions that tap reads, zero padding included). The pass therefore keeps
only the per-sample-summed input image (H·W·C floats) of x and of Q(x) per layer input.

Pure numpy, O(H·W·C) memory per corrected input tensor.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from tfq8.calibration.qparams import QParams, quantize_weights, weight_scales
from tfq8.graph.shapes import resolve_pads

__all__ = ["CorrectionSite", "BiasCorrector", "dequantized_weights", "mean_output"]


@dataclasses.dataclass
class CorrectionSite:
    """One layer to correct. kind: "conv" | "depthwise" | "matmul"; weights as in the graph
    (HWIO, HWCM for depthwise, (in, out) for matmul); pads [top, bottom, left, right], or
    "SAME" when they depend on the input size (tfq8.graph.shapes.resolve_pads)."""

    name: str
    kind: str
    input: str
    input_qparams: QParams
    weights: np.ndarray
    per_channel: bool = True
    strides: tuple = (1, 1)
    dilations: tuple = (1, 1)
    pads: tuple | str = (0, 0, 0, 0)
    summand: str | None = None
    summand_qparams: QParams | None = None
    int8_weights: tuple | None = None   # (int8, scales) when calibration chose the rounding

    def dequantized(self) -> np.ndarray:
        """The f32 weights the INT8 op effectively uses."""
        if self.int8_weights is None:
            return dequantized_weights(self.kind, self.weights, self.per_channel)
        wq, s = self.int8_weights
        s = np.asarray(s, np.float64).reshape(-1)
        if self.kind == "depthwise":
            kh, kw, c, m = wq.shape
            return (wq.reshape(kh, kw, c * m) * s).reshape(wq.shape)
        return wq.astype(np.float64) * s


def dequantized_weights(kind: str, w: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """The f32 weights the INT8 op effectively uses: int8 weights × their scales."""
    w = np.asarray(w, np.float32)
    if kind == "depthwise":
        kh, kw, c, m = w.shape
        flat = w.reshape(kh, kw, c * m)
        s = weight_scales(flat, axis=-1, per_channel=per_channel)
        return (quantize_weights(flat, s, axis=-1).astype(np.float64) * s).reshape(w.shape)
    s = weight_scales(w, axis=-1, per_channel=per_channel)
    return quantize_weights(w, s, axis=-1).astype(np.float64) * s


def _tap_means(img: np.ndarray, kh: int, kw: int, strides, dilations, pads) -> np.ndarray:
    """(kh, kw, C): mean over output positions of the zero-padded input each tap reads."""
    pads = resolve_pads(pads, img.shape[0], img.shape[1], kh, kw, strides, dilations)
    x = np.pad(img, [(pads[0], pads[1]), (pads[2], pads[3]), (0, 0)])
    sh, sw = strides
    dh, dw = dilations
    oh = (x.shape[0] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[1] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((kh, kw, x.shape[2]))
    for i in range(kh):
        for j in range(kw):
            win = x[i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            out[i, j] = win.mean(axis=(0, 1))
    return out


def mean_output(site: CorrectionSite, mean_input: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per output channel mean of op(x, w) over samples and positions, from mean_x over samples."""
    w = np.asarray(w, np.float64)
    if site.kind == "matmul":
        return mean_input.reshape(-1) @ w
    kh, kw = w.shape[0], w.shape[1]
    taps = _tap_means(mean_input, kh, kw, site.strides, site.dilations, site.pads)
    if site.kind == "depthwise":
        c, m = w.shape[2], w.shape[3]
        return np.einsum("ijc,ijcm->cm", taps, w).reshape(c * m)
    ci, co = w.shape[2], w.shape[3]
    groups = taps.shape[2] // ci    # a grouped conv: group g reads channels [g·ci, (g+1)·ci)
    if groups > 1:
        taps = taps.reshape(kh, kw, groups, ci)
        return np.einsum("ijgc,ijcgo->go", taps,
                         w.reshape(kh, kw, ci, groups, co // groups)).reshape(co)
    return np.einsum("ijc,ijco->o", taps, w)


def _fake_quant(x: np.ndarray, q: QParams) -> np.ndarray:
    return q.dequantize(q.quantize(x))


class BiasCorrector:
    """Accumulates what the corrections need over calibration batches, then gives Δ per site.

        bc = BiasCorrector(sites)
        for batch in batches: bc.observe(run(batch))   # run: batch → {tensor: FP32 value}
        deltas = bc.deltas()                             # {site name: Δ (f32, per channel)}
    """

    def __init__(self, sites: Iterable[CorrectionSite]):
        self.sites = list(sites)
        # (input tensor, qparams) → {sample shape: [Σ_samples x, Σ_samples Q(x), samples]}:
        # the means are maps over positions (padding matters), so batches of another image
        # size (a model with an unknown spatial size) accumulate apart and are weighted below
        self._x = {}
        self._s = {}      # summand tensor → Σ over samples and positions of Q(s) − s
        self._n = {}      # tensor → samples (rows) or elements per channel seen
        self.samples = 0

    @property
    def tensors(self) -> list[str]:
        """FP32 tensors the batches must provide."""
        names = {s.input for s in self.sites} | {s.summand for s in self.sites if s.summand}
        return sorted(names)

    def observe(self, values: Mapping[str, np.ndarray]) -> None:
        done = set()
        for site in self.sites:
            key = (site.input, site.input_qparams)
            if key not in done:
                done.add(key)
                x = np.asarray(values[site.input], np.float32)
                acc = self._x.setdefault(key, {}).setdefault(x.shape[1:], [0.0, 0.0, 0])
                acc[0] = acc[0] + x.sum(axis=0, dtype=np.float64)
                acc[1] = acc[1] + _fake_quant(x, site.input_qparams).sum(axis=0,
                                                                          dtype=np.float64)
                acc[2] += x.shape[0]
            if site.summand is not None and site.summand_qparams is not None:
                key = (site.summand, site.summand_qparams)
                if key not in done:
                    done.add(key)
                    s = np.asarray(values[site.summand], np.float32)
                    d = (_fake_quant(s, site.summand_qparams).astype(np.float64) - s)
                    d = d.reshape(-1, d.shape[-1])
                    self._s[key] = self._s.get(key, 0.0) + d.sum(axis=0)
                    self._n[key] = self._n.get(key, 0) + d.shape[0]

    def deltas(self) -> dict[str, np.ndarray]:
        """{site name: Δ} (subtract from the bias); empty before any batch was observed."""
        out = {}
        for site in self.sites:
            key = (site.input, site.input_qparams)
            shapes = [a for a in self._x.get(key, {}).values() if a[2] > 0]
            if not shapes:
                continue
            wq = site.dequantized()
            total = sum(a[2] for a in shapes)
            d = 0.0
            for sum_x, sum_qx, n in shapes:     # weighted by samples per input size
                d = d + (n / total) * (mean_output(site, sum_qx / n, wq)
                                       - mean_output(site, sum_x / n, site.weights))
            skey = (site.summand, site.summand_qparams)
            if site.summand is not None and skey in self._s:
                d = d + self._s[skey] / self._n[skey]
            out[site.name] = d.astype(np.float32)
        return out


def correct_biases(sites: Iterable[CorrectionSite], run_batch: Callable[[Any], Mapping],
                   batches: Iterable[Any]) -> dict[str, np.ndarray]:
    """One pass: ``run_batch(batch) → {tensor: FP32 value}`` over ``batches``; returns Δ."""
    bc = BiasCorrector(sites)
    for batch in batches:
        bc.observe(run_batch(batch))
    return bc.deltas()
