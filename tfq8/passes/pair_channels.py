"""pair_channels — permute channel spaces so that u8-safe weight pairs cost little (exact in FP32).

With ``QuantConfig(u8_safe_pairs=True)`` every pair of same-sign int8 weights that AVX2 without
VNNI multiplies together — input channels 2j and 2j + 1 of one tap and output channel — must
keep |w0| + |w1| ≤ 128 (tfq8.calibration.qparams), which the quantizer gets by widening each
output channel's scale to its largest same-sign pair / 128. Which input channels share a pair
is only a matter of channel order, and channel order is free: permuting the channels of a
*permutation space* — every tensor between the linear ops that write it and the linear ops that
read it — leaves every tensor outside the space, and so the model's outputs, unchanged:

    producers   Conv2D | _FusedConv2D | MatMul | _FusedMatMul      W[..., π], b[π]
    inside      per-element ops (Relu, Relu6, Sigmoid, …), Add/Mul/… of a scalar, of a constant
                per-channel vector (v[..., π]) or of two space tensors (MobileNetV2's residual
                adds, an SE block's gate), DepthwiseConv2dNative with multiplier 1 (W[:, :, π]),
                MaxPool / AvgPool, Pad without channel padding, Mean / Max / Sum over H, W
    consumers   Conv2D | _FusedConv2D | MatMul | _FusedMatMul (input 0)   W[.., π, :]

Unlike equalization's positive scales, a permutation commutes with every per-channel op, so a
MobileNetV2 block's expand conv → ReLU6 → depthwise → ReLU6 → project conv is one space and the
project conv's pairs are chosen freely. Anything else that reads a space tensor (a concat, a
reshape, a graph output, a grouped conv) leaves the space as it is, with a note.

The order: pair channels so that the consumers' scales widen least. For a consumer whose
weights run on the u8 kernel (tfq8.calibration.qparams.u8_pair_kernel_eligible: not the
Winograd 3×3 convs, not a network's small-IC first conv), output channel o's scale widens by
f_o = max(1, max over pairs and taps of the same-sign |w_a| + |w_b| / (max|w| · 128 / 127)),
its weight noise by f_o². The cost of a pairing is the sum over such consumers of mean_o f_o².
Start: channels sorted by their typical relative magnitude, the largest paired with the smallest
(or the original order, if cheaper); then repeatedly take the pair that sets the worst f_o and
try every exchange of partners with another pair, keeping the best one that lowers the cost
(a local search, deterministic). Trained MobileNetV2's project convs go from a mean f² of ~1.6
to ~1.1 (docs/benchmarks.md, session 14).

Runs only when ``ctx.options["u8_safe_pairs"]`` is true (tfq8.quantize sets it); after
equalization, whose scales change the weights it pairs.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
from tensorflow.core.framework import graph_pb2

from tfq8.calibration.qparams import (PAIR_LIMIT, S8_LEVELS, U8_PAIR_MAX_NOISE,
                                     u8_pair_kernel_eligible)
from tfq8.graph import Editor, GraphIndex, get_attr
from tfq8.passes.equalize import ChannelSpace, collect_spaces
from tfq8.passes.pipeline import Pass, PassContext, PassResult

__all__ = ["PairChannels", "PermutationSpace", "pair_cost", "pairing", "permutation_spaces"]

LINEAR_OPS = {"Conv2D", "_FusedConv2D", "MatMul", "_FusedMatMul"}
MATMUL_OPS = {"MatMul", "_FusedMatMul"}
# one data input, applied per element: commute with any channel permutation
ELEMENTWISE = {"Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus",
               "Softsign", "Identity", "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log",
               "Erf", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "Gelu", "Swish"}
BINARY = {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "BiasAdd",
          "SquaredDifference"}
REDUCE = {"Mean", "Max", "Min", "Sum"}
PERMUTABLE_FUSED = {"BiasAdd", "Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh"}


@dataclasses.dataclass
class PermutationSpace(ChannelSpace):
    """Tensors sharing one channel axis that may be permuted together (module docstring).

    As equalize's ChannelSpace (``producers`` / ``consumers``: linear nodes writing / reading
    it; ``reason``: why it cannot be permuted, None: it can; ``biases`` unused), plus
    ``vectors``: (node, input slot) of constant per-channel operands inside, and
    ``depthwise``: depthwise convs inside."""

    vectors: List[tuple] = dataclasses.field(default_factory=list)
    depthwise: List[str] = dataclasses.field(default_factory=list)


def _nhwc(node) -> bool:
    return get_attr(node, "data_format", "NHWC") in ("NHWC", b"NHWC")


def _weights(index: GraphIndex, node) -> Optional[np.ndarray]:
    ins = index.data_inputs(node)
    return index.const_value(ins[1]) if len(ins) > 1 else None


def _is_producer(index: GraphIndex, node) -> bool:
    if node.op not in LINEAR_OPS or _weights(index, node) is None:
        return False
    if node.op in MATMUL_OPS:
        if get_attr(node, "transpose_a", False):
            return False
    elif not _nhwc(node):
        return False
    if node.op.startswith("_Fused"):
        ops = [o.decode() if isinstance(o, bytes) else o for o in get_attr(node, "fused_ops", [])]
        if not set(ops) <= PERMUTABLE_FUSED:
            return False
        # every extra operand (bias, LeakyRelu has none) must be a constant per-channel vector
        for t in index.data_inputs(node)[2:]:
            v = index.const_value(t)
            if v is None or v.ndim != 1:
                return False
    return True


def _is_consumer(index: GraphIndex, node, slot: int) -> bool:
    if node.op not in LINEAR_OPS or slot != 0 or _weights(index, node) is None:
        return False
    if node.op in MATMUL_OPS:
        return not get_attr(node, "transpose_a", False)
    return _nhwc(node)


def _inside_kind(index: GraphIndex, node, slot: int, shapes) -> Optional[str]:
    """How a node reading a space tensor on input ``slot`` continues the space: "same", "vec"
    (a constant per-channel operand to permute), "join" (the other operand is a space tensor
    too), "dw" (a depthwise conv with multiplier 1) or None (it ends the space)."""
    ins = index.data_inputs(node)
    if node.op in ELEMENTWISE and len(ins) == 1:
        return "same"
    if node.op in ("MaxPool", "AvgPool") and slot == 0:
        ok = (_nhwc(node) and list(get_attr(node, "ksize", [1] * 4))[3:] == [1]
              and list(get_attr(node, "strides", [1] * 4))[3:] == [1])
        return "same" if ok else None
    if node.op in ("Pad", "PadV2", "MirrorPad") and slot == 0:
        pads = index.const_value(ins[1])
        if pads is None or pads.ndim != 2 or np.any(pads[-1] != 0):
            return None
        if node.op == "PadV2" and index.const_value(ins[2]) is None:
            return None
        return "same"
    if node.op in REDUCE and slot == 0:
        axes = index.const_value(ins[1])
        x = shapes.get(ins[0])   # the axes only mean H, W on a rank-4 tensor
        if (axes is not None and x is not None and len(x) == 4
                and set(int(a) % 4 for a in np.ravel(axes)) <= {1, 2}):
            return "same"
        return None
    if node.op == "DepthwiseConv2dNative" and slot == 0:
        w = index.const_value(ins[1])
        return "dw" if (w is not None and w.ndim == 4 and w.shape[3] == 1 and _nhwc(node)) \
            else None
    if node.op in BINARY and len(ins) == 2:
        if node.op == "BiasAdd" and not _nhwc(node):
            return None
        other = index.const_value(ins[1 - slot])
        if other is None:
            return "join"
        if other.size == 1:
            return "same"
        if other.ndim >= 1 and other.size == other.shape[-1]:
            return "vec"
        return None
    return None


def permutation_spaces(graph_def: graph_pb2.GraphDef, outputs=(), shapes=None
                       ) -> List[PermutationSpace]:
    """Every permutation space that starts at a linear producer, in graph order, refused or
    not. ``shapes`` (tfq8.graph.infer_shapes) finds grouped convs; without it a conv whose
    input channels are unknown is assumed not grouped only if it reads a space."""
    index = GraphIndex(graph_def, outputs)
    shapes = shapes or {}

    def member(n, space, seen):
        if n.name in seen:     # a node two producers' walks reach: they meet through an op
            space.reason = space.reason or f"{n.name} joins two spaces"  # not understood
        if n.op in LINEAR_OPS:   # only producers get here (the start, or via a join)
            space.producers.append(n.name)
            grouped = _grouped(index, n, shapes)
            if grouped:
                space.reason = space.reason or grouped
            return
        if n.op in BINARY:
            for slot, t in enumerate(index.data_inputs(n)):
                v = index.const_value(t)
                if v is not None and v.size > 1:
                    space.vectors.append((n.name, slot))
        if n.op == "DepthwiseConv2dNative":
            space.depthwise.append(n.name)

    spaces = collect_spaces(index, PermutationSpace, lambda n: _is_producer(index, n), member,
                            lambda c, i: _is_consumer(index, c, i),
                            lambda c, i: _inside_kind(index, c, i, shapes),
                            lambda src, refuse: _backward(index, src, refuse, shapes))
    for space in spaces:
        def refuse(reason, space=space):
            if space.reason is None:
                space.reason = reason

        space.tensors.sort(key=lambda t: index.position[t[:-2]])
        if space.reason is None:
            _check_channels(index, space, refuse)
    return spaces


def _grouped(index: GraphIndex, node, shapes) -> Optional[str]:
    """A reason if ``node`` is (or may be) a grouped conv, whose output channels belong to
    groups and cannot move freely."""
    if node.op in MATMUL_OPS:
        return None
    x = shapes.get(index.data_inputs(node)[0])
    w = _weights(index, node)
    if x is None or len(x) != 4 or x[3] is None:
        return f"{node.name}: input channels unknown (a grouped conv cannot be permuted)"
    if x[3] != w.shape[2]:
        return f"{node.name} is a grouped conv"
    return None


def _backward(index: GraphIndex, node, refuse, shapes) -> List[str]:
    """Nodes to add to a space when ``node``'s output joins it through a binary op."""
    if _is_producer(index, node):
        return [node.name]
    ins = index.data_inputs(node)
    if ins:
        kind = _inside_kind(index, node, 0, shapes)
        if kind in ("same", "vec", "dw"):
            return [node.name] + _backward(index, index.producer(ins[0]), refuse, shapes)
        if kind == "join":
            return ([node.name] + _backward(index, index.producer(ins[0]), refuse, shapes)
                    + _backward(index, index.producer(ins[1]), refuse, shapes))
    refuse(f"{node.op} {node.name} writes into the space and is not permutable")
    return []


