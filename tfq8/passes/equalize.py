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
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
from tensorflow.core.framework import graph_pb2

from tfq8.graph import Editor, GraphIndex, get_attr
from tfq8.passes.pipeline import Pass, PassContext, PassResult

__all__ = ["ChannelSpace", "Equalize", "channel_spaces", "equalization_scales", "rescale"]

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
    seen: Dict[str, int] = {}       # node → space id
    spaces: List[ChannelSpace] = []
    for node in graph_def.node:
        if node.name in seen or not _is_producer(index, node):
            continue
        space = ChannelSpace()
        sid = len(spaces)
        spaces.append(space)
        members = set()

        def refuse(reason):
            if space.reason is None:
                space.reason = reason

        work = [node.name]
        while work:
            name = work.pop()
            if name in members:
                continue
            members.add(name)
            seen[name] = sid
            n = index.node(name)
            if _is_producer(index, n):
                space.producers.append(name)
            elif n.op in ADD_OPS and _inside_kind(index, n, 0) == "bias":
                space.biases.append(name)
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
                if _is_consumer(index, c, e.index):
                    if e.node not in space.consumers:
                        space.consumers.append(e.node)
                    continue
                kind = _inside_kind(index, c, e.index)
                if kind is None:
                    refuse(f"{t} is read by {c.op} {c.name}")
                    continue
                work.append(c.name)
                if kind == "join":   # the other summand must be in the space too
                    src = index.producer(index.data_inputs(c)[1 - e.index])
                    work.extend(_backward(index, src, refuse))
        space.producers.sort(key=index.position.get)
        space.tensors.sort(key=lambda t: index.position[t[:-2]])
        if not space.consumers:
            refuse("no linear consumer")
        if space.reason is None:
            _check_channels(index, space, refuse)
    return spaces


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
    equalize_alpha, equalize_max_scale: the scale rule's α and clip.

    ``PassResult.data["scales"]``: {space name: list of s_c} that were applied.
    """

    name = "equalize"

    def __init__(self, alpha: float = 0.5, max_scale: float = 16.0):
        self.alpha = alpha
        self.max_scale = max_scale

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
        if given is not None:
            unknown = sorted(set(given) - {sp.name for sp in ok})
            if unknown:
                raise ValueError(f"equalization scales for channel spaces this graph does not "
                                 f"have (e.g. {unknown[:2]}); recalibrate")
            scales = {k: np.asarray(v, np.float64) for k, v in given.items()}
            ok = [sp for sp in ok if sp.name in scales]
        else:
            values = ranges_fn(graph_def, sorted({t for sp in ok for t in sp.tensors}))
            scales = {}
            for sp in ok:
                a = np.max([np.asarray(values[t], np.float64).reshape(-1) for t in sp.tensors],
                           axis=0)
                scales[sp.name] = equalization_scales(index, sp, a, self.alpha, self.max_scale)
        for sp in ok:
            s = scales[sp.name]
            if s.shape != (sp.channels,) or not np.all(s > 0) or not np.all(np.isfinite(s)):
                raise ValueError(f"equalization scales of {sp.name} do not fit its "
                                 f"{sp.channels} channels (or are not positive); recalibrate")
        ok = [sp for sp in ok if np.any(scales[sp.name] != 1.0)]
        for sp in ok:
            s = scales[sp.name]
            notes.rewrite(sp.name, f"{len(sp.producers)} producer(s), {len(sp.consumers)} "
                                   f"consumer(s), {len(sp.tensors)} tensor(s): {s.size} channels, "
                                   f"{int(np.sum(s > 1))} divided (max {s.max():.2f})")
        if not ok:
            return PassResult(graph_def, False, list(notes), {"scales": {}})
        out = rescale(graph_def, ok, scales, ctx.outputs)
        return PassResult(out, True, list(notes),
                          {"scales": {sp.name: [float(v) for v in scales[sp.name]] for sp in ok}})

