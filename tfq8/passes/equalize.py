"""equalize — cross-layer channel equalization of linear channel spaces (exact in FP32).

A *channel space* is a set of tensors with the same channels that only linear producers write,
only ops that commute with a positive per-channel scale pass on, and only linear consumers read.
The linear-bottleneck residual stream of MobileNetV2 / EfficientNet is one: several project
convs and the Adds between them write it, the next blocks' expand convs read it. Dividing
channel c of the whole space by s_c > 0 and multiplying the consumers' input channel c by s_c
leaves every tensor outside the space — and so the model's outputs — unchanged:

    producers   P_k: Conv2D | _FusedConv2D[BiasAdd(, Relu)] | DepthwiseConv2dNative | MatMul |
                     _FusedMatMul[BiasAdd(, Relu)]              W_k[..., c] /= s_c, b_k[c] /= s_c
    inside      AddV2/Add (both inputs in the space), BiasAdd/Add/AddV2 of a constant vector
                (b[c] /= s_c), Relu, zero Pad, MaxPool, AvgPool, Mean over H, W, Identity
    consumers   C_m: Conv2D | _FusedConv2D | MatMul | _FusedMatMul | DepthwiseConv2dNative
                reading the space as input 0                    W_m[.., c, :] *= s_c

    x_space ⇒ x_space / s   (channel-wise);  consumers: conv(x/s, W·s) = conv(x, W)

(relu(z/s) = relu(z)/s and max/mean/zero-padding commute with a positive scale; Relu6 does not —
min(z/s, 6) ≠ min(z, 6)/s — so a Relu6 ends a space, as does any other op, a graph output, a
concat, or a tensor read as a non-data input of a linear op.)

Why: activations are quantized per tensor, weights per output channel. When a few channels of a
space are much larger than the rest (MobileNetV2's residual streams: a handful of channels
set the range, the others get a few INT8 levels), the per-tensor scale wastes the resolution of
every other channel. Dividing the large channels moves their magnitude into the consumers'
weights, where per-output-channel scales absorb most of it (SmoothQuant, Xiao et al. 2023;
"Data-Free Quantization", Nagel et al. 2019, for the cross-layer version).

Scales (data-driven, SmoothQuant's rule with migration strength α): a_c = max |x_c| over the
space's tensors on calibration data, w_c = max over consumers and their output channels o of
|W_m[.., c, o]| / max_c' |W_m[.., c', o]| (how close input channel c comes to setting output
channel o's weight scale), s_c = a_c^α / w_c^(1−α), divided by its median over the channels and
clipped to [1, max_scale]: the typical channel keeps its values, only the channels that stand
out shrink (α = 0.5, max_scale = 16). Needs per-channel ranges: ``ctx.options["channel_ranges"]``
is a callable ``(graph_def, [tensor]) → {tensor: per-channel max |x|}`` (tfq8.quantize passes one
that runs the calibration data); without it the pass changes nothing and says so.

Through ReLU6 (see "through ReLU6" below; option ``equalize_relu6``, on by default): a linear
producer (+bias) → Relu6 [→ zero Pad] → linear readers chain is rescaled the other way — the
ReLU6 output's small channels are multiplied by s_c ≥ 1 and the Relu6 becomes
Minimum(Relu(·), 6·s), which the quantize pass fuses as CLIP(0, min 6·s). Scales of such chains
are keyed ``"relu6:<tensor>"``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfq8.graph import Editor, GraphIndex, get_attr
from tfq8.passes.pipeline import Pass, PassContext, PassResult

__all__ = ["ChannelSpace", "Equalize", "channel_spaces", "collect_spaces", "equalization_scales",
           "rescale"]

LINEAR_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "MatMul", "_FusedMatMul"}
# fused_ops of a fused producer whose output is positively homogeneous in (W, b)
HOMOGENEOUS_FUSED = (["BiasAdd"], ["BiasAdd", "Relu"])
SCALE_FREE_OPS = {"Relu", "MaxPool", "AvgPool", "Identity"}   # f(x/s) = f(x)/s per channel
ADD_OPS = {"AddV2", "Add", "BiasAdd"}


@dataclasses.dataclass
class ChannelSpace:
    """Tensors sharing one channel axis; ``producers`` / ``consumers`` are linear nodes,
    ``biases`` the bias-add nodes inside (input 1 constant), ``tensors`` every tensor of the
    space, ``reason`` why it cannot be rescaled (None: it can)."""

    channels: int = 0
    producers: List[str] = dataclasses.field(default_factory=list)
    consumers: List[str] = dataclasses.field(default_factory=list)
    biases: List[str] = dataclasses.field(default_factory=list)
    tensors: List[str] = dataclasses.field(default_factory=list)
    reason: Optional[str] = None

    @property
    def name(self) -> str:
        return self.tensors[0] if self.tensors else "?"


def _is_producer(index: GraphIndex, node) -> bool:
    if node.op not in LINEAR_OPS:
        return False
    if node.op.startswith("_Fused") and get_attr(node, "fused_ops", []) not in HOMOGENEOUS_FUSED:
        return False
    if node.op == "MatMul" or node.op == "_FusedMatMul":
        if get_attr(node, "transpose_a", False):
            return False
    elif get_attr(node, "data_format", "NHWC") != "NHWC":
        return False
    ins = index.data_inputs(node)
    return all(index.const_value(t) is not None for t in ins[1:])


def _is_consumer(index: GraphIndex, node, slot: int) -> bool:
    if node.op not in LINEAR_OPS or slot != 0:
        return False
    if node.op in ("MatMul", "_FusedMatMul"):
        if get_attr(node, "transpose_a", False):
            return False
    elif get_attr(node, "data_format", "NHWC") != "NHWC":
        return False
    return index.const_value(index.data_inputs(node)[1]) is not None


def _inside_kind(index: GraphIndex, node, slot: int) -> Optional[str]:
    """How a node that reads a space tensor on input ``slot`` continues the space: "same"
    (output in the space, no constant to fix), "bias" (constant vector on the other input),
    "join" (an add of two space tensors), or None (it ends the space: refuse)."""
    if node.op in SCALE_FREE_OPS and slot == 0:
        if node.op in ("MaxPool", "AvgPool") and (
                get_attr(node, "data_format", "NHWC") != "NHWC"
                or list(get_attr(node, "ksize", [1, 1, 1, 1]))[3:] != [1]
                or list(get_attr(node, "strides", [1, 1, 1, 1]))[3:] != [1]):
            return None   # pooling across channels would mix channels of different scales
        return "same"
    if node.op in ("Pad", "PadV2") and slot == 0:
        if node.op == "PadV2":
            v = index.const_value(index.data_inputs(node)[2])
            if v is None or float(v) != 0.0:
                return None
        return "same" if index.const_value(index.data_inputs(node)[1]) is not None else None
    if node.op == "Mean" and slot == 0:
        axes = index.const_value(index.data_inputs(node)[1])
        if axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [1, 2]:
            return "same"
        return None
    if node.op in ADD_OPS:
        if node.op == "BiasAdd" and get_attr(node, "data_format", "NHWC") != "NHWC":
            return None
        ins = index.data_inputs(node)
        if len(ins) != 2:
            return None
        other = index.const_value(ins[1 - slot])
        if other is None:
            return "join"
        return "bias" if (other.ndim == 1 and slot == 0) else None
    return None


def channel_spaces(graph_def: graph_pb2.GraphDef, outputs=()) -> List[ChannelSpace]:
    """Every channel space that starts at a linear producer, in graph order, refused or not."""
    index = GraphIndex(graph_def, outputs)

    def member(n, space, seen):
        if _is_producer(index, n):
            space.producers.append(n.name)
        elif n.op in ADD_OPS and _inside_kind(index, n, 0) == "bias":
            space.biases.append(n.name)

    spaces = collect_spaces(index, ChannelSpace, lambda n: _is_producer(index, n), member,
                            lambda c, i: _is_consumer(index, c, i),
                            lambda c, i: _inside_kind(index, c, i),
                            lambda src, refuse: _backward(index, src, refuse))
    for space in spaces:
        def refuse(reason, space=space):
            if space.reason is None:
                space.reason = reason

        space.producers.sort(key=index.position.get)
        space.tensors.sort(key=lambda t: index.position[t[:-2]])
        if not space.consumers:
            refuse("no linear consumer")
        if space.reason is None:
            _check_channels(index, space, refuse)
    return spaces


def collect_spaces(index: GraphIndex, make_space, is_producer, member, is_consumer,
                   inside_kind, backward) -> list:
    """Every space that a producer (``is_producer(node)``) opens, in graph order: a
    ``make_space()`` (with ``tensors``, ``consumers`` and ``reason``) per producer not already
    in one. Each node whose output is in the space gets ``member(node, space, seen)`` (seen:
    node → index of the space that took it first) and its tensor in ``space.tensors``; linear
    readers (``is_consumer(node, slot)``) go to ``space.consumers``; ``inside_kind(node,
    slot)`` says how another reader continues the space (None: it ends it and the space is
    refused; "join": its other operand's producer joins through ``backward(producer,
    refuse)``, which returns the nodes to add). Shared by equalize and pair_channels, which
    differ only in which ops they may look through."""
    seen: Dict[str, int] = {}
    spaces = []
    for node in index:
        if node.name in seen or not is_producer(node):
            continue
        space = make_space()
        spaces.append(space)

        def refuse(reason, space=space):
            if space.reason is None:
                space.reason = reason

        def visit(n, space=space, sid=len(spaces) - 1):
            member(n, space, seen)
            seen.setdefault(n.name, sid)

        _walk_space(index, node.name, space, visit, is_consumer, inside_kind, backward, refuse)
    return spaces


def _walk_space(index: GraphIndex, start: str, space, member, is_consumer, inside_kind,
                backward, refuse) -> None:
    members = set()
    work = [start]
    while work:
        name = work.pop()
        if name in members:
            continue
        members.add(name)
        member(index.node(name))
        dtype = _compute_dtype(index.node(name))
        if dtype is not None:
            refuse(f"{name} computes in {dtype}, not float32")
        if index.control_consumers(name):
            refuse(f"{name} has control consumers")
        t = f"{name}:0"
        space.tensors.append(t)
        if index.is_output(t):
            refuse(f"{t} is a graph output")
        if len(index.node_consumers(name)) != len(index.consumers(t)):
            refuse(f"{name} has outputs other than :0 in use")
        for e in index.consumers(t):
            c = index.node(e.node)
            if is_consumer(c, e.index):
                dtype = _compute_dtype(c)
                if dtype is not None:
                    refuse(f"{t} is read by {c.name}, which computes in {dtype}, not float32")
                if e.node not in space.consumers:
                    space.consumers.append(e.node)
                continue
            kind = inside_kind(c, e.index)
            if kind is None:
                refuse(f"{t} is read by {c.op} {c.name}")
                continue
            work.append(c.name)
            if kind == "join":   # the other operand must be in the space too
                src = index.producer(index.data_inputs(c)[1 - e.index])
                work.extend(backward(src, refuse))


def _compute_dtype(node):
    """The name of a node's non-float32 "T" (a float16 / bfloat16 op when the upcast_half pass
    was switched off), else None: scaling or reordering its constants as float32 would give it
    inputs of the wrong type."""
    if "T" in node.attr and node.attr["T"].type not in (0, tf.float32.as_datatype_enum):
        return tf.as_dtype(node.attr["T"].type).name
    return None


def _out_channels(index: GraphIndex, name: str) -> int:
    n = index.node(name)
    w = index.const_value(index.data_inputs(n)[1])
    if n.op == "DepthwiseConv2dNative":
        return int(w.shape[2] * w.shape[3])
    if n.op in ("MatMul", "_FusedMatMul") and get_attr(n, "transpose_b", False):
        return int(w.shape[0])
    return int(w.shape[-1])


def _in_channels(index: GraphIndex, name: str) -> int:
    n = index.node(name)
    w = index.const_value(index.data_inputs(n)[1])
    if n.op in ("MatMul", "_FusedMatMul"):
        return int(w.shape[1] if get_attr(n, "transpose_b", False) else w.shape[0])
    return int(w.shape[2])


def _check_channels(index: GraphIndex, space: ChannelSpace, refuse) -> None:
    """Every producer writes, every bias and consumer reads, the same number of channels (a
    grouped conv or a broadcast bias cannot take per-channel scales)."""
    space.channels = _out_channels(index, space.producers[0])
    for name in space.producers:
        if _out_channels(index, name) != space.channels:
            refuse(f"{name} writes {_out_channels(index, name)} channels, not {space.channels}")
    for name in space.biases:
        b = index.const_value(index.data_inputs(name)[1])
        if b.shape != (space.channels,):
            refuse(f"{name} adds a constant of shape {b.shape}, not ({space.channels},)")
    for name in space.consumers:
        if _in_channels(index, name) != space.channels:
            refuse(f"{name} reads {_in_channels(index, name)} channels (grouped?), not "
                   f"{space.channels}")


def _backward(index: GraphIndex, node, refuse) -> List[str]:
    """Nodes to add to a space when ``node``'s output joins it through an Add."""
    if _is_producer(index, node):
        return [node.name]
    ins = index.data_inputs(node)
    if ins:
        kind = _inside_kind(index, node, 0)
        if kind in ("same", "bias"):
            return [node.name] + _backward(index, index.producer(ins[0]), refuse)
        if kind == "join":
            return ([node.name] + _backward(index, index.producer(ins[0]), refuse)
                    + _backward(index, index.producer(ins[1]), refuse))
    refuse(f"{node.op} {node.name} writes into the space and is not linear")
    return []


