"""fuse_activations: the fused nodes run on stock TF CPU with the same values; refusals; groups.

Tolerance: 1e-5 of the output magnitude on hand-built graphs (TF's fused kernel may use a
different conv algorithm than the unfused one); 1e-4 on the Keras applications."""
import numpy as np
import pytest
import tensorflow as tf

from tfq8.graph import get_attr
from tfq8.passes import FuseActivations, fusion_groups

from tests.passes.conftest import BATCHES
from tests.passes.helpers import apply, build, ops, rand


def run(g, run_graph, rel_err, tol=1e-5):
    return apply(FuseActivations(), *g, run_graph, rel_err, tol=tol)


def conv_bias(x, cin=3, cout=6, **kw):
    return tf.nn.bias_add(tf.nn.conv2d(x, rand(3, 3, cin, cout), kw.pop("strides", 1),
                                       kw.pop("padding", "SAME"), **kw), rand(6))


@pytest.mark.parametrize("act", [None, "Relu", "Relu6"])
@pytest.mark.parametrize("conv_kw", [{}, {"padding": [[0, 0], [1, 0], [0, 1], [0, 0]],
                                          "strides": 2}, {"dilations": 2}],
                         ids=["same", "explicit_stride2", "dilated"])
def test_conv2d_bias_activation(run_graph, rel_err, act, conv_kw):
    fn = {None: tf.identity, "Relu": tf.nn.relu, "Relu6": tf.nn.relu6}[act]
    gd, ins, outs = build(lambda x: fn(conv_bias(x, **dict(conv_kw)), name="last"),
                          (None, 9, 9, 3))
    r = run((gd, ins, outs), run_graph, rel_err)
    fused = [n for n in r.graph_def.node if n.op == "_FusedConv2D"]
    assert len(fused) == 1 and "Conv2D" not in ops(r.graph_def) and "BiasAdd" not in ops(r.graph_def)
    f = fused[0]
    assert get_attr(f, "fused_ops") == ["BiasAdd"] + ([act] if act else [])
    assert f.name == ("last" if act else "BiasAdd")  # the last matched node's name
    assert get_attr(f, "num_args") == 1 and get_attr(f, "TArgs") == [tf.float32]
    assert get_attr(f, "num_host_args") == 0 and get_attr(f, "filter_format") == "HWIO"
    assert len(f.input) == 3
    groups = fusion_groups(r.graph_def)
    assert [(g.kind, g.output, g.activation) for g in groups] == [("conv2d", f.name, act)]


@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_bias_relu6(run_graph, rel_err, transpose_b):
    w = rand(4, 5) if transpose_b else rand(5, 4)
    g = build(lambda x: tf.nn.relu6(tf.nn.bias_add(tf.matmul(x, w, transpose_b=transpose_b),
                                                   rand(4))), (None, 5))
    r = run(g, run_graph, rel_err)
    f = [n for n in r.graph_def.node if n.op == "_FusedMatMul"]
    assert len(f) == 1 and get_attr(f[0], "fused_ops") == ["BiasAdd", "Relu6"]
    assert get_attr(f[0], "transpose_b") == transpose_b


def test_depthwise_chain_is_kept_and_reported_as_a_group(run_graph, rel_err):
    g = build(lambda x: tf.nn.relu6(tf.nn.bias_add(
        tf.nn.depthwise_conv2d(x, rand(3, 3, 3, 2), [1, 1, 1, 1], "SAME"), rand(6))),
        (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert not r.changed
    assert any("depthwise group" in n.message for n in r.notes if n.kind == "info")
    (grp,) = fusion_groups(r.graph_def)
    assert grp.kind == "depthwise" and grp.activation == "Relu6"
    assert [ops_ for ops_ in (n.op for n in g[0].node if n.name in grp.nodes)] == [
        "DepthwiseConv2dNative", "BiasAdd", "Relu6"]


# ---------------------------------------------------------------- refusals
def test_bias_with_other_consumer_fuses_without_activation(run_graph, rel_err):
    def f(x):
        b = conv_bias(x)
        return tf.nn.relu(b), b * 2.0
    r = run(build(f, (None, 6, 6, 3), outputs=2), run_graph, rel_err)
    f_ = [n for n in r.graph_def.node if n.op == "_FusedConv2D"]
    assert len(f_) == 1 and get_attr(f_[0], "fused_ops") == ["BiasAdd"]
    assert ops(r.graph_def)["Relu"] == 1
    assert any("other consumers" in n.message for n in r.refusals)


def test_conv_with_other_consumer_is_not_fused(run_graph, rel_err):
    def f(x):
        c = tf.nn.conv2d(x, rand(3, 3, 3, 6), 1, "SAME")
        return tf.nn.relu(tf.nn.bias_add(c, rand(6))), c
    r = run(build(f, (None, 6, 6, 3), outputs=2), run_graph, rel_err)
    assert not r.changed and any("other consumers" in n.message for n in r.refusals)


def test_control_dependency_refused(run_graph, rel_err):
    gd, ins, outs = build(lambda x: tf.nn.relu(conv_bias(x), name="act"), (None, 6, 6, 3))
    next(n for n in gd.node if n.name == "BiasAdd").input.append("^x0")
    r = run((gd, ins, outs), run_graph, rel_err)
    assert not r.changed and any("control inputs" in n.message for n in r.refusals)


def test_non_constant_weights_refused(run_graph, rel_err):
    g = build(lambda x, w: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), rand(6))),
              (None, 6, 6, 3), (3, 3, 3, 6))
    r = run(g, run_graph, rel_err)
    assert not r.changed and any("not a constant" in n.message for n in r.refusals)


