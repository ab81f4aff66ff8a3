"""quantize: FP32 GraphDef (after the FP32 passes) + calibration table ⇒ INT8 GraphDef of Tfq8* ops.

Rewrites (every INT8 tensor is uint8 with one (scale, zero_point), chosen from the calibration
table: zero point 0 when the observed minimum is ≥ 0, else 128 — "s8 shifted by +128"):

    [Pad(0) →] Conv2D|_FusedConv2D [→ BiasAdd] [→ Relu|Relu6]             ⇒ Tfq8Conv2D
    [Pad(0) →] DepthwiseConv2dNative [→ BiasAdd] [→ Relu|Relu6]            ⇒ Tfq8DepthwiseConv2D
    grouped Conv2D (filter channels × g = input channels)                  ⇒ Tfq8GroupedConv2D
    MatMul|_FusedMatMul [→ BiasAdd] [→ Relu|Relu6]                         ⇒ Tfq8MatMul
    conv (no activation, sole consumer is the add) → AddV2(·, skip) [→ Relu|Relu6]
                                                       ⇒ Tfq8Conv2D(summand=skip)   (residual add)
    AddV2(a, b) [→ Relu|Relu6]                                             ⇒ Tfq8Add
    conv ... → Relu → Minimum(·, const c > 0)                              ⇒ activation CLIP(0, min c)
        (the equalize pass's rescaled ReLU6; a per-channel c is exact only when min c is at least
        the output's quantization max, checked at emit — QuantizeError otherwise)
    Mul(·, per-channel c) [→ Add(·, b)] [→ Relu|Relu6] on an INT8 tensor   ⇒ Tfq8DepthwiseConv2D
        (1×1, weights c: an unfoldable batch norm — DenseNet, pre-activation ResNets; exact)
    elementwise region of one INT8 tensor and scalar constants (swish, hard-swish, GELU,
        sigmoid, a lone ReLU, ...; ops in LOOKUP_OPS)                      ⇒ Tfq8Lookup (256-entry
                                                                             table of the region)
    Mul(INT8 a, INT8 b), same shape (gated activations: tanh(a)·sigmoid(b)) ⇒ Tfq8Mul
    elementwise region of one INT8 tensor and per-channel constants that evaluates to
        x·(x ≥ 0 ? p_c : n_c) + b_c (PReLU; a ReLU then a per-channel affine) ⇒ Tfq8Prelu
    Mul(INT8 x [N, ..., C], FP32 gate [N or 1, 1, ..., 1, C])              ⇒ Tfq8ChannelMul
        (squeeze-and-excitation; the gate's branch stays as it is)
    region of elementwise ops and last-axis Means over an INT8 tensor that evaluates to
        (x − mean)/sqrt(var + eps)·gamma + beta over the last axis         ⇒ Tfq8LayerNorm
        (ConvNeXt; found from its Mean and checked numerically, whatever its graph)
        (these four only between INT8 ops: at an FP32 boundary FP32 is exact and saves nothing)
    MaxPool / AvgPool / Mean(axes [1, 2]) / ConcatV2                       ⇒ Tfq8MaxPool / ...
    Pad(0) feeding INT8 ops, Reshape, Squeeze, StridedSlice, Slice, ...,  ⇒ same op on uint8
        Max / Min reductions (global max pooling)                            (Pad pads with the
                                                                             zero point)
    Cast(uint8 input) quantized at scale 1 (integer-valued)                ⇒ the uint8 input itself

Conv weights become int8 with per-output-channel scales (W_q = rne(W / s_w), s_w = max|W|/127);
the bias stays f32 (the kernels add it in f32, no bias rounding). Fused requantization: each
INT8 op writes its output directly in the scale its consumers read, so there is no
dequantize/quantize pair between two INT8 ops; a layer whose consumers are all FP32 writes f32
itself (out_type=float). At FP32 boundaries Tfq8Quantize/Tfq8Dequantize are inserted.

Naming keeps the FP32 graph's tensor names: an INT8 node producing tensor X that an FP32
consumer (or a graph output) needs in f32 is named X/int8 and a Tfq8Dequantize named X follows
it, so nothing downstream is rewired.

Refusals (the node stays FP32 and the report says why): non-constant weights, NCHW layout,
unknown spatial size with SAME padding and stride > 1, a tensor without calibration data,
op types or names the user keeps in FP32, weights with NaN/Inf.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Iterable

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2
from tensorflow.python.framework import tensor_util

from tfq8.calibration import qparams
from tfq8.calibration.qparams import (QParams, fit_u8_pairs, quantize_weights, u8_pair_kernel_eligible,
                                     u8_pair_widening, weight_scales)
from tfq8.graph.shapes import same_pads
from tfq8.passes.input_affine import absorb_input_affines

CONV_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "MatMul", "_FusedMatMul"}
ACT_OPS = {"Relu": "RELU", "Relu6": "RELU6"}
POOL_OPS = {"MaxPool": "Tfq8MaxPool", "AvgPool": "Tfq8AvgPool"}
# Data-movement ops that run unchanged on uint8 (stock TF kernels), keeping the scale: they only
# select, repeat or reorder elements (nearest-neighbour upsampling, Keras' repeat-based
# UpSampling2D, reflection padding, space/depth rearrangements). Max/Min reductions (global max
# pooling) select too: dequantization is monotone, so the max of the codes is the code of the max.
PASSTHROUGH_OPS = {"Reshape", "Squeeze", "Identity", "ExpandDims", "StridedSlice", "Slice",
                   "Tile", "Transpose", "ResizeNearestNeighbor", "MirrorPad", "DepthToSpace",
                   "SpaceToDepth", "BatchToSpaceND", "Max", "Min"}
# Interpolating resizes: a convex combination of the input codes, so the output keeps the
# input's qparams and is rne(interpolated codes) — emitted as the stock op on uint8 (which
# interpolates in float), Round, Cast.
RESIZE_OPS = {"ResizeBilinear"}
ADD_OPS = {"AddV2", "Add"}
# Group kinds whose op can write f32 instead of uint8 (out_type).
F32_CAPABLE = ("conv", "depthwise", "matmul")
# What a layer norm's graph is built from (matched as a region and checked numerically).
LAYERNORM_OPS = {"Mean", "SquaredDifference", "Sub", "Mul", "AddV2", "Add", "Neg", "Rsqrt",
                 "Sqrt", "RealDiv", "Reciprocal", "Square", "StopGradient", "Identity",
                 "Maximum"}
LAYERNORM_MAX_CHANNELS = 65536   # Tfq8LayerNorm's bound (exact integer row sums)
# Ops that read only a tensor's shape (Keras' dynamic Reshape in SE blocks): they take the uint8
# tensor as it is, so an INT8 output needs no Dequantize for them.
SHAPE_READERS = {"Shape", "Size", "Rank"}
# Unary-capable elementwise ops: a region of these over one INT8 tensor (other inputs scalar
# constants) is a function u8 → u8, run as a 256-entry Tfq8Lookup table.
LOOKUP_OPS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "Softsign",
              "LeakyRelu", "Mul", "AddV2", "Add", "Sub", "RealDiv", "Div", "Maximum", "Minimum",
              "Neg", "Abs", "Square", "SquaredDifference", "Erf", "Erfc", "Exp", "Log", "Log1p",
              "Sqrt", "Rsqrt", "Reciprocal", "Pow", "Identity", "Floor", "Ceil", "Round",
              "Sign", "Sin", "Cos"}


def tensor_name(t: str) -> str:
    """Canonical 'node:idx' form of an input reference."""
    return t if ":" in t else t + ":0"


def node_of(t: str) -> str:
    return t.lstrip("^").split(":")[0]


@dataclasses.dataclass
class Group:
    """One INT8 op to emit, covering one or more FP32 nodes."""

    kind: str                   # conv | depthwise | matmul | add | mul | prelu | maxpool |
    # avgpool | mean | concat | lookup | channel_mul | layernorm | pad | passthrough
    out_node: str               # last FP32 node of the group: its output tensor is the group's
    nodes: list                 # FP32 nodes the group replaces
    inputs: list                # INT8 data input tensors (FP32 names)
    attrs: dict = dataclasses.field(default_factory=dict)
    summand: str | None = None
    activation: str = "NONE"


@dataclasses.dataclass
class LayerReport:
    node: str
    op: str
    int8: bool
    reason: str = ""
    input_qparams: list = dataclasses.field(default_factory=list)
    output_qparams: QParams | None = None
    weight_scale_range: tuple | None = None
    summand_qparams: QParams | None = None
    # QuantConfig.u8_safe_pairs: the weight-noise factor mean((s'/s)²) of a layer made u8-safe
    # in pairs (None: plain scales)
    u8_pairs_noise: float | None = None


class QuantizeError(ValueError):
    pass


class _Graph:
    def __init__(self, graph_def):
        self.gd = graph_def
        self.nodes = {n.name: n for n in graph_def.node}
        self.consumers = {}
        for n in graph_def.node:
            for i in n.input:
                if i.startswith("^"):
                    continue
                self.consumers.setdefault(tensor_name(i), []).append(n.name)
        self.order = [n.name for n in graph_def.node]

    def const_value(self, t: str):
        """numpy value of a Const reached through Identity chains, else None."""
        n = self.nodes.get(node_of(t))
        while n is not None and n.op == "Identity":
            n = self.nodes.get(node_of(n.input[0]))
        if n is None or n.op != "Const":
            return None
        return tensor_util.MakeNdarray(n.attr["value"].tensor)

    def sole_consumer(self, t: str, outputs: set, taken=()):
        """The only consumer of t, unless t is a graph output or the consumer is taken."""
        cons = self.consumers.get(tensor_name(t), [])
        if len(cons) != 1 or tensor_name(t) in outputs or cons[0] in taken:
            return None
        return self.nodes[cons[0]]

    def data_inputs(self, n):
        return [i for i in n.input if not i.startswith("^")]


def _static_shapes(graph_def):
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return g


def _list_attr(n, name, default):
    if name in n.attr:
        return list(n.attr[name].list.i)
    return default



def kept_by(node, keep) -> bool:
    """keep_fp32 entries match an op type, a node name, or a name scope — e.g. a Keras layer
    name ("conv2") matches its nodes "model/conv2_1/Conv2D" (Keras adds "_<n>")."""
    if node.name in keep or node.op in keep:
        return True
    scopes = node.name.split("/")[:-1]
    return any(s == k or (s.startswith(k + "_") and s[len(k) + 1:].isdigit())
               for k in keep for s in scopes)

class QuantizePlan:
    """The structural part of the quantize pass: which nodes become which INT8 op.

    `observe` lists the FP32 tensors whose ranges calibration must measure; `emit(table)`
    writes the INT8 graph.
    """

    def __init__(self, graph_def, output_tensors: Iterable[str], keep_fp32=(),
                 per_channel=True, u8_safe_pairs=False, u8_pair_max_noise=None):
        self.graph_def = graph_def
        self.g = _Graph(graph_def)
        self.outputs = {tensor_name(t) for t in output_tensors}
        self.keep = set(keep_fp32)
        self.per_channel = per_channel
        self.u8_safe_pairs = u8_safe_pairs   # conv/matmul weights: see u8_pairs
        self.u8_pair_max_noise = (qparams.U8_PAIR_MAX_NOISE if u8_pair_max_noise is None
                                  else float(u8_pair_max_noise))
        self._u8_pairs = {}                  # group output node → u8_pairs(grp)
        self._u8_pairs_noise = {}            # … → its widening's mean (s'/s)²
        self.tfgraph = _static_shapes(graph_def)
        self.groups: dict[str, Group] = {}      # out_node → group
        self.member: dict[str, str] = {}        # FP32 node → out_node of its group
        self.reports: list[LayerReport] = []
        self._match_all()

    # ---------------------------------------------------------------- matching
    def _kept(self, n):
        return kept_by(n, self.keep)

    def _shape(self, t):
        return self.tfgraph.get_tensor_by_name(tensor_name(t)).shape

    def _refuse(self, n, reason):
        self.reports.append(LayerReport(node=n.name, op=n.op, int8=False, reason=reason))

    def _match_all(self):
        g = self.g
        for name in g.order:
            n = g.nodes[name]
            if name in self.member:
                continue
            if n.op in CONV_OPS:
                grp = self._match_conv(n)
            elif n.op in POOL_OPS:
                grp = self._match_simple(n, POOL_OPS[n.op].replace("Tfq8", "").lower())
            elif n.op == "Mean":
                grp = self._match_mean(n)
            elif n.op == "ConcatV2":
                grp = self._match_concat(n)
            else:
                continue
            if grp is not None:
                self._add_group(grp)
        # Movement ops (reshape, upsampling, slices) carry INT8 tensors on to the adds, tables
        # and gates below; each stage below sweeps them again.
        self._match_movement()
        # Adds not absorbed into a conv as its residual summand.
        self._match_adds()
        self._match_movement()
        # Layer norms over the channels of an INT8 tensor (ConvNeXt, hybrid CNNs).
        for name in g.order:
            n = g.nodes[name]
            if name not in self.member and n.op == "Mean":
                grp = self._match_layernorm(n)
                if grp is not None:
                    self._add_group(grp)
        self._match_movement()
        # Per-channel two-slope functions (PReLU; a ReLU then a per-channel affine), found by
        # what they compute; before the affines, which would take a lone ReLU out of them.
        self._match_regions(self._match_prelu)
        # Per-channel affines and lone activations on INT8 tensors (unfoldable batch norms:
        # DenseNet, pre-activation ResNets; a ReLU after an add that has other readers).
        for name in g.order:
            if name not in self.member:
                grp = self._match_affine(g.nodes[name])
                if grp is not None:
                    self._add_group(grp)
        self._match_movement()
        # Unary elementwise functions of one INT8 tensor (swish, hard-swish, GELU, sigmoid,
        # lone activations...): a lookup table.
        self._match_regions(self._match_lookup)
        self._match_movement()
        # An INT8 tensor times an FP32 per-(sample, channel) gate: squeeze-and-excitation.
        # After the lookups: x · sigmoid(x) (swish in an SE branch) is one table, not a gate.
        for name in g.order:
            if name not in self.member:
                grp = self._match_channel_mul(g.nodes[name])
                if grp is not None:
                    self._add_group(grp)
        # The product of two INT8 tensors of one shape: gated activations (WaveNet's
        # tanh(a)·sigmoid(b), GLU), attention-style gates computed by convs.
        self._match_muls()
        # What those made INT8 may be the missing operand of an add (a residual add of a
        # WaveNet gate) or the input of a table: sweep those stages again, to a fixed point.
        for _ in range(4):
            before = len(self.groups)
            self._match_adds(report=False)
            self._match_movement()
            self._match_regions(self._match_lookup)
            self._match_movement()
            self._match_muls()
            if len(self.groups) == before:
                break
        # Data movement between INT8 ops stays on uint8 (a last sweep; _prune drops what
        # does not feed an INT8 op after all).
        self._match_movement()
        self._prune()

    def _match_adds(self, report=True):
        """Adds of two INT8 tensors of one shape (not absorbed into a conv as its residual
        summand). ``report``: note the ones refused (the first sweep; later sweeps only pick up
        adds whose operands have become INT8 since)."""
        g = self.g
        for name in g.order:
            n = g.nodes[name]
            if name in self.member or n.op not in ADD_OPS:
                continue
            ins = g.data_inputs(n)
            if len(ins) != 2 or any(g.const_value(i) is not None for i in ins):
                continue
            if not all(self._is_int8_tensor(i) for i in ins):
                continue
            try:
                same = self._shape(ins[0]).as_list()[1:] == self._shape(ins[1]).as_list()[1:]
            except ValueError:
                same = False
            if not same or self._kept(n):
                if report:
                    self._refuse(n, "add of tensors with different shapes (broadcasting) stays "
                                 "FP32" if not same else "kept in FP32 by the configuration")
                continue
            grp = Group("add", n.name, [n.name], [tensor_name(i) for i in ins], {"op": n.op})
            self._absorb_activation(grp)
            self._add_group(grp)

    def _match_muls(self):
        g = self.g
        for name in g.order:
            if name not in self.member:
                grp = self._match_mul(g.nodes[name])
                if grp is not None:
                    self._add_group(grp)

    def _match_regions(self, matcher):
        """Runs matcher(int8 tensor x, first node) from every unmatched LOOKUP_OPS node that
        reads an INT8 tensor, in graph order; adds the groups it returns."""
        g = self.g
        for name in g.order:
            n = g.nodes[name]
            if name in self.member or n.op not in LOOKUP_OPS:
                continue
            for x in g.data_inputs(n):
                if self._is_int8_tensor(x):
                    grp = matcher(tensor_name(x), n)
                    if grp is not None:
                        self._add_group(grp)
                        break

    def _match_movement(self):
        """Marks data-movement ops (PASSTHROUGH_OPS, zero Pads) that read an INT8 tensor as
        uint8 ops keeping its qparams, to a fixed point (chains, e.g. Keras' UpSampling2D:
        ExpandDims → Tile → Reshape twice). They are provisional: _prune drops the ones that
        end up feeding no INT8 op."""
        g = self.g
        changed = True
        while changed:
            changed = False
            for name in g.order:
                n = g.nodes[name]
                if name in self.member:
                    continue
                if (n.op in PASSTHROUGH_OPS or n.op in RESIZE_OPS
                        or (n.op in ("Pad", "PadV2") and self._zero_pad(n))):
                    src = g.data_inputs(n)[0]
                    if self._is_int8_tensor(src) and not self._kept(n):
                        kind = ("pad" if n.op.startswith("Pad") else
                                "resize" if n.op in RESIZE_OPS else "passthrough")
                        attrs = {"op": n.op, "movement": True}
                        step = self._spatial_subsample(n)
                        if step is not None:
                            # TF's StridedSlice on uint8 is slow (~8% of ResNet50 INT8 time);
                            # a 1×1 stride-s max pool is the same subsample, in our kernels.
                            kind = "maxpool"
                            attrs.update(ksize=[1, 1], strides=step, padding="VALID")
                        self._add_group(Group(kind, n.name, [n.name], [tensor_name(src)],
                                              attrs))
                        changed = True

    def _spatial_subsample(self, n):
        """[sh, sw] if n is StridedSlice(x, 0, 0, [1, sh, sw, 1]) over a whole NHWC tensor
        (what move_strides inserts), else None."""
        if n.op != "StridedSlice":
            return None
        begin, strides = (self.g.const_value(n.input[i]) for i in (1, 3))
        if begin is None or strides is None or begin.shape != (4,) or strides.shape != (4,):
            return None
        a = n.attr
        if (a["ellipsis_mask"].i or a["new_axis_mask"].i or a["shrink_axis_mask"].i
                or a["begin_mask"].i != 15 or a["end_mask"].i != 15):
            return None
        if strides[0] != 1 or strides[3] != 1 or min(strides) < 1:
            return None
        return [int(strides[1]), int(strides[2])]

    def _add_group(self, grp):
        self.groups[grp.out_node] = grp
        for m in grp.nodes:
            self.member[m] = grp.out_node

    def _is_int8_tensor(self, t):
        node = node_of(t)
        return node in self.member and self.member[node] == node

    def _zero_pad(self, n):
        if n.op == "PadV2":
            v = self.g.const_value(n.input[2])
            if v is None or float(v) != 0.0:
                return None
        p = self.g.const_value(n.input[1])
        if p is None or p.shape != (4, 2) or p[0].any() or p[3].any():
            return None
        return [int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])]

    def _absorb_activation(self, grp):
        nxt = self.g.sole_consumer(grp.out_node + ":0", self.outputs, self.member)
        if (nxt is not None and nxt.op in ACT_OPS and not self._kept(nxt)
                and grp.activation == "NONE"):
            grp.activation = ACT_OPS[nxt.op]
            grp.nodes.append(nxt.name)
            grp.out_node = nxt.name

    def _feeds_int8(self, t):
        """True if some group reads tensor t as an INT8 data input or summand."""
        for c in self.g.consumers.get(t, []):
            out = self.member.get(c)
            if out is not None and (t in self.groups[out].inputs or t == self.groups[out].summand):
                return True
        return False

    def _read_only_for_shape(self, t):
        cs = self.g.consumers.get(t, [])
        return (bool(cs) and t not in self.outputs
                and all(c not in self.member and self.g.nodes[c].op in SHAPE_READERS for c in cs))

    def _prune(self):
        """Drops cheap INT8 ops that would sit between FP32 ops: they would only add error.
        An affine, a lookup, a channel multiply, a layer norm or a data-movement op must be both
        fed by and
        feeding INT8 ops: at an FP32 boundary it saves no conversion, and FP32 is exact."""
        changed = True
        while changed:
            changed = False
            for out, grp in list(self.groups.items()):
                affine = (grp.attrs.get("affine", False)
                          or grp.kind in ("lookup", "channel_mul", "layernorm", "prelu"))
                if grp.kind in ("conv", "depthwise", "matmul") and not affine:
                    continue
                fed = any(self._is_int8_tensor(i) for i in grp.inputs)
                feeds = self._feeds_int8(out + ":0")
                if grp.attrs.get("movement") and not feeds:
                    # a Squeeze read only by a Flatten's Shape: uint8 is as good, and keeping
                    # it saves dequantizing the tensor just for its shape
                    feeds = self._read_only_for_shape(out + ":0")
                if affine or grp.attrs.get("movement"):
                    drop = not (fed and feeds)
                else:
                    drop = not fed and not feeds
                if drop:
                    del self.groups[out]
                    for m in grp.nodes:
                        del self.member[m]
                    changed = True

    def _match_conv(self, n):
        g = self.g
        if self._kept(n):
            self._refuse(n, "kept in FP32 by the configuration")
            return None
        ins = g.data_inputs(n)
        kind = {"Conv2D": "conv", "_FusedConv2D": "conv", "DepthwiseConv2dNative": "depthwise",
                "MatMul": "matmul", "_FusedMatMul": "matmul"}[n.op]
        w = g.const_value(ins[1])
        if w is None:
            self._refuse(n, "weights are not a constant (freeze the model first)")
            return None
        if not np.all(np.isfinite(w)):
            self._refuse(n, "weights contain NaN or Inf")
            return None
        if n.attr["T"].type != tf.float32.as_datatype_enum:
            dtype = tf.dtypes.as_dtype(n.attr["T"].type)
            hint = (" (a mixed-precision model: the upcast_half pass widens it unless switched "
                    "off)" if dtype in (tf.float16, tf.bfloat16) else "")
            self._refuse(n, f"dtype {dtype.name} is not float32{hint}")
            return None
        attrs = {"weights": w.astype(np.float32), "op": n.op}
        if kind == "conv":
            shape = self._shape(ins[0])
            c = shape[-1] if shape.rank == 4 else None
            # Unknown channels (a signature of unknown shape): an ordinary conv, as TF assumes
            # until run time; the INT8 op checks the channels when it runs.
            if c is not None and c != w.shape[2]:
                # A grouped conv (the grouped_conv pass made one-channel groups depthwise).
                groups = c // w.shape[2]
                if c % w.shape[2] or w.shape[3] % groups:
                    self._refuse(n, f"filter {list(w.shape)} does not divide {c} input "
                                    "channels into groups")
                    return None
                attrs["groups"] = groups
        bias = None
        activation = "NONE"
        if n.op.startswith("_Fused"):
            fused = [s.decode() for s in n.attr["fused_ops"].list.s]
            if fused not in (["BiasAdd"], ["BiasAdd", "Relu"], ["BiasAdd", "Relu6"]):
                self._refuse(n, f"fused ops {fused} are not supported")
                return None
            bias = g.const_value(ins[2])
            if bias is None:
                self._refuse(n, "bias is not a constant")
                return None
            if len(fused) == 2:
                activation = ACT_OPS[fused[1]]
        if kind == "matmul":
            if n.attr["transpose_a"].b:
                self._refuse(n, "MatMul with transpose_a is not supported")
                return None
            if n.attr["transpose_b"].b:
                attrs["weights"] = attrs["weights"].T.copy()
        else:
            if n.attr["data_format"].s not in (b"", b"NHWC"):
                self._refuse(n, "only NHWC convolutions are supported")
                return None
            strides = _list_attr(n, "strides", [1, 1, 1, 1])
            dil = _list_attr(n, "dilations", [1, 1, 1, 1])
            attrs["strides"] = [strides[1], strides[2]]
            attrs["dilations"] = [dil[1], dil[2]]
            kh, kw = w.shape[0], w.shape[1]
            padding = n.attr["padding"].s.decode()
            if padding == "VALID":
                pads = [0, 0, 0, 0]
            elif padding == "EXPLICIT":
                e = list(n.attr["explicit_paddings"].list.i)
                pads = [e[2], e[3], e[4], e[5]]
            else:
                shape = self._shape(ins[0])
                h, wd = (shape[1], shape[2]) if shape.rank == 4 else (None, None)
                if (h is None or wd is None) and (strides[1] > 1 or strides[2] > 1):
                    # the padding depends on the input size: a PadV2 computed at run time
                    # in front of the conv (see _dynamic_same_pad)
                    attrs["dynamic_same"] = True
                    pads = [0, 0, 0, 0]
                else:
                    h = h or 1
                    wd = wd or 1
                    pads = list(same_pads(h, kh, strides[1], dil[1]) +
                                same_pads(wd, kw, strides[2], dil[2]))
            # A zero Pad whose only consumer is this conv becomes part of its padding; the
            # kernel pads with the zero point, which is what real 0 quantizes to.
            src = g.nodes.get(node_of(ins[0]))
            if (src is not None and src.op in ("Pad", "PadV2") and not self._kept(src)
                    and not attrs.get("dynamic_same")
                    and g.sole_consumer(ins[0], self.outputs) is n):
                extra = self._zero_pad(src)
                if extra is not None:
                    pads = [a + b for a, b in zip(pads, extra)]
                    ins = [src.input[0]] + ins[1:]
                    attrs["absorbed_pad"] = src.name
            attrs["pads"] = pads
        grp = Group(kind, n.name, [n.name], [tensor_name(ins[0])], attrs)
        if "absorbed_pad" in attrs:
            grp.nodes.insert(0, attrs["absorbed_pad"])
        oc = attrs["weights"].shape[-1] if kind != "depthwise" else w.shape[2] * w.shape[3]
        return self._epilogue(grp, kind, n.name, oc, bias, activation)

    def _epilogue(self, grp, kind, out, oc, bias, activation):
        """Walks forward from `out`, the group's last node so far, absorbing what the INT8 op
        applies after the MACs: BiasAdd, activation, residual add (+ activation), clip bound."""
        g = self.g
        nxt = g.sole_consumer(out + ":0", self.outputs, self.member)
        if bias is None and nxt is not None and nxt.op in ("BiasAdd", "AddV2", "Add"):
            b = g.const_value(nxt.input[1])
            if b is not None and (b.size == 1 or (b.size == oc and b.shape[-1] == oc)):
                bias = np.broadcast_to(b.reshape(-1), (oc,)).copy()
                grp.nodes.append(nxt.name)
                out = nxt.name
                nxt = g.sole_consumer(out + ":0", self.outputs, self.member)
        if activation == "NONE" and nxt is not None and nxt.op in ACT_OPS and not self._kept(nxt):
            activation = ACT_OPS[nxt.op]
            grp.nodes.append(nxt.name)
            out = nxt.name
        elif (activation == "NONE" and kind == "conv" and nxt is not None and nxt.op in ADD_OPS
              and not self._kept(nxt) and "groups" not in grp.attrs):
            others = [i for i in g.data_inputs(nxt) if node_of(i) != out]
            if len(others) == 1 and g.const_value(others[0]) is None:
                skip = others[0]
                try:
                    ok = self._shape(skip).as_list()[1:] == self._shape(out).as_list()[1:]
                except ValueError:
                    ok = False
                if ok:
                    grp.summand = tensor_name(skip)
                    grp.nodes.append(nxt.name)
                    out = nxt.name
                    nxt = g.sole_consumer(out + ":0", self.outputs, self.member)
                    if nxt is not None and nxt.op in ACT_OPS and not self._kept(nxt):
                        activation = ACT_OPS[nxt.op]
                        grp.nodes.append(nxt.name)
                        out = nxt.name
        if activation == "RELU":
            bound = self._relu_bound(out, oc)
            if bound is not None:
                grp.nodes.append(bound[0])
                out = bound[0]
                activation = "CLIP"
                grp.attrs["clip"] = (0.0, bound[1], bound[2])
        grp.out_node = out
        grp.activation = activation
        grp.attrs["bias"] = (np.zeros(oc, np.float32) if bias is None
                             else bias.astype(np.float32).reshape(-1))
        return grp

    def _match_affine(self, n):
        """Mul(x, c) [→ Add(·, b)] [→ Relu|Relu6] with per-channel constants c or b on an INT8
        NHWC tensor x ⇒ a 1×1 depthwise conv with weights c and bias b. Each channel's weight
        is its own scale (W_q = ±127), so it is exact; the op adds only the output rounding.
        Kept only between INT8 ops (_prune). All-scalar chains are left to _match_lookup."""
        if n.op != "Mul" or ("T" in n.attr and n.attr["T"].type != tf.float32.as_datatype_enum):
            return None
        ins = self.g.data_inputs(n)
        consts = [self.g.const_value(i) for i in ins]
        if len(ins) != 2 or sum(c is not None for c in consts) != 1:
            return None
        x, c = (ins[0], consts[1]) if consts[1] is not None else (ins[1], consts[0])
        if not self._is_int8_tensor(x) or self._kept(n):
            return None
        shape = self._shape(x)
        if shape.rank != 4 or shape[-1] is None:
            return None
        ch = int(shape[-1])
        if (c.size not in (1, ch) or (c.size == ch and c.shape[-1] != ch)
                or not np.all(np.isfinite(c))):
            return None
        w = np.broadcast_to(c.astype(np.float32).reshape(-1), (ch,)).reshape(1, 1, ch, 1).copy()
        grp = Group("depthwise", n.name, [n.name], [tensor_name(x)],
                    {"weights": w, "op": "Mul (per-channel affine as 1x1 depthwise)",
                     "strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0],
                     "affine": True})
        grp = self._epilogue(grp, "depthwise", n.name, ch, None, "NONE")
        if c.size == 1 and np.all(grp.attrs["bias"] == grp.attrs["bias"][0]):
            return None     # nothing per channel: a lookup table does it cheaper
        return grp

    def _match_channel_mul(self, n):
        """Mul(x, g) with x an INT8 tensor [N, ..., C] and g an FP32 tensor [N or 1, 1, ..., 1, C]
        (a squeeze-and-excitation gate: EfficientNet, MobileNetV3, SE-ResNet) ⇒ Tfq8ChannelMul.
        The gate stays FP32: its branch is a few values per sample and its producer writes
        f32. Kept only between INT8 ops (_prune)."""
        if (n.op != "Mul" or self._kept(n)
                or ("T" in n.attr and n.attr["T"].type != tf.float32.as_datatype_enum)):
            return None
        ins = [tensor_name(i) for i in self.g.data_inputs(n)]
        if len(ins) != 2 or any(self.g.const_value(i) is not None for i in ins):
            return None
        try:
            shapes = [self._shape(i) for i in ins]
        except (KeyError, ValueError):
            return None
        for k in (0, 1):
            x, gate = ins[k], ins[1 - k]
            xs, gs = shapes[k], shapes[1 - k]
            if (not self._is_int8_tensor(x) or xs.rank is None or xs.rank < 2
                    or gs.rank != xs.rank or xs[-1] is None or gs[-1] != xs[-1]):
                continue
            if any(d != 1 for d in gs.as_list()[1:-1]):
                continue
            if gs[0] is not None and gs[0] != 1 and gs[0] != xs[0]:
                continue
            # both fit only when x is per-channel too: prefer the INT8 tensor with more values
            if (k == 0 and self._is_int8_tensor(gate) and xs.num_elements() is not None
                    and gs.num_elements() is not None
                    and gs.num_elements() > xs.num_elements()):
                continue
            grp = Group("channel_mul", n.name, [n.name], [x],
                        {"op": "Mul (per-channel gate)", "gate": gate})
            self._absorb_gate_factor(grp)
            return grp
        return None

    def _absorb_gate_factor(self, grp):
        """A gate that is Mul(g, c) with a positive scalar constant c (MobileNetV3's hard
        sigmoid: relu6(z + 3) · 1/6) read only by this product: the op reads g and the input
        scale takes c — x·(g·c) = (x·c)·g — instead of an FP32 Mul per call."""
        node = self.g.nodes.get(node_of(grp.attrs["gate"]))
        if node is None or node.op != "Mul" or self._kept(node):
            return
        if self.g.sole_consumer(grp.attrs["gate"], self.outputs) is not self.g.nodes[grp.out_node]:
            return
        if node.name in self.member:
            # the lookup stage took Mul(INT8 z, c) as a one-node table; read only as this FP32
            # gate it would be pruned anyway, so the gate takes it
            taken = self.groups[self.member[node.name]]
            if taken.kind != "lookup" or taken.nodes != [node.name]:
                return
            del self.groups[taken.out_node]
            del self.member[node.name]
        ins = [tensor_name(i) for i in self.g.data_inputs(node)]
        consts = [self.g.const_value(i) for i in ins]
        for k in (0, 1):
            c = consts[k]
            if (c is not None and consts[1 - k] is None and np.size(c) == 1
                    and np.isfinite(c).all() and float(np.reshape(c, -1)[0]) > 0):
                grp.attrs["gate"] = ins[1 - k]
                grp.attrs["gate_factor"] = float(np.reshape(c, -1)[0])
                grp.nodes.insert(0, node.name)
                return

    def _match_mul(self, n):
        """Mul(a, b) of two INT8 tensors of the same shape ⇒ Tfq8Mul. Broadcasting products
        are gates (Tfq8ChannelMul) or stay FP32."""
        if (n.op != "Mul" or self._kept(n)
                or ("T" in n.attr and n.attr["T"].type != tf.float32.as_datatype_enum)):
            return None
        ins = [tensor_name(i) for i in self.g.data_inputs(n)]
        if len(ins) != 2 or not all(self._is_int8_tensor(i) for i in ins):
            return None
        try:
            sa, sb = (self._shape(i) for i in ins)
        except (KeyError, ValueError):
            return None
        if sa.rank is None or sa.rank != sb.rank or sa.as_list()[1:] != sb.as_list()[1:] \
                or None in sa.as_list()[1:]:
            self._refuse(n, "product of INT8 tensors of different or unknown shapes "
                            "(broadcasting) stays FP32")
            return None
        return Group("mul", n.name, [n.name], ins, {"op": n.op})

    def _match_prelu(self, x, first):
        """The largest region of LOOKUP_OPS nodes computed from INT8 tensor x and constants
        that are scalars or span x's trailing axes ([1, ..., 1, C], or Keras' default PReLU
        alpha [H, W, C]), at least one of them not a scalar, with one output read elsewhere,
        that evaluates to x·(x ≥ 0 ? p : n) + b elementwise over those axes with p ≠ n
        somewhere: Keras' PReLU (relu(x) − α·relu(−x)), max(x, α·x), a ReLU then a per-channel
        affine ⇒ Tfq8Prelu. Recognised by what it computes: p, n and b are read off the
        region's outputs at x = 1, −1 and 0 and the formula is checked at ±1e-3 … ±300
        (_fit_prelu). Kept only between INT8 ops (_prune)."""
        g = self.g
        try:
            shape = self._shape(x)
        except (KeyError, ValueError):
            return None
        if shape.rank is None or shape.rank < 2:
            return None
        dims = shape.as_list()

        def tail(c):
            """How many trailing axes of x constant c spans (0: a scalar), or None."""
            if c.size == 1:
                return 0
            lead = next(j for j, d in enumerate(c.shape) if d != 1)
            t = list(c.shape[lead:])
            if (c.ndim > len(dims) or len(t) >= len(dims) or t != dims[len(dims) - len(t):]):
                return None
            return len(t)

        found = self._elementwise_region(x, first, lambda c: tail(c) is not None)
        if found is None:
            return None
        nodes, out = found
        span = max((tail(c) for r in nodes
                    for c in (g.const_value(i) for i in g.data_inputs(g.nodes[r]))
                    if c is not None), default=0)
        if not span:
            return None
        fit = self._fit_prelu(nodes, x, out, len(dims), dims[len(dims) - span:])
        if fit is None:
            return None
        fn = "+".join(g.nodes[r].op for r in nodes)
        return Group("prelu", out, nodes, [x], {"op": f"{fn} (per-channel two-slope)",
                                                "slopes": fit[0], "bias": fit[1]})

    def _fit_prelu(self, nodes, x, out_node, rank, block):
        """([2, P] slopes, [P] bias), P = prod(block) (x's trailing axes the constants span), if
        the region is x·(x ≥ 0 ? p : n) + b elementwise (within f32 rounding) with p ≠ n
        somewhere, else None."""
        probes = np.array([0.0, 1.0, -1.0, 1e-3, -1e-3, 0.37, -0.37, 3.0, -3.0, 20.0, -20.0,
                           300.0, -300.0])
        size = int(np.prod(block))
        v = np.repeat(probes[:, None], size, axis=1).astype(np.float32)
        try:
            y = self._run_region(nodes, x, out_node,
                                 v.reshape([len(probes)] + [1] * (rank - 1 - len(block))
                                           + list(block)), scalar_consts=False)
            y = np.asarray(y, np.float64).reshape(len(probes), size)
        except (tf.errors.OpError, ValueError):
            return None
        if not np.all(np.isfinite(y)):
            return None
        b = y[0]
        p, n = y[1] - b, b - y[2]
        want = np.where(v >= 0, v * p, v * n) + b
        tol = 1e-5 * (np.abs(v) * (np.abs(p) + np.abs(n)) + np.abs(b)) + 1e-30
        if not np.all(np.abs(y - want) <= tol) or np.all(p == n):
            return None
        return np.stack([p, n]).astype(np.float32), b.astype(np.float32)

    def _match_lookup(self, x, first):
        """The largest region of LOOKUP_OPS nodes computed from INT8 tensor x and scalar
        constants only (starting at `first`), if it has exactly one output read elsewhere: a
        function u8 → u8, emitted as Tfq8Lookup. Kept only between INT8 ops (_prune)."""
        found = self._elementwise_region(x, first, lambda c: c.size == 1)
        if found is None:
            return None
        nodes, out = found
        fn = "+".join(self.g.nodes[r].op for r in nodes)
        return Group("lookup", out, nodes, [x], {"op": f"{fn} (lookup table)", "function": fn})

    def _elementwise_region(self, x, first, const_ok):
        """The largest region of LOOKUP_OPS nodes (float32, not matched, not kept in FP32)
        grown from `first` and computed from tensor x, the region itself and finite constants
        that const_ok accepts: (its nodes in graph order, the one node whose output is read
        outside it or is a graph output), or None if `first` does not fit or there are several
        such outputs."""
        g = self.g
        region = set()

        def fits(n):
            if (n.name in self.member or n.op not in LOOKUP_OPS or self._kept(n)
                    or ("T" in n.attr and n.attr["T"].type != tf.float32.as_datatype_enum)):
                return False
            for i in g.data_inputs(n):
                t = tensor_name(i)
                if t == x or (node_of(t) in region and t.endswith(":0")):
                    continue
                c = g.const_value(t)
                if c is None or not np.all(np.isfinite(c)) or not const_ok(c):
                    return False
            return True

        if not fits(first):
            return None
        region.add(first.name)
        changed = True
        while changed:
            changed = False
            for t in [x] + [r + ":0" for r in region]:
                for c in g.consumers.get(t, []):
                    if c not in region and fits(g.nodes[c]):
                        region.add(c)
                        changed = True
        outs = [r for r in region
                if r + ":0" in self.outputs
                or any(c not in region for c in g.consumers.get(r + ":0", []))]
        if len(outs) != 1:
            return None
        return [r for r in g.order if r in region], outs[0]

    def _match_layernorm(self, m0):
        """A layer norm over the last axis of INT8 tensor x, found from its first Mean
        m0 = Mean(x, last axis, keep_dims): the region of LAYERNORM_OPS nodes that use m0's
        result, computed from x, the region and constants that broadcast along the last axis
        only — so the region is a function of each row of x alone — with exactly one output
        read elsewhere. Whatever its graph (Keras 3's x·inv + (−mean·inv + beta),
        tf.nn.batch_normalization's, a hand-written one), it is accepted only if it evaluates
        to (x − mean)/sqrt(var + eps)·gamma + beta: gamma and beta are read off its outputs on
        two probe rows and the whole formula checked on others (_fit_layernorm)."""
        g = self.g
        ins = g.data_inputs(m0)
        if len(ins) != 2 or not m0.attr["keep_dims"].b:
            return None
        x = tensor_name(ins[0])
        if not self._is_int8_tensor(x) or self._kept(m0):
            return None
        try:
            shape = self._shape(x)
        except (KeyError, ValueError):
            return None
        if shape.rank is None or shape.rank < 2 or shape[-1] is None:
            return None
        rank, ch = shape.rank, int(shape[-1])
        if not 2 <= ch <= LAYERNORM_MAX_CHANNELS:
            return None

        def last_axis_only(n):
            if n.op != "Mean":
                return True
            axes = g.const_value(n.input[1])
            return (axes is not None and n.attr["keep_dims"].b
                    and [int(a) % rank for a in np.ravel(axes)] == [rank - 1])

        region = {m0.name}
        if not last_axis_only(m0):
            return None

        def fits(n):
            if (n.name in self.member or n.name in region or n.op not in LAYERNORM_OPS
                    or self._kept(n) or not last_axis_only(n)
                    or ("T" in n.attr and n.attr["T"].type != tf.float32.as_datatype_enum)):
                return False
            uses_region = False
            for k, i in enumerate(g.data_inputs(n)):
                t = tensor_name(i)
                if node_of(t) in region and t.endswith(":0"):
                    uses_region = True
                elif t == x or (n.op == "Mean" and k == 1):
                    continue
                else:
                    c = g.const_value(t)
                    if (c is None or not np.all(np.isfinite(c)) or c.ndim > rank
                            or c.size not in (1, ch) or (c.size == ch and c.shape[-1] != ch)):
                        return False
            return uses_region

        changed = True
        while changed:
            changed = False
            for r in list(region):
                for c in g.consumers.get(r + ":0", []):
                    if fits(g.nodes[c]):
                        region.add(c)
                        changed = True
        def outputs_of(nodes):
            return [r for r in nodes if r + ":0" in self.outputs
                    or any(c not in nodes for c in g.consumers.get(r + ":0", []))]

        outs = outputs_of(region)
        if len(outs) > 1:
            # The growth ran on into what follows the norm (GELU's 0.5·y and y/√2 both read
            # y): keep the latest node whose region ancestors form a closed region with it as
            # the only output — the norm itself; the fit below checks what it computes.
            for cand in [r for r in reversed(g.order) if r in region]:
                sub, work = {cand}, [cand]
                while work:
                    for i in g.data_inputs(g.nodes[work.pop()]):
                        src = node_of(tensor_name(i))
                        if src in region and src not in sub:
                            sub.add(src)
                            work.append(src)
                if outputs_of(sub) == [cand]:
                    region, outs = sub, [cand]
                    break
        ops = [g.nodes[r].op for r in region]
        if len(outs) != 1 or ops.count("Mean") < 2 or not {"Rsqrt", "Sqrt"} & set(ops):
            return None
        nodes = [r for r in g.order if r in region]
        fit = self._fit_layernorm(x, nodes, outs[0], rank, ch)
        if fit is None:
            return None
        gamma, beta, eps = fit
        return Group("layernorm", outs[0], nodes, [x],
                     {"op": "LayerNorm (last axis)", "gamma": gamma, "beta": beta,
                      "epsilon": eps})

    def _fit_layernorm(self, x, nodes, out_node, rank, ch):
        """(gamma, beta, epsilon) if the region `nodes` (reading x) computes a layer norm over
        the last axis, else None. epsilon: the scalar added to the variance under the region's
        Rsqrt/Sqrt; gamma, beta: from the outputs on a probe row z (mean 0) and on −z."""
        g = self.g
        eps = None
        for r in nodes:
            n = g.nodes[r]
            if n.op in ("Rsqrt", "Sqrt"):
                a = g.nodes.get(node_of(n.input[0]))
                if a is not None and (a.op in ADD_OPS or a.op == "Maximum"):
                    for i in g.data_inputs(a):
                        c = g.const_value(i)
                        if c is not None and c.size == 1:
                            eps = float(np.ravel(c)[0])
        if eps is None or not eps >= 0.0:
            return None
        rng = np.random.default_rng(0)
        sign = np.where(rng.random(ch) < 0.5, -1.0, 1.0)
        z = sign - sign.mean()                              # mean 0, every |z_c| ≥ 1 − 1/C
        rows = [z, -z]
        for k in range(6):                                  # checks: varied centre and spread
            sigma = 10.0 ** rng.uniform(-2, 1)
            rows.append(rng.normal(rng.uniform(-2, 2) * sigma, sigma, ch))
        if eps > 0:                                         # spread near sqrt(eps): eps matters
            rows.append(rng.normal(0.0, np.sqrt(eps), ch))
        xs = np.stack(rows).astype(np.float32)
        feed = xs.reshape((len(rows),) + (1,) * (rank - 2) + (ch,))
        try:
            y = self._run_region(nodes, x, out_node, feed, scalar_consts=False)
        except (tf.errors.OpError, ValueError):
            return None
        y = np.asarray(y, np.float64)
        if y.shape != feed.shape:
            return None
        y = y.reshape(len(rows), ch)
        zf = xs[0].astype(np.float64)
        inv0 = 1.0 / np.sqrt(zf.var() + eps)
        beta = (y[0] + y[1]) / 2
        gamma = (y[0] - y[1]) / 2 / (zf * inv0)
        xf = xs.astype(np.float64)
        want = ((xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + eps)
                * gamma + beta)
        tol = 1e-3 * (np.abs(gamma).max() + np.abs(beta).max() + 1e-6)
        if not (np.all(np.isfinite(y)) and np.abs(y - want).max() <= tol):
            return None
        return gamma.astype(np.float32), beta.astype(np.float32), eps

    def _run_region(self, nodes, x, out_node, value, scalar_consts):
        """Evaluates the FP32 region `nodes` (topological order; it reads tensor x, its own
        nodes and constants) with `value` fed for x; returns out_node's output. The region is
        copied into a graph of its own, constants inlined (as scalars if scalar_consts)."""
        g = self.g
        gd = graph_pb2.GraphDef()
        ph = gd.node.add()
        ph.name, ph.op = "tfq8_region/x", "Placeholder"
        ph.attr["dtype"].type = tf.float32.as_datatype_enum
        region = set(nodes)
        for k, name in enumerate(nodes):
            src = g.nodes[name]
            nd = gd.node.add()
            nd.name, nd.op = "tfq8_region/" + name, src.op
            for key, v in src.attr.items():
                if not key.startswith("_"):
                    nd.attr[key].CopyFrom(v)
            for j, i in enumerate(g.data_inputs(src)):
                t = tensor_name(i)
                if t == x:
                    nd.input.append(ph.name)
                elif node_of(t) in region:
                    nd.input.append("tfq8_region/" + node_of(t))
                else:
                    c = g.const_value(t)
                    nd.input.append(self._const(gd, f"tfq8_region/c{k}_{j}",
                                                c.reshape(()) if scalar_consts else c,
                                                tf.dtypes.as_dtype(c.dtype)))
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run("tfq8_region/" + out_node + ":0", {"tfq8_region/x:0": value})

    def _lookup_table(self, grp, qin, qout):
        """The 256 u8 outputs of grp's FP32 region on the dequantized levels of its input,
        quantized exactly as Tfq8Quantize would (NaN → 0, ±inf saturate)."""
        levels = qin.dequantize(np.arange(256))
        y = self._run_region(grp.nodes, grp.inputs[0], grp.out_node, levels, scalar_consts=True)
        return qout.quantize(np.asarray(y, np.float32).reshape(256))

    def _relu_bound(self, t, oc):
        """relu → Minimum(·, c) with a constant c (scalar or per channel, > 0), as written by
        the equalize pass for a rescaled ReLU6: (Minimum node, min c, all c equal?). Fused as
        CLIP(0, min c); for per-channel c that is exact only when min c is at least the
        output's quantization max, which emit checks."""
        m = self.g.sole_consumer(t + ":0", self.outputs, self.member)
        if m is None or m.op != "Minimum" or self._kept(m):
            return None
        ins = self.g.data_inputs(m)
        if len(ins) != 2 or sum(tensor_name(i) == t + ":0" for i in ins) != 1:
            return None
        c = self.g.const_value(ins[1] if tensor_name(ins[0]) == t + ":0" else ins[0])
        if (c is None or c.ndim > 1 or c.size not in (1, oc) or not np.all(np.isfinite(c))
                or not np.all(c > 0)):
            return None
        return m.name, float(np.min(c)), bool(np.all(c == c.reshape(-1)[0]))

    def _match_simple(self, n, kind):
        if self._kept(n):
            self._refuse(n, "kept in FP32 by the configuration")
            return None
        if n.attr["data_format"].s not in (b"", b"NHWC"):
            self._refuse(n, "only NHWC pooling is supported")
            return None
        ksize = list(n.attr["ksize"].list.i)
        strides = list(n.attr["strides"].list.i)
        if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
            self._refuse(n, "pooling over batch or channels is not supported")
            return None
        return Group(kind, n.name, [n.name], [tensor_name(self.g.data_inputs(n)[0])],
                     {"op": n.op, "ksize": ksize[1:3], "strides": strides[1:3],
                      "padding": n.attr["padding"].s.decode()})

    def _match_mean(self, n):
        axes = self.g.const_value(n.input[1])
        shape = self._shape(n.input[0])
        if axes is None or shape.rank != 4 or sorted(int(a) % 4 for a in np.ravel(axes)) != [1, 2]:
            return None
        if self._kept(n):
            self._refuse(n, "kept in FP32 by the configuration")
            return None
        return Group("mean", n.name, [n.name], [tensor_name(n.input[0])],
                     {"op": n.op, "keep_dims": bool(n.attr["keep_dims"].b)})

    def _match_concat(self, n):
        if self._kept(n):
            self._refuse(n, "kept in FP32 by the configuration")
            return None
        ins = self.g.data_inputs(n)
        axis = self.g.const_value(ins[-1])
        if axis is None:
            self._refuse(n, "concat axis is not a constant")
            return None
        return Group("concat", n.name, [n.name], [tensor_name(i) for i in ins[:-1]],
                     {"op": n.op, "axis": int(axis)})

    # ---------------------------------------------------------------- calibration needs
    @property
    def lookup_tensors(self) -> set[str]:
        """Inputs and outputs of lookup tables and two-slope functions: any zero point costs
        them nothing, so these get the asymmetric scheme (swish's output, ≥ −0.28, keeps nearly
        8 bits; so does a PReLU's small negative side)."""
        return {t for grp in self.groups.values() if grp.kind in ("lookup", "prelu")
                for t in (grp.inputs[0], grp.out_node + ":0")}

    @property
    def full_range_tensors(self) -> set[str]:
        """Calibrated tensors quantized over their full observed range, whatever the method:
        what Max/Min reductions (global max pooling) read, whose output is the extremes a
        percentile or KL threshold clips; and INT8 tensors that are also model outputs (through
        data movement), whose values the user sees, where their producer cannot write f32 for
        the output (convs and matmuls do: see emit). Both through data movement ops."""
        def source(t):
            while (node_of(t) in self.groups and self.groups[node_of(t)].kind
                   in ("passthrough", "pad", "maxpool")):
                t = self.groups[node_of(t)].inputs[0]
            return t

        out = set()
        for grp in self.groups.values():
            if grp.kind == "passthrough" and grp.attrs.get("op") in ("Max", "Min"):
                out.add(source(grp.inputs[0]))
            t = grp.out_node + ":0"
            if self._reaches_output(t) and grp.kind not in F32_CAPABLE:
                out.add(source(t))
        return out

    def _reaches_output(self, t, depth=8):
        """t is a graph output, or reaches one through Identity/Squeeze/Reshape-like ops."""
        if t in self.outputs:
            return True
        if depth == 0:
            return False
        return any(self.g.nodes[c].op in PASSTHROUGH_OPS and self._reaches_output(c + ":0",
                                                                                depth - 1)
                   for c in self.g.consumers.get(t, []))

    @property
    def observe(self) -> list[str]:
        """FP32 tensors whose ranges the calibration must measure."""
        need = set()
        for grp in self.groups.values():
            if grp.kind in ("conv", "depthwise", "matmul", "add", "mul", "concat", "lookup",
                            "prelu", "channel_mul", "layernorm"):
                need.add(grp.out_node + ":0")
            for t in grp.inputs + ([grp.summand] if grp.summand else []):
                if not self._is_int8_tensor(t):
                    need.add(t)
        return sorted(need)

    # ---------------------------------------------------------------- emission
    def emit(self, table) -> tuple[graph_pb2.GraphDef, list[LayerReport]]:
        g = self.g
        # emit may run more than once (e.g. bias correction emits, measures, emits again): start
        # from the reports of the matching phase each time
        if not hasattr(self, "_match_reports"):
            self._match_reports = list(self.reports)
        self.reports = list(self._match_reports)
        qp: dict[str, QParams] = {}     # INT8 tensor (FP32 name) → qparams

        def lookup(t):
            if t not in table:
                raise QuantizeError(
                    f"tensor {t} has no calibration entry; recalibrate with this model or drop "
                    f"the stale table")
            entry = table[t]
            return entry.qparams if hasattr(entry, "qparams") else entry

        # Output qparams in topological order (pools inherit from their input).
        concat_of = {}
        for grp in self.groups.values():
            if grp.kind == "concat":
                for t in grp.inputs:
                    concat_of.setdefault(t, []).append(grp)
        for name in g.order:
            grp = self.groups.get(name)
            if grp is None:
                continue
            t = grp.out_node + ":0"
            if grp.kind in ("maxpool", "avgpool", "mean", "pad", "passthrough", "resize"):
                src = grp.inputs[0]
                qp[t] = qp[src] if self._is_int8_tensor(src) else lookup(src)
            else:
                qp[t] = lookup(t)
            # A conv whose only consumer is a concat writes in the concat's scale: the concat
            # then only copies (Inception-style blocks).
            cons = g.consumers.get(t, [])
            if (grp.kind in ("conv", "depthwise") and len(cons) == 1 and t in concat_of
                    and t not in self.outputs):
                qp[t] = lookup(concat_of[t][0].out_node + ":0")

        int8_out = {grp.out_node + ":0" for grp in self.groups.values()}

        def consumer_groups(t):
            """(int8_readers, float_readers) of tensor t outside its own group."""
            own = self.member.get(node_of(t))
            int8, flt = 0, 0
            for c in g.consumers.get(t, []):
                cg = self.member.get(c)
                if cg is not None and cg == own:
                    continue
                if cg is None and g.nodes[c].op in SHAPE_READERS:
                    continue    # reads only the shape: gets the uint8 tensor (emit)
                if cg is not None and (t in self.groups[cg].inputs or t == self.groups[cg].summand):
                    int8 += 1
                else:
                    flt += 1
            return int8, flt + (t in self.outputs)

        def needs_float(t):
            return consumer_groups(t)[1] > 0

        def int8_consumers(t):
            return consumer_groups(t)[0] > 0

        out = graph_pb2.GraphDef()
        out.versions.CopyFrom(self.graph_def.versions)
        out.library.CopyFrom(self.graph_def.library)
        quantized_inputs: dict[str, str] = {}
        replaced = set(self.member)

        # A conv/matmul output that the user sees (a model output, through data movement) and
        # that INT8 ops read as well: the op writes f32 — the output is not clipped or rounded —
        # and its INT8 readers get a Tfq8Quantize of it.
        f32_written = {grp.out_node + ":0" for grp in self.groups.values()
                       if grp.kind in F32_CAPABLE and self._reaches_output(grp.out_node + ":0")
                       and int8_consumers(grp.out_node + ":0")}

        def int8_ref(t):
            """Name of the uint8 version of FP32 tensor t (inserting a Tfq8Quantize if needed)."""
            if t in int8_out and t not in f32_written:
                node = node_of(t)
                return node + "/int8" if needs_float(t) else node
            if t not in quantized_inputs:
                q = lookup(t)
                qp[t] = q
                src = _uint8_cast_source(g, t)
                if src is not None and q.scale == 1.0 and q.zero_point == 0:
                    # Cast(uint8 x) at scale 1 (integer-valued, see Observer.integer_qparams):
                    # the codes are x itself
                    quantized_inputs[t] = src
                    return src
                name = t.replace(":", "_") + "/tfq8_quantize"
                nd = out.node.add()
                nd.name = name
                nd.op = "Tfq8Quantize"
                nd.input.append(t if not t.endswith(":0") else t[:-2])
                nd.attr["scale"].f = q.scale
                nd.attr["zero_point"].i = q.zero_point
                quantized_inputs[t] = name
            return quantized_inputs[t]

        for name in g.order:
            n = g.nodes[name]
            if name not in replaced:
                nd = out.node.add()
                nd.CopyFrom(n)
                src = tensor_name(n.input[0]) if n.input else None
                if (n.op in SHAPE_READERS and src in int8_out and not needs_float(src)
                        and n.attr["T"].type == tf.float32.as_datatype_enum):
                    nd.attr["T"].type = tf.uint8.as_datatype_enum  # X is the uint8 tensor now
                continue
            grp = self.groups[self.member[name]]
            if name != grp.out_node:
                continue
            t = grp.out_node + ":0"
            float_needed = needs_float(t)
            ins_q = [int8_ref(i) for i in grp.inputs]
            summand_q = int8_ref(grp.summand) if grp.summand else None
            fuse_f32 = (grp.kind in F32_CAPABLE and float_needed
                        and (not int8_consumers(t) or t in f32_written))
            node_name = grp.out_node if (fuse_f32 or not float_needed) else grp.out_node + "/int8"
            nd = out.node.add()
            nd.name = node_name
            rep = self._emit_group(grp, nd, ins_q, summand_q, qp, t, fuse_f32, out)
            self.reports.append(rep)
            if float_needed and not fuse_f32:
                dq = out.node.add()
                dq.name = grp.out_node
                dq.op = "Tfq8Dequantize"
                dq.input.append(node_name)
                dq.attr["T"].type = tf.uint8.as_datatype_enum
                dq.attr["scale"].f = qp[t].scale
                dq.attr["zero_point"].i = qp[t].zero_point
        # Quantize nodes were appended where first needed; restore a topological order, and drop
        # what no output needs any more (the FP32 weights of replaced layers).
        _topo_sort(out)
        keep = {node_of(t) for t in self.outputs} | self._placeholders()
        _prune_dead(out, keep)
        if absorb_input_affines(out, keep, self._fp32_shape):
            _prune_dead(out, keep)  # the absorbed FP32 ops and their constants
        return out, self.reports

    def _fp32_shape(self, t):
        """Static shape of FP32 tensor t as a tuple (None: unknown rank)."""
        shape = self._shape(t)
        return None if shape.rank is None else tuple(shape.as_list())

    def _placeholders(self):
        return {n.name for n in self.graph_def.node if n.op == "Placeholder"}

    def _dynamic_same_pad(self, out, base, x, attrs, zero_point):
        """SAME padding of a strided conv whose input size is known only at run time: int32
        shape arithmetic on Shape(x) gives TF's SAME pads of each axis,
            total = max((ceil(n / s) − 1)·s + (k − 1)·d + 1 − n, 0), before = total // 2,
        and a PadV2 with the input's zero point (real 0) pads x before the op (which then
        pads nothing). Returns the padded tensor's name."""
        w = attrs["weights"]
        kh, kw = w.shape[0], w.shape[1]
        (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
        p = base + "/same_pad"

        def node(op, name, inputs, **at):
            nd = out.node.add()
            nd.name, nd.op = f"{p}/{name}", op
            nd.input.extend(inputs)
            for k, v in at.items():
                if isinstance(v, tf.DType):
                    nd.attr[k].type = v.as_datatype_enum
                else:
                    nd.attr[k].i = v
            return nd.name

        i32 = tf.int32
        shape = node("Shape", "shape", [x], T=tf.uint8, out_type=i32)
        hw = node("StridedSlice", "hw", [shape, self._const(out, p + "/b", [1], i32),
                                         self._const(out, p + "/e", [3], i32),
                                         self._const(out, p + "/one", [1], i32)],
                  T=i32, Index=i32, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0, shrink_axis_mask=0)
        s = self._const(out, p + "/strides", [sh, sw], i32)
        s1 = self._const(out, p + "/strides_minus_1", [sh - 1, sw - 1], i32)
        n_out = node("FloorDiv", "out_size", [node("AddV2", "round_up", [hw, s1], T=i32), s],
                     T=i32)
        reach = self._const(out, p + "/reach_minus_stride",
                            [(kh - 1) * dh + 1 - sh, (kw - 1) * dw + 1 - sw], i32)
        span = node("AddV2", "span", [node("Mul", "steps", [n_out, s], T=i32), reach], T=i32)
        total = node("Maximum", "total", [node("Sub", "short", [span, hw], T=i32),
                                          self._const(out, p + "/zero", 0, i32)], T=i32)
        before = node("FloorDiv", "before", [total, self._const(out, p + "/two", 2, i32)],
                      T=i32)
        after = node("Sub", "after", [total, before], T=i32)
        hw_pads = node("Pack", "hw_pads", [before, after], T=i32, N=2, axis=1)    # [[t, b], [l, r]]
        none = self._const(out, p + "/none", [[0, 0]], i32)
        pads = node("ConcatV2", "pads", [none, hw_pads, none,
                                         self._const(out, p + "/axis", 0, i32)],
                    T=i32, N=3, Tidx=i32)
        return node("PadV2", "pad", [x, pads, self._const(out, p + "/zero_point",
                                                          np.uint8(zero_point), tf.uint8)],
                    T=tf.uint8, Tpaddings=i32)

    def _const(self, out, name, value, dtype):
        nd = out.node.add()
        nd.name = name
        nd.op = "Const"
        nd.attr["dtype"].type = dtype.as_datatype_enum
        nd.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.asarray(value),
                                                                       dtype=dtype))
        return name

    def u8_pairs(self, grp) -> bool:
        """Whether this conv/matmul group's weights are made u8-safe in pairs: the plan's
        u8_safe_pairs, a layer the u8 kernel would run (u8_pair_kernel_eligible), and a
        widening whose mean weight-noise factor mean(f²) stays ≤ u8_pair_max_noise — a layer
        that would lose more keeps its plain scales and runs on the exact s16 kernel."""
        if not self.u8_safe_pairs or grp.kind not in ("conv", "matmul") or grp.attrs.get("affine"):
            return False
        key = grp.out_node
        if key not in self._u8_pairs:
            w = grp.attrs["weights"]
            ok = True
            if grp.kind == "conv":
                ok = u8_pair_kernel_eligible(w.shape[0], w.shape[1], grp.attrs["strides"],
                                             grp.attrs["dilations"], w.shape[2])
            if ok:
                noise = float(np.mean(u8_pair_widening(w) ** 2))
                self._u8_pairs_noise[key] = noise
                ok = noise <= self.u8_pair_max_noise
            self._u8_pairs[key] = ok
        return self._u8_pairs[key]

    def int8_weights(self, grp, fit_pairs=True):
        """(int8 weights in the graph's layout, f32 scales) of a conv/depthwise/matmul group:
        round-to-nearest at max|w| / 127, unless calibration chose the int8 values
        (grp.attrs["int8_weights"], see tfq8.calibration.weight_rounding).

        With the plan's u8_safe_pairs, conv and matmul weights are u8-safe in pairs
        (tfq8.calibration.qparams): scales widened to the largest same-sign pair sum / 128,
        then fit_u8_pairs for the rare pair that rounding pushed past 128 (idempotent).
        ``fit_pairs=False`` skips that last step: the round-to-nearest basis the calibration
        table stores chosen roundings against."""
        w = grp.attrs["weights"]
        safe = self.u8_pairs(grp)
        if "int8_weights" in grp.attrs:
            wq, scales = grp.attrs["int8_weights"]
            if wq.shape != w.shape:
                raise QuantizeError(f"{grp.out_node}: rounded int8 weights of shape {wq.shape} "
                                    f"do not fit the layer's weights {w.shape}; recalibrate")
        elif grp.kind == "depthwise":
            kh, kw, c, m = w.shape
            flat = w.reshape(kh, kw, c * m)
            # an affine's one weight per channel is exact only with its own scale
            scales = weight_scales(flat, axis=-1,
                                   per_channel=self.per_channel or grp.attrs.get("affine"))
            return quantize_weights(flat, scales, axis=-1).reshape(kh, kw, c, m), scales
        else:
            scales = weight_scales(w, axis=-1, per_channel=self.per_channel,
                                   u8_safe_pairs=safe)
            wq = quantize_weights(w, scales, axis=-1)
        if safe and fit_pairs:
            s = np.asarray(scales, np.float64).reshape(-1)
            wq = fit_u8_pairs(wq, np.asarray(w, np.float64) / s, axis=-2)
        return wq, scales

    def _emit_group(self, grp, nd, ins_q, summand_q, qp, t, fuse_f32, out) -> LayerReport:
        rep = LayerReport(node=grp.out_node, op=grp.attrs["op"], int8=True,
                          input_qparams=[qp[i] for i in grp.inputs if i in qp],
                          output_qparams=None if fuse_f32 else qp[t])
        a = nd.attr
        if grp.kind in ("conv", "depthwise", "matmul"):
            nd.op = {"conv": "Tfq8Conv2D", "depthwise": "Tfq8DepthwiseConv2D",
                     "matmul": "Tfq8MatMul"}[grp.kind]
            wq, scales = self.int8_weights(grp)
            rep.weight_scale_range = (float(np.min(scales)), float(np.max(scales)))
            if self.u8_pairs(grp):
                rep.u8_pairs_noise = self._u8_pairs_noise[grp.out_node]
            split_bound = (grp.activation == "CLIP" and not grp.attrs["clip"][2] and fuse_f32)
            if split_bound:
                # f32 output (e.g. its readers are kept in FP32): fuse only the ReLU and keep
                # the per-channel bound as the stock Minimum after the op, which is exact.
                mn = out.node.add()
                mn.CopyFrom(self.g.nodes[grp.out_node])
                nd.name = grp.out_node + "/relu"
                for i, inp in enumerate(mn.input):
                    if not inp.startswith("^") and self.g.const_value(inp) is None:
                        mn.input[i] = nd.name
            base = nd.name
            if grp.attrs.get("dynamic_same"):
                nd.input.append(self._dynamic_same_pad(out, base, ins_q[0], grp.attrs,
                                                       qp[grp.inputs[0]].zero_point))
            else:
                nd.input.append(ins_q[0])
            nd.input.append(self._const(out, base + "/filter", wq, tf.int8))
            nd.input.append(self._const(out, base + "/bias", grp.attrs["bias"], tf.float32))
            nd.input.append(self._const(out, base + "/filter_scale",
                                        np.asarray(scales, np.float32).reshape(-1), tf.float32))
            qin = qp[grp.inputs[0]]
            a["input_scale"].f = qin.scale
            a["input_zero_point"].i = qin.zero_point
            a["Tbias"].type = tf.float32.as_datatype_enum
            if summand_q is not None:
                nd.input.append(summand_q)
                qs = qp[grp.summand]
                rep.summand_qparams = qs
                a["num_summand"].i = 1
                a["summand_scale"].f = qs.scale
                a["summand_zero_point"].i = qs.zero_point
            else:
                a["num_summand"].i = 0
            a["activation"].s = b"RELU" if split_bound else grp.activation.encode()
            if grp.activation == "CLIP" and not split_bound:
                lo, hi, uniform = grp.attrs["clip"]
                a["clip_min"].f = lo
                a["clip_max"].f = hi
                # a per-channel bound min(·, c_k) clipped at min c: exact only if the u8
                # saturation already clips every channel at or below min c
                if not uniform and hi / qp[t].scale < 255 - qp[t].zero_point - 0.49:
                    raise QuantizeError(
                        f"{grp.out_node}: per-channel bound (min {hi}) is below the output's "
                        f"quantization max {qp[t].scale * (255 - qp[t].zero_point)}: fusing it "
                        f"would not be exact (the equalize pass's ReLU6 rescaling; quantize "
                        f"with passes={{'equalize': False}})")
            if fuse_f32:
                a["out_type"].type = tf.float32.as_datatype_enum
                a["output_scale"].f = 1.0
                a["output_zero_point"].i = 0
            else:
                a["out_type"].type = tf.uint8.as_datatype_enum
                a["output_scale"].f = qp[t].scale
                a["output_zero_point"].i = qp[t].zero_point
            if grp.kind != "matmul":
                a["strides"].list.i.extend(grp.attrs["strides"])
                a["dilations"].list.i.extend(grp.attrs["dilations"])
                a["explicit_paddings"].list.i.extend(grp.attrs["pads"])
            if "groups" in grp.attrs:
                # One op for all groups; each group is a Tfq8Conv2D of its own, bit for bit.
                nd.op = "Tfq8GroupedConv2D"
                a["groups"].i = grp.attrs["groups"]
        elif grp.kind in ("maxpool", "avgpool"):
            nd.op = "Tfq8MaxPool" if grp.kind == "maxpool" else "Tfq8AvgPool"
            nd.input.append(ins_q[0])
            a["ksize"].list.i.extend(grp.attrs["ksize"])
            a["strides"].list.i.extend(grp.attrs["strides"])
            a["padding"].s = grp.attrs["padding"].encode()
        elif grp.kind == "lookup":
            nd.op = "Tfq8Lookup"
            nd.input.append(ins_q[0])
            table = self._lookup_table(grp, qp[grp.inputs[0]], qp[t])
            nd.input.append(self._const(out, nd.name + "/table", table, tf.uint8))
            a["function"].s = grp.attrs["function"].encode()
        elif grp.kind == "channel_mul":
            nd.op = "Tfq8ChannelMul"
            nd.input.append(ins_q[0])
            gate = grp.attrs["gate"]
            nd.input.append(gate[:-2] if gate.endswith(":0") else gate)
            qin = qp[grp.inputs[0]]
            a["input_scale"].f = qin.scale * grp.attrs.get("gate_factor", 1.0)
            a["input_zero_point"].i = qin.zero_point
            a["output_scale"].f = qp[t].scale
            a["output_zero_point"].i = qp[t].zero_point
        elif grp.kind in ("prelu", "layernorm"):
            # one uint8 input and two f32 constants per channel
            nd.op, consts = {"prelu": ("Tfq8Prelu", ("slopes", "bias")),
                             "layernorm": ("Tfq8LayerNorm", ("gamma", "beta"))}[grp.kind]
            nd.input.append(ins_q[0])
            for key in consts:
                nd.input.append(self._const(out, f"{nd.name}/{key}", grp.attrs[key], tf.float32))
            qin = qp[grp.inputs[0]]
            a["input_scale"].f = qin.scale
            a["input_zero_point"].i = qin.zero_point
            a["output_scale"].f = qp[t].scale
            a["output_zero_point"].i = qp[t].zero_point
            if grp.kind == "layernorm":
                a["epsilon"].f = grp.attrs["epsilon"]
        elif grp.kind == "mean":
            nd.op = "Tfq8Mean"
            nd.input.append(ins_q[0])
            a["keep_dims"].b = grp.attrs["keep_dims"]
        elif grp.kind == "concat":
            nd.op = "Tfq8Concat"
            nd.input.extend(ins_q)
            a["N"].i = len(ins_q)
            a["axis"].i = grp.attrs["axis"]
            a["input_scales"].list.f.extend([qp[i].scale for i in grp.inputs])
            a["input_zero_points"].list.i.extend([qp[i].zero_point for i in grp.inputs])
            a["output_scale"].f = qp[t].scale
            a["output_zero_point"].i = qp[t].zero_point
        elif grp.kind in ("add", "mul"):
            nd.op = "Tfq8Add" if grp.kind == "add" else "Tfq8Mul"
            nd.input.extend(ins_q)
            for key, src in zip(("a", "b"), grp.inputs):
                a[f"{key}_scale"].f = qp[src].scale
                a[f"{key}_zero_point"].i = qp[src].zero_point
            a["output_scale"].f = qp[t].scale
            a["output_zero_point"].i = qp[t].zero_point
            if grp.kind == "add":
                a["activation"].s = grp.activation.encode()
        elif grp.kind == "pad":
            src = self.g.nodes[grp.out_node]
            nd.op = "PadV2"
            nd.input.append(ins_q[0])
            nd.input.append(src.input[1])
            nd.input.append(self._const(out, nd.name + "/zero_point",
                                        np.uint8(qp[t].zero_point), tf.uint8))
            a["T"].type = tf.uint8.as_datatype_enum
            a["Tpaddings"].CopyFrom(src.attr["Tpaddings"])
        elif grp.kind == "resize":
            src = self.g.nodes[grp.out_node]
            codes = out.node.add()
            codes.CopyFrom(src)
            codes.name = nd.name + "/codes"
            codes.input[0] = ins_q[0]
            codes.attr["T"].type = tf.uint8.as_datatype_enum
            rnd = out.node.add()
            rnd.name, rnd.op = nd.name + "/round", "Round"      # half to even, as everywhere
            rnd.input.append(codes.name)
            rnd.attr["T"].type = tf.float32.as_datatype_enum
            nd.op = "Cast"
            nd.input.append(rnd.name)
            a["SrcT"].type = tf.float32.as_datatype_enum
            a["DstT"].type = tf.uint8.as_datatype_enum
            a["Truncate"].b = False
        elif grp.kind == "passthrough":
            src = self.g.nodes[grp.out_node]
            nd.op = src.op
            nd.input.append(ins_q[0])
            nd.input.extend(i for i in src.input[1:])
            for k, v in src.attr.items():
                a[k].CopyFrom(v)
            a["T"].type = tf.uint8.as_datatype_enum
        return rep


def _uint8_cast_source(g, t):
    """x if tensor t is Cast(x: uint8) to float32, else None."""
    n = g.nodes.get(node_of(t))
    if (n is None or n.op != "Cast" or not t.endswith(":0")
            or n.attr["SrcT"].type != tf.uint8.as_datatype_enum
            or n.attr["DstT"].type != tf.float32.as_datatype_enum):
        return None
    return tensor_name(n.input[0])


def _prune_dead(graph_def, keep):
    by_name = {n.name: n for n in graph_def.node}
    live, stack = set(), [k for k in keep if k in by_name]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        stack.extend(node_of(i) for i in by_name[name].input if node_of(i) in by_name)
    kept = [n for n in graph_def.node if n.name in live]
    del graph_def.node[:]
    graph_def.node.extend(kept)


def _topo_sort(graph_def):
    nodes = list(graph_def.node)
    by_name = {n.name: n for n in nodes}
    seen, order = set(), []

    def visit(name):
        stack = [(name, False)]
        while stack:
            cur, done = stack.pop()
            if done:
                if cur not in seen:
                    seen.add(cur)
                    order.append(by_name[cur])
                continue
            if cur in seen or cur not in by_name:
                continue
            stack.append((cur, True))
            for i in by_name[cur].input:
                dep = node_of(i)
                if dep not in seen:
                    stack.append((dep, False))

    for n in nodes:
        visit(n.name)
    del graph_def.node[:]
    graph_def.node.extend(order)