def _weights(index: GraphIndex, name):
    n = index.node(name)
    return index.const_value(index.data_inputs(n)[1]).astype(np.float64)


def _abs_in_out(node, w):
    """max |W| as [in_channels, out_channels] (over the kernel window)."""
    w = np.abs(w)
    if node.op in ("MatMul", "_FusedMatMul"):
        return w.T if get_attr(node, "transpose_b", False) else w
    return np.moveaxis(w, 2, 0).reshape(w.shape[2], -1, w.shape[3]).max(axis=1)


def equalization_scales(index: GraphIndex, space: ChannelSpace, act_range: np.ndarray,
                        alpha: float = 0.5, max_scale: float = 16.0) -> np.ndarray:
    """s_c ≥ 1 (see the module docstring); 1 where the channel is not among the large ones."""
    a = np.asarray(act_range, np.float64)
    w = np.zeros_like(a)
    for name in space.consumers:
        n = index.node(name)
        if n.op == "DepthwiseConv2dNative":
            continue   # each channel has its own weight scales: no cost
        m = _abs_in_out(n, _weights(index, name))          # [C, O]
        w = np.maximum(w, (m / np.maximum(m.max(axis=0, keepdims=True), 1e-30)).max(axis=1))
    w = np.where(w > 0, w, 1.0)
    if not a.max() > 0:
        return np.ones_like(a)
    a = np.maximum(a, a.max() * 1e-6)
    s = a ** alpha / w ** (1.0 - alpha)
    s = s / np.median(s)                 # the typical channel keeps s = 1; only the channels
    return np.clip(s, 1.0, max_scale)    # that stand out are divided (dead ones are ignored)


