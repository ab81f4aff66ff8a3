"""dilated_conv — TF's space-to-batch form of a dilated convolution becomes one dilated Conv2D.

    SpaceToBatchND(x, [dh, dw], [[pt, pb], [pl, pr]])
      → Conv2D(·, W, stride 1, VALID)
      → BatchToSpaceND(·, [dh, dw], [[0, cb], [0, cr]])
        ⇒  Conv2D(x, W, dilations [1, dh, dw, 1], EXPLICIT pads [[pt, pb − cb], [pl, pr − cr]])

``tf.nn.convolution`` (Keras ``Conv2D(dilation_rate=d)``, atrous convs in segmentation models)
emulates dilation this way: the padded input is split into dh·dw phases stacked in the batch, an
undilated VALID conv runs on each, and the phases are interleaved back, the crops removing what
was padded only to make the sizes divisible. Output (i, j) of the result reads padded input
rows i + dh·a and columns j + dw·b — exactly the dilated conv with the same leading pads and the
trailing pads less the crops. As one node it is one INT8 conv (tfq8's kernels take dilations)
instead of a conv between two FP32 rearrangements, and the other passes see a plain conv.

Only Conv2D: TF's CPU depthwise conv has no dilation, so a depthwise conv in this form stays as
it is (its conv still runs in INT8). Refused (no rewrite): non-constant block shapes, paddings or
crops, crops at the start, crops larger than the trailing pads, an inner conv that is strided,
dilated, not VALID or not NHWC, intermediates with other readers.
"""
from __future__ import annotations

import tensorflow as tf

from tfq8.graph import Editor, get_attr, make_node
from tfq8.passes.pipeline import Pass, PassContext, PassResult


class DilatedConv(Pass):
    name = "dilated_conv"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        ed = Editor(graph_def, ctx.outputs)
        for b2s in graph_def.node:
            if b2s.op != "BatchToSpaceND":
                continue
            conv = index.producer(index.data_inputs(b2s)[0])
            if conv.op != "Conv2D":
                continue
            s2b = index.producer(index.data_inputs(conv)[0])
            if s2b.op != "SpaceToBatchND":
                continue
            reason = _check(index, s2b, conv, b2s)
            if reason is not None:
                notes.refuse(b2s.name, f"dilated conv {conv.name} left in space-to-batch form: "
                                       f"{reason}")
                continue
            block = [int(v) for v in index.const_value(index.data_inputs(s2b)[1])]
            pads = index.const_value(index.data_inputs(s2b)[2]).astype(int)
            crops = index.const_value(index.data_inputs(b2s)[2]).astype(int)
            explicit = [0, 0, int(pads[0, 0]), int(pads[0, 1] - crops[0, 1]),
                        int(pads[1, 0]), int(pads[1, 1] - crops[1, 1]), 0, 0]
            x = index.data_inputs(s2b)[0]
            node = make_node("Conv2D", b2s.name, [x, conv.input[1]], device=conv.device)
            for key in conv.attr:
                node.attr[key].CopyFrom(conv.attr[key])
            node.attr["padding"].s = b"EXPLICIT"
            del node.attr["explicit_paddings"].list.i[:]
            node.attr["explicit_paddings"].list.i.extend(explicit)
            del node.attr["dilations"].list.i[:]
            node.attr["dilations"].list.i.extend([1, block[0], block[1], 1])
            ed.replace(node)
            ed.mark_maybe_dead(conv.name, s2b.name)
            notes.rewrite(b2s.name, f"SpaceToBatchND → {conv.name} → BatchToSpaceND ⇒ Conv2D "
                                    f"dilated {block[0]}×{block[1]}, pads {explicit[2:6]}")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


def _check(index, s2b, conv, b2s):
    """None if the three nodes are a dilated conv in space-to-batch form, else why not."""
    for n in (s2b, conv):
        edges = index.consumers(n.name + ":0")
        if len(edges) != 1 or index.is_output(n.name + ":0") or index.control_consumers(n.name):
            return f"{n.name} has other readers"
    block = index.const_value(index.data_inputs(s2b)[1])
    pads = index.const_value(index.data_inputs(s2b)[2])
    block2 = index.const_value(index.data_inputs(b2s)[1])
    crops = index.const_value(index.data_inputs(b2s)[2])
    if any(v is None for v in (block, pads, block2, crops)):
        return "block shape, paddings or crops are not constant"
    if (block.shape != (2,) or pads.shape != (2, 2) or crops.shape != (2, 2)
            or list(block) != list(block2)):
        return "not a 2-D spatial block of the same shape on both sides"
    if crops[0, 0] or crops[1, 0] or (crops[:, 1] > pads[:, 1]).any() or (pads < 0).any():
        return f"crops {crops.tolist()} do not only undo trailing paddings {pads.tolist()}"
    if get_attr(conv, "data_format", "NHWC") != "NHWC" or get_attr(conv, "padding") != "VALID":
        return "the inner conv is not a VALID NHWC conv"
    if (get_attr(conv, "strides", [1, 1, 1, 1]) != [1, 1, 1, 1]
            or get_attr(conv, "dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]):
        return "the inner conv is strided or dilated"
    if get_attr(conv, "T", tf.float32) != tf.float32:
        return "the inner conv is not float32"
    return None
