"""Independent numpy reference of docs/int8_numerics.md — the oracle of the op tests.

Written from the document, not from the C++ code: plain loops over kernel taps with int64
accumulation, f32 epilogue steps done one numpy float32 operation at a time (numpy's float32
multiply/add are single IEEE operations, np.rint rounds half to even), so a kernel that matches
this bit for bit follows the contract.
"""
import numpy as np

F32 = np.float32


def _f32(v):
    """A host-side constant: computed in double, rounded once to f32."""
    return F32(np.float64(v))


def _attr(v):
    """A scale as the op sees it: a float32 attribute, widened to double for host math."""
    return np.float64(np.float32(v))


def _rne_clamp(t, lo, hi, zp):
    t = np.where(t >= lo, t, F32(lo)).astype(F32)  # NaN → lo
    t = np.minimum(t, F32(hi)).astype(F32)
    return (np.rint(t).astype(np.int32) + zp).astype(np.uint8)


def quantize(x, scale, zero_point=0):
    x = np.asarray(x, F32)
    t = (x * _f32(1.0 / _attr(scale))).astype(F32)
    return _rne_clamp(t, -zero_point, 255 - zero_point, zero_point)


def quantize_channels(x, scale, zero_point, channel_mul, channel_add):
    """Tfq8QuantizeChannels: t = x * m[c], then t + a[c] (each rounded to f32), m and a the
    per-channel affine over the scale in double; channel c = index along the last axis."""
    x = np.asarray(x, F32)
    s = _attr(scale)
    m = (np.asarray(channel_mul, F32).astype(np.float64) / s).astype(F32)
    a = (np.asarray(channel_add, F32).astype(np.float64) / s).astype(F32)
    t = ((x * m).astype(F32) + a).astype(F32)
    return _rne_clamp(t, -zero_point, 255 - zero_point, zero_point)


def dequantize(q, scale, zero_point=0):
    return ((q.astype(np.int32) - zero_point).astype(F32) * F32(scale)).astype(F32)


def requantize(q, in_scale, in_zp, out_scale, out_zp):
    mul = _f32(_attr(in_scale) / _attr(out_scale))
    t = ((q.astype(np.int32) - in_zp).astype(F32) * mul).astype(F32)
    return _rne_clamp(t, -out_zp, 255 - out_zp, out_zp)


def channel_mul(q, gate, in_scale, in_zp, out_scale, out_zp):
    """Tfq8ChannelMul: q [N, ..., C] u8, gate [N or 1, 1, ..., 1, C] f32 →
    rne(clamp(float(q − in_zp) · (gate · f32(in_scale / out_scale)))) + out_zp."""
    gate = np.asarray(gate, F32)
    mult = (gate * _f32(_attr(in_scale) / _attr(out_scale))).astype(F32)
    t = ((q.astype(np.int32) - in_zp).astype(F32) * mult).astype(F32)
    return _rne_clamp(t, -out_zp, 255 - out_zp, out_zp)


def prelu(q, slopes, bias, in_scale, in_zp, out_scale, out_zp):
    """Tfq8PRelu: d = q − in_zp; t = f32(d) · (d ≥ 0 ? pos[c] : neg[c]) + add[c] with
    pos/neg = f32(slope · s_in / s_out), add = f32(bias / s_out) (double, then f32)."""
    slopes = np.asarray(slopes, F32).astype(np.float64)
    r = _attr(in_scale) / _attr(out_scale)
    pos, neg = (slopes[0] * r).astype(F32), (slopes[1] * r).astype(F32)
    add = (np.asarray(bias, F32).astype(np.float64) / _attr(out_scale)).astype(F32)
    d = q.astype(np.int32) - in_zp
    t = (d.astype(F32) * np.where(d >= 0, pos, neg)).astype(F32)
    t = (t + add).astype(F32)
    return _rne_clamp(t, F32(-out_zp), F32(255 - out_zp), out_zp)


def lookup(q, table):
    """Tfq8Lookup: table[q] (u8 → u8, 256-entry table)."""
    table = np.asarray(table, np.uint8)
    assert table.shape == (256,), table.shape
    return table[np.asarray(q, np.uint8)]


def _pad(x, pads, value):
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _out_size(n, k, stride, dilation, lo, hi):
    return (n + lo + hi - ((k - 1) * dilation + 1)) // stride + 1


