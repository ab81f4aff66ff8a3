"""Helpers for checking the INT8 ops a quantized graph contains against tests/ops/numpy_ref."""
import numpy as np
import tensorflow as tf

from tests.ops import numpy_ref


def conv_reference(graph_def, node, xq):
    """numpy_ref's output of the Tfq8Conv2D ``node`` (uint8 output) of ``graph_def`` on the
    uint8 input ``xq``, with the node's own filter, bias, scales and attributes."""
    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    w, b, s = (tf.make_ndarray(consts[node.input[i]].attr["value"].tensor) for i in (1, 2, 3))
    a = node.attr
    return numpy_ref.conv2d(
        xq, w, b, s, input_scale=a["input_scale"].f, input_zero_point=a["input_zero_point"].i,
        strides=list(a["strides"].list.i), dilations=list(a["dilations"].list.i),
        pads=list(a["explicit_paddings"].list.i), activation=a["activation"].s.decode(),
        output_scale=a["output_scale"].f, output_zero_point=a["output_zero_point"].i)


def cosine_rows(a, b):
    """Cosine similarity of each sample (row) of a and b, any trailing shape."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
