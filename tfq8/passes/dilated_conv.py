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

With unknown spatial sizes (a fully convolutional net, a variable-length Conv1D) TF computes the
paddings and crops at run time (``required_space_to_batch_paddings``: the base pads, plus what
makes the size a multiple of the block at the end, cropped again). Those are evaluated for three
input sizes; the rewrite is made only if the leading pads and the trailing pads less the crops
are the same for all of them — what makes the result one dilated conv with fixed pads.

Only Conv2D: TF's CPU depthwise conv has no dilation, so a depthwise conv in this form stays as
it is (its conv still runs in INT8). Refused (no rewrite): block shapes, paddings or crops that
are neither constant nor of that run-time form, crops at the start, crops larger than the
trailing pads, an inner conv that is strided, dilated, not VALID or not NHWC, intermediates
with other readers (a SpaceToBatchND may feed several such convs, each with its own
BatchToSpaceND).
"""
from __future__ import annotations

import numpy as np
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
            if reason is None:
                reason = _values(graph_def, ctx, index, s2b, b2s)
            if isinstance(reason, str):
                notes.refuse(b2s.name, f"dilated conv {conv.name} left in space-to-batch form: "
                                       f"{reason}")
                continue
            block, pads, crops = reason
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


# input sizes at which run-time paddings and crops are evaluated (unknown dims; batch 1)
TRIAL_SIZES = (29, 48, 67)


def _values(graph_def, ctx, index, s2b, b2s):
    """(block, paddings, crops) of a dilated conv in space-to-batch form, with the crops' and
    pads' run-time parts taken out (see the module docstring), or why not."""
    tensors = [index.data_inputs(s2b)[1], index.data_inputs(s2b)[2],
               index.data_inputs(b2s)[1], index.data_inputs(b2s)[2]]
    consts = [index.const_value(t) for t in tensors]
    trials = [consts] if all(v is not None for v in consts) else _evaluate(graph_def, ctx,
                                                                           tensors)
    if isinstance(trials, str):
        return trials
    fixed = set()
    for block, pads, block2, crops in trials:
        if (block.shape != (2,) or pads.shape != (2, 2) or crops.shape != (2, 2)
                or list(block) != list(block2)):
            return "not a 2-D spatial block of the same shape on both sides"
        if crops[0, 0] or crops[1, 0] or (crops[:, 1] > pads[:, 1]).any() or (pads < 0).any():
            return f"crops {crops.tolist()} do not only undo trailing paddings {pads.tolist()}"
        fixed.add((tuple(int(b) for b in block), tuple(int(p) for p in pads[:, 0]),
                   tuple(int(p) for p in pads[:, 1] - crops[:, 1])))
    if len(fixed) != 1:
        return "the run-time paddings less the crops change with the input size"
    block, lead, trail = fixed.pop()
    pads = np.array([[lead[0], trail[0]], [lead[1], trail[1]]])
    return list(block), pads, np.zeros((2, 2), int)


def _evaluate(graph_def, ctx, tensors):
    """The tensors' values with the model inputs at TRIAL_SIZES (zeros, batch 1), one list per
    size; or why not."""
    by_name = {n.name: n for n in graph_def.node}
    feeds_for = []
    for size in TRIAL_SIZES:
        feeds = {}
        for t in ctx.inputs:
            node = by_name.get(t.rpartition(":")[0])
            if node is None or node.op != "Placeholder" or "shape" not in node.attr:
                return "block shape, paddings or crops are not constant (unknown input shape)"
            shape = tf.TensorShape(node.attr["shape"].shape)
            if shape.rank is None:
                return "block shape, paddings or crops are not constant (unknown input rank)"
            dims = [d if d is not None else (1 if i == 0 else size + 3 * i)
                    for i, d in enumerate(shape.as_list())]
            feeds[t] = np.zeros(dims, tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype)
        feeds_for.append(feeds)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    out = []
    try:
        with tf.compat.v1.Session(graph=graph) as sess:
            for feeds in feeds_for:
                out.append([np.asarray(v).astype(int) for v in sess.run(list(tensors), feeds)])
    except (tf.errors.OpError, ValueError, TypeError) as e:
        return (f"block shape, paddings or crops are not constant and could not be evaluated "
                f"({type(e).__name__})")
    return out


def _check(index, s2b, conv, b2s):
    """None if the three nodes are a conv between a SpaceToBatchND and a BatchToSpaceND that
    could be one dilated conv (their block, paddings and crops are checked by _values), else
    why not."""
    # The space-to-batch tensor may feed several such convs (a graph with shared work merged,
    # e.g. a WaveNet gate's tanh and sigmoid convs): each is rewritten on its own, and the
    # SpaceToBatchND goes once none reads it.
    for n, readers_ok in ((s2b, lambda edges: all(index.node(e.node).op == "Conv2D"
                                                  for e in edges)),
                          (conv, lambda edges: len(edges) == 1)):
        edges = index.consumers(n.name + ":0")
        if (not readers_ok(edges) or index.is_output(n.name + ":0")
                or index.control_consumers(n.name)):
            return f"{n.name} has other readers"
    if get_attr(conv, "data_format", "NHWC") != "NHWC" or get_attr(conv, "padding") != "VALID":
        return "the inner conv is not a VALID NHWC conv"
    if (get_attr(conv, "strides", [1, 1, 1, 1]) != [1, 1, 1, 1]
            or get_attr(conv, "dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]):
        return "the inner conv is strided or dilated"
    if get_attr(conv, "T", tf.float32) != tf.float32:
        return "the inner conv is not float32"
    return None