def conv2d_acc(x, w, input_zero_point=0, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0)):
    """Σ (x - zp)·w over the window, int64; x NHWC u8, w [KH, KW, IC, OC] int8."""
    n, h, wd, c = x.shape
    kh, kw, ic, oc = w.shape
    assert ic == c
    xp = _pad(x, pads, input_zero_point).astype(np.int64) - input_zero_point
    oh = _out_size(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = _out_size(wd, kw, strides[1], dilations[1], pads[2], pads[3])
    acc = np.zeros((n, oh, ow, oc), np.int64)
    w64 = w.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            patch = xp[:, r0:r0 + (oh - 1) * strides[0] + 1:strides[0],
                       c0:c0 + (ow - 1) * strides[1] + 1:strides[1], :]
            acc += np.tensordot(patch, w64[i, j], axes=([3], [0]))
    return acc


def depthwise_acc(x, w, input_zero_point=0, strides=(1, 1), dilations=(1, 1),
                  pads=(0, 0, 0, 0)):
    """w [KH, KW, C, M]; output channel c*M + m, as TF's DepthwiseConv2dNative."""
    n, h, wd, c = x.shape
    kh, kw, wc, m = w.shape
    assert wc == c
    xp = _pad(x, pads, input_zero_point).astype(np.int64) - input_zero_point
    oh = _out_size(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = _out_size(wd, kw, strides[1], dilations[1], pads[2], pads[3])
    acc = np.zeros((n, oh, ow, c, m), np.int64)
    w64 = w.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            patch = xp[:, r0:r0 + (oh - 1) * strides[0] + 1:strides[0],
                       c0:c0 + (ow - 1) * strides[1] + 1:strides[1], :]
            acc += patch[..., None] * w64[i, j][None, None, None]
    return acc.reshape(n, oh, ow, c * m)


def matmul_acc(x, w, input_zero_point=0):
    return (x.astype(np.int64) - input_zero_point) @ w.astype(np.int64)


def epilogue(acc, *, input_scale, filter_scale, bias, input_zero_point=0, summand=None,
             summand_scale=1.0, summand_zero_point=0, activation="NONE", clip_min=0.0,
             clip_max=6.0, out_type="uint8", output_scale=1.0, output_zero_point=0):
    """acc: int64 Σ(x - zp)·w with output channels last. bias float32 or int32 array [OC]."""
    oc = acc.shape[-1]
    fs = np.broadcast_to(np.asarray(filter_scale, np.float32).astype(np.float64).reshape(-1),
                         (oc,))
    input_scale, summand_scale = _attr(input_scale), _attr(summand_scale)
    output_scale, clip_min, clip_max = _attr(output_scale), _attr(clip_min), _attr(clip_max)
    bias = np.asarray(bias)
    int_bias = bias.dtype == np.int32
    if out_type == "int32":
        assert summand is None and activation == "NONE"
        if int_bias:
            bq = bias.astype(np.int64)
        else:
            bq = np.rint(bias.astype(np.float64) / (np.float64(input_scale) * fs)).astype(np.int64)
        return (acc + bq).astype(np.int32)
    if int_bias:
        acc = acc + bias.astype(np.int64)
    s_out = 1.0 if out_type == "float32" else output_scale
    mul = np.array([_f32(np.float64(input_scale) * f / np.float64(s_out)) for f in fs], F32)
    badd = (np.zeros(oc, F32) if int_bias else
            np.array([_f32(np.float64(b) / np.float64(s_out)) for b in bias.astype(F32)], F32))
    t = (acc.astype(np.int32).astype(F32) * mul).astype(F32)
    t = (t + badd).astype(F32)
    if summand is not None:
        mul_s = _f32(np.float64(summand_scale) / np.float64(s_out))
        t = (t + ((summand.astype(np.int32) - summand_zero_point).astype(F32) * mul_s)
             .astype(F32)).astype(F32)
    if out_type == "float32":
        lo, hi = -np.inf, np.inf
    else:
        lo, hi = F32(-output_zero_point), F32(255 - output_zero_point)
    if activation in ("RELU", "RELU6"):
        lo = max(lo, F32(0))
    if activation == "RELU6":
        hi = min(hi, _f32(6.0 / np.float64(s_out)))
    if activation == "CLIP":
        lo = max(lo, _f32(np.float64(clip_min) / np.float64(s_out)))
        hi = min(hi, _f32(np.float64(clip_max) / np.float64(s_out)))
    t = np.minimum(np.maximum(t, F32(lo)), F32(hi)).astype(F32)
    if out_type == "float32":
        return t
    return (np.rint(t).astype(np.int32) + output_zero_point).astype(np.uint8)


def conv2d(x, w, bias, filter_scale, *, input_scale, input_zero_point=0, strides=(1, 1),
           dilations=(1, 1), pads=(0, 0, 0, 0), **epilogue_args):
    acc = conv2d_acc(x, w, input_zero_point, strides, dilations, pads)
    return epilogue(acc, input_scale=input_scale, filter_scale=filter_scale, bias=bias,
                    input_zero_point=input_zero_point, **epilogue_args)


def depthwise_conv2d(x, w, bias, filter_scale, *, input_scale, input_zero_point=0,
                     strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), **epilogue_args):
    acc = depthwise_acc(x, w, input_zero_point, strides, dilations, pads)
    return epilogue(acc, input_scale=input_scale, filter_scale=filter_scale, bias=bias,
                    input_zero_point=input_zero_point, **epilogue_args)


def matmul(x, w, bias, filter_scale, *, input_scale, input_zero_point=0, **epilogue_args):
    acc = matmul_acc(x, w, input_zero_point)
    return epilogue(acc, input_scale=input_scale, filter_scale=filter_scale, bias=bias,
                    input_zero_point=input_zero_point, **epilogue_args)


def same_pads(size, k, stride):
    """TF SAME padding (before, after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _pool_windows(x, ksize, strides, padding):
    n, h, w, c = x.shape
    if padding == "SAME":
        pt, pb = same_pads(h, ksize[0], strides[0])
        pl, pr = same_pads(w, ksize[1], strides[1])
    else:
        pt = pb = pl = pr = 0
    oh = (h + pt + pb - ksize[0]) // strides[0] + 1
    ow = (w + pl + pr - ksize[1]) // strides[1] + 1
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - pt, j * strides[1] - pl
            r1, c1 = min(r0 + ksize[0], h), min(c0 + ksize[1], w)
            yield i, j, x[:, max(r0, 0):r1, max(c0, 0):c1, :], (oh, ow)


def max_pool(x, ksize, strides, padding):
    out = None
    for i, j, win, (oh, ow) in _pool_windows(x, ksize, strides, padding):
        if out is None:
            out = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.uint8)
        out[:, i, j] = win.max(axis=(1, 2))
    return out


def avg_pool(x, ksize, strides, padding):
    out = None
    for i, j, win, (oh, ow) in _pool_windows(x, ksize, strides, padding):
        if out is None:
            out = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.uint8)
        n = win.shape[1] * win.shape[2]
        out[:, i, j] = (win.astype(np.int64).sum(axis=(1, 2)) + n // 2) // n
    return out


def mean(x, keep_dims=False):
    n = x.shape[1] * x.shape[2]
    out = ((x.astype(np.int64).sum(axis=(1, 2)) + n // 2) // n).astype(np.uint8)
    return out[:, None, None, :] if keep_dims else out


def concat(values, axis, input_scales, input_zero_points, output_scale, output_zero_point):
    parts = [requantize(v, s, z, output_scale, output_zero_point)
             for v, s, z in zip(values, input_scales, input_zero_points)]
    return np.concatenate(parts, axis=axis)


def add(a, b, a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point,
        activation="NONE"):
    ma = _f32(_attr(a_scale) / _attr(output_scale))
    mb = _f32(_attr(b_scale) / _attr(output_scale))
    t = ((a.astype(np.int32) - a_zero_point).astype(F32) * ma).astype(F32)
    u = ((b.astype(np.int32) - b_zero_point).astype(F32) * mb).astype(F32)
    t = (t + u).astype(F32)
    lo, hi = F32(-output_zero_point), F32(255 - output_zero_point)
    if activation in ("RELU", "RELU6"):
        lo = max(lo, F32(0))
    if activation == "RELU6":
        hi = min(hi, _f32(6.0 / _attr(output_scale)))
    return _rne_clamp(t, lo, hi, output_zero_point)


def mul(a, b, a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point):
    """Tfq8Mul: t = f32((a − zp_a)·(b − zp_b)) · f32(s_a·s_b/s_out) (exact integer product)."""
    m = _f32(_attr(a_scale) * _attr(b_scale) / _attr(output_scale))
    prod = (a.astype(np.int32) - a_zero_point) * (b.astype(np.int32) - b_zero_point)
    t = (prod.astype(F32) * m).astype(F32)
    return _rne_clamp(t, F32(-output_zero_point), F32(255 - output_zero_point),
                      output_zero_point)


def layer_norm(q, gamma, beta, in_scale, out_scale, out_zp, epsilon):
    """Tfq8LayerNorm over the last axis (docs/int8_numerics.md, "Layer normalization"): exact
    integer row sums S1 = Σq, S2 = Σq², D = C·S2 − S1²; A = f32(s·r / (C·s_out)) with
    r = 1 / sqrt(s²·D/C² + ε) in double; v = (f32(C·q − S1) · A) · gamma + f32(beta / s_out)."""
    q = np.asarray(q, np.uint8)
    c = q.shape[-1]
    qi = q.astype(np.int64)
    s1 = qi.sum(-1, keepdims=True)
    s2 = (qi * qi).sum(-1, keepdims=True)
    d = (c * s2 - s1 * s1).astype(np.float64)
    s, so, eps = _attr(in_scale), _attr(out_scale), _attr(epsilon)
    cf = np.float64(c)
    var = s * s * (d / (cf * cf))
    with np.errstate(divide="ignore"):
        r = 1.0 / np.sqrt(var + eps)
    a = (s * r / (cf * so)).astype(F32)
    beta_out = (np.asarray(beta, F32).astype(np.float64) / so).astype(F32)
    t = (c * qi - s1).astype(F32)
    with np.errstate(invalid="ignore"):
        v = (t * a).astype(F32)
        v = (v * np.asarray(gamma, F32)).astype(F32)
        v = (v + beta_out).astype(F32)
    return _rne_clamp(v, -out_zp, 255 - out_zp, out_zp)