def _out_channels(index: GraphIndex, node) -> int:
    w = _weights(index, node)
    if node.op in MATMUL_OPS and get_attr(node, "transpose_b", False):
        return int(w.shape[0])
    return int(w.shape[-1])


def _in_channels(index: GraphIndex, node) -> int:
    w = _weights(index, node)
    if node.op in MATMUL_OPS:
        return int(w.shape[1] if get_attr(node, "transpose_b", False) else w.shape[0])
    return int(w.shape[2])


def _check_channels(index: GraphIndex, space: PermutationSpace, refuse) -> None:
    space.channels = _out_channels(index, index.node(space.producers[0]))
    for name in space.producers:
        n = index.node(name)
        if _out_channels(index, n) != space.channels:
            refuse(f"{name} writes {_out_channels(index, n)} channels, not {space.channels}")
        for t in index.data_inputs(n)[2:]:
            if index.const_value(t).shape != (space.channels,):
                refuse(f"{name}'s operand {t} does not have {space.channels} channels")
    for name, slot in space.vectors:
        v = index.const_value(index.data_inputs(name)[slot])
        if v.shape[-1] != space.channels:
            refuse(f"{name} applies a constant of shape {v.shape}, not ({space.channels},)")
    for name in space.depthwise:
        n = index.node(name)
        if _weights(index, n).shape[2] != space.channels:
            refuse(f"{name} has {_weights(index, n).shape[2]} channels, not {space.channels}")
    for name in space.consumers:
        n = index.node(name)
        if _in_channels(index, n) != space.channels:
            refuse(f"{name} reads {_in_channels(index, n)} channels (grouped?), not "
                   f"{space.channels}")


