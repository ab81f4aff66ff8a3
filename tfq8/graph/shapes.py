"""Static shapes of every tensor, from TensorFlow's own shape functions.

The GraphDef is imported into a fresh ``tf.Graph`` (no execution). With ``batch`` set, every
Placeholder's unknown leading dimension becomes that number first, so shapes come out concrete.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

Shape = Optional[Tuple[Optional[int], ...]]


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one spatial axis of ``size``."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def resolve_pads(pads, h: int, w: int, kh: int, kw: int, strides, dilations) -> Tuple[int, ...]:
    """[top, bottom, left, right]: ``pads`` itself, or for ``pads == "SAME"`` (a strided conv
    whose input size is only known at run time) the SAME padding of an h × w input."""
    if isinstance(pads, str):
        if pads != "SAME":
            raise ValueError(f"pads must be 4 integers or 'SAME', got {pads!r}")
        return same_pads(h, kh, strides[0], dilations[0]) + same_pads(w, kw, strides[1],
                                                                      dilations[1])
    return tuple(pads)


def infer_shapes(graph_def: graph_pb2.GraphDef, batch: Optional[int] = None,
                 input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None
                 ) -> Dict[str, Shape]:
    """``{"node:idx": shape}`` for every output of every node; a shape is a tuple with None for
    unknown dimensions, or None for unknown rank.

    batch: replaces an unknown leading dimension of every Placeholder.
    input_shapes: ``{placeholder node name: shape}`` overrides (applied before ``batch``).
    """
    gd = graph_pb2.GraphDef()
    gd.versions.CopyFrom(graph_def.versions)
    gd.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op != "Placeholder":
            gd.node.append(node)
            continue
        p = gd.node.add()
        p.CopyFrom(node)
        shape = tf.TensorShape(p.attr["shape"].shape) if "shape" in p.attr else tf.TensorShape(None)
        if input_shapes and node.name in input_shapes:
            shape = tf.TensorShape(input_shapes[node.name])
        if batch is not None and shape.rank and shape[0] is None:
            shape = tf.TensorShape([batch] + shape.as_list()[1:])
        p.attr["shape"].shape.CopyFrom(shape.as_proto())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    shapes: Dict[str, Shape] = {}
    for op in graph.get_operations():
        for t in op.outputs:
            s = t.shape
            shapes[t.name] = None if s.rank is None else tuple(s.as_list())
    return shapes