def rescale(graph_def: graph_pb2.GraphDef, spaces, scales: Dict[str, np.ndarray],
            outputs=()) -> graph_pb2.GraphDef:
    """Divides each space's channels by ``scales[space.name]`` (exact: see the module docs)."""
    index = GraphIndex(graph_def, outputs)
    ed = Editor(graph_def, outputs)
    filters: Dict[str, np.ndarray] = {}   # node → its new filter (a node may be in two spaces)
    for space in spaces:
        s = np.asarray(scales[space.name], np.float64)
        for name in space.producers:
            n = index.node(name)
            ins = index.data_inputs(n)
            w = filters.get(name, _weights(index, name))
            if n.op == "DepthwiseConv2dNative":
                kh, kw, c, m = w.shape
                w = (w.reshape(kh, kw, c * m) / s).reshape(kh, kw, c, m)
            elif n.op in ("MatMul", "_FusedMatMul") and get_attr(n, "transpose_b", False):
                w = w / s[:, None]
            else:
                w = w / s
            filters[name] = w
            if n.op.startswith("_Fused"):
                b = index.const_value(ins[2]).astype(np.float64) / s
                ed.set_input(name, 2, ed.add_const(name + "/equalized_bias",
                                                   b.astype(np.float32), before=name))
        for name in space.biases:
            n = index.node(name)
            b = index.const_value(index.data_inputs(n)[1]).astype(np.float64) / s
            ed.set_input(name, 1, ed.add_const(name + "/equalized_bias", b.astype(np.float32),
                                               before=name))
        for name in space.consumers:
            n = index.node(name)
            w = filters.get(name, _weights(index, name))
            if n.op in ("MatMul", "_FusedMatMul"):
                w = w * (s[None, :] if get_attr(n, "transpose_b", False) else s[:, None])
            else:
                w = w * s.reshape(1, 1, -1, 1)
            filters[name] = w
    for name, w in filters.items():
        ed.set_input(name, 1, ed.add_const(name + "/equalized_filter", w.astype(np.float32),
                                           before=name))
    return ed.finish() if ed.changed else graph_def