# ------------------------------------------------------------------ the pairing
def _consumer_matrix(index: GraphIndex, name) -> Optional[np.ndarray]:
    """A consumer's weights as (taps, in, out) when they would run on the u8-pair kernel, else
    None (their pairs cost nothing: another kernel runs them)."""
    n = index.node(name)
    w = _weights(index, n).astype(np.float64)
    if n.op in MATMUL_OPS:
        w = w.T if get_attr(n, "transpose_b", False) else w
        return w[None]
    kh, kw, ic, oc = w.shape
    strides = list(get_attr(n, "strides", [1, 1, 1, 1]))[1:3]
    dil = list(get_attr(n, "dilations", [1, 1, 1, 1]))[1:3]
    if not u8_pair_kernel_eligible(kh, kw, strides, dil, ic):
        return None
    return w.reshape(kh * kw, ic, oc)


def pair_cost(mats: List[np.ndarray], perm: np.ndarray) -> float:
    """Σ over consumers of mean over output channels of f_o² (module docstring) with input
    channels in the order ``perm`` (new channel j is old channel perm[j])."""
    total = 0.0
    for w in mats:
        w = w[:, perm]
        n = w.shape[1] // 2 * 2
        a, b = w[:, 0:n:2], w[:, 1:n:2]
        pair = np.where(a * b > 0, np.abs(a) + np.abs(b), 0.0).max(axis=(0, 1))
        limit = np.abs(w).max(axis=(0, 1)) * (PAIR_LIMIT / S8_LEVELS)
        f = np.where(limit > 0, pair / np.where(limit > 0, limit, 1.0), 1.0)
        total += float(np.mean(np.maximum(f, 1.0) ** 2))
    return total


