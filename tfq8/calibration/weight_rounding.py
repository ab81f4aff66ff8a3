"""Weight rounding that minimizes each layer's output error (GPTQ-style), not each weight's.

Round-to-nearest makes every int8 weight as close as it can be to its f32 value, but a layer's
output error is Σ_k (w_k − ŵ_k)·x_k: errors of weights whose inputs are correlated can cancel
or add up. With H = E[x xᵀ] (the layer's input second moments on calibration data) the output
error of one output channel is (w − ŵ)ᵀ H (w − ŵ). Optimal Brain Quantization (Frantar et al.,
"GPTQ", 2022, after Hassibi & Stork's Optimal Brain Surgeon) rounds the weights one at a time
and, after each, moves the not-yet-rounded weights of the channel to cancel the error just made
(the update the inverse Hessian prescribes). The scales stay the round-to-nearest ones
(max|w| / 127 per channel), so nothing about the INT8 op changes: only which int8 values it
holds.

What is estimated per layer (x: the layer's FP32 input on calibration data):
  conv (HWIO):        H over im2col rows, K = kh·kw·cin (one H for all output channels);
  depthwise (HWCM):   one kh·kw × kh·kw H per input channel;
  matmul ((in, out)): H over input rows, K = in.
The cost is O(rows · K²) per layer (the Σ x xᵀ products), so rows are sampled (output
positions, fixed seed): about TARGET_ROWS_PER_WEIGHT × K over the whole calibration set when the
number of batches is known, between MIN_ROWS_PER_BATCH and ROWS_PER_BATCH per batch (ResNet50's
14×14 3×3 convs, K = 2304: 1152 of 3136 positions per batch of 16 over 512 images), so the cost
does not grow with the image size or far past what H needs. A layer with fewer rows than
MIN_ROWS_PER_WEIGHT × K (a
classifier calibrated on a few hundred images) keeps round-to-nearest: H would be rank-
deficient there and the rounding would fit the calibration images rather than the layer.

Pure numpy. The result is the int8 weights; the quantize pass uses them as given.
"""
from __future__ import annotations

import base64
import dataclasses
import zlib
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from tfq8.calibration.qparams import PAIR_LIMIT, S8_LEVELS, weight_scales
from tfq8.graph.shapes import resolve_pads

__all__ = ["RoundingSite", "HessianAccumulator", "round_weights", "gptq_round",
           "encode_int8_weights", "decode_int8_weights",
           "gptq_round_depthwise", "pair_partners", "ROWS_PER_BATCH", "MIN_ROWS_PER_BATCH",
           "TARGET_ROWS_PER_WEIGHT", "MIN_ROWS_PER_WEIGHT"]

ROWS_PER_BATCH = 4096
MIN_ROWS_PER_BATCH = 512
TARGET_ROWS_PER_WEIGHT = 32
MIN_ROWS_PER_WEIGHT = 8
DAMPING = 0.01      # × mean diagonal of H: keeps H⁻¹ well conditioned (GPTQ's choice)
BLOCK = 128         # columns rounded per lazy block update


@dataclasses.dataclass
class RoundingSite:
    """One layer. kind: "conv" | "depthwise" | "matmul"; weights as in the graph (HWIO, HWCM,
    (in, out)); pads [top, bottom, left, right], or "SAME" when they depend on the input size
    (tfq8.graph.shapes.resolve_pads); u8_safe_pairs: round conv/matmul weights
    u8-safe in pairs (tfq8.calibration.qparams.fit_u8_pairs)."""

    name: str
    kind: str
    input: str
    weights: np.ndarray
    per_channel: bool = True
    strides: tuple = (1, 1)
    dilations: tuple = (1, 1)
    pads: tuple | str = (0, 0, 0, 0)
    u8_safe_pairs: bool = False

    @property
    def num_inputs(self) -> int:
        """K: weights per output channel."""
        w = self.weights
        return int(w.shape[0] * w.shape[1]) if self.kind == "depthwise" else int(
            np.prod(w.shape[:-1]))


