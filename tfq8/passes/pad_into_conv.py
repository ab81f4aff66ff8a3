"""pad_into_conv — a zero Pad read only by convolutions becomes part of their padding.

    Pad(x, [[0, 0], [t, b], [l, r], [0, 0]])  →  Conv(·, W, VALID | EXPLICIT p)
        ⇒  Conv(x, W, EXPLICIT p + [[t, b], [l, r]])

Keras ``ZeroPadding2D`` before a VALID conv (ResNet's stem, MobileNet's strided blocks, causal
1-D convs after the conv1d pass) writes a padded copy of the tensor that the conv then reads.
A conv's own explicit padding is the same zeros, added before striding and dilation exactly as
the Pad adds them, so the result is value for value the same and the copy is gone — in FP32 and
in INT8, where tfq8's kernels pad with the zero point (what real 0 quantizes to). Done for every
reader at once, so a Pad shared by several convs (a WaveNet gate's two dilated convs reading one
causal pad after the dedupe pass) goes too.

Only Pad / PadV2 with a constant zero value and constant paddings that pad the two spatial axes
of an NHWC tensor, when every reader is a Conv2D, _FusedConv2D or DepthwiseConv2dNative that
reads it as its input (not its filter), is NHWC, and pads VALID or EXPLICIT (SAME depends on the
input size, which the pad changes). Pads that are graph outputs or have control edges stay.
"""
from __future__ import annotations

import numpy as np

from tfq8.graph import Editor, get_attr
from tfq8.passes.pipeline import Pass, PassContext, PassResult

CONVS = frozenset({"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative"})


class PadIntoConv(Pass):
    name = "pad_into_conv"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        for pad in graph_def.node:
            if pad.op not in ("Pad", "PadV2"):
                continue
            amounts = _spatial_zero_pads(index, pad)
            out = pad.name + ":0"
            edges = index.consumers(out)
            if (amounts is None or not edges or index.is_output(out)
                    or index.control_consumers(pad.name) or index.control_inputs(pad)):
                continue
            convs = [index.node(e.node) for e in edges]
            if not all(e.index == 0 and _takes_explicit_pads(c) for e, c in zip(edges, convs)):
                continue
            x = index.data_inputs(pad)[0]
            for conv in {c.name: c for c in convs}.values():
                node = ed.node(conv.name)
                old = list(get_attr(conv, "explicit_paddings", [])) or [0] * 8
                new = old[:2] + [old[2] + amounts[0], old[3] + amounts[1],
                                 old[4] + amounts[2], old[5] + amounts[3]] + old[6:]
                node.attr["padding"].s = b"EXPLICIT"
                del node.attr["explicit_paddings"].list.i[:]
                node.attr["explicit_paddings"].list.i.extend(new)
                ed.set_input(conv.name, 0, x)
            notes.rewrite(pad.name, f"{pad.op} {amounts} absorbed into the padding of "
                                    f"{', '.join(sorted({c.name for c in convs}))}")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


def _spatial_zero_pads(index, pad):
    """[top, bottom, left, right] if ``pad`` adds zeros on axes 1 and 2 of a 4-D tensor only."""
    inputs = index.data_inputs(pad)
    if pad.op == "PadV2":
        v = index.const_value(inputs[2])
        if v is None or np.any(v != 0):
            return None
    p = index.const_value(inputs[1])
    if p is None or np.shape(p) != (4, 2) or np.any(p[0]) or np.any(p[3]) or np.any(p < 0):
        return None
    return [int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])]


def _takes_explicit_pads(conv) -> bool:
    return (conv.op in CONVS and get_attr(conv, "data_format", "NHWC") == "NHWC"
            and get_attr(conv, "padding") in ("VALID", "EXPLICIT"))