def test_graph_output_intermediate_keeps_activation_separate(run_graph, rel_err):
    gd, ins, outs = build(lambda x: tf.nn.relu(conv_bias(x)), (None, 6, 6, 3))
    r = apply(FuseActivations(), gd, ins, outs + ["BiasAdd:0"], run_graph, rel_err)
    assert get_attr(next(n for n in r.graph_def.node if n.name == "BiasAdd"),
                    "fused_ops") == ["BiasAdd"]
    assert ops(r.graph_def)["Relu"] == 1


# own generator: drawing from helpers.rand here would shift the data of the tests after these
CAT_RNG = np.random.default_rng(91)


def crand(*shape):
    return CAT_RNG.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("axis", [3, 1])
def test_activation_after_concat_moves_into_branches_and_fuses(run_graph, rel_err, axis):
    """Relu6(Concat(conv → bias, depthwise → bias)) ⇒ Concat(_FusedConv2D[Relu6], depthwise →
    bias → Relu6), on the channel or a spatial axis (an elementwise op commutes with either)."""
    def f(x):
        a = tf.nn.bias_add(tf.nn.conv2d(x, crand(3, 3, 3, 3), 1, "SAME"), crand(3))
        b = tf.nn.bias_add(tf.nn.depthwise_conv2d(x, crand(3, 3, 3, 1), [1, 1, 1, 1], "SAME"),
                           crand(3))
        return tf.nn.relu6(tf.concat([a, b], axis), name="last")
    r = apply(FuseActivations(), *build(f, (None, 6, 6, 3)), run_graph, rel_err, tol=1e-5,
              feeds={"x0:0": crand(2, 6, 6, 3)})
    o = ops(r.graph_def)
    assert o["_FusedConv2D"] == 1 and o["Relu6"] == 1 and o["ConcatV2"] == 1
    assert any("moved into its branches" in n.message for n in r.rewrites)
    groups = {g.kind: g for g in fusion_groups(r.graph_def)}
    assert groups["conv2d"].activation == "Relu6" and groups["depthwise"].activation == "Relu6"


def test_activation_after_concat_stays_when_a_branch_cannot_fuse(run_graph, rel_err):
    def f(x):
        a = tf.nn.bias_add(tf.nn.conv2d(x, crand(3, 3, 3, 3), 1, "SAME"), crand(3))
        return tf.nn.relu(tf.concat([a, x], 3), name="last")
    r = apply(FuseActivations(), *build(f, (None, 6, 6, 3)), run_graph, rel_err, tol=1e-5,
              feeds={"x0:0": crand(2, 6, 6, 3)})
    o = ops(r.graph_def)
    assert o["Relu"] == 1 and o["_FusedConv2D"] == 1
    assert not any("moved into its branches" in n.message for n in r.rewrites)


# ---------------------------------------------------------------- real models
def test_keras_applications(app, rel_err):
    ref, got = app.outputs("move_strides"), app.outputs("fuse_activations")
    for b in BATCHES:
        assert rel_err(got[b], ref[b]) <= 1e-4, b
    g = app.graphs["fuse_activations"]
    o = ops(g)
    assert "Conv2D" not in o and "MatMul" not in o and o["_FusedMatMul"] == 1
    n_conv = {"ResNet50": 53, "ResNet50V2": 53, "MobileNetV2": 35, "InceptionV3": 94}[app.name]
    assert o["_FusedConv2D"] == n_conv
    groups = fusion_groups(g, app.ctx.outputs)
    n_dw = 17 if app.name == "MobileNetV2" else 0
    assert sum(gr.kind == "depthwise" for gr in groups) == n_dw
    assert o.get("BiasAdd", 0) == n_dw  # every bias is inside a group
    # End to end: the frozen graph vs all three passes.
    first = app.outputs("frozen")
    for b in BATCHES:
        assert rel_err(got[b], first[b]) <= 1e-4, b
