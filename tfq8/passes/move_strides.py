"""move_strides — move a stride from 1×1 convs up into the op that produced their input.

    y = K(x) → f(·) → Conv1×1(·, stride s)        ⇒   K(x, stride·s) → f(·) → Conv1×1(·, stride 1)
    (f: pointwise ops and 1×1 stride-1 convs; every consumer of every tensor on the way is in the
     rewritten region; K: a Conv2D / DepthwiseConv2dNative / VALID pool)

(Intel, "Lower Numerical Precision Deep Learning Inference and Training", fig. 8; OpenVINO's
stride optimization.) Subsampling S_s(t)[n, i, j, c] = t[n, s·i, s·j, c] commutes with every op
that works position by position: S_s(relu(t)) = relu(S_s(t)), S_s(a + b) = S_s(a) + S_s(b),
S_s(t·c) = S_s(t)·c for per-channel c, S_s(Conv1×1(t)) = Conv1×1(S_s(t)). A 1×1 conv with stride
s and no padding *is* Conv1×1 ∘ S_s. And S_s(K(x, stride σ)) = K(x, stride σ·s) when K's window
for output i starts at the same place, i·σ·s − pad_before, in both: VALID needs nothing; TF's
SAME pad_before depends on the stride, so a SAME K becomes EXPLICIT with its old pad_before and a
pad_after that gives ⌈⌈H/σ⌉/s⌉ outputs (kept SAME when SAME already pads the same). The result is
exactly the same values, with the work of K and everything between done at 1/s² of the size.

Where the push cannot continue — a tensor is a graph output, has a full-resolution consumer, is
made by an op that can neither pass nor absorb the stride, or has unknown spatial size — a 1×1
strided conv reading it keeps its stride there, and any other op reading it gets a subsample
``StridedSlice(t, [0,0,0,0], [0,0,0,0], [1,s,s,1], begin_mask=end_mask=15)`` (exact, no
arithmetic). A rewrite happens only if some op absorbs the stride (MACs drop); otherwise the graph
is left alone and the note says why. On Keras ResNet50 the stride of conv{3,4,5}_block1's two 1×1
convs moves into the previous block's 3×3 and last 1×1 conv (≈10% fewer MACs).
"""
from __future__ import annotations

import heapq
import math
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, GraphIndex, get_attr, parse_tensor, set_attr
from tfq8.passes.pipeline import Notes, Pass, PassContext, PassResult

UNARY = frozenset({"Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Identity",
                   "Softplus", "Neg", "Abs"})
BINARY = frozenset({"BiasAdd", "Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum", "RealDiv"})
BATCHNORMS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
ABSORBERS = frozenset({"Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool"})

# Roles of nodes in a region.
START, THROUGH, POINTWISE, ABSORB = "start", "through", "pointwise", "absorb"


