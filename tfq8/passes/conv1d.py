"""conv1d — 1-D conv networks become 4-D graphs: the Squeeze/ExpandDims around each layer go.

TF has no 1-D convolution kernel: ``tf.nn.conv1d`` (Keras ``Conv1D``, ``SeparableConv1D``,
``DepthwiseConv1D``, ``MaxPooling1D``, ``AveragePooling1D``) inserts a unit axis,

    ExpandDims(x[N, W, C], 1) → Conv2D / DepthwiseConv2dNative / MaxPool / AvgPool → Squeeze([1])

and everything between two layers (bias, batch norm, activation, residual add, padding, TF's
space-to-batch form of a dilated conv) runs on the 3-D tensor. The other passes and the INT8
ops see a conv whose output is squeezed: no batch norm folds into it, no activation fuses, a
residual add is no summand, and every layer sits between a Quantize and a Dequantize.

This pass moves the unit axis out of the way, so the whole chain is 4-D ([N, 1, W, C]):

* push down: an op whose input is ``Squeeze(X, [1])`` runs on X instead, and a Squeeze named
  like the op follows it (its readers need no rewiring);
* pull up: an op whose output feeds ``ExpandDims(·, 1)`` runs on ``ExpandDims(its input, 1)``;
* cancel: ``ExpandDims(Squeeze(X, [1]), 1)`` is X.

Each op is rewritten at most once, so this ends; what is left are a Squeeze in front of the
first op that cannot move (a MatMul, a Flatten's Shape) and an ExpandDims after the model input.
Every step computes the same values (up to nothing: no arithmetic changes):

* elementwise ops (ELEMENTWISE): an extra leading unit axis keeps every broadcast as it was —
  operands of rank ≤ 2 align with the last axes either way, a rank-3 operand gets the unit axis
  too (BiasAdd only in NHWC, where the bias is the last axis);
* Pad / PadV2 / MirrorPad: a [0, 0] row for the unit axis;
* SpaceToBatchND / BatchToSpaceND over the length axis (one block dimension): block [1, b],
  paddings/crops [[0, 0], ...] (a Concat in the graph when they are computed at run time, for
  an unknown length) — the same batch order, as the unit axis contributes a factor 1 (then
  ``dilated_conv`` turns it into one dilated conv);
* ConcatV2: the axis index shifted past the unit axis;
* Mean / Max / Min / Sum / Prod over constant axes (push down only): axes shifted, and the unit
  axis reduced as well (keep_dims: a Squeeze follows).

Only axis 1 of rank-4 tensors (``tf.nn.conv1d``'s NWC layout) is handled; ``Reshape`` of a
Squeeze reads X directly (a Squeeze never reorders elements). Ops whose operands' ranks are
unknown, and anything not listed, are left as they are.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, GraphIndex, get_attr, make_node
from tfq8.graph.names import canonical, parse_input
from tfq8.passes.pipeline import Note, Pass, PassContext, PassResult

UNARY = {"Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Softsign",
         "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Log1p", "Erf", "Erfc",
         "Identity", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "Cast", "StopGradient",
         "Sin", "Cos", "Softmax", "LogSoftmax"}
BINARY = {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum",
          "SquaredDifference", "Pow", "BiasAdd", "FloorDiv", "FloorMod", "DivNoNan", "MulNoNan",
          "AddN"}
ELEMENTWISE = UNARY | BINARY
PADS = {"Pad", "PadV2", "MirrorPad"}
SPACE_BATCH = {"SpaceToBatchND", "BatchToSpaceND"}
REDUCTIONS = {"Mean", "Max", "Min", "Sum", "Prod"}
MAX_ROUNDS = 64


class Conv1DAs2D(Pass):
    name = "conv1d"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        if not any(n.op in ("Squeeze", "ExpandDims") for n in graph_def.node):
            return PassResult(graph_def, False, [])
        changed = False
        done: set = set()   # nodes already rewritten (each op moves at most once)
        for _ in range(MAX_ROUNDS):
            step = _Round(graph_def, ctx, done)
            new = step.run()
            notes.extend(step.notes(self.name))
            if new is None:
                break
            graph_def, changed = new, True
        if changed:
            graph_def = _merge_expands(graph_def, ctx)
        return PassResult(graph_def, changed, list(notes))


def _merge_expands(graph_def, ctx):
    """One ExpandDims(x, 1) per tensor x: branches that each read the model input through
    their own (SeparableConv1D and DepthwiseConv1D side by side) would otherwise get a
    Quantize each."""
    index = GraphIndex(graph_def, ctx.outputs)
    ed = Editor(graph_def, ctx.outputs)
    first: Dict[str, str] = {}
    for n in graph_def.node:
        if n.op != "ExpandDims" or index.control_inputs(n) or index.is_output(n.name + ":0"):
            continue
        x, dim = index.data_inputs(n)
        d = index.const_value(dim)
        if d is None or d.size != 1 or int(d.ravel()[0]) not in (1, -3):
            continue
        if x in first:
            ed.rewire(n.name + ":0", first[x] + ":0")
            ed.mark_maybe_dead(n.name)
        else:
            first[x] = n.name
    return ed.finish() if ed.changed else graph_def


class _Round:
    """One sweep: every movable op next to a unit-axis Squeeze/ExpandDims moves, every
    ExpandDims(Squeeze) pair cancels. Decisions read the graph as it was at the sweep's start."""

    def __init__(self, graph_def, ctx, done):
        self.graph_def = graph_def
        self.index = GraphIndex(graph_def, ctx.outputs)
        self.ed = Editor(graph_def, ctx.outputs)
        self.done = done
        self.shapes = None
        self.ctx = ctx
        self._notes = []
        self._expanded: Dict[str, str] = {}

    def notes(self, pass_name):
        return [Note(pass_name, kind, node, msg) for kind, node, msg in self._notes]

    # ------------------------------------------------------------ unit-axis nodes
    def rank(self, tensor: str) -> Optional[int]:
        if self.shapes is None:
            self.shapes = self.ctx.shapes(self.graph_def)
        s = self.shapes.get(canonical(tensor))
        return None if s is None else len(s)

    def squeezed(self, tensor: str) -> Optional[str]:
        """X if ``tensor`` is Squeeze(X, [1]) of a rank-4 X, else None."""
        n = self.index.producer(tensor)
        if n.op != "Squeeze" or parse_input(tensor)[1] != 0:
            return None
        if list(get_attr(n, "squeeze_dims", [])) not in ([1], [-3]):
            return None
        x = self.index.data_inputs(n)[0]
        return x if self.rank(x) == 4 else None

    def is_unit_expand(self, node) -> bool:
        if node.op != "ExpandDims":
            return False
        x, dim = self.index.data_inputs(node)
        d = self.index.const_value(dim)
        return (d is not None and d.size == 1 and int(d.ravel()[0]) in (1, -3)
                and self.rank(x) == 3)

    # ------------------------------------------------------------ the sweep
    def run(self):
        idx = self.index
        for name in idx.topological_order():
            n = idx.node(name)
            if n.name in self.done or n.op == "Const":
                continue
            if n.op == "ExpandDims" and self.is_unit_expand(n):
                x = self.squeezed(idx.data_inputs(n)[0])
                if x is not None and not idx.is_output(n.name + ":0"):
                    self.ed.rewire(n.name + ":0", x)
                    self.ed.mark_maybe_dead(n.name)
                    self.done.add(n.name)
                    self._notes.append(("rewrite", n.name, "ExpandDims of a Squeeze: both "
                                                           "dropped"))
                continue
            if n.op == "Reshape":
                x = self.squeezed(idx.data_inputs(n)[0])
                if x is not None:
                    self.ed.set_input(n.name, 0, x)
                    self.done.add(n.name)
                continue
            push = any(self.squeezed(t) is not None for t in self._data(n))
            pull = (not push and n.op not in REDUCTIONS
                    and any(self.is_unit_expand(idx.node(e.node))
                            for e in idx.consumers(n.name + ":0"))
                    and sum(1 for t in self._data(n)
                            if self.rank(t) == 3 and not idx.is_const(t)) == 1)
            if push or pull:
                why = self.lift(n)
                if why is None:
                    self.done.add(n.name)
                    where = "after a Squeeze" if push else "before an ExpandDims"
                    self._notes.append(("rewrite", n.name,
                                        f"{n.op} moved to the 4-D form ({where})"))
                elif push:
                    self.done.add(n.name)     # the reasons do not change: say it once
                    self._notes.append(("info", n.name, f"{n.op} after a 1-D conv stays 3-D: "
                                                        f"{why}"))
        if not self.ed.changed:
            return None
        return self.ed.finish()

    def _data(self, n) -> List[str]:
        """Inputs that carry data (not the axes/paddings/block operands)."""
        ins = self.index.data_inputs(n)
        if n.op in ELEMENTWISE:
            return ins
        if n.op == "ConcatV2":
            return ins[:-1]
        if n.op in PADS | SPACE_BATCH | REDUCTIONS:
            return ins[:1]
        return []

    # ------------------------------------------------------------ one op → 4-D
    def lift(self, n) -> Optional[str]:
        """Rewrites n to run on rank-4 tensors; None if done, else why not (graph untouched)."""
        idx, ed = self.index, self.ed
        if idx.control_consumers(n.name) or idx.control_inputs(n):
            return "it has control edges"
        ins = idx.data_inputs(n)
        out_rank = self.rank(n.name + ":0")
        new_inputs = list(ins)
        if n.op in ELEMENTWISE:
            if out_rank != 3:
                return f"its output has rank {out_rank}, not 3"
            if n.op == "BiasAdd" and get_attr(n, "data_format", "NHWC") != "NHWC":
                return "BiasAdd is not NHWC"
            for i, t in enumerate(ins):
                r = self.rank(t)
                v = idx.const_value(t) if idx.is_const(t) else None
                if r is None:
                    return f"the rank of {t} is unknown"
                if r == 3 and v is not None:
                    new_inputs[i] = ed.add_const(n.name + "/rank4_operand", v[:, None],
                                                 before=n.name)
                elif r == 3:
                    new_inputs[i] = self.expanded(t, n.name)
                elif r > 3:
                    return f"operand {t} has rank {r}"
        else:
            x = ins[0]
            if self.rank(x) != 3:
                return f"its input has rank {self.rank(x)}, not 3"
            new_inputs[0] = self.expanded(x, n.name)
            if n.op in PADS:
                p = idx.const_value(ins[1])
                if p is None or p.shape != (3, 2):
                    return "the paddings are not a constant [3, 2]"
                new_inputs[1] = ed.add_const(n.name + "/rank4_paddings",
                                             np.insert(p, 1, 0, axis=0), before=n.name)
            elif n.op in SPACE_BATCH:
                block, p = idx.const_value(ins[1]), idx.const_value(ins[2])
                if block is None or block.shape != (1,):
                    return "not a constant block over the length axis alone"
                new_inputs[1] = ed.add_const(n.name + "/rank4_block",
                                             np.concatenate([[1], block]).astype(block.dtype),
                                             before=n.name)
                if p is not None:
                    if p.shape != (1, 2):
                        return "paddings/crops are not [1, 2]"
                    new_inputs[2] = ed.add_const(n.name + "/rank4_pads",
                                                 np.concatenate([np.zeros_like(p), p]),
                                                 before=n.name)
                else:
                    # computed at run time (unknown length): a zero row in front, in the graph
                    dtype = self._dtype(ins[2])
                    zero = ed.add_const(n.name + "/rank4_pads_row",
                                        np.zeros((1, 2), dtype.as_numpy_dtype), before=n.name)
                    axis = ed.add_const(n.name + "/rank4_pads_axis", np.asarray(0, np.int32),
                                        before=n.name)
                    new_inputs[2] = ed.add_node(
                        "ConcatV2", n.name + "/rank4_pads", [zero, ins[2], axis],
                        {"N": 2, "T": dtype, "Tidx": tf.int32}, before=n.name).name
            elif n.op == "ConcatV2":
                axis = idx.const_value(ins[-1])
                if axis is None or out_rank != 3:
                    return "the axis is not constant"
                a = int(axis) % 3
                for i, t in enumerate(ins[:-1]):
                    r = self.rank(t)
                    if r != 3:
                        return f"operand {t} has rank {r}"
                    if i:
                        new_inputs[i] = self.expanded(t, n.name)
                new_inputs[-1] = ed.add_const(n.name + "/rank4_axis",
                                              np.asarray(a + (a > 0), axis.dtype), before=n.name)
            elif n.op in REDUCTIONS:
                axes = idx.const_value(ins[1])
                if axes is None:
                    return "the reduction axes are not constant"
                a = sorted({int(v) % 3 for v in np.ravel(axes)})
                mapped = [0] * (0 in a) + [1] + [v + 1 for v in a if v > 0]
                new_inputs[1] = ed.add_const(n.name + "/rank4_axes",
                                             np.asarray(mapped, axes.dtype), before=n.name)
                if not get_attr(n, "keep_dims", False):
                    # same output as before: replace in place, no Squeeze after it
                    node = make_node(n.op, n.name, new_inputs, device=n.device)
                    for k in n.attr:
                        node.attr[k].CopyFrom(n.attr[k])
                    ed.replace(node)
                    return None
            else:
                return f"{n.op} is not handled"
        node4 = make_node(n.op, ed.unique_name(n.name + "/rank4"), new_inputs, device=n.device)
        for k in n.attr:
            node4.attr[k].CopyFrom(n.attr[k])
        ed.add(node4, before=n.name)
        dtype = get_attr(n, "DstT" if n.op == "Cast" else "T", tf.float32)
        ed.replace(make_node("Squeeze", n.name, [node4.name],
                             {"T": dtype, "squeeze_dims": [1]}, device=n.device))
        return None

    def expanded(self, tensor: str, before: str) -> str:
        """A rank-4 view of a rank-3 tensor: X for Squeeze(X, [1]), else ExpandDims(tensor, 1)
        (one per tensor and sweep)."""
        x = self.squeezed(tensor)
        if x is not None:
            return x
        if tensor not in self._expanded:
            dim = self.ed.add_const(parse_input(tensor)[0] + "/unit_axis",
                                    np.asarray(1, np.int32), before=before)
            dtype = self._dtype(tensor)
            node = make_node("ExpandDims", self.ed.unique_name(parse_input(tensor)[0] +
                                                               "/rank4"),
                             [tensor, dim], {"T": dtype, "Tdim": tf.int32})
            self.ed.add(node, before=before)
            self._expanded[tensor] = node.name
        return self._expanded[tensor]

    def _dtype(self, tensor: str):
        n = self.index.producer(tensor)
        for key in ("T", "dtype", "DstT", "out_type"):
            if key in n.attr:
                return get_attr(n, key)
        return tf.float32
