"""transposed_conv — a transposed convolution becomes a conv, a depth-to-space and a crop.

    Conv2DBackpropInput(output [N, Ho, Wo, O], W[kh, kw, O, C], x[N, H, W, C], stride s)
        ⇒  Slice(DepthToSpace(Conv2D(x, F, stride 1, pads K−1 around), s), [0, p_h, p_w, 0],
                 [−1, Ho, Wo, O])

Keras ``Conv2DTranspose`` (U-Net decoders, upsampling heads) has no INT8 kernel of its own; this
form is made of an ordinary conv, which runs in INT8, and pure data movement, which runs on the
uint8 tensor. Derivation per spatial dimension: the transposed conv writes
out[y] = Σ_{i, t: y = s·i + t − p} x[i]·W[t], p the forward conv's leading pad. Write
y + p = s·u + a with phase a ∈ [0, s): then t = a + s·m and i = u − m, so
out[y] = Σ_m x[u − m]·W[a + s·m] — for each phase a, a correlation of x (padded by K − 1,
K = ⌈k/s⌉) with the reversed sub-kernel V_a[j] = W[a + s·(K − 1 − j)] (zero past k), evaluated
at u. One conv computes all s² phases as s²·O output channels, channel (a·s + b)·O + o — the
order ``DepthToSpace`` reads them in — which puts phase (a, b) of u at row s·u + a, column
s·v + b; the crop starts at p. Every output is the same sum of the same products as TF's (in
another order), so the values agree to float rounding; the conv does ⌈k/s⌉²·s² MACs per output
channel and input pixel against k² (equal for k = s, e.g. U-Net's 2×2 stride-2 up-convs).

Matched only with static shapes (inferred at batch 2), a constant filter, equal row and column
strides (DepthToSpace has one block size), no dilation, NHWC and float32; refused with a note
otherwise.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfq8.graph import Editor, get_attr, make_node
from tfq8.passes.pipeline import Pass, PassContext, PassResult


class TransposedConv(Pass):
    name = "transposed_conv"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        nodes = [n for n in graph_def.node if n.op == "Conv2DBackpropInput"]
        if not nodes:
            return PassResult(graph_def, False, [])
        index = ctx.index(graph_def)
        shapes = ctx.shapes(graph_def, batch=2)
        ed = Editor(graph_def, ctx.outputs)
        for node in nodes:
            plan = _plan(index, shapes, node)
            if isinstance(plan, str):
                notes.refuse(node.name, f"transposed conv stays FP32: {plan}")
                continue
            x, filt, s, (kh, kw), (ph, pw), (ho, wo, o) = plan
            name = node.name
            f = ed.add_const(name + "/phase_filter", filt, before=name)
            conv = ed.add_node("Conv2D", name + "/phases", [x, f],
                               {"T": tf.float32, "strides": [1, 1, 1, 1], "padding": "EXPLICIT",
                                "explicit_paddings": [0, 0, kh - 1, kh - 1, kw - 1, kw - 1, 0, 0],
                                "data_format": "NHWC", "dilations": [1, 1, 1, 1],
                                "use_cudnn_on_gpu": True}, before=name)
            d2s = ed.add_node("DepthToSpace", name + "/interleave", [conv.name],
                              {"T": tf.float32, "block_size": s, "data_format": "NHWC"},
                              before=name)
            begin = ed.add_const(name + "/crop_begin", np.array([0, ph, pw, 0], np.int32),
                                 before=name)
            size = ed.add_const(name + "/crop_size", np.array([-1, ho, wo, o], np.int32),
                                before=name)
            ed.replace(make_node("Slice", name, [d2s.name, begin, size],
                                 {"T": tf.float32, "Index": tf.int32}, device=node.device))
            notes.rewrite(name, f"Conv2DBackpropInput stride {s}, {filt.shape[0]}×"
                                f"{filt.shape[1]} phase kernels ⇒ Conv2D ({filt.shape[3]} "
                                "channels) → DepthToSpace → Slice")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


def _plan(index, shapes, node):
    """(x, phase filter, s, (Kh, Kw), (p_h, p_w), (Ho, Wo, O)) or the reason for refusing."""
    if get_attr(node, "data_format", "NHWC") != "NHWC" or get_attr(node, "T", tf.float32) != \
            tf.float32:
        return "not an NHWC float32 op"
    if any(d != 1 for d in get_attr(node, "dilations", [1, 1, 1, 1])):
        return "dilated"
    strides = get_attr(node, "strides", [1, 1, 1, 1])
    if strides[0] != 1 or strides[3] != 1 or strides[1] != strides[2]:
        return f"strides {strides} (rows and columns must be equal)"
    s = strides[1]
    _, w_t, x = index.data_inputs(node)[:3]
    w = index.const_value(w_t)
    if w is None or w.ndim != 4:
        return "the filter is not a constant"
    xs, ys = shapes.get(x), shapes.get(node.name + ":0")
    if xs is None or ys is None or len(xs) != 4 or len(ys) != 4 or None in xs or None in ys:
        return "input or output shape unknown"
    kh, kw, o, c = w.shape
    if xs[3] != c or ys[3] != o:
        return "filter does not match the input and output channels"
    padding = get_attr(node, "padding")
    pads = []
    for dim, (k, h, ho) in enumerate(((kh, xs[1], ys[1]), (kw, xs[2], ys[2]))):
        if padding == "VALID":
            p = 0
        elif padding == "SAME":
            p = max((h - 1) * s + k - ho, 0) // 2
        elif padding == "EXPLICIT":
            p = get_attr(node, "explicit_paddings")[2 + 2 * dim]
        else:
            return f"padding {padding}"
        big_k = -(-k // s)
        if ho + p > s * (h + big_k - 1) or -(-ho // s) > h + big_k:
            return "output size does not fit the input (unusual output_padding)"
        pads.append(p)
    big_kh, big_kw = -(-kh // s), -(-kw // s)
    filt = np.zeros((big_kh, big_kw, c, s * s * o), np.float32)
    for a in range(s):
        for b in range(s):
            for jh in range(big_kh):
                th = a + s * (big_kh - 1 - jh)
                if th >= kh:
                    continue
                for jw in range(big_kw):
                    tw = b + s * (big_kw - 1 - jw)
                    if tw < kw:
                        ch = (a * s + b) * o
                        filt[jh, jw, :, ch:ch + o] = w[th, tw].T
    return x, filt, s, (big_kh, big_kw), tuple(pads), (ys[1], ys[2], o)