def _sample_positions(x: np.ndarray, site: RoundingSite, rng: np.random.Generator,
                      limit: int = ROWS_PER_BATCH):
    kh, kw = site.weights.shape[0], site.weights.shape[1]
    n, h, w, _ = x.shape
    t, b, l, r = resolve_pads(site.pads, h, w, kh, kw, site.strides, site.dilations)
    oh = (h + t + b - site.dilations[0] * (kh - 1) - 1) // site.strides[0] + 1
    ow = (w + l + r - site.dilations[1] * (kw - 1) - 1) // site.strides[1] + 1
    total = n * oh * ow
    if total > limit:
        return np.sort(rng.choice(total, limit, replace=False))
    return np.arange(total)


def _patch_rows(x: np.ndarray, site: RoundingSite, idx: np.ndarray) -> np.ndarray:
    """(R, kh·kw, C): the input values each tap reads at the output positions idx."""
    kh, kw = site.weights.shape[0], site.weights.shape[1]
    sh, sw = site.strides
    dh, dw = site.dilations
    n, h, w, _ = x.shape
    t, b, l, r = resolve_pads(site.pads, h, w, kh, kw, site.strides, site.dilations)
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (w + l + r - dw * (kw - 1) - 1) // sw + 1
    bi, rem = np.divmod(idx, oh * ow)
    oy, ox = np.divmod(rem, ow)
    xp = np.pad(x, [(0, 0), (t, b), (l, r), (0, 0)])
    ky, kx = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
    ys = (oy * sh)[:, None] + ky.reshape(1, -1)
    xs = (ox * sw)[:, None] + kx.reshape(1, -1)
    return xp[bi[:, None], ys, xs]          # (R, kh·kw, C)


