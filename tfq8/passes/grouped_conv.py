"""grouped_conv — grouped Conv2Ds with one input channel per group become depthwise convs.

    Conv2D(x[…, C], W[kh, kw, 1, C·m])  ⇒  DepthwiseConv2dNative(x, W'[kh, kw, C, m])
                                           W'[:, :, c, j] = W[:, :, 0, c·m + j]

A Conv2D whose filter has fewer input channels I than its input has channels C is a grouped
convolution with G = C / I groups: group g reads input channels [g·I, (g+1)·I) and writes output
channels [g·O/G, (g+1)·O/G). Keras writes depthwise convolutions this way when a model uses
``Conv2D(groups=C)`` (ConvNeXt's 7×7 convs) or ``DepthwiseConv2D`` is not used. With I = 1 this
is exactly TF's depthwise convolution with channel multiplier m = O / C, whose output channel
c·m + j reads input channel c through filter [:, :, c, j] — the same values in the same order of
summation per output, so the FP32 result is unchanged (tests compare within float rounding).
Every later pass and the INT8 depthwise kernels then apply to it.

Grouped convs with I > 1 (ResNeXt, RegNet) stay grouped Conv2Ds, noted here: the quantizer
runs each as one Tfq8GroupedConv2D (an INT8 conv per group). fold_batchnorm gives them
an AddV2 bias, not a BiasAdd, and fuse_activations leaves them alone: TF 2.21's CPU fused conv
(``_FusedConv2D``, which its own Grappler remapper also forms from Conv2D → BiasAdd [→ Relu] at
run time) raises "does not support grouped convolutions". Also refused, with a note: unknown input channels, non-NHWC or non-float32 convs, non-constant filters, unequal
strides (TF's depthwise kernel needs equal row and column strides) and dilations (TF's CPU
depthwise op has no dilation).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, get_attr, make_node, set_attr
from tfq8.passes.pipeline import Pass, PassContext, PassResult


class GroupedConv(Pass):
    name = "grouped_conv"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        candidates = []
        for node in graph_def.node:
            if node.op != "Conv2D":
                continue
            w = index.const_value(index.data_inputs(node)[1])
            candidates.append((node, w))
        if not candidates:
            return PassResult(graph_def, False, [])
        shapes = None
        ed = Editor(graph_def, ctx.outputs)
        for node, w in candidates:
            x = index.data_inputs(node)[0]
            if w is None:
                continue  # the filter's input depth is unknown; not ours to judge
            if shapes is None:
                shapes = ctx.shapes(graph_def)  # only when some conv has a constant filter
            xs = shapes.get(x)
            c = xs[-1] if xs is not None and len(xs) == 4 else None
            if c == w.shape[2]:
                continue  # an ordinary convolution
            if c is not None and w.shape[2] > 1 and c % w.shape[2] == 0:
                notes.info(node.name, f"grouped convolution ({c // w.shape[2]} groups of "
                                      f"{w.shape[2]} channels) stays a grouped Conv2D (the "
                                      "quantizer runs it as one INT8 conv per group)")
                continue
            reason = _refusal(node, w, c)
            if reason is not None:
                notes.refuse(node.name, reason)
                continue
            m = w.shape[3] // c
            dw = make_node("DepthwiseConv2dNative", node.name, list(node.input),
                           device=node.device)
            for key in ("T", "strides", "padding", "explicit_paddings", "data_format"):
                if key in node.attr:
                    dw.attr[key].CopyFrom(node.attr[key])
            set_attr(dw, "dilations", [1, 1, 1, 1])
            filt = w[:, :, 0, :].reshape(w.shape[0], w.shape[1], c, m)
            dw.input[1] = ed.add_const(node.name + "/depthwise_filter",
                                       np.ascontiguousarray(filt, np.float32), before=node.name)
            ed.replace(dw)
            notes.rewrite(node.name, f"grouped Conv2D ({c} groups of 1 channel) ⇒ "
                                     f"DepthwiseConv2dNative (multiplier {m})")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


def conv_groups(index, shapes, conv) -> Optional[int]:
    """Input channels / filter input channels of a Conv2D (1 for an ordinary conv), or None
    when a shape is unknown. ``shapes``: ``PassContext.shapes`` of the graph."""
    x, w = (shapes.get(t) for t in index.data_inputs(conv)[:2])
    if x is None or w is None or len(x) != 4 or len(w) != 4 or not x[3] or not w[2]:
        return None
    return x[3] // w[2]


def _refusal(node, w, c: Optional[int]) -> Optional[str]:
    """Why the grouped Conv2D ``node`` with filter ``w`` and ``c`` input channels stays as it
    is, or None when it becomes a depthwise conv."""
    if c is None:
        return "input channel count is unknown; cannot tell whether it is a grouped conv"
    i, o = w.shape[2], w.shape[3]
    if c % i or o % (c // i):
        return f"filter {list(w.shape)} does not divide {c} input channels into groups"
    if get_attr(node, "data_format", "NHWC") != "NHWC":
        return "is not NHWC"
    if get_attr(node, "T", tf.float32) != tf.float32:
        return "is not float32"
    strides = get_attr(node, "strides", [1, 1, 1, 1])
    if strides[1] != strides[2]:
        return f"strides {strides} differ in rows and columns (depthwise needs them equal)"
    if any(d != 1 for d in get_attr(node, "dilations", [1, 1, 1, 1])):
        return "dilated; TF's CPU depthwise conv has no dilation"
    return None
