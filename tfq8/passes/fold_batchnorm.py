"""fold_batchnorm — fold inference batch norms (and any per-channel affine) into the linear op.

    L(x, W) [→ BiasAdd(b)] → BN                ⇒   L(x, W') → BiasAdd(b')
    L  ∈ {Conv2D, DepthwiseConv2dNative, MatMul}, W constant, NHWC, float32
    BN ∈ FusedBatchNorm{,V2,V3}(is_training=False), or Keras 3's decomposed form: any chain of
         Mul(·, c), Add/AddV2(·, c), Sub(·, c), Sub(c, ·), BiasAdd(·, c) with per-channel constant
         c (a scalar, or [C] / [1, …, 1, C]; constant subgraphs such as Rsqrt(v + ε) that Grappler
         left are evaluated with TensorFlow)

Math. Per output channel o the chain is affine, y = s[o]·z + t[o] with z = L(x, W):
FusedBatchNorm gives s = γ/√(σ² + ε), t = β − μ·s; Mul(c): (s, t) ← (c·s, c·t); Add(c) or
BiasAdd(c): t ← t + c; Sub(·, c): t ← t − c; Sub(c, ·): (s, t) ← (−s, c − t). Then

    W'[…, o] = s[o]·W[…, o]          b'[o] = t[o]          (computed in float64, stored float32)

Conv2D filters are HWIO ([kh, kw, I, O]); depthwise filters are [kh, kw, C, m] with output
channel o = c·m + j, so s is reshaped to [C, m]; MatMul weights are [K, N] ([N, K] with
transpose_b). The new BiasAdd takes the name of the chain's last node (consumers need no
rewiring), the linear op keeps its own name. After a grouped Conv2D the bias is an AddV2 of a
[C] constant instead (same values): TF's run-time remapper would fuse Conv2D → BiasAdd into a
_FusedConv2D, which has no grouped convs on CPU.

An affine chain after a channel concat of linear ops (each read only by the concat) is first
split into one per branch, each its slice of the channels, and then folded into each branch:

    Concat(L1, L2) → BN   ⇒   Concat(L1 → affine[:c1], L2 → affine[c1:])   ⇒   Concat(L1', L2')

A difference whose subtrahend is a linear op's output (read by nothing else) becomes a sum, the
op's weights and bias negated (exact), so that it can be a residual summand in INT8:

    Sub(a, L(x, W) [→ BiasAdd(b)])   ⇒   AddV2(a, L(x, −W) [→ BiasAdd(−b)])

A batch norm with no linear op before it (pre-activation ResNets) becomes a per-channel affine,

    FusedBatchNorm(x)  ⇒  AddV2(Mul(x, s), t)

and any standalone per-channel affine whose every consumer is a linear op reading it as input 0
folds *forward* into those ops,

    L(x·s + t, W)  ⇒  L(x, W'') [→ BiasAdd(b'')]     W''[…, i, o] = s[i]·W[…, i, o]
                                                    b''[o] = Σ_{kh, kw, i} t[i]·W[kh, kw, i, o]

only where that is exact: t = 0, or L pads nothing (VALID, zero EXPLICIT pads, 1×1 SAME, MatMul)
— TF pads with zeros *after* the affine, which a bias cannot reproduce at the borders. Elsewhere
the affine stays FP32, with a note.

Refused (with a note): intermediates with other consumers or control edges, graph outputs,
non-constant weights or parameters, constants that are not per-channel, is_training=True,
NCHW, non-float32.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, GraphIndex, get_attr, make_node, parse_input
from tfq8.passes.grouped_conv import conv_groups
from tfq8.passes.pipeline import Notes, Pass, PassContext, PassResult

LINEAR = frozenset({"Conv2D", "DepthwiseConv2dNative", "MatMul"})
BATCHNORMS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
ELEMENTWISE = frozenset({"Mul", "Add", "AddV2", "Sub", "BiasAdd"})
AFFINE = ELEMENTWISE | BATCHNORMS


class Affine:
    """y = s·z + t per channel (s, t float64 vectors broadcast to C, or length 1)."""

    def __init__(self):
        self.s = np.ones(1)
        self.t = np.zeros(1)
        self.ndim = 0  # highest rank of a constant seen (it broadcasts the tensor to that rank)

    def then(self, a, d):
        self.s = a * self.s
        self.t = a * self.t + d

    @property
    def is_shift_only(self):
        return bool(np.all(self.s == 1.0))


# ==================================================================== the pass
class FoldBatchNorm(Pass):
    name = "fold_batchnorm"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        changed = False
        # 0. An affine after a channel concat of linear ops moves into each branch, where
        # stage 1 folds it.
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        for node in list(graph_def.node):
            if node.op == "ConcatV2":
                _push_into_concat(index, ed, node, notes)
            elif node.op == "Sub":
                _negate_into_linear(index, ed, node, notes)
        if ed.changed:
            graph_def, changed = ed.finish(), True
        # 1. Backward: L → chain of affines ⇒ L(W') → BiasAdd.
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        shapes = []     # inferred once, on the first Conv2D fold (to tell grouped convs)

        def bias_op(lin):
            # TF's remapper fuses Conv2D → BiasAdd into a _FusedConv2D at run time, which
            # fails on grouped convs; it leaves Conv2D → AddV2 alone.
            if lin.op != "Conv2D":
                return "BiasAdd"
            if not shapes:
                shapes.append(ctx.shapes(graph_def))
            return "BiasAdd" if conv_groups(index, shapes[0], lin) == 1 else "AddV2"

        for node in list(graph_def.node):
            if node.op in LINEAR:
                _fold_backward(index, ed, node, notes, bias_op)
        if ed.changed:
            graph_def, changed = ed.finish(), True
        # 2. Batch norms left alone ⇒ Mul + AddV2.
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        for node in list(graph_def.node):
            if node.op in BATCHNORMS:
                _batchnorm_to_affine(index, ed, node, notes)
        if ed.changed:
            graph_def, changed = ed.finish(), True
        # 3. Forward: standalone affine → linear ops that read it (where exact).
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        claimed: set = set()
        for node in list(graph_def.node):
            if node.name not in claimed and node.op in ELEMENTWISE:
                _fold_forward(index, ed, node, claimed, notes)
        if ed.changed:
            graph_def, changed = ed.finish(), True
        return PassResult(graph_def, changed, list(notes))


# ==================================================================== shared checks
def _is_float32(node) -> bool:
    return get_attr(node, "T", tf.float32) == tf.float32


def _linear_weights(index: GraphIndex, node) -> Tuple[Optional[np.ndarray], str]:
    """(weights, "") or (None, reason) for a Conv2D / DepthwiseConv2dNative / MatMul."""
    if not _is_float32(node):
        return None, f"dtype {get_attr(node, 'T').name} (only float32 is folded)"
    if node.op != "MatMul" and get_attr(node, "data_format", "NHWC") != "NHWC":
        return None, "data_format is not NHWC"
    inputs = index.data_inputs(node)
    w = index.const_value(inputs[1])
    if w is None:
        return None, f"its weights {inputs[1]} are not constant"
    return w, ""


def _out_channels(node, w) -> int:
    if node.op == "Conv2D":
        return w.shape[3]
    if node.op == "DepthwiseConv2dNative":
        return w.shape[2] * w.shape[3]
    return w.shape[0] if get_attr(node, "transpose_b", False) else w.shape[1]


def _per_channel(v: np.ndarray, channels: Optional[int], rank: int):
    """v as a float64 vector broadcasting on the last axis, or None."""
    v = np.asarray(v)
    if v.size == 1 and v.ndim <= rank:
        return v.reshape(1).astype(np.float64)
    if v.ndim > rank or any(d != 1 for d in v.shape[:-1]):
        return None
    if channels is not None and v.shape[-1] != channels:
        return None
    return v.reshape(-1).astype(np.float64)


def _affine_step(index: GraphIndex, node, z: str, channels: Optional[int], rank: int):
    """How ``node`` transforms its input tensor ``z``: ((a, d), "") with y = a·z + d per channel,
    (None, reason) if it is an affine op that cannot be folded, (None, "") if it is not one."""
    if node.op not in AFFINE:
        return None, ""
    if not _is_float32(node):
        return None, "not float32"
    if index.control_inputs(node):
        return None, "has control inputs"
    inputs = index.data_inputs(node)
    if node.op in BATCHNORMS:
        if inputs[0] != z:
            return None, ""
        return _batchnorm_params(index, node, channels, rank)
    if len(inputs) != 2 or inputs.count(z) != 1:
        return None, ""
    pos = inputs.index(z)
    other = inputs[1 - pos]
    if node.op == "BiasAdd" and (pos != 0 or get_attr(node, "data_format", "NHWC") != "NHWC"):
        return None, ""
    value = index.const_value(other)
    if value is None:
        return None, ""  # e.g. a residual Add of two computed tensors: not an affine
    c = _per_channel(value, channels, rank)
    if c is None:
        return None, f"constant {other} of shape {list(np.shape(value))} is not per-channel"
    if node.op == "Mul":
        return (c, np.zeros(1)), ""
    if node.op == "Sub":
        return ((np.ones(1), -c) if pos == 0 else (-np.ones(1), c)), ""
    return (np.ones(1), c), ""


def _batchnorm_params(index, node, channels, rank):
    if get_attr(node, "is_training", True):
        return None, "is_training=True (a training-mode batch norm)"
    if get_attr(node, "data_format", "NHWC") not in ("NHWC",) and rank == 4:
        return None, f"data_format {get_attr(node, 'data_format')}"
    inputs = index.data_inputs(node)
    values = [index.const_value(t) for t in inputs[1:5]]
    for t, v in zip(inputs[1:5], values):
        if v is None:
            return None, f"parameter {t} is not constant"
    gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in values)
    if channels is not None and any(p.size not in (1, channels) for p in (gamma, beta, mean, var)):
        return None, "parameters do not match the channel count"
    used = {parse_input(index.node(e.node).input[e.index])[1]
            for e in index.node_consumers(node.name)}
    if used - {0}:
        return None, "its batch statistics outputs (1…5) are used"
    eps = get_attr(node, "epsilon", 1e-3)
    a = gamma / np.sqrt(var + eps)
    return (a, beta - mean * a), ""


def _feeds_only(index: GraphIndex, name: str) -> Tuple[Optional[str], str]:
    """(the only consumer, "") if node ``name`` can be folded into it, else (None, reason)."""
    if index.node_is_output(name):
        return None, "is a graph output"
    if index.control_consumers(name):
        return None, "has control consumers"
    edges = index.node_consumers(name)
    if len({e.node for e in edges}) != 1 or len(edges) != 1:
        return None, f"has {len(edges)} consumers"
    return edges[0].node, ""


# ==================================================================== 1. backward
def _fold_backward(index: GraphIndex, ed: Editor, lin, notes: Notes, bias_op) -> None:
    # Pattern: walk forward from L while its only consumer is a per-channel affine.
    chain: List = []
    affine = Affine()
    cur = lin
    rank = 2 if lin.op == "MatMul" else 4
    w, reason = _linear_weights(index, lin)
    channels = None if w is None else _out_channels(lin, w)
    while True:
        nxt_name, why = _feeds_only(index, cur.name)
        if nxt_name is None:
            # Check: report the affines this stop keeps from being folded.
            for e in index.node_consumers(cur.name):
                c = index.node(e.node)
                if w is not None and _affine_step(index, c, f"{cur.name}:0", channels, rank)[0]:
                    notes.refuse(c.name, f"{c.op} not folded into {lin.name}: {cur.name} {why}")
            break
        nxt = index.node(nxt_name)
        if w is None:
            if nxt.op in BATCHNORMS or nxt.op == "Mul":
                notes.refuse(nxt.name, f"{nxt.op} not folded into {lin.name} ({lin.op}): {reason}")
            return
        step, why = _affine_step(index, nxt, f"{cur.name}:0", channels, rank)
        if step is None:
            if why:
                notes.refuse(nxt.name, f"{nxt.op} not folded into {lin.name}: {why}")
            break
        affine.then(*step)
        chain.append(nxt)
        cur = nxt
    if not chain:
        return
    op = bias_op(lin)
    if len(chain) == 1 and chain[0].op == op and (op == "BiasAdd" or affine.t.size > 1):
        return  # nothing to fold: already L → BiasAdd(b)
    _rewrite_backward(ed, lin, w, channels, chain, affine, op)
    notes.rewrite(chain[-1].name, f"folded {' → '.join(n.op for n in chain)} into "
                                  f"{lin.name} ({lin.op})")


def _scale_out(lin, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    w64 = w.astype(np.float64)
    if lin.op == "Conv2D":
        out = w64 * s.reshape(1, 1, 1, -1)
    elif lin.op == "DepthwiseConv2dNative":
        if s.size == 1:
            out = w64 * s[0]
        else:
            out = w64 * s.reshape(1, 1, w.shape[2], w.shape[3])
    elif get_attr(lin, "transpose_b", False):
        out = w64 * s.reshape(-1, 1)
    else:
        out = w64 * s.reshape(1, -1)
    return out.astype(w.dtype)


def _rewrite_backward(ed: Editor, lin, w, channels, chain, affine: Affine,
                      op: str = "BiasAdd") -> None:
    if not affine.is_shift_only:
        s = np.broadcast_to(affine.s, (channels,))
        w_name = ed.add_const(lin.name + "/folded_filter", _scale_out(lin, w, s),
                              before=lin.name)
        ed.set_input(lin.name, 1, w_name)
    last = chain[-1]
    bias = np.broadcast_to(affine.t, (channels,)).astype(np.float32)
    b_name = ed.add_const(last.name + "/folded_bias", bias, before=last.name)
    for n in chain[:-1]:
        ed.remove(n.name)
    attrs = {"T": tf.float32} if op == "AddV2" else {"T": tf.float32, "data_format": "NHWC"}
    ed.replace(make_node(op, last.name, [lin.name, b_name], attrs, device=last.device))


# ==================================================================== 0. through a concat
def _push_into_concat(index: GraphIndex, ed: Editor, cat, notes: Notes) -> None:
    """Concat(L1, L2, …) on the channel axis → chain of affines  ⇒  Concat(L1 → affine₁,
    L2 → affine₂, …), each branch's affine being its slice of the channels (exact: the same
    multiply and add per element). Only where every branch is a linear op (optionally with its
    BiasAdd) read by nothing else, so that stage 1 folds every piece (NASNet's reduction-cell
    'adjust' blocks: two 1×1 convs, concatenated, then one batch norm)."""
    if not _is_float32(cat) or index.control_inputs(cat) or index.node_is_output(cat.name):
        return
    inputs = index.data_inputs(cat)
    parts, axis = inputs[:-1], index.const_value(inputs[-1])
    widths, ranks = [], set()
    for t in parts:
        node = index.producer(t)
        lin = node
        if node.op == "BiasAdd":
            lin = index.producer(index.data_inputs(node)[0])
            if _feeds_only(index, lin.name)[0] != node.name:
                return
        if lin.op not in LINEAR or not t.endswith(":0") or _feeds_only(index, node.name)[0] != cat.name:
            return
        w, _ = _linear_weights(index, lin)
        if w is None:
            return
        widths.append(int(_out_channels(lin, w)))
        ranks.add(2 if lin.op == "MatMul" else 4)
    if len(ranks) != 1 or axis is None or np.ndim(axis) != 0:
        return
    rank = ranks.pop()
    if int(axis) not in (-1, rank - 1):
        return
    channels = sum(widths)
    chain, affine, cur = [], Affine(), cat
    while True:
        nxt_name, _ = _feeds_only(index, cur.name)
        if nxt_name is None:
            break
        nxt = index.node(nxt_name)
        step, _ = _affine_step(index, nxt, f"{cur.name}:0", channels, rank)
        if step is None:
            break
        affine.then(*step)
        chain.append(nxt)
        cur = nxt
    if not chain:
        return
    s = np.broadcast_to(affine.s, (channels,))
    t = np.broadcast_to(affine.t, (channels,))
    last = chain[-1]
    new_parts, start = [], 0
    for i, (part, width) in enumerate(zip(parts, widths)):
        sl = slice(start, start + width)
        start += width
        base = f"{last.name}/part{i}"
        s_name = ed.add_const(base + "/scale", s[sl].astype(np.float32), before=last.name)
        t_name = ed.add_const(base + "/shift", t[sl].astype(np.float32), before=last.name)
        mul = ed.add_node("Mul", base + "/mul", [part, s_name], {"T": tf.float32},
                          before=last.name)
        add = ed.add_node("AddV2", base + "/add", [mul.name, t_name], {"T": tf.float32},
                          before=last.name)
        new_parts.append(add.name)
    merged = ed.node(cat.name)
    node = make_node("ConcatV2", last.name, new_parts + [inputs[-1]], device=cat.device)
    for key in ("N", "T", "Tidx"):
        if key in merged.attr:
            node.attr[key].CopyFrom(merged.attr[key])
    for n in [cat] + chain[:-1]:
        ed.remove(n.name)
    ed.replace(node)
    notes.rewrite(last.name, f"{' → '.join(n.op for n in chain)} after {cat.name} (ConcatV2 of "
                             f"{len(parts)} linear ops) split into its {len(parts)} branches")


def _negate_into_linear(index: GraphIndex, ed: Editor, sub, notes: Notes) -> None:
    """Sub(a, L(x) [+ b])  ⇒  AddV2(a, L'(x) [+ b']) with W' = −W, b' = −b: exact (negation
    commutes with float rounding), and an add of two computed tensors is what the quantizer
    fuses into a conv as its residual summand or runs as an INT8 add; a difference of two INT8
    tensors has no INT8 op. Only when L (and its BiasAdd) are read by nothing else."""
    if not _is_float32(sub) or index.control_inputs(sub):
        return
    inputs = index.data_inputs(sub)
    if len(inputs) != 2 or inputs[0] == inputs[1] or index.const_value(inputs[0]) is not None:
        return
    z = inputs[1]
    node = index.producer(z)
    chain = [node]
    if node.op == "BiasAdd":
        chain.insert(0, index.producer(index.data_inputs(node)[0]))
    lin = chain[0]
    if lin.op not in LINEAR or not z.endswith(":0"):
        return
    for n, reader in zip(chain, chain[1:] + [sub]):
        if _feeds_only(index, n.name)[0] != reader.name or index.control_inputs(n):
            return
    w, _ = _linear_weights(index, lin)
    if w is None:
        return
    if len(chain) == 2:
        b = index.const_value(index.data_inputs(chain[1])[1])
        if b is None or get_attr(chain[1], "data_format", "NHWC") != "NHWC":
            return
        b_name = ed.add_const(chain[1].name + "/negated_bias", -np.asarray(b),
                              before=chain[1].name)
        ed.set_input(chain[1].name, 1, b_name)
    w_name = ed.add_const(lin.name + "/negated_filter", -w, before=lin.name)
    ed.set_input(lin.name, 1, w_name)
    ed.replace(make_node("AddV2", sub.name, [inputs[0], z], {"T": tf.float32},
                         device=sub.device))
    notes.rewrite(sub.name, f"Sub of {lin.name} ({lin.op}) ⇒ AddV2 of it with negated weights")


# ==================================================================== 2. standalone BN
def _batchnorm_to_affine(index: GraphIndex, ed: Editor, bn, notes: Notes) -> None:
    rank = 4
    step, reason = _batchnorm_params(index, bn, None, rank)
    if step is None:
        notes.refuse(bn.name, f"{bn.op} kept: {reason}")
        return
    if index.control_inputs(bn):
        notes.refuse(bn.name, f"{bn.op} kept: has control inputs")
        return
    a, d = step
    x = index.data_inputs(bn)[0]
    s_name = ed.add_const(bn.name + "/affine_scale", a.astype(np.float32), before=bn.name)
    t_name = ed.add_const(bn.name + "/affine_shift", d.astype(np.float32), before=bn.name)
    mul = ed.add_node("Mul", bn.name + "/affine_mul", [x, s_name], {"T": tf.float32},
                      before=bn.name)
    ed.replace(make_node("AddV2", bn.name, [mul.name, t_name], {"T": tf.float32},
                         device=bn.device))
    notes.rewrite(bn.name, f"{bn.op} with no linear op before it ⇒ per-channel Mul + AddV2")


# ==================================================================== 3. forward
def _fold_forward(index: GraphIndex, ed: Editor, start, claimed: set, notes: Notes) -> None:
    inputs = index.data_inputs(start)
    z = next((t for t in inputs if index.const_value(t) is None), None)
    if z is None or index.producer(z).op in LINEAR:
        return  # a linear op's own bias (stage 1 handled those), or all-constant
    chain, affine, cur = [], Affine(), start
    channels = None
    while True:
        step, reason = _affine_step(index, cur, z if not chain else f"{chain[-1].name}:0",
                                    channels, 4)
        if step is None:
            break
        affine.then(*step)
        consts = [t for t in index.data_inputs(cur) if index.is_const(t)]
        affine.ndim = max([affine.ndim] + [np.ndim(index.const_value(t)) for t in consts])
        chain.append(cur)
        sizes = {v.size for v in (affine.s, affine.t) if v.size > 1}
        channels = sizes.pop() if sizes else None
        nxt, _ = _feeds_only(index, cur.name)
        if nxt is None or index.node(nxt).op not in ELEMENTWISE:
            break
        cur = index.node(nxt)
    if not chain:
        return
    claimed.update(n.name for n in chain)
    last = chain[-1]
    reason = _forward_check(index, last, affine)
    if reason:
        notes.refuse(last.name, f"per-channel affine not folded: {reason} (quantize runs "
                                f"it as an INT8 1x1 depthwise conv when INT8 ops surround it)")
        return
    for e in index.node_consumers(last.name):
        _rewrite_forward(index, ed, index.node(e.node), z, affine)
    for n in chain:
        ed.remove(n.name)
    notes.rewrite(last.name, f"per-channel affine ({' → '.join(n.op for n in chain)}) folded "
                             f"forward into {', '.join(e.node for e in index.node_consumers(last.name))}")


def _forward_check(index: GraphIndex, last, affine: Affine) -> str:
    if index.node_is_output(last.name):
        return "it is a graph output"
    if index.control_consumers(last.name):
        return "it has control consumers"
    edges = index.node_consumers(last.name)
    if not edges:
        return "it has no consumers"
    for e in edges:
        c = index.node(e.node)
        if c.op not in LINEAR or e.index != 0:
            return f"its consumer {c.name} is a {c.op}, not a conv/matmul input"
        w, reason = _linear_weights(index, c)
        if w is None:
            return f"consumer {c.name}: {reason}"
        if c.op == "MatMul" and get_attr(c, "transpose_a", False):
            return f"consumer {c.name} transposes its input"
        if c.op == "MatMul" and affine.ndim > 2:
            return f"a rank-{affine.ndim} constant would broadcast the MatMul input {c.name}"
        cin = _in_channels(c, w)
        if any(v.size not in (1, cin) for v in (affine.s, affine.t)):
            return f"consumer {c.name} is a grouped conv or the channels differ"
        if not np.all(affine.t == 0) and _pads(c, w):
            return (f"consumer {c.name} pads its input ({get_attr(c, 'padding')}), and zero "
                    "padding after a shift cannot be folded exactly")
    return ""


def _in_channels(node, w) -> int:
    if node.op == "MatMul":
        return w.shape[1] if get_attr(node, "transpose_b", False) else w.shape[0]
    return w.shape[2]


def _pads(node, w) -> bool:
    if node.op == "MatMul":
        return False
    padding = get_attr(node, "padding")
    if padding == "VALID":
        return False
    if padding == "EXPLICIT":
        return any(get_attr(node, "explicit_paddings", []))
    return not (w.shape[0] == 1 and w.shape[1] == 1)  # SAME pads nothing for 1×1


def _rewrite_forward(index: GraphIndex, ed: Editor, lin, z: str, affine: Affine) -> None:
    w = index.const_value(index.data_inputs(lin)[1])
    w64 = w.astype(np.float64)
    s, t = affine.s, affine.t
    if lin.op == "Conv2D":
        w_new = w64 * s.reshape(1, 1, -1, 1)
        contrib = np.einsum("hwio,i->o", w64, np.broadcast_to(t, (w.shape[2],)))
    elif lin.op == "DepthwiseConv2dNative":
        w_new = w64 * s.reshape(1, 1, -1, 1)
        contrib = (w64.sum(axis=(0, 1)) * np.broadcast_to(t, (w.shape[2],))[:, None]).reshape(-1)
    elif get_attr(lin, "transpose_b", False):
        w_new = w64 * s.reshape(1, -1)
        contrib = w64 @ np.broadcast_to(t, (w.shape[1],))
    else:
        w_new = w64 * s.reshape(-1, 1)
        contrib = np.broadcast_to(t, (w.shape[0],)) @ w64
    w_name = ed.add_const(lin.name + "/folded_filter", w_new.astype(w.dtype), before=lin.name)
    node = ed.node(lin.name)
    ed.set_input(lin.name, 0, z)
    ed.set_input(lin.name, 1, w_name)
    if np.all(t == 0):
        return
    # Keep the name on the op consumers read: the BiasAdd takes it, the linear op is renamed.
    b_name = ed.add_const(lin.name + "/folded_bias", contrib.astype(np.float32))
    moved = type(node)()
    moved.CopyFrom(node)
    moved.name = ed.unique_name(lin.name + "/unbiased")
    ed.remove(lin.name)
    ed.add(moved)
    ed.add(make_node("BiasAdd", lin.name, [moved.name, b_name],
                     {"T": tf.float32, "data_format": "NHWC"}, device=lin.device))
