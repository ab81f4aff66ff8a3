"""pad_into_conv: a zero Pad read only by convs becomes their explicit padding, with the same
values (tolerance 1e-5 of the output magnitude: the conv sums the same products, maybe in
another order); pads that are not zeros on the spatial axes, or have other readers, stay."""
import numpy as np
import pytest
import tensorflow as tf

from tfq8.passes import PadIntoConv
from tests.passes.helpers import apply, build, ops

RNG = np.random.default_rng(23)


def rand(*shape):
    # own generator: helpers.rand's shared one would shift other test files' data
    return RNG.normal(size=shape).astype(np.float32)


def run(fn, shape, run_graph, rel_err, outputs=1):
    g = build(fn, shape, outputs=outputs)
    return apply(PadIntoConv(), *g, run_graph, rel_err, tol=1e-5,
                 feeds={"x0:0": rand(2, *shape[1:])})


def _explicit(graph_def, op):
    return [list(n.attr["explicit_paddings"].list.i) for n in graph_def.node if n.op == op]


def test_pad_before_strided_dilated_and_depthwise_convs(run_graph, rel_err):
    w1, w2, w3 = rand(3, 3, 4, 6), rand(3, 3, 4, 1), rand(3, 3, 4, 5)

    def f(x):
        p = tf.pad(x, [[0, 0], [1, 2], [0, 3], [0, 0]])
        a = tf.nn.conv2d(p, w1, 2, "VALID")
        b = tf.nn.depthwise_conv2d(p, w2, [1, 1, 1, 1], "VALID")
        c = tf.nn.conv2d(p, w3, 1, "VALID", dilations=2)
        return a, b, c
    r = run(f, (None, 9, 8, 4), run_graph, rel_err, outputs=3)
    assert "Pad" not in ops(r.graph_def)
    assert _explicit(r.graph_def, "Conv2D") == [[0, 0, 1, 2, 0, 3, 0, 0]] * 2
    assert _explicit(r.graph_def, "DepthwiseConv2dNative") == [[0, 0, 1, 2, 0, 3, 0, 0]]


def test_padv2_zero_adds_to_explicit_padding(run_graph, rel_err):
    w = rand(3, 3, 4, 6)

    def f(x):
        p = tf.raw_ops.PadV2(input=x, paddings=[[0, 0], [2, 0], [1, 1], [0, 0]],
                             constant_values=0.0)
        return tf.nn.conv2d(p, w, 1, [[0, 0], [1, 1], [0, 2], [0, 0]])
    g = build(f, (None, 7, 7, 4))
    assert "PadV2" in ops(g[0])
    r = apply(PadIntoConv(), *g, run_graph, rel_err, tol=1e-5, feeds={"x0:0": rand(2, 7, 7, 4)})
    assert "PadV2" not in ops(r.graph_def)
    assert _explicit(r.graph_def, "Conv2D") == [[0, 0, 3, 1, 1, 3, 0, 0]]


@pytest.mark.parametrize("case", ["other_reader", "nonzero", "same_conv", "channel_pad",
                                  "output"])
def test_pads_that_stay(run_graph, rel_err, case):
    w = rand(3, 3, 4, 6)
    spec = [[0, 0], [1, 1], [1, 1], [0, 2 if case == "channel_pad" else 0]]

    def f(x):
        p = tf.pad(x, spec, constant_values=1.0 if case == "nonzero" else 0.0)
        y = tf.nn.conv2d(p, rand(3, 3, p.shape[-1], 6) if case == "channel_pad" else w, 1,
                         "SAME" if case == "same_conv" else "VALID")
        if case == "other_reader":
            return y, tf.nn.relu(p)
        return (y, p) if case == "output" else y
    two = case in ("other_reader", "output")
    r = run(f, (None, 6, 6, 4), run_graph, rel_err, outputs=2 if two else 1)
    assert not r.changed
