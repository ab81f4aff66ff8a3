"""move_strides: exactness of the moved strides (SAME → EXPLICIT, odd sizes, depthwise), the
pass-through of 1×1 convs, subsampling where the push stops, refusals, and Keras ResNet50.

Tolerance: 1e-6 of the output magnitude on hand-built graphs — the rewrite computes the same
sums in the same order, only at fewer positions, so results are bit-identical in practice;
1e-4 on the Keras applications (the project's FP32 bar)."""
import pytest
import tensorflow as tf

from tfq8.graph import get_attr
from tfq8.passes import MoveStrides, count_macs

from tests.passes.conftest import BATCHES
from tests.passes.helpers import apply, build, rand


def conv(x, cin, cout, k, stride=1, padding="SAME"):
    return tf.nn.conv2d(x, rand(k, k, cin, cout), stride, padding)


def strided_1x1(y, c, s=2, padding="VALID", n=2):
    """n 1×1 stride-s convs reading y (like ResNet's conv{3,4,5}_block1 _0 and _1 convs)."""
    return [conv(y, c, 4 + i, 1, s, padding) for i in range(n)]


def node(graph_def, op):
    return [n for n in graph_def.node if n.op == op]


def run(g, run_graph, rel_err):
    return apply(MoveStrides(), *g, run_graph, rel_err, tol=1e-6)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride", [1, 2])
def test_stride_moves_into_kxk_conv_exactly(run_graph, rel_err, size, padding, stride):
    def f(x):
        y = tf.nn.relu(tf.nn.bias_add(conv(x, 3, 6, 3, stride, padding), rand(6)))
        return strided_1x1(y, 6, padding="SAME" if size == 9 else "VALID")
    g = build(f, (None, size, size, 3), outputs=2)
    r = run(g, run_graph, rel_err)
    assert r.changed and len(r.rewrites) == 1
    k = next(n for n in node(r.graph_def, "Conv2D") if n.name == "Conv2D")
    assert get_attr(k, "strides") == [1, 2 * stride, 2 * stride, 1]
    assert all(get_attr(n, "strides") == [1, 1, 1, 1] for n in node(r.graph_def, "Conv2D")
               if n.name != "Conv2D")
    before, after = count_macs(g[0], batch=1), count_macs(r.graph_def, batch=1)
    assert after.total < before.total
    assert not node(r.graph_def, "StridedSlice")


def test_depthwise_absorbs_with_explicit_padding(run_graph, rel_err):
    def f(x):
        y = tf.nn.relu6(tf.nn.depthwise_conv2d(x, rand(3, 3, 4, 1), [1, 1, 1, 1], "SAME"))
        return strided_1x1(y, 4)
    r = run(build(f, (None, 10, 10, 4), outputs=2), run_graph, rel_err)
    dw = node(r.graph_def, "DepthwiseConv2dNative")[0]
    assert get_attr(dw, "strides") == [1, 2, 2, 1] and get_attr(dw, "padding") == "EXPLICIT"
    assert get_attr(dw, "explicit_paddings") == [0, 0, 1, 0, 1, 0, 0, 0]


def test_push_passes_through_1x1_conv_and_residual_add(run_graph, rel_err):
    """ResNet's shape: the stride goes through Relu, the residual Add, the block's last 1×1 conv
    and its BN/Relu into the 3×3 conv; the identity branch (also read at full resolution by the
    block's first conv) gets a StridedSlice."""
    def f(x):
        a = tf.nn.relu(conv(x, 8, 8, 1))                            # block input (full res)
        b = tf.nn.relu(tf.nn.bias_add(conv(a, 8, 4, 3), rand(4)))   # 3×3
        c = tf.nn.bias_add(conv(b, 4, 8, 1), rand(8)) * rand(8)     # 1×1, per-channel scale
        y = tf.nn.relu(a + c)
        return strided_1x1(y, 8)
    g = build(f, (None, 12, 12, 8), outputs=2)
    r = run(g, run_graph, rel_err)
    strides = {n.name: get_attr(n, "strides")[1] for n in node(r.graph_def, "Conv2D")}
    assert strides == {"Conv2D": 1, "Conv2D_1": 2, "Conv2D_2": 1, "Conv2D_3": 1, "Conv2D_4": 1}
    assert len(node(r.graph_def, "StridedSlice")) == 1
    assert any("full-resolution consumer" in n.message for n in r.refusals)


