"""fuse_activations — one node per linear op + bias + activation, for the quantizer to map 1:1.

    Conv2D(x, W) → BiasAdd(b) [→ Relu | Relu6]  ⇒  _FusedConv2D(x, W, b)
                                                    fused_ops = ["BiasAdd"] | ["BiasAdd", "Relu"]
                                                                | ["BiasAdd", "Relu6"]
    MatMul(x, W) → BiasAdd(b) [→ Relu | Relu6]  ⇒  _FusedMatMul(x, W, b)   (same fused_ops)
    DepthwiseConv2dNative → BiasAdd [→ Relu | Relu6]   stays as three nodes (see below)

Math: y = act(conv(x, W) + b) with act ∈ {identity, max(·, 0), min(max(·, 0), 6)} — the same
ops in the same order inside TF's fused CPU kernel, so values match the unfused graph.

Representation. ``_FusedConv2D`` / ``_FusedMatMul`` are TensorFlow's own fused ops (what
Grappler's remapper emits): stock TF 2.21 runs them on CPU with these exact attributes, so the
FP32 graph stays runnable and testable after this pass. The fused node takes the name of the last
node it replaces (the activation, or the BiasAdd), so consumers need no rewiring. Attributes
written (the quantizer matches on ``op`` and ``fused_ops``):

  _FusedConv2D: T=float, TArgs=[float], num_args=1, num_host_args=0, strides, padding
      (SAME/VALID/EXPLICIT), explicit_paddings, data_format="NHWC", filter_format="HWIO",
      dilations, use_cudnn_on_gpu, fused_ops, epsilon=0.0001, leakyrelu_alpha=0.2 (both unused);
      inputs (x, W, b), W a constant [kh, kw, I, O], b a constant [O].
  _FusedMatMul: T=float, transpose_a, transpose_b, num_args=1, fused_ops, epsilon,
      leakyrelu_alpha; inputs (x, W, b).

Depthwise: stock TF 2.21 has no CPU kernel for ``_FusedDepthwiseConv2dNative`` (checked: the
graph fails with "Missing 0-th output" with and without oneDNN), so fusing would make the FP32
graph unrunnable. The chain stays ``DepthwiseConv2dNative → BiasAdd [→ Relu|Relu6]`` — standard,
runnable ops — and :func:`fusion_groups` reports it as one group exactly as it reports the fused
nodes, so the quantizer has one API for all three kinds (``FusionGroup.nodes`` lists the three
names; ``FusionGroup.output`` is the last one). The pass notes each depthwise group.

An activation after a concat of such chains (each read only by the concat) moves into the
branches first: act(Concat(L1 → b1, L2 → b2)) = Concat(act(L1 → b1), act(L2 → b2)), and each
branch then fuses as above.

Refused (with a note): intermediates with other consumers, graph outputs or control edges,
non-constant weights or bias (an INT8 op needs constant weights), non-NHWC, non-float32, and
grouped Conv2Ds (fewer filter input channels than input channels; or unknown input channels):
TF 2.21's CPU _FusedConv2D raises "does not support grouped convolutions".
LeakyRelu/Elu are not fused: tfq8's INT8 ops implement Relu and Relu6 only.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfq8.graph import Any, Const, Editor, GraphIndex, Op, get_attr, make_node, match, set_attr
from tfq8.passes.grouped_conv import conv_groups
from tfq8.passes.pipeline import Pass, PassContext, PassResult

ACTIVATIONS = ("Relu", "Relu6")
FUSED_OP = {"Conv2D": "_FusedConv2D", "MatMul": "_FusedMatMul"}
FUSED_CONV_OPS = frozenset({"_FusedConv2D", "_FusedMatMul"})


def _check_linear(index: GraphIndex, node) -> Optional[str]:
    if get_attr(node, "T", tf.float32) != tf.float32:
        return "is not float32"
    if node.op != "MatMul" and get_attr(node, "data_format", "NHWC") != "NHWC":
        return "is not NHWC"
    return None


def _check_bias(index: GraphIndex, node) -> Optional[str]:
    if get_attr(node, "data_format", "NHWC") != "NHWC":
        return "is not NHWC"
    return None


def _linear(types):
    return Op(types, "conv", [Any("x"), Const("w")], where=_check_linear)


def _chain(types, with_act: bool):
    bias = Op("BiasAdd", "bias", [_linear(types), Const("b")], where=_check_bias)
    return Op(set(ACTIVATIONS), "act", [bias]) if with_act else bias


@dataclasses.dataclass(frozen=True)
class FusionGroup:
    """One linear op with its bias and activation, as the quantizer sees it.

    kind: "conv2d", "matmul" or "depthwise".  nodes: the node names (one for a fused node; the
    depthwise chain's 2–3 nodes in order).  output: the node whose output 0 is the result.
    activation: None, "Relu" or "Relu6".
    """

    kind: str
    nodes: Tuple[str, ...]
    output: str
    activation: Optional[str]


class FuseActivations(Pass):
    name = "fuse_activations"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        pushed = _push_through_concats(graph_def, ctx, notes)
        if pushed is not None:
            graph_def = pushed
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        claimed = set()
        shapes = None   # inferred on the first Conv2D match (to tell grouped convs)
        for with_act, roots in ((True, set(ACTIVATIONS)), (False, {"BiasAdd"})):
            for node in graph_def.node:
                if node.op not in roots or node.name in claimed:
                    continue
                m = match(index, node, _chain(set(FUSED_OP), with_act))
                if not m:
                    if m.interesting:
                        notes.refuse(node.name, f"not fused: {m.reason}")
                    continue
                if any(n in claimed for n in m.matched):
                    continue
                if m["conv"].op == "Conv2D":
                    if shapes is None:
                        shapes = ctx.shapes(graph_def)
                    groups = conv_groups(index, shapes, m["conv"])
                    if groups != 1:
                        notes.refuse(node.name, "not fused: " + (
                            f"{m['conv'].name} is a grouped convolution ({groups} groups), "
                            "which TF's _FusedConv2D does not run" if groups else
                            f"input channels of {m['conv'].name} unknown (grouped?)"))
                        continue
                claimed.update(m.matched)
                _fuse(ed, m, with_act)
                notes.rewrite(node.name, f"{' + '.join(reversed([index.node(n).op for n in m.matched]))}"
                                         f" ⇒ {FUSED_OP[m['conv'].op]}")
        for group in _depthwise_groups(index):
            notes.info(group.output, "depthwise group kept as "
                       + " → ".join(index.node(n).op for n in group.nodes)
                       + " (stock TF has no CPU _FusedDepthwiseConv2dNative)")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed or pushed is not None,
                          list(notes))


def _push_through_concats(graph_def, ctx: PassContext, notes):
    """act(Concat(L1 → BiasAdd, L2 → BiasAdd, …))  ⇒  Concat(act(L1 → BiasAdd), …): an
    elementwise activation commutes with a concat on any axis, and below it each branch fuses.
    Only where every branch is a linear op + BiasAdd read by nothing else (else the copies would
    cost more than the one activation). The new graph, or None if nothing matched."""
    index = ctx.index(graph_def)
    ed = Editor(graph_def, ctx.outputs)
    for act in graph_def.node:
        if act.op not in ACTIVATIONS or index.control_inputs(act):
            continue
        cat = index.producer(index.data_inputs(act)[0])
        if cat.op != "ConcatV2" or not index.has_only_consumer(f"{cat.name}:0", act.name):
            continue
        parts = index.data_inputs(cat)[:-1]
        if len(set(parts)) != len(parts) or not all(_fusable_branch(index, t, cat.name)
                                                    for t in parts):
            continue
        new_parts = [ed.add_node(act.op, f"{act.name}/part{i}", [t], {"T": get_attr(act, "T")},
                                 before=cat.name).name for i, t in enumerate(parts)]
        node = make_node("ConcatV2", act.name, new_parts + [index.data_inputs(cat)[-1]],
                         device=cat.device)
        for key in ("N", "T", "Tidx"):
            if key in cat.attr:
                node.attr[key].CopyFrom(cat.attr[key])
        ed.remove(cat.name)
        ed.replace(node)
        notes.rewrite(act.name, f"{act.op} after {cat.name} (ConcatV2 of {len(parts)} linear "
                                f"ops) moved into its branches, to fuse there")
    return ed.finish() if ed.changed else None


def _fusable_branch(index: GraphIndex, tensor: str, reader: str) -> bool:
    """``tensor`` is output 0 of linear op → BiasAdd, each read only by the next."""
    bias = index.producer(tensor)
    if not tensor.endswith(":0") or bias.op != "BiasAdd" or not index.has_only_consumer(tensor,
                                                                                          reader):
        return False
    lin_t = index.data_inputs(bias)[0]
    return (index.producer(lin_t).op in set(FUSED_OP) | {"DepthwiseConv2dNative"}
            and index.has_only_consumer(lin_t, bias.name))


def _fuse(ed: Editor, m, with_act: bool) -> None:
    conv, bias = m["conv"], m["bias"]
    last = m["act"] if with_act else bias
    fused_ops = ["BiasAdd"] + ([last.op] if with_act else [])
    node = make_node(FUSED_OP[conv.op], last.name, [m.tensor("x"), m.tensor("w"), m.tensor("b")],
                     device=last.device)
    for key in conv.attr:
        node.attr[key].CopyFrom(conv.attr[key])
    set_attr(node, "fused_ops", fused_ops)
    set_attr(node, "num_args", 1)
    set_attr(node, "epsilon", 0.0001)
    set_attr(node, "leakyrelu_alpha", 0.2)
    if conv.op == "Conv2D":
        set_attr(node, "TArgs", [tf.float32])
        set_attr(node, "num_host_args", 0)
        set_attr(node, "filter_format", "HWIO")
        for key, default in (("explicit_paddings", []), ("dilations", [1, 1, 1, 1]),
                             ("data_format", "NHWC"), ("use_cudnn_on_gpu", True)):
            if key not in node.attr:
                set_attr(node, key, default)
    for name in m.matched[1:]:
        ed.remove(name)
    ed.replace(node)


def _depthwise_groups(index: GraphIndex) -> List[FusionGroup]:
    groups, claimed = [], set()
    for with_act in (True, False):
        for node in index:
            if node.name in claimed:
                continue
            m = match(index, node, _chain({"DepthwiseConv2dNative"}, with_act))
            if m:
                names = tuple(reversed(m.matched))
                claimed.update(names)
                groups.append(FusionGroup("depthwise", names, node.name,
                                          node.op if with_act else None))
    return groups


def fusion_groups(graph_def: graph_pb2.GraphDef, outputs=()) -> List[FusionGroup]:
    """Every fused linear op (``_FusedConv2D`` / ``_FusedMatMul`` with fused_ops starting with
    BiasAdd) and every depthwise chain, in graph order."""
    index = GraphIndex(graph_def, outputs)
    groups = []
    for node in graph_def.node:
        if node.op in FUSED_CONV_OPS:
            ops = get_attr(node, "fused_ops", [])
            if ops[:1] == ["BiasAdd"] and len(ops) <= 2:
                groups.append(FusionGroup("conv2d" if node.op == "_FusedConv2D" else "matmul",
                                          (node.name,), node.name, ops[1] if len(ops) > 1 else None))
    groups.extend(_depthwise_groups(index))
    groups.sort(key=lambda g: index.position[g.output])
    return groups