class _Search:
    """Local search over pairings (see the module docstring). Channels are paired (a, b); an
    odd channel count gets a virtual all-zero channel, whose partner goes last (the kernels pad
    the last pair with zeros). Per consumer, weights are kept as |w| / (max|w| · 128 / 127) of
    their output channel and a sign bit: a pair's f is the largest sum over same-sign taps."""

    CANDIDATES = 64   # exchanges scored on every consumer per step (pre-chosen on the target)

    def __init__(self, mats: List[np.ndarray]):
        c = mats[0].shape[1]
        self.c = c
        self.mag, self.pos = [], []
        for w in mats:
            if c % 2:
                w = np.concatenate([w, np.zeros_like(w[:, :1])], axis=1)
            limit = np.abs(w).max(axis=(0, 1)) * (PAIR_LIMIT / S8_LEVELS)
            limit = np.where(limit > 0, limit, np.inf)
            # (in, taps, out): rows of one channel are contiguous for the gathers below
            self.mag.append(np.ascontiguousarray(np.moveaxis(np.abs(w) / limit, 1, 0),
                                                 dtype=np.float32))
            self.pos.append(np.ascontiguousarray(np.moveaxis(w > 0, 1, 0)))

    def values(self, m, a, b, col=None):
        """f of pairs (a[i], b[i]) per output channel of consumer m: (len(a), out), or of
        output channel ``col`` only: (len(a),). Zero weights count as negative: their pair
        sum is at most the partner's magnitude, which never exceeds the limit."""
        mag, pos = self.mag[m], self.pos[m]
        if col is None:
            x, y = mag[a], mag[b]
            same = pos[a] == pos[b]
        else:
            x, y = mag[a, :, col], mag[b, :, col]
            same = pos[a, :, col] == pos[b, :, col]
        return np.where(same, x + y, 0.0).max(axis=1)

    def cost_of(self, pairs) -> float:
        return sum(float(np.mean(np.maximum(self.values(m, pairs[:, 0], pairs[:, 1]).max(0),
                                            1.0) ** 2)) for m in range(len(self.mag)))

    def initial(self) -> np.ndarray:
        n = self.c + self.c % 2
        size = np.zeros(n)
        for mag in self.mag:
            size += mag.max(axis=1).mean(axis=1)
        order = np.argsort(-size, kind="stable")
        sorted_pairs = np.stack([order[: n // 2], order[n // 2:][::-1]], axis=1)
        identity = np.arange(n).reshape(-1, 2)
        return min((sorted_pairs, identity), key=self.cost_of)

    def run(self, pairs: np.ndarray, max_steps: int) -> np.ndarray:
        """Exchanges partners while that lowers the cost: each step takes the worst (consumer,
        output channel) whose bottleneck pair p is not known to be stuck, pre-chooses the
        exchanges of p's partners with another pair q that lower that channel's f most, scores
        those on every consumer, and applies the best one if it lowers the total."""
        pairs = pairs.copy()
        npairs = len(pairs)
        if npairs < 3:
            return pairs
        nm = len(self.mag)
        vals = [self.values(m, pairs[:, 0], pairs[:, 1]) for m in range(nm)]
        top = [None] * nm           # per consumer: (top-3 rows, their values) per column
        stuck = set()
        for _ in range(max_steps):
            best_f, target = 1.0, None
            for m in range(nm):
                if top[m] is None:
                    rows = np.argpartition(-vals[m], 2, axis=0)[:3]     # (3, out)
                    top[m] = (rows, np.take_along_axis(vals[m], rows, axis=0))
                rows, rowv = top[m]
                first = rowv.argmax(0)
                col = np.take_along_axis(rowv, first[None], axis=0)[0]
                arg = np.take_along_axis(rows, first[None], axis=0)[0]
                for o in np.argsort(-col):
                    if col[o] <= best_f:
                        break
                    if (m, int(arg[o])) not in stuck:
                        best_f, target = col[o], (m, int(o), int(arg[o]))
                        break
            if target is None:
                break
            tm, to, p = target
            q = np.delete(np.arange(npairs), p)
            a, b = pairs[p]
            c, d = pairs[q, 0], pairs[q, 1]
            configs = ((a, c, b, d), (a, d, b, c))
            # pre-choice on the target channel: the exchanges that lower its f most
            pre = []
            for k, (x0, y0, x1, y1) in enumerate(configs):
                nx = self.values(tm, np.full(len(q), x0), y0, to)
                ny = self.values(tm, np.full(len(q), x1), y1, to)
                pre.append(np.maximum(nx, ny))
            pre = np.stack(pre)                                         # (2, Q)
            flat = np.argsort(pre, axis=None, kind="stable")[:self.CANDIDATES]
            flat = flat[pre.reshape(-1)[flat] < best_f - 1e-9]
            if flat.size == 0:
                stuck.add((tm, p))
                continue
            ks, idx = np.unravel_index(flat, pre.shape)
            gain = np.zeros(len(flat))
            for m in range(nm):
                rows, rowv = top[m]
                old_m = np.mean(np.maximum(rowv.max(0), 1.0) ** 2)
                qs = q[idx]
                keep = (rows[None] != p) & (rows[None] != qs[:, None, None])  # (K, 3, out)
                rest = np.where(keep, rowv[None], 0.0).max(axis=1)       # (K, out)
                # exchange k = 0: (a, c), (b, d); k = 1: (a, d), (b, c)
                y0 = np.where(ks == 0, c[idx], d[idx])
                y1 = np.where(ks == 0, d[idx], c[idx])
                new = np.maximum(self.values(m, np.full(len(flat), a), y0),
                                 self.values(m, np.full(len(flat), b), y1))
                gain += old_m - np.mean(np.maximum(np.maximum(rest, new), 1.0) ** 2, axis=1)
            i = int(np.argmax(gain))
            if gain[i] <= 1e-12:
                stuck.add((tm, p))
                continue
            j = int(q[idx[i]])
            cj, dj = pairs[j]
            pairs[p], pairs[j] = ((a, cj), (b, dj)) if ks[i] == 0 else ((a, dj), (b, cj))
            for m in range(nm):
                v = vals[m]
                v[[p, j]] = self.values(m, pairs[[p, j], 0], pairs[[p, j], 1])
                if top[m] is not None:   # refresh the top-3 only where rows p, j matter
                    rows, rowv = top[m]
                    cols = np.flatnonzero(((rows == p) | (rows == j)).any(axis=0)
                                          | (v[[p, j]].max(axis=0) > rowv.min(axis=0)))
                    if cols.size:
                        sub = np.argpartition(-v[:, cols], 2, axis=0)[:3]
                        rows[:, cols] = sub
                        rowv[:, cols] = np.take_along_axis(v[:, cols], sub, axis=0)
            stuck.clear()
        return pairs

    def permutation(self, pairs: np.ndarray) -> np.ndarray:
        """Pairs → channel order; the virtual channel's partner goes last, the virtual
        channel itself is dropped."""
        virtual = self.c if self.c % 2 else None
        out, last = [], None
        for a, b in pairs:
            if virtual in (a, b):
                last = b if a == virtual else a
            else:
                out.extend((int(a), int(b)))
        if last is not None:
            out.append(int(last))
        return np.asarray(out, np.int64)


def pairing(mats: List[np.ndarray], max_steps: Optional[int] = None,
            hopeless: float = np.inf) -> np.ndarray:
    """The channel order (new channel j = old channel perm[j]) that pairs the input channels of
    ``mats`` (each (taps, channels, out)) at low cost (module docstring). No search when the
    start's mean cost per consumer exceeds ``hopeless`` (e.g. uniformly random weights, ~3.4,
    where no order helps: only the start is returned)."""
    search = _Search(mats)
    pairs = search.initial()
    if search.cost_of(pairs) <= hopeless * len(mats):
        pairs = search.run(pairs, max_steps if max_steps is not None else 4 * len(pairs))
    return search.permutation(pairs)


def permute(graph_def: graph_pb2.GraphDef, spaces, perms: Dict[str, np.ndarray],
            outputs=()) -> graph_pb2.GraphDef:
    """Reorders each space's channels to ``perms[space.name]`` (exact: see the module docs)."""
    index = GraphIndex(graph_def, outputs)
    ed = Editor(graph_def, outputs)
    filters: Dict[str, np.ndarray] = {}   # a conv may produce one space and consume another

    def filt(name):
        return filters.get(name, _weights(index, index.node(name)))

    for space in spaces:
        p = perms[space.name]
        for name in space.producers:
            n = index.node(name)
            w = filt(name)
            t_b = n.op in MATMUL_OPS and get_attr(n, "transpose_b", False)
            filters[name] = w[p] if t_b else w[..., p]
            for slot, t in enumerate(index.data_inputs(n)[2:], start=2):
                v = index.const_value(t)[p]
                ed.set_input(name, slot, ed.add_const(f"{name}/permuted_{slot}", v,
                                                      before=name))
        for name, slot in space.vectors:
            v = index.const_value(index.data_inputs(name)[slot])
            ed.set_input(name, slot, ed.add_const(f"{name}/permuted_{slot}", v[..., p],
                                                  before=name))
        for name in space.depthwise:
            filters[name] = filt(name)[:, :, p]
        for name in space.consumers:
            n = index.node(name)
            w = filt(name)
            if n.op in MATMUL_OPS:
                w = w[:, p] if get_attr(n, "transpose_b", False) else w[p]
            else:
                w = w[:, :, p]
            filters[name] = w
    for name, w in filters.items():
        ed.set_input(name, 1, ed.add_const(name + "/permuted_filter", w, before=name))
    return ed.finish() if ed.changed else graph_def


class PairChannels(Pass):
    """The pass (see the module docstring). Options read from ``ctx.options``:
    u8_safe_pairs: runs only when true. ``PassResult.data["costs"]``: {space name: (cost
    before, cost after)} of the spaces it permuted."""

    name = "pair_channels"

    def __init__(self, max_steps: Optional[int] = None):
        self.max_steps = max_steps

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        if not ctx.options.get("u8_safe_pairs"):
            return PassResult(graph_def, False, list(notes))
        try:
            shapes = ctx.shapes(graph_def)
        except Exception as e:   # noqa: BLE001 — shapes only guard grouped convs: refuse all
            notes.info("-", f"shape inference failed ({e}); grouped convs cannot be told apart")
            shapes = {}
        spaces = permutation_spaces(graph_def, ctx.outputs, shapes)
        max_noise = float(ctx.options.get("u8_pair_max_noise", U8_PAIR_MAX_NOISE))
        index = GraphIndex(graph_def, ctx.outputs)
        perms, costs, done = {}, {}, []
        for sp in spaces:
            mats = [m for m in (_consumer_matrix(index, c) for c in sp.consumers)
                    if m is not None]
            if not mats or sp.channels < 4:
                continue
            if sp.reason is not None:
                notes.refuse(sp.name, sp.reason)
                continue
            identity = np.arange(sp.channels)
            before = pair_cost(mats, identity)
            # a layer is made u8-safe only at mean f² ≤ max_noise (QuantizePlan.u8_pairs): a
            # start far above that is not worth the search's time
            perm = pairing(mats, self.max_steps, hopeless=2.0 * max_noise)
            after = pair_cost(mats, perm)
            if after >= before - 1e-9:
                continue
            perms[sp.name], costs[sp.name] = perm, (before / len(mats), after / len(mats))
            done.append(sp)
            notes.rewrite(sp.name, f"{sp.channels} channels, {len(mats)} u8-pair consumer(s): "
                                   f"mean weight-noise factor {before / len(mats):.3f} → "
                                   f"{after / len(mats):.3f}")
        if not done:
            return PassResult(graph_def, False, list(notes), {"costs": {}})
        return PassResult(permute(graph_def, done, perms, ctx.outputs), True, list(notes),
                          {"costs": costs})