class Equalize(Pass):
    """The pass (see the module docstring). Options read from ``ctx.options``:

    channel_ranges: ``(graph_def, [tensor]) → {tensor: per-channel max |x|}`` (calibration data);
    channel_scales: ``{space name: [s_c]}`` to re-apply saved scales instead (e.g. from a
      calibration table); takes precedence over channel_ranges;
    equalize_alpha, equalize_max_scale: the scale rule's α and clip;
    equalize_relu6: False leaves ReLU6 chains alone (default: the constructor's ``relu6``).

    ``PassResult.data["scales"]``: {space name: list of s_c} that were applied.
    """

    name = "equalize"

    def __init__(self, alpha: float = 0.5, max_scale: float = 16.0, relu6: bool = True):
        self.alpha = alpha
        self.max_scale = max_scale
        self.relu6 = relu6

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        given = ctx.options.get("channel_scales")
        ranges_fn = ctx.options.get("channel_ranges")
        if given is None and ranges_fn is None:
            notes.info("-", "no calibration data: nothing equalized (tfq8.quantize supplies it)")
            return PassResult(graph_def, False, list(notes))
        spaces = channel_spaces(graph_def, ctx.outputs)
        ok = [sp for sp in spaces if sp.reason is None]
        for sp in spaces:
            # a lone linear op ending in an activation other than Relu is the common case of a
            # refusal and not news; report the spaces that had something to rescale
            if sp.reason is not None and (sp.consumers or len(sp.producers) > 1):
                notes.refuse(sp.name, sp.reason)
        index = GraphIndex(graph_def, ctx.outputs)
        relu6 = ctx.options.get("equalize_relu6", self.relu6)
        chains = relu6_chains(graph_def, ctx.outputs) if relu6 else []
        if given is not None:
            known = {sp.name for sp in ok} | {c.name for c in chains}
            unknown = sorted(set(given) - known)
            if unknown:
                raise ValueError(f"equalization scales for channel spaces this graph does not "
                                 f"have (e.g. {unknown[:2]}); recalibrate")
            scales = {k: np.asarray(v, np.float64) for k, v in given.items()}
            ok = [sp for sp in ok if sp.name in scales]
            chains = [c for c in chains if c.name in scales]
        else:
            wanted = {t for sp in ok for t in sp.tensors} | {c.relu6 + ":0" for c in chains}
            values = ranges_fn(graph_def, sorted(wanted))
            scales = {}
            for sp in ok:
                a = np.max([np.asarray(values[t], np.float64).reshape(-1) for t in sp.tensors],
                           axis=0)
                scales[sp.name] = equalization_scales(index, sp, a, self.alpha, self.max_scale)
            for c in chains:
                scales[c.name] = relu6_scales(index, c, values[c.relu6 + ":0"], self.max_scale)
        for sp in ok:
            s = scales[sp.name]
            if s.shape != (sp.channels,) or not np.all(s > 0) or not np.all(np.isfinite(s)):
                raise ValueError(f"equalization scales of {sp.name} do not fit its "
                                 f"{sp.channels} channels (or are not positive); recalibrate")
        for c in chains:
            s = scales[c.name]
            if s.shape != (c.channels,) or not np.all(s >= 1) or not np.all(np.isfinite(s)):
                raise ValueError(f"equalization scales of {c.name} do not fit its "
                                 f"{c.channels} channels (or are not ≥ 1); recalibrate")
        ok = [sp for sp in ok if np.any(scales[sp.name] != 1.0)]
        chains = [c for c in chains if np.any(scales[c.name] != 1.0)]
        for sp in ok:
            s = scales[sp.name]
            notes.rewrite(sp.name, f"{len(sp.producers)} producer(s), {len(sp.consumers)} "
                                   f"consumer(s), {len(sp.tensors)} tensor(s): {s.size} channels, "
                                   f"{int(np.sum(s > 1))} divided (max {s.max():.2f})")
        for c in chains:
            s = scales[c.name]
            notes.rewrite(c.name, f"ReLU6 output: {s.size} channels, {int(np.sum(s > 1))} "
                                  f"multiplied (max {s.max():.2f}), {len(c.readers)} reader(s)")
        if not ok and not chains:
            return PassResult(graph_def, False, list(notes), {"scales": {}})
        out = rescale(graph_def, ok, scales, ctx.outputs) if ok else graph_def
        if chains:
            out = rescale_relu6(out, chains, scales, ctx.outputs)
        done = [sp.name for sp in ok] + [c.name for c in chains]
        return PassResult(out, True, list(notes),
                          {"scales": {k: [float(v) for v in scales[k]] for k in done}})