class HessianAccumulator:
    """Σ x xᵀ per site over calibration batches.

        acc = HessianAccumulator(sites)
        for batch in batches: acc.observe(run(batch))   # run: batch → {tensor: FP32 value}
        weights = acc.round()                             # {site name: (int8 weights, scales)}
    """

    def __init__(self, sites: Iterable[RoundingSite], seed: int = 0,
                 expected_batches: int | None = None):
        self.sites = [s for s in sites if _supported(s)]
        self._h = {}
        self._rows = {}
        self._rng = np.random.default_rng(seed)
        self._expected_batches = expected_batches

    @property
    def tensors(self) -> list[str]:
        return sorted({s.input for s in self.sites})

    def _row_limit(self, site: RoundingSite) -> int:
        if not self._expected_batches:
            return ROWS_PER_BATCH
        want = -(-TARGET_ROWS_PER_WEIGHT * site.num_inputs // self._expected_batches)
        return int(min(ROWS_PER_BATCH, max(MIN_ROWS_PER_BATCH, want)))

    def observe(self, values: Mapping[str, np.ndarray]) -> None:
        """values: {input tensor: FP32 value} for one batch."""
        for site in self.sites:
            x = np.asarray(values[site.input], np.float32)
            if site.kind == "matmul":
                p = x.reshape(-1, x.shape[-1])
            else:
                idx = _sample_positions(x, site, self._rng, self._row_limit(site))
                p = _patch_rows(x, site, idx)
            # f32 products (the sgemm is the pass's main cost), summed over batches in f64
            if site.kind == "depthwise":
                taps = p.shape[1]
                h = np.empty((p.shape[2], taps, taps), np.float32)
                for a in range(taps):       # tap pairs: cheaper than a (C, taps, R) transpose
                    for b in range(a, taps):
                        h[:, a, b] = h[:, b, a] = np.einsum("rc,rc->c", p[:, a], p[:, b])
            else:
                p = p.reshape(p.shape[0], -1)
                h = p.T @ p
            self._h[site.name] = self._h.get(site.name, 0.0) + h.astype(np.float64)
            self._rows[site.name] = self._rows.get(site.name, 0) + p.shape[0]

    def round(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for site in self.sites:
            rows = self._rows.get(site.name, 0)
            if rows < MIN_ROWS_PER_WEIGHT * site.num_inputs:
                continue
            h = self._h[site.name] / rows
            w = np.asarray(site.weights, np.float64)
            if site.kind == "depthwise":
                kh, kw, c, m = w.shape
                flat = w.reshape(kh * kw, c * m)
                s = weight_scales(flat.reshape(kh, kw, c * m), axis=-1,
                                  per_channel=site.per_channel)
                hc = np.repeat(h, m, axis=0)          # channel c·m + j reads input channel c
                q = gptq_round_depthwise(flat.T, hc, s)
                out[site.name] = (q.T.reshape(w.shape).astype(np.int8), s)
            else:
                s = weight_scales(w, axis=-1, per_channel=site.per_channel,
                                  u8_safe_pairs=site.u8_safe_pairs)
                partner = pair_partners(w.shape[:-1]) if site.u8_safe_pairs else None
                q = gptq_round(w.reshape(-1, w.shape[-1]).T, h, s, partner)
                out[site.name] = (q.T.reshape(w.shape).astype(np.int8), s)
        return out


def _supported(site: RoundingSite) -> bool:
    w = site.weights
    if site.kind == "matmul":
        return w.ndim == 2
    return site.kind in ("conv", "depthwise") and w.ndim == 4


def _damped(h: np.ndarray) -> np.ndarray:
    """H + λI, λ = DAMPING × mean diagonal; an input never non-zero (zero diagonal) gets the
    mean diagonal, which leaves it decoupled from the others."""
    h = np.array(h, np.float64)
    diag = np.diagonal(h, axis1=-2, axis2=-1)
    dead = diag <= 0
    mean = np.where(dead, 0.0, diag).sum(-1, keepdims=True) / np.maximum(
        (~dead).sum(-1, keepdims=True), 1)
    mean = np.where(mean > 0, mean, 1.0)
    lam = DAMPING * mean
    k = h.shape[-1]
    eye = np.eye(k)
    h = h + lam[..., None] * eye + dead[..., None] * eye * mean[..., None]
    return h


def _upper_inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """U upper triangular with Uᵀ U = H⁻¹ (the factor OBQ's sequential updates read)."""
    hinv = np.linalg.inv(h)
    hinv = (hinv + np.swapaxes(hinv, -1, -2)) / 2
    return np.swapaxes(np.linalg.cholesky(hinv), -1, -2)


def _q(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(w / s), -S8_LEVELS, S8_LEVELS)


def pair_partners(shape) -> np.ndarray:
    """For weights of shape (..., IC) flattened to K (HWIO rows, (in,) of a matmul): the K index
    of each weight's u8-safe pair partner (input channel 2j ↔ 2j + 1 of the same tap), −1 for
    an odd last channel (see tfq8.calibration.qparams.fit_u8_pairs)."""
    ic = int(shape[-1])
    k = np.arange(int(np.prod(shape)))
    c = k % ic
    return np.where(c % 2 == 0, np.where(c + 1 < ic, k + 1, -1), k - 1)


def gptq_round(w: np.ndarray, h: np.ndarray, scales: np.ndarray,
               partner: np.ndarray | None = None) -> np.ndarray:
    """w (out, K) f64, h (K, K), scales (out,) or (1,) → int levels (out, K), −127…127.

    Columns in order of decreasing H diagonal (the inputs with the most energy are rounded
    first, while the most other weights are still free to compensate). With ``partner``
    (pair_partners), the second weight of each pair to be rounded is clipped so that the pair
    stays u8-safe (same sign: |q0| + |q1| ≤ PAIR_LIMIT); the compensation then absorbs that
    clipping like any rounding error."""
    w = np.array(w, np.float64)
    s = np.asarray(scales, np.float64).reshape(-1, 1)
    h = _damped(h)    # a dead input is decoupled in H: its weight keeps round-to-nearest
    order = np.argsort(-np.diagonal(h), kind="stable")
    w = w[:, order]
    u = _upper_inverse_cholesky(h[np.ix_(order, order)])
    k = w.shape[1]
    q = np.empty_like(w)
    if partner is not None:
        rank = np.empty(k, np.int64)
        rank[order] = np.arange(k)                # column of each original index in q
        mate = np.asarray(partner)[order]         # original index of each column's partner
        mate_col = np.where(mate >= 0, rank[np.maximum(mate, 0)], k)
    for i1 in range(0, k, BLOCK):
        i2 = min(i1 + BLOCK, k)
        w1 = w[:, i1:i2].copy()
        err = np.empty_like(w1)
        u1 = u[i1:i2, i1:i2]
        for j in range(i2 - i1):
            qj = _q(w1[:, j:j + 1], s)
            if partner is not None and mate_col[i1 + j] < i1 + j:   # partner already rounded
                qm = q[:, mate_col[i1 + j]:mate_col[i1 + j] + 1]
                hi = np.where(qm > 0, PAIR_LIMIT - qm, S8_LEVELS)
                lo = np.where(qm < 0, -PAIR_LIMIT - qm, -S8_LEVELS)
                qj = np.clip(qj, lo, hi)
            q[:, i1 + j] = qj[:, 0]
            e = (w1[:, j] - qj[:, 0] * s[:, 0]) / u1[j, j]
            w1[:, j:] -= e[:, None] * u1[j, j:][None, :]
            err[:, j] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    out = np.empty_like(q)
    out[:, order] = q
    return out


def gptq_round_depthwise(w: np.ndarray, h: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """w (C, K), h (C, K, K) one H per channel, scales (C,) or (1,) → int levels (C, K)."""
    w = np.array(w, np.float64)
    s = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (w.shape[0],))
    h = _damped(h)    # a dead input is decoupled in H: its weight keeps round-to-nearest
    u = _upper_inverse_cholesky(h)
    q = np.empty_like(w)
    for j in range(w.shape[1]):
        q[:, j] = _q(w[:, j], s)
        e = (w[:, j] - q[:, j] * s) / u[:, j, j]
        w[:, j:] -= e[:, None] * u[:, j, j:]
    return q


def round_weights(sites: Iterable[RoundingSite], run_batch: Callable[[Any], Mapping],
                  batches: Iterable[Any], expected_batches: int | None = None
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One pass: ``run_batch(batch) → {input tensor: FP32 value}`` over ``batches`` (about
    ``expected_batches`` of them, when known: sizes the row sampling); returns {site name:
    (int8 weights, f32 scales)}."""
    acc = HessianAccumulator(sites, expected_batches=expected_batches)
    for batch in batches:
        acc.observe(run_batch(batch))
    return acc.round()


def encode_int8_weights(wq: np.ndarray, rtn: np.ndarray) -> str:
    """Compact text for the calibration table: the int8 weights as their difference from
    round-to-nearest (mostly 0 and ±1) modulo 256, zlib-compressed, base64."""
    d = (np.asarray(wq, np.int16) - np.asarray(rtn, np.int16)) & 0xFF
    return base64.b64encode(zlib.compress(d.astype(np.uint8).tobytes(), 6)).decode("ascii")


def decode_int8_weights(text: str, rtn: np.ndarray, name: str = "") -> np.ndarray:
    """Inverse of encode_int8_weights given the same round-to-nearest weights."""
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as e:
        raise ValueError(f"the calibration table's weight rounding for {name!r} is corrupt "
                         f"({e}); recalibrate") from e
    d = np.frombuffer(raw, np.uint8)
    if d.size != rtn.size:
        raise ValueError(f"the calibration table's weight rounding for {name!r} has {d.size} "
                         f"values, the layer has {rtn.size} weights; recalibrate")
    wq = ((rtn.astype(np.int16) + d.reshape(rtn.shape) + 128) & 0xFF) - 128
    if np.any(wq < -S8_LEVELS):
        raise ValueError(f"the calibration table's weight rounding for {name!r} does not fit "
                         f"this model's weights; recalibrate")
    return wq.astype(np.int8)
