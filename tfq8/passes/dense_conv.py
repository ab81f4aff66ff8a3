"""dense_as_conv — a Dense layer over the channels of an NHWC tensor becomes a 1×1 Conv2D.

    Reshape(X[N, H, W, C], [-1, C]) → MatMul(·, W[C, O]) → Reshape(·, [N, H, W, O])
        ⇒  Conv2D(X, W.reshape(1, 1, C, O), strides 1, VALID)

Keras 3 writes ``Dense`` on a rank-4 input this way (``tensordot``: the shapes come from
``Shape``/``GatherV2``/``Prod``/``Pack`` nodes, ConvNeXt's and MLP blocks' pointwise layers).
Reshape keeps the row-major element order, so row n·H·W + h·W + w of the matrix is pixel
(n, h, w) and the result is the 1×1 convolution's, value for value (each output is the same
dot product). Afterwards the conv is an ordinary conv for every later pass: batch norms and
per-channel scales after it fold in, its bias and activation fuse, a residual add becomes its
summand, and elementwise functions of it become INT8 lookup tables — none of which see through
the Reshapes.

Matched only when the static shapes (inferred at batch 2, which makes TF evaluate the shape
arithmetic) prove it: X is [2, H, W, C] with known H, W, C; the matrix is [2·H·W, C]; the final
Reshape gives [2, H, W, O]; W is a constant; the MatMul has no transpose_a and no other reader. Anything else is left as it is (no note: a MatMul on
reshaped data is usually not this pattern).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, get_attr, make_node
from tfq8.passes.pipeline import Pass, PassContext, PassResult


def _prod(dims):
    return int(np.prod(dims)) if None not in dims else None


class DenseAsConv(Pass):
    name = "dense_as_conv"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        candidates = [n for n in graph_def.node if n.op == "MatMul"
                      and index.producer(index.data_inputs(n)[0]).op == "Reshape"]
        if not candidates:
            return PassResult(graph_def, False, [])
        # The Reshapes' shape tensors are computed from Shape(X) at run time: with a concrete
        # batch, TF's shape inference evaluates them (batch 2, so it cannot hide as a 1).
        shapes = ctx.shapes(graph_def, batch=2)
        ed = Editor(graph_def, ctx.outputs)
        for mm in candidates:
            a_t, w_t = index.data_inputs(mm)[:2]
            flat = index.producer(a_t)
            x_t = index.data_inputs(flat)[0]
            w = index.const_value(w_t)
            edges = index.consumers(mm.name + ":0")
            if (w is None or w.ndim != 2 or get_attr(mm, "transpose_a", False)
                    or get_attr(mm, "T", tf.float32) != tf.float32 or len(edges) != 1
                    or index.is_output(mm.name + ":0") or index.control_consumers(mm.name)):
                continue
            if get_attr(mm, "transpose_b", False):
                w = w.T
            back = index.node(edges[0].node)
            xs, as_, bs = (shapes.get(t) for t in (x_t, a_t, back.name + ":0"))
            if back.op != "Reshape" or xs is None or as_ is None or bs is None:
                continue
            c, o = w.shape
            if (len(xs) != 4 or None in xs or xs[3] != c or tuple(as_) != (_prod(xs[:3]), c)
                    or tuple(bs) != (xs[0], xs[1], xs[2], o)):
                continue
            filt = ed.add_const(back.name + "/pointwise_filter",
                                np.ascontiguousarray(w.reshape(1, 1, c, o), np.float32),
                                before=back.name)
            ed.replace(make_node("Conv2D", back.name, [x_t, filt],
                                 {"T": tf.float32, "strides": [1, 1, 1, 1], "padding": "VALID",
                                  "data_format": "NHWC", "dilations": [1, 1, 1, 1],
                                  "explicit_paddings": [], "use_cudnn_on_gpu": True},
                                 device=mm.device))
            ed.mark_maybe_dead(mm.name, flat.name)
            notes.rewrite(back.name, f"Reshape → MatMul {mm.name} ({c}→{o}) → Reshape over "
                                     f"{xs[1]}×{xs[2]} pixels ⇒ 1×1 Conv2D")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))