class MoveStrides(Pass):
    name = "move_strides"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        if not any(_maybe_strided_1x1(index, n) for n in graph_def.node):
            return PassResult(graph_def, False, [])  # skip shape inference: nothing to move
        shapes = ctx.shapes(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        claimed: Set[str] = set()
        changed = False
        for t, convs, s in _starts(index, shapes):
            if any(c in claimed for c in convs):
                continue
            plan = _Plan(index, shapes, s, claimed)
            plan.grow(t, convs)
            if not plan.absorbers():
                notes.refuse(index.producer(t).name,
                             f"stride {s} of {', '.join(convs)} not moved: "
                             f"{plan.first_reason or 'no producer can absorb it'}")
                continue
            plan.apply(ed, notes)
            claimed.update(plan.roles)
            changed = True
            through = [n for n, r in plan.roles.items() if r == THROUGH]
            notes.rewrite(index.producer(t).name,
                          f"stride {s} of {', '.join(convs)} moved into "
                          f"{', '.join(plan.absorbers())}"
                          + (f"; 1×1 convs now at 1/{s * s} size: {', '.join(through)}"
                             if through else "")
                          + (f"; subsampled {', '.join(sorted(plan.subsample))}"
                             if plan.subsample else ""))
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


# ==================================================================== pattern: where to start
def _maybe_strided_1x1(index, node) -> bool:
    """Cheap pre-check (no shapes): a Conv2D with a stride > 1 and a filter that may be 1×1."""
    if node.op != "Conv2D" or max(get_attr(node, "strides")) <= 1:
        return False
    w = index.producer(index.data_inputs(node)[1])
    if w.op != "Const":
        return True
    dims = [d.size for d in w.attr["value"].tensor.tensor_shape.dim]
    return dims[:2] == [1, 1]


def _conv_1x1_stride(index, shapes, node) -> Optional[int]:
    """s if ``node`` is a 1×1, pad-0, NHWC Conv2D with stride [1, s, s, 1], s > 1."""
    if node.op != "Conv2D" or get_attr(node, "data_format", "NHWC") != "NHWC":
        return None
    if _filter_hw(index, shapes, node) != (1, 1) or not _no_padding(node):
        return None
    if get_attr(node, "dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]:
        return None
    st = get_attr(node, "strides")
    if st[0] != 1 or st[3] != 1 or st[1] != st[2] or st[1] <= 1:
        return None
    return st[1]


def _is_pointwise_conv(index, shapes, node) -> bool:
    """A 1×1, pad-0, stride-1 NHWC Conv2D (acts on each position alone)."""
    return (node.op == "Conv2D" and get_attr(node, "data_format", "NHWC") == "NHWC"
            and _filter_hw(index, shapes, node) == (1, 1) and _no_padding(node)
            and get_attr(node, "strides") == [1, 1, 1, 1]
            and get_attr(node, "dilations", [1, 1, 1, 1]) == [1, 1, 1, 1])


def _filter_hw(index, shapes, node):
    s = shapes.get(index.data_inputs(node)[1])
    return None if s is None or len(s) != 4 else (s[0], s[1])


def _no_padding(node) -> bool:
    pad = get_attr(node, "padding")
    return pad in ("VALID", "SAME") or (pad == "EXPLICIT"
                                        and not any(get_attr(node, "explicit_paddings", [])))


def _starts(index: GraphIndex, shapes) -> List[Tuple[str, List[str], int]]:
    """Tensors whose every consumer is a 1×1 pad-0 conv with the same stride s > 1."""
    found = []
    seen = set()
    for node in index:
        s = _conv_1x1_stride(index, shapes, node)
        if s is None:
            continue
        t = index.data_inputs(node)[0]
        if t in seen:
            continue
        seen.add(t)
        edges = index.consumers(t)
        if index.is_output(t) or any(e.index != 0 for e in edges):
            continue
        if all(_conv_1x1_stride(index, shapes, index.node(e.node)) == s for e in edges):
            found.append((t, sorted({e.node for e in edges}, key=index.position.get), s))
    return found


# ==================================================================== check: plan a region
class _Plan:
    """Which nodes compute at 1/s² size (roles), which absorb the stride, where to subsample."""

    def __init__(self, index: GraphIndex, shapes, s: int, claimed: Set[str]):
        self.index, self.shapes, self.s, self.claimed = index, shapes, s, claimed
        self.roles: Dict[str, str] = {}
        self.new_attrs: Dict[str, dict] = {}
        self.subsample: Dict[str, str] = {}  # tensor → reason
        self.first_reason: Optional[str] = None

    def absorbers(self) -> List[str]:
        """Nodes that now compute fewer outputs (a start conv keeping its stride does not)."""
        return [n for n, r in self.roles.items() if r == ABSORB and n not in self.starts]

    def grow(self, t: str, convs: List[str]) -> None:
        self.starts = set(convs)
        for c in convs:
            self.roles[c] = START
        heap: List[Tuple[int, str]] = []
        queued = set()

        def push(tensor):
            if tensor not in queued:
                queued.add(tensor)
                heapq.heappush(heap, (-self.index.position[parse_tensor(tensor)[0]], tensor))

        push(t)
        # Latest producer first: by the time a tensor is decided, every node that could read
        # it inside the region has been decided (consumers come later in topological order).
        while heap:
            _, u = heapq.heappop(heap)
            reason = self._step(u, push)
            if reason:
                self._stop(u, reason)

    def _step(self, u: str, push) -> str:
        """Extends the region through the producer of ``u``; returns a reason if it cannot."""
        index, shapes = self.index, self.shapes
        name, _ = parse_tensor(u)
        node = index.node(name)
        shape = shapes.get(u)
        if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
            return f"{u} has no static NHWC shape"
        if index.is_output(u) or index.node_is_output(name):
            return f"{u} is a graph output"
        for e in index.node_consumers(name):
            # Absorbing ops read their input at full resolution, like nodes outside the region.
            if self.roles.get(e.node) in (None, ABSORB):
                return f"{u} also has a full-resolution consumer {e.node}"
        if index.control_consumers(name) or index.control_inputs(node):
            return f"{name} has control edges"
        if name in self.claimed:
            return f"{name} is already part of another stride move"
        if not _is_float(node):
            return f"{name} is not float32"
        if node.op in UNARY or node.op in BINARY or node.op in BATCHNORMS:
            return self._pointwise(node, u, shape, push)
        if _is_pointwise_conv(index, shapes, node):
            self.roles[name] = THROUGH
            push(index.data_inputs(node)[0])
            return ""
        if node.op in ABSORBERS:
            attrs, reason = _absorb_attrs(index, shapes, node, self.s)
            if attrs is None:
                return reason
            self.roles[name] = ABSORB
            self.new_attrs[name] = attrs
            return ""
        return f"{name} ({node.op}) can neither pass nor absorb a stride"

    def _pointwise(self, node, u, shape, push) -> str:
        index = self.index
        if node.op in BATCHNORMS:
            if get_attr(node, "is_training", True):
                return f"{node.name} is a training-mode batch norm"
            ins = index.data_inputs(node)
            if not all(index.is_const(t) for t in ins[1:]):
                return f"{node.name} has non-constant parameters"
            to_push = [ins[0]]
        else:
            to_push = []
            for t in index.data_inputs(node):
                s = self.shapes.get(t)
                if index.is_const(t):
                    v = index.const_value(t)
                    if v.ndim >= 3 and (v.shape[-3] != 1 or v.shape[-2] != 1):
                        return f"constant {t} varies over space"
                elif s is not None and len(s) == 4 and s[1] == 1 and s[2] == 1:
                    continue  # broadcast over space (e.g. squeeze-excite scale): same for all
                elif s is not None and tuple(s[1:]) == tuple(shape[1:]):
                    to_push.append(t)
                else:
                    return f"input {t} of {node.name} has shape {s}, not {shape}"
        self.roles[node.name] = POINTWISE
        for t in to_push:
            push(t)
        return ""

    def _stop(self, u: str, reason: str) -> None:
        """``u`` stays at full size: 1×1 convs reading it take the stride, others a subsample."""
        self.first_reason = self.first_reason or reason
        for e in self.index.consumers(u):
            role = self.roles.get(e.node)
            if role in (START, THROUGH):
                self.roles[e.node] = ABSORB
                self.new_attrs[e.node] = {"strides": [1, self.s, self.s, 1]}
            elif role is not None:
                self.subsample[u] = reason

    # ---------------------------------------------------------------- rewrite
    def apply(self, ed: Editor, notes: Notes) -> None:
        for name, role in self.roles.items():
            if role == START:
                set_attr(ed.node(name), "strides", [1, 1, 1, 1])
            elif role == ABSORB:
                node = ed.node(name)
                for k, v in self.new_attrs[name].items():
                    set_attr(node, k, v)
        for u, reason in self.subsample.items():
            name, _ = parse_tensor(u)
            consumers = [e for e in self.index.consumers(u)
                         if self.roles.get(e.node) in (POINTWISE, THROUGH, START)]
            begin = ed.add_const(name + "/subsample/begin", np.zeros(4, np.int32))
            end = ed.add_const(name + "/subsample/end", np.zeros(4, np.int32))
            strides = ed.add_const(name + "/subsample/strides",
                                   np.array([1, self.s, self.s, 1], np.int32))
            sl = ed.add_node("StridedSlice", name + "/subsample", [u, begin, end, strides],
                             {"T": tf.float32, "Index": tf.int32, "begin_mask": 15,
                              "end_mask": 15, "ellipsis_mask": 0, "new_axis_mask": 0,
                              "shrink_axis_mask": 0}, after=name)
            for e in consumers:
                ed.set_input(e.node, e.index, f"{sl.name}:0")
            notes.refuse(name, f"stride push stopped at {u}: {reason}; inserted {sl.name}")


def _is_float(node) -> bool:
    return get_attr(node, "T", tf.float32) == tf.float32


# ==================================================================== absorbing ops
def _absorb_attrs(index, shapes, node, s) -> Tuple[Optional[dict], str]:
    """New attrs making ``node`` compute S_s(node(x)) exactly, or (None, reason)."""
    if get_attr(node, "data_format", "NHWC") != "NHWC":
        return None, f"{node.name} is not NHWC"
    strides = get_attr(node, "strides")
    if node.op in ("MaxPool", "AvgPool"):
        ksize = get_attr(node, "ksize")
        if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
            return None, f"{node.name} pools over batch or channels"
        kh, kw = ksize[1], ksize[2]
    else:
        hw = _filter_hw(index, shapes, node)
        if hw is None:
            return None, f"{node.name} has no static filter shape"
        dil = get_attr(node, "dilations", [1, 1, 1, 1])
        kh, kw = (hw[0] - 1) * dil[1] + 1, (hw[1] - 1) * dil[2] + 1
    x_shape = shapes.get(index.data_inputs(node)[0])
    if x_shape is None or len(x_shape) != 4 or None in x_shape[1:3]:
        return None, f"{node.name}'s input has no static spatial size"
    new_strides = [1, strides[1] * s, strides[2] * s, 1]
    padding = get_attr(node, "padding")
    if padding == "VALID":
        return {"strides": new_strides}, ""
    old = (_pads(padding, node, x_shape[1], kh, strides[1]),
           _pads(padding, node, x_shape[2], kw, strides[2], axis=1))
    want = [_out_size(x_shape[d + 1], *old[d], (kh, kw)[d], strides[d + 1]) for d in (0, 1)]
    want = [math.ceil(w / s) for w in want]
    if padding == "SAME":
        same = (_pads("SAME", node, x_shape[1], kh, new_strides[1]),
                _pads("SAME", node, x_shape[2], kw, new_strides[2]))
        if all(same[d][0] == old[d][0] and _out_size(x_shape[d + 1], *same[d], (kh, kw)[d],
                                                     new_strides[d + 1]) == want[d]
               for d in (0, 1)):
            return {"strides": new_strides}, ""
    if node.op in ("MaxPool", "AvgPool"):
        return None, f"{node.name} ({node.op}) would need explicit padding"
    explicit = [0, 0]
    for d in (0, 1):
        k, size, before = (kh, kw)[d], x_shape[d + 1], old[d][0]
        after = max(0, (want[d] - 1) * new_strides[d + 1] + k - size - before)
        if _out_size(size, before, after, k, new_strides[d + 1]) != want[d]:
            return None, f"{node.name}: no explicit padding reproduces its output size"
        explicit += [before, after]
    explicit += [0, 0]
    return {"strides": new_strides, "padding": "EXPLICIT", "explicit_paddings": explicit}, ""


def _pads(padding, node, size, k, stride, axis=0) -> Tuple[int, int]:
    """(before, after) padding along one spatial axis, as TF computes it."""
    if padding == "VALID":
        return 0, 0
    if padding == "EXPLICIT":
        p = get_attr(node, "explicit_paddings")
        return p[2 + 2 * axis], p[3 + 2 * axis]
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _out_size(size, before, after, k, stride) -> int:
    return (size + before + after - k) // stride + 1