# ------------------------------------------------------------------ through ReLU6
# producer (+bias) → Relu6 [→ zero Pad] → linear readers: scale the producer's output channel c
# by s_c ≥ 1 and write the activation as min(relu(·), 6·s) (exact: min(max(s·z, 0), 6·s) =
# s·relu6(z) for s > 0); the readers' input channel c is divided by s_c. The small channels of a
# ReLU6 output then use more of the tensor's u8 range. s_c ≤ max_c' m_c' / m_c, so the tensor's
# range does not grow, and the per-channel bound 6·s_c ≥ 6 ≥ its quantization max: the
# quantize pass fuses relu → min(·, const) as CLIP(0, min const), which the u8 saturation makes
# exact (it checks this when it emits the layer).
RELU6_PREFIX = "relu6:"


@dataclasses.dataclass
class Relu6Chain:
    producer: str
    bias: Optional[str]       # unfused bias-add node between producer and Relu6
    relu6: str                # the Relu6 node, or the fused producer
    readers: List[str]
    channels: int

    @property
    def name(self) -> str:
        return RELU6_PREFIX + self.relu6 + ":0"


def relu6_chains(graph_def: graph_pb2.GraphDef, outputs=()) -> List[Relu6Chain]:
    index = GraphIndex(graph_def, outputs)
    chains = []

    def private(name):   # output :0 only, one reader, no control edges, not a graph output
        return (not index.control_consumers(name) and not index.is_output(f"{name}:0")
                and len(index.node_consumers(name)) == len(index.consumers(f"{name}:0")))

    for n in graph_def.node:
        bias = None
        if n.op == "_FusedConv2D" and get_attr(n, "fused_ops", []) == ["BiasAdd", "Relu6"]:
            p = n
            ins = index.data_inputs(p)
            if (get_attr(p, "data_format", "NHWC") != "NHWC"
                    or any(index.const_value(t) is None for t in ins[1:3])):
                continue
        elif n.op == "Relu6":
            p = index.producer(index.data_inputs(n)[0])
            if p is not None and p.op in ADD_OPS and _inside_kind(index, p, 0) == "bias":
                if len(index.consumers(f"{p.name}:0")) != 1 or not private(p.name):
                    continue
                bias = p
                p = index.producer(index.data_inputs(p)[0])
            if (p is None or p.op not in LINEAR_OPS or p.op.startswith("_Fused")
                    or not _is_producer(index, p)
                    or len(index.consumers(f"{p.name}:0")) != 1 or not private(p.name)):
                continue
        else:
            continue
        if not private(n.name):
            continue
        readers, ok = [], True
        for e in index.consumers(f"{n.name}:0"):
            c = index.node(e.node)
            if _is_consumer(index, c, e.index):
                readers.append(c.name)
            elif _inside_kind(index, c, e.index) == "same" and c.op in ("Pad", "PadV2") \
                    and private(c.name):
                for e2 in index.consumers(f"{c.name}:0"):
                    c2 = index.node(e2.node)
                    if _is_consumer(index, c2, e2.index):
                        readers.append(c2.name)
                    else:
                        ok = False
            else:
                ok = False
        if not ok or not readers:
            continue
        ch = _out_channels(index, p.name)
        if bias is not None and index.const_value(index.data_inputs(bias)[1]).shape != (ch,):
            continue
        if any(_in_channels(index, r) != ch for r in readers):
            continue
        chains.append(Relu6Chain(p.name, None if bias is None else bias.name, n.name,
                                 sorted(set(readers), key=index.position.get), ch))
    return chains


