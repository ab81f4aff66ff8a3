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

Unequal strides (s_h, s_w) — Keras ``Conv1DTranspose``, which TF runs as a 2-D one with stride
(1, s) — work the same with s_h·s_w phases, channel (a·s_w + b)·O + o; DepthToSpace has one
block size, so they are interleaved by Reshape [N, H', W', s_h, s_w, O] → Transpose (rows and
phases) → Reshape [N, H'·s_h, W'·s_w, O], or by one Reshape when s_h = 1 (the 1-D case: phase b
of column v lands at s_w·v + b in row-major order). All of it is data movement on uint8.

Matched only with static shapes (inferred at batch 2), a constant filter, no dilation, NHWC and
float32; refused with a note otherwise.
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
            x, filt, (sh, sw), (kh, kw), (ph, pw), (ho, wo, o), (hp, wp) = plan
            name = node.name
            f = ed.add_const(name + "/phase_filter", filt, before=name)
            conv = ed.add_node("Conv2D", name + "/phases", [x, f],
                               {"T": tf.float32, "strides": [1, 1, 1, 1], "padding": "EXPLICIT",
                                "explicit_paddings": [0, 0, kh - 1, kh - 1, kw - 1, kw - 1, 0, 0],
                                "data_format": "NHWC", "dilations": [1, 1, 1, 1],
                                "use_cudnn_on_gpu": True}, before=name)
            d2s = _interleave(ed, name, conv.name, sh, sw, hp, wp, o)
            begin = ed.add_const(name + "/crop_begin", np.array([0, ph, pw, 0], np.int32),
                                 before=name)
            size = ed.add_const(name + "/crop_size", np.array([-1, ho, wo, o], np.int32),
                                before=name)
            ed.replace(make_node("Slice", name, [d2s.name, begin, size],
                                 {"T": tf.float32, "Index": tf.int32}, device=node.device))
            how = "DepthToSpace" if sh == sw else "Reshape" if sh == 1 else \
                "Reshape → Transpose → Reshape"
            notes.rewrite(name, f"Conv2DBackpropInput stride {sh}×{sw}, {filt.shape[0]}×"
                                f"{filt.shape[1]} phase kernels ⇒ Conv2D ({filt.shape[3]} "
                                f"channels) → {how} → Slice")
        changed = ed.changed
        return PassResult(ed.finish() if changed else graph_def, changed, list(notes))


def _interleave(ed, name, phases, sh, sw, hp, wp, o):
    """The phases conv's output [N, H', W', (s_h·s_w)·O] as [N, H'·s_h, W'·s_w, O]."""
    if sh == sw:
        return ed.add_node("DepthToSpace", name + "/interleave", [phases],
                           {"T": tf.float32, "block_size": sh, "data_format": "NHWC"},
                           before=name)

    def reshape(src, suffix, dims):
        shape = ed.add_const(name + f"/{suffix}_shape", np.array(dims, np.int32), before=name)
        return ed.add_node("Reshape", name + f"/{suffix}", [src, shape],
                           {"T": tf.float32, "Tshape": tf.int32}, before=name)

    if sh == 1:
        return reshape(phases, "interleave", [-1, hp, wp * sw, o])
    split = reshape(phases, "phases_split", [-1, hp, wp, sh, sw, o]).name
    perm = ed.add_const(name + "/phases_perm", np.array([0, 1, 3, 2, 4, 5], np.int32),
                        before=name)
    moved = ed.add_node("Transpose", name + "/phases_rows", [split, perm],
                        {"T": tf.float32, "Tperm": tf.int32}, before=name)
    return reshape(moved.name, "interleave", [-1, hp * sh, wp * sw, o])


def _plan(index, shapes, node):
    """(x, phase filter, (s_h, s_w), (Kh, Kw), (p_h, p_w), (Ho, Wo, O), (H', W')) or the reason
    for refusing. H', W': the phases conv's output size."""
    if get_attr(node, "data_format", "NHWC") != "NHWC" or get_attr(node, "T", tf.float32) != \
            tf.float32:
        return "not an NHWC float32 op"
    if any(d != 1 for d in get_attr(node, "dilations", [1, 1, 1, 1])):
        return "dilated"
    strides = get_attr(node, "strides", [1, 1, 1, 1])
    if strides[0] != 1 or strides[3] != 1:
        return f"strides {strides} over the batch or the channels"
    sh, sw = strides[1], strides[2]
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
    for dim, (k, h, ho, s) in enumerate(((kh, xs[1], ys[1], sh), (kw, xs[2], ys[2], sw))):
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
    big_kh, big_kw = -(-kh // sh), -(-kw // sw)
    filt = np.zeros((big_kh, big_kw, c, sh * sw * o), np.float32)
    for a in range(sh):
        for b in range(sw):
            for jh in range(big_kh):
                th = a + sh * (big_kh - 1 - jh)
                if th >= kh:
                    continue
                for jw in range(big_kw):
                    tw = b + sw * (big_kw - 1 - jw)
                    if tw < kw:
                        ch = (a * sw + b) * o
                        filt[jh, jw, :, ch:ch + o] = w[th, tw].T
    return (x, filt, (sh, sw), (big_kh, big_kw), tuple(pads), (ys[1], ys[2], o),
            (xs[1] + big_kh - 1, xs[2] + big_kw - 1))