def test_unpushable_input_makes_the_1x1_conv_take_the_stride(run_graph, rel_err):
    """x (a Placeholder) → 1×1 conv → Relu → strided 1×1 convs: the first conv absorbs it."""
    def f(x):
        return strided_1x1(tf.nn.relu(conv(x, 3, 6, 1)), 6)
    r = run(build(f, (None, 8, 8, 3), outputs=2), run_graph, rel_err)
    assert r.changed and not node(r.graph_def, "StridedSlice")
    assert get_attr(node(r.graph_def, "Conv2D")[0], "strides") == [1, 2, 2, 1]


def test_non_constant_weights_are_fine_when_shapes_are_static(run_graph, rel_err):
    def f(x, w):
        return strided_1x1(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), 5)
    g = build(f, (None, 8, 8, 3), (3, 3, 3, 5), outputs=2)
    assert run(g, run_graph, rel_err).changed


# ---------------------------------------------------------------- refusals
def _refused(r, text):
    assert not r.changed
    assert any(text in n.message for n in r.refusals), r.notes


def test_refuses_when_intermediate_is_a_graph_output(run_graph, rel_err):
    def f(x):
        return strided_1x1(tf.nn.relu(tf.nn.bias_add(conv(x, 3, 6, 3), rand(6), name="b")), 6)
    gd, ins, outs = build(f, (None, 8, 8, 3), outputs=2)
    r = apply(MoveStrides(), gd, ins, outs + ["b:0"], run_graph, rel_err, tol=1e-6)
    _refused(r, "graph output")


def test_refuses_when_intermediate_has_a_full_resolution_consumer(run_graph, rel_err):
    def f(x):
        k = conv(x, 3, 6, 3)
        return strided_1x1(tf.nn.relu(k), 6) + [tf.nn.max_pool2d(k, 2, 2, "VALID")]
    _refused(run(build(f, (None, 8, 8, 3), outputs=3), run_graph, rel_err),
             "full-resolution consumer")


def test_refuses_control_dependencies(run_graph, rel_err):
    gd, ins, outs = build(lambda x: strided_1x1(tf.nn.relu(conv(x, 3, 6, 3), name="act"), 6),
                          (None, 8, 8, 3), outputs=2)
    next(n for n in gd.node if n.name == "act").input.append("^x0")
    _refused(run((gd, ins, outs), run_graph, rel_err), "control edges")


def test_refuses_absorber_without_static_filter_shape(run_graph, rel_err):
    g = build(lambda x, w: strided_1x1(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), 5),
              (None, 8, 8, 3), None, outputs=2)
    gd, ins, outs = g
    feeds = {ins[0]: rand(2, 8, 8, 3), ins[1]: rand(3, 3, 3, 5)}
    r = apply(MoveStrides(), gd, ins, outs, run_graph, rel_err, tol=1e-6, feeds=feeds)
    _refused(r, "no static filter shape")


def test_no_start_no_change():
    """Mixed strides among the consumers, or a strided 3×3: nothing to do, nothing noted."""
    def f(x):
        y = tf.nn.relu(conv(x, 3, 6, 3))
        return conv(y, 6, 4, 1, 2), conv(y, 6, 4, 1, 1), conv(y, 6, 4, 3, 2)
    gd, ins, outs = build(f, (None, 8, 8, 3), outputs=3)
    from tfq8.passes import PassContext
    r = MoveStrides().run(gd, PassContext(ins, outs))
    assert not r.changed and not r.notes and r.graph_def is gd


# ---------------------------------------------------------------- real models
def test_keras_applications(app, rel_err):
    prev, cur = app.graphs["fold_batchnorm"], app.graphs["move_strides"]
    r = app.results["move_strides"]
    if app.name == "ResNet50":
        # Keras ResNet50 (Keras 3 applications): conv{3,4,5}_block1 start with two 1×1 stride-2
        # convs (_0 shortcut and _1) reading the previous block's output.
        assert r.changed and len(r.rewrites) == 3
        assert len(node(cur, "StridedSlice")) == 3
        before, after = count_macs(prev, batch=1).total, count_macs(cur, batch=1).total
        drop = 1 - after / before
        assert 0.08 <= drop <= 0.12, drop
        ref, got = app.outputs("fold_batchnorm"), app.outputs("move_strides")
        for b in BATCHES:
            assert rel_err(got[b], ref[b]) <= 1e-4, b
    else:  # no 1×1 strided convs: untouched
        assert not r.changed and cur is prev