def relu6_scales(index: GraphIndex, chain: Relu6Chain, act_range, max_scale: float = 16.0,
                 alpha: float = 0.5) -> np.ndarray:
    """s_c = (M / m_c)^β clipped to [1, max_scale], M = max_c m_c; β = 1 when every reader is
    a depthwise conv (per-channel weight scales: dividing its input channel costs nothing),
    else ``alpha`` (a regular conv's input channel c loses weight resolution by s_c)."""
    m = np.asarray(act_range, np.float64).reshape(-1)
    top = m.max() if m.size else 0.0
    if not top > 0:
        return np.ones_like(m)
    beta = 1.0 if all(index.node(r).op == "DepthwiseConv2dNative" for r in chain.readers) \
        else alpha
    if not beta > 0:
        return np.ones_like(m)
    r = top / np.maximum(m, top / max_scale ** (1.0 / beta))
    return np.clip(r ** beta, 1.0, max_scale)


def rescale_relu6(graph_def, chains, scales, outputs=()) -> graph_pb2.GraphDef:
    index = GraphIndex(graph_def, outputs)
    ed = Editor(graph_def, outputs)
    filters: Dict[str, np.ndarray] = {}
    for ch in chains:
        s = np.asarray(scales[ch.name], np.float64)
        p = index.node(ch.producer)
        w = filters.get(ch.producer, _weights(index, ch.producer))
        if p.op == "DepthwiseConv2dNative":
            kh, kw, c, mm = w.shape
            w = (w.reshape(kh, kw, c * mm) * s).reshape(kh, kw, c, mm)
        elif p.op == "MatMul" and get_attr(p, "transpose_b", False):
            w = w * s[:, None]
        else:
            w = w * s
        filters[ch.producer] = w
        clip = (6.0 * s).astype(np.float32)
        if ch.relu6 != ch.producer:   # unfused: producer [→ bias add] → Relu6
            if ch.bias is not None:
                b = index.const_value(index.data_inputs(index.node(ch.bias))[1])
                ed.set_input(ch.bias, 1, ed.add_const(
                    ch.bias + "/relu6_equalized_bias",
                    (b.astype(np.float64) * s).astype(np.float32), before=ch.bias))
            old = ed.node(ch.relu6)
            relu = ed.add_node("Relu", ch.relu6 + "/scaled_relu", [old.input[0]],
                               before=ch.relu6)
            relu.attr["T"].CopyFrom(old.attr["T"])
            cst = ed.add_const(ch.relu6 + "/relu6_bound", clip, before=ch.relu6)
            node = type(old)()
            node.name, node.op = old.name, "Minimum"
            node.input.extend([relu.name, cst])
            node.attr["T"].CopyFrom(old.attr["T"])
            node.device = old.device
            ed.replace(node)
        else:
            b = index.const_value(index.data_inputs(p)[2]).astype(np.float64)
            ed.set_input(p.name, 2, ed.add_const(p.name + "/relu6_equalized_bias",
                                                 (b * s).astype(np.float32), before=p.name))
            node = ed.node(p.name)
            del node.attr["fused_ops"].list.s[:]
            node.attr["fused_ops"].list.s.extend([b"BiasAdd", b"Relu"])
            cst = ed.add_const(p.name + "/relu6_bound", clip)
            mn = ed.add_node("Minimum", p.name + "/relu6_clip", [p.name, cst], after=p.name)
            mn.attr["T"].CopyFrom(node.attr["T"])
            ed.rewire(p.name + ":0", mn.name + ":0", exclude={mn.name})
        for r in ch.readers:
            n = index.node(r)
            w = filters.get(r, _weights(index, r))
            if n.op == "MatMul" or n.op == "_FusedMatMul":
                w = w / (s[None, :] if get_attr(n, "transpose_b", False) else s[:, None])
            else:
                w = w / s.reshape(1, 1, -1, 1)
            filters[r] = w
    for name, w in filters.items():
        ed.set_input(name, 1, ed.add_const(name + "/relu6_equalized_filter",
                                           w.astype(np.float32), before=name))
    return ed.finish() if ed.changed else graph_def

