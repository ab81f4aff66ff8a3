"""Absorbs a per-channel affine in front of a Tfq8Quantize into the quantize itself.

Keras models often normalize their input inside the model (EfficientNet's Rescaling +
Normalization, MobileNetV3's Rescaling, ConvNeXt's Normalization): a chain of FP32 Mul / Add /
Sub / RealDiv / BiasAdd by constants between the Placeholder and the first INT8 layer. Left as it
is, TensorFlow runs one pass over the input per op, then Tfq8Quantize another (~5 % of
EfficientNetB0 at batch 1). ``Tfq8QuantizeChannels`` does it in the quantize's single pass:
the chain is composed into ``x * m[c] + a[c]`` (in float64; c the index along the last axis).

Only chains that are exactly that are absorbed: each op takes one constant that is a scalar or
varies along the last axis only (so broadcasting cannot change the shape), every intermediate
tensor feeds only the next op of the chain and is no model output, and the chain's input has a
known last dimension (or all constants are scalars). The result differs from the FP32 chain by
f32 rounding only (≤ a few 1e-7 relative, far below one quantization step); see
docs/int8_numerics.md, "Quantize with a channel affine".
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import tensor_util

from tfq8.graph.names import parse_tensor

AFFINE_OPS = ("Mul", "Add", "AddV2", "Sub", "RealDiv", "BiasAdd")
MAX_CHANNELS = 65536  # Tfq8QuantizeChannels' limit


def _node(t: str) -> str:
    return parse_tensor(t)[0]


def absorb_input_affines(graph_def: graph_pb2.GraphDef, keep: set[str],
                         shape_of: Callable[[str], Optional[tuple]]
                         ) -> list[tuple[str, list[str]]]:
    """Rewrites, in place, every Tfq8Quantize whose input is such a chain into a
    Tfq8QuantizeChannels reading the chain's input; the chain's nodes are left for the caller's
    dead-node pruning. keep: node names that must stay (model outputs). shape_of: the static
    shape of an FP32 tensor ``"node:idx"`` (tuple, None for unknown rank). Returns [(quantize node, chain op
    names from input to quantize)]."""
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, int] = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                consumers[_node(i)] = consumers.get(_node(i), 0) + 1
            else:
                consumers[i[1:]] = consumers.get(i[1:], 0) + 2  # a control edge pins the node
    done = []
    for q in graph_def.node:
        if q.op != "Tfq8Quantize" or len(q.input) != 1:
            continue
        chain, src = [], q.input[0]
        while True:
            step = _affine_step(nodes, src, keep, consumers)
            if step is None:
                break
            chain.append(step)
            src = step[3]
        if not chain:
            continue
        chain.reverse()  # input first
        composed = _compose(chain, shape_of(_canon(src)))
        if composed is None:
            continue
        mul, add = composed
        scale, zp = q.attr["scale"].f, q.attr["zero_point"].i
        if not (np.all(np.isfinite(mul / scale)) and np.all(np.isfinite(add / scale))
                and np.abs(mul / scale).max() < 3e38 and np.abs(add / scale).max() < 3e38):
            continue
        q.op = "Tfq8QuantizeChannels"
        del q.input[:]
        q.input.append(src)
        q.attr["channel_mul"].list.f.extend(mul.astype(np.float32).tolist())
        q.attr["channel_add"].list.f.extend(add.astype(np.float32).tolist())
        done.append((q.name, [name for name, *_ in chain]))
    return done


def _canon(t: str) -> str:
    node, idx = parse_tensor(t)
    return f"{node}:{idx}"


def _affine_step(nodes, t, keep, consumers):
    """(node name, op, (const value, const first), data input) if tensor t is the output of an
    absorbable op whose output feeds only its one reader, else None."""
    node, idx = parse_tensor(t)
    n = nodes.get(node)
    if (n is None or idx != 0 or n.op not in AFFINE_OPS or node in keep
            or consumers.get(node, 0) != 1 or len(n.input) != 2
            or any(i.startswith("^") for i in n.input)
            or n.attr["T"].type != tf.float32.as_datatype_enum):
        return None
    if n.op == "BiasAdd" and n.attr["data_format"].s not in (b"", b"NHWC"):
        return None
    consts = [_const_value(nodes, i) for i in n.input]
    if (consts[0] is None) == (consts[1] is None):
        return None  # two data inputs, or two constants (constant folding's business)
    first = consts[0] is not None
    if first and n.op in ("RealDiv", "BiasAdd"):
        return None  # c / x is not affine; BiasAdd's bias is its second input
    value = consts[0] if first else consts[1]
    return node, n.op, (value, first), n.input[1] if first else n.input[0]


def _const_value(nodes, t):
    node, idx = parse_tensor(t)
    n = nodes.get(node)
    if n is None or n.op != "Const" or idx != 0:
        return None
    value = tensor_util.MakeNdarray(n.attr["value"].tensor)
    return value if value.dtype == np.float32 else None


def _compose(chain, in_shape):
    """(mul, add) float64 vectors (length C, or 1 for all-scalar chains) of the chain, or None
    when a constant could broadcast the input to another shape."""
    rank = None if in_shape is None else len(in_shape)
    last = None if not in_shape else in_shape[-1]
    channels = 1
    for _, _, (value, _), _ in chain:
        if value.size == 1:
            if rank is None and value.ndim > 1 or rank is not None and value.ndim > rank:
                return None  # a [1, 1, 1, 1] constant would raise the rank
            continue
        if any(d != 1 for d in value.shape[:-1]) or (rank is not None and value.ndim > rank) \
                or (rank is None and value.ndim > 1):
            return None
        if last is None or value.shape[-1] != last or channels not in (1, last):
            return None
        channels = last
    if channels > MAX_CHANNELS:
        return None
    mul, add = np.ones(channels), np.zeros(channels)
    for _, op, (value, const_first), _ in chain:
        c = np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,))
        if op == "Mul":
            mul, add = mul * c, add * c
        elif op in ("Add", "AddV2", "BiasAdd"):
            add = add + c
        elif op == "Sub":
            mul, add = (-mul, c - add) if const_first else (mul, add - c)
        else:  # RealDiv by a constant
            if np.any(c == 0):
                return None
            mul, add = mul / c, add / c
    return mul, add
