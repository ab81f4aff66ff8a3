"""fold_batchnorm: each rule on a hand-built graph, the refusals, Keras 3 and tf-keras models.

Tolerances: hand-built graphs 1e-5 of the output magnitude (folding only reorders float32
products and sums of O(1) values); Keras applications 1e-4 (the project's FP32 bar; ~50 layers
of reordered rounding)."""
import numpy as np
import pytest
import tensorflow as tf

from tfq8.passes import FoldBatchNorm

from tests.passes.conftest import BATCHES
from tests.passes.helpers import apply, build, ops, rand

EPS = 1e-3


def bn_params(c):
    return (rand(c, lo=0.5, hi=1.5), rand(c) * 0.1, rand(c) * 0.1, rand(c, lo=0.5, hi=1.5))


def fused_bn(x, c, is_training=False, name=None):
    gamma, beta, mean, var = bn_params(c)
    if is_training:
        return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=EPS, is_training=True,
                                                name=name)[0]
    return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean, var, epsilon=EPS,
                                            is_training=False, name=name)[0]


def keras3_bn(x, c):
    """Keras 3's decomposed BN, with the constant subgraph left unfolded (Rsqrt, Sub...)."""
    gamma, beta, mean, var = (tf.constant(v) for v in bn_params(c))
    inv = tf.math.rsqrt(var + EPS) * gamma
    return x * inv + (beta - mean * inv)


def conv(x, cin, cout, k=3, padding="SAME", stride=1):
    return tf.nn.conv2d(x, rand(k, k, cin, cout), stride, padding)


def run(pass_graph, run_graph, rel_err, tol=1e-5):
    return apply(FoldBatchNorm(), *pass_graph, run_graph, rel_err, tol=tol)


# ---------------------------------------------------------------- backward folds
def test_conv_fused_batchnorm_v3(run_graph, rel_err):
    g = build(lambda x: tf.nn.relu(fused_bn(conv(x, 3, 8), 8)), (None, 8, 8, 3))
    assert ops(g[0])["FusedBatchNormV3"] == 1
    r = run(g, run_graph, rel_err)
    assert r.changed and "FusedBatchNormV3" not in ops(r.graph_def)
    assert ops(r.graph_def)["BiasAdd"] == 1 and ops(r.graph_def)["Conv2D"] == 1
    assert len(r.rewrites) == 1 and "FusedBatchNormV3" in r.rewrites[0].message


def test_conv_bias_keras3_decomposed_bn_with_constant_subgraphs(run_graph, rel_err):
    g = build(lambda x: tf.nn.relu(keras3_bn(tf.nn.bias_add(conv(x, 3, 8), rand(8)), 8)),
              (None, 8, 8, 3))
    assert "Rsqrt" in ops(g[0])
    r = run(g, run_graph, rel_err)
    o = ops(r.graph_def)
    assert "Mul" not in o and "AddV2" not in o and "Rsqrt" not in o and o["BiasAdd"] == 1


def test_conv_mul_add_sub_chain_and_scalar_constants(run_graph, rel_err):
    g = build(lambda x: (conv(x, 3, 4) * 2.5 - rand(4)) * rand(1, 1, 1, 4) + 0.5,
              (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert set(ops(r.graph_def)) == {"Placeholder", "Const", "Conv2D", "BiasAdd", "Identity"}


def test_depthwise_with_channel_multiplier(run_graph, rel_err):
    # Filter [3, 3, C=3, m=2]: output channel c·m + j, so the BN scale must be reshaped [C, m].
    g = build(lambda x: fused_bn(tf.nn.depthwise_conv2d(x, rand(3, 3, 3, 2), [1, 1, 1, 1],
                                                        "SAME"), 6), (None, 7, 7, 3))
    r = run(g, run_graph, rel_err)
    assert "FusedBatchNormV3" not in ops(r.graph_def)
    assert ops(r.graph_def)["DepthwiseConv2dNative"] == 1


@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_bias_mul_add(run_graph, rel_err, transpose_b):
    w = rand(6, 5) if transpose_b else rand(5, 6)
    g = build(lambda x: tf.matmul(x, w, transpose_b=transpose_b) * rand(6) + rand(6),
              (None, 5))
    r = run(g, run_graph, rel_err)
    assert set(ops(r.graph_def)) == {"Placeholder", "Const", "MatMul", "BiasAdd", "Identity"}


# ---------------------------------------------------------------- refusals
def test_refuses_when_conv_output_has_another_consumer(run_graph, rel_err):
    def f(x):
        y = conv(x, 3, 4)
        return fused_bn(y, 4), tf.nn.relu(y)
    r = run(build(f, (None, 6, 6, 3), outputs=2), run_graph, rel_err)
    assert any("not folded" in n.message and "2 consumers" in n.message for n in r.refusals)
    assert ops(r.graph_def)["Conv2D"] == 1 and "Mul" in ops(r.graph_def)  # BN became an affine


def test_refuses_batchnorm_with_control_dependency(run_graph, rel_err):
    gd, ins, outs = build(lambda x: fused_bn(conv(x, 3, 4), 4, name="bn"), (None, 6, 6, 3))
    next(n for n in gd.node if n.name == "bn").input.append("^x0")
    r = run((gd, ins, outs), run_graph, rel_err)
    assert ops(r.graph_def)["FusedBatchNormV3"] == 1
    assert any("control inputs" in n.message for n in r.refusals)


def test_refuses_non_constant_weights(run_graph, rel_err):
    g = build(lambda x, w: keras3_bn(tf.nn.conv2d(x, w, 1, "SAME"), 4),
              (None, 6, 6, 3), (3, 3, 3, 4))
    r = run(g, run_graph, rel_err)
    assert any("not constant" in n.message for n in r.refusals)
    assert "Mul" in ops(r.graph_def)


def test_refuses_constant_that_is_not_per_channel(run_graph, rel_err):
    g = build(lambda x: conv(x, 3, 4) * rand(1, 6, 6, 4), (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert not r.changed
    assert any("not per-channel" in n.message for n in r.refusals)


def test_refuses_training_mode_batchnorm(run_graph, rel_err):
    g = build(lambda x: fused_bn(conv(x, 3, 4), 4, is_training=True), (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert not r.changed and any("is_training" in n.message for n in r.refusals)


def test_refuses_when_intermediate_is_a_graph_output(run_graph, rel_err):
    def f(x):
        y = tf.identity(conv(x, 3, 4) * rand(4), name="scaled")
        return y + rand(4)
    gd, ins, outs = build(f, (None, 6, 6, 3))
    r = apply(FoldBatchNorm(), gd, ins, outs + ["scaled:0"], run_graph, rel_err)
    assert "scaled" in [n.name for n in r.graph_def.node]


# ---------------------------------------------------------------- standalone / forward
def test_standalone_batchnorm_becomes_affine(run_graph, rel_err):
    g = build(lambda x: tf.nn.relu(fused_bn(x, 3)), (None, 5, 5, 3))
    r = run(g, run_graph, rel_err)
    o = ops(r.graph_def)
    assert "FusedBatchNormV3" not in o and o["Mul"] == 1 and o["AddV2"] == 1
    assert any("per-channel affine not folded" in n.message and "Relu" in n.message
               for n in r.refusals)


@pytest.mark.parametrize("padding", ["VALID", "EXPLICIT"])
def test_affine_folds_forward_into_unpadded_conv(run_graph, rel_err, padding):
    pad = "VALID" if padding == "VALID" else [[0, 0], [0, 0], [0, 0], [0, 0]]
    g = build(lambda x: tf.nn.conv2d(fused_bn(x, 3), rand(3, 3, 3, 4), 1, pad),
              (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    o = ops(r.graph_def)
    assert "Mul" not in o and "AddV2" not in o and o["BiasAdd"] == 1
    assert any("folded forward" in n.message for n in r.rewrites)


def test_affine_folds_forward_into_1x1_same_conv_and_depthwise_valid(run_graph, rel_err):
    def f(x):
        a = fused_bn(x, 3)
        return conv(a, 3, 4, k=1), tf.nn.depthwise_conv2d(a, rand(3, 3, 3, 2), [1, 1, 1, 1],
                                                          "VALID")
    r = run(build(f, (None, 6, 6, 3), outputs=2), run_graph, rel_err)
    assert "Mul" not in ops(r.graph_def) and ops(r.graph_def)["BiasAdd"] == 2


def test_affine_forward_fold_refused_where_padding_makes_it_inexact(run_graph, rel_err):
    g = build(lambda x: conv(fused_bn(x, 3), 3, 4, k=3, padding="SAME"), (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert ops(r.graph_def)["Mul"] == 1
    assert any("pads its input" in n.message for n in r.refusals)


def test_scale_only_affine_folds_forward_even_with_padding(run_graph, rel_err):
    g = build(lambda x: conv(x * rand(3, lo=0.5, hi=2.0), 3, 4, k=3, padding="SAME"),
              (None, 6, 6, 3))
    r = run(g, run_graph, rel_err)
    assert "Mul" not in ops(r.graph_def) and "BiasAdd" not in ops(r.graph_def)


def test_affine_folds_forward_into_matmul(run_graph, rel_err):
    g = build(lambda x: tf.matmul(x * rand(5) + rand(5), rand(5, 3)), (None, 5))
    r = run(g, run_graph, rel_err)
    assert set(ops(r.graph_def)) == {"Placeholder", "Const", "MatMul", "BiasAdd", "Identity"}


def test_keras3_graph_without_grappler(run_graph, rel_err):
    """Frozen but not Grappler-cleaned: BN constants are Identity/Reshape/Squeeze/Rsqrt/Sub
    subgraphs of Consts, which the pass evaluates itself."""
    import keras
    from tfq8.frontend import load_model
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization()])
    bn = model.layers[1]
    for v, value in ((bn.moving_mean, rand(4) * .1), (bn.moving_variance, rand(4, lo=.5, hi=1.5)),
                     (bn.gamma, rand(4, lo=.5, hi=1.5)), (bn.beta, rand(4) * .1)):
        v.assign(value)
    frozen = load_model(model, optimize=False)
    assert {"Rsqrt", "Squeeze", "Sub"} <= set(ops(frozen.graph_def))
    r = apply(FoldBatchNorm(), frozen.graph_def, frozen.input_tensors, frozen.output_tensors,
              run_graph, rel_err)
    assert {"Rsqrt", "Mul", "Sub"}.isdisjoint(ops(r.graph_def)) and len(r.rewrites) == 1


# ---------------------------------------------------------------- through a channel concat
# Own generator: drawing from helpers.rand here would shift the data of the tests after these.
CAT_RNG = np.random.default_rng(77)


def crand(*shape, lo=None, hi=None):
    if lo is not None:
        return CAT_RNG.uniform(lo, hi, shape).astype(np.float32)
    return CAT_RNG.normal(size=shape).astype(np.float32)


def run_cat(g, run_graph, rel_err):
    feeds = {g[1][0]: crand(*feed_shape(g[0]))}
    return apply(FoldBatchNorm(), *g, run_graph, rel_err, feeds=feeds)


def feed_shape(graph_def):
    (x,) = [n for n in graph_def.node if n.op == "Placeholder"]
    return [d.size if d.size >= 0 else 2 for d in x.attr["shape"].shape.dim]


def cat_bn_params(c):
    return (crand(c, lo=0.5, hi=1.5), crand(c) * 0.1, crand(c) * 0.1, crand(c, lo=0.5, hi=1.5))


def test_batchnorm_after_concat_of_convs_folds_into_each_branch(run_graph, rel_err):
    """NASNet's 'adjust' block: two 1×1 convs (one with a bias here), concatenated, one BN."""
    def f(x):
        a = tf.nn.conv2d(x, crand(1, 1, 3, 4), 1, "VALID")
        b = tf.nn.bias_add(tf.nn.conv2d(x, crand(3, 3, 3, 6), 1, "SAME"), crand(6))
        gamma, beta, mean, var = cat_bn_params(10)
        return tf.compat.v1.nn.fused_batch_norm(tf.concat([a, b], -1), gamma, beta, mean, var,
                                                epsilon=EPS, is_training=False)[0]
    r = run_cat(build(f, (None, 6, 6, 3)), run_graph, rel_err)
    o = ops(r.graph_def)
    assert "FusedBatchNormV3" not in o and "Mul" not in o and "AddV2" not in o
    assert o["ConcatV2"] == 1 and o["Conv2D"] == 2 and o["BiasAdd"] == 2
    assert any("split into its 2 branches" in n.message for n in r.rewrites)


def test_keras3_affine_after_concat_of_matmuls_folds(run_graph, rel_err):
    def f(x):
        y = tf.concat([tf.matmul(x, crand(5, 3)), tf.matmul(x, crand(5, 5), transpose_b=True)], 1)
        return y * crand(8, lo=0.5, hi=2.0) + crand(8)
    r = run_cat(build(f, (None, 5)), run_graph, rel_err)
    o = ops(r.graph_def)
    assert "Mul" not in o and "AddV2" not in o and o["BiasAdd"] == 2


@pytest.mark.parametrize("case", ["other_input", "spatial_axis", "branch_read_twice"])
def test_affine_after_concat_stays_where_it_cannot_fold(run_graph, rel_err, case):
    def f(x):
        a = tf.nn.conv2d(x, crand(1, 1, 3, 4), 1, "VALID")
        b = x if case == "other_input" else tf.nn.conv2d(x, crand(1, 1, 3, 4), 1, "VALID")
        y = tf.concat([a, b], 1 if case == "spatial_axis" else 3)
        y = y * crand(a.shape[-1] + b.shape[-1] if case != "spatial_axis" else 4, lo=0.5, hi=2.)
        return (y, tf.nn.relu(a)) if case == "branch_read_twice" else y
    g = build(f, (None, 6, 6, 3), outputs=2 if case == "branch_read_twice" else 1)
    r = run_cat(g, run_graph, rel_err)
    assert ops(r.graph_def)["Mul"] == 1
    assert not any("branches" in n.message for n in r.rewrites)


@pytest.mark.parametrize("bias", [True, False])
def test_difference_of_a_conv_becomes_a_sum_with_negated_weights(run_graph, rel_err, bias):
    """a − conv(x) [+ b] ⇒ a + conv(x; −W) [+ (−b)]: negation is exact in float, so the outputs
    are equal bit for bit (tolerance 0)."""
    w, b = crand(3, 3, 3, 4), crand(4)

    def f(x):
        a = tf.nn.relu(tf.nn.conv2d(x, crand(1, 1, 3, 4), 1, "SAME"))
        z = tf.nn.conv2d(x, w, 1, "SAME")
        return a - (tf.nn.bias_add(z, b) if bias else z)
    g = build(f, (None, 6, 6, 3))
    r = apply(FoldBatchNorm(), *g, run_graph, rel_err, tol=0.0,
              feeds={g[1][0]: crand(*feed_shape(g[0]))})
    o = ops(r.graph_def)
    assert "Sub" not in o and o["AddV2"] == 1
    assert any("negated weights" in n.message for n in r.rewrites)


def test_difference_stays_when_the_conv_has_another_reader(run_graph, rel_err):
    def f(x):
        z = tf.nn.conv2d(x, crand(3, 3, 3, 4), 1, "SAME")
        return x[..., :1] - z, tf.nn.relu(z)
    g = build(f, (None, 6, 6, 3), outputs=2)
    r = apply(FoldBatchNorm(), *g, run_graph, rel_err, feeds={g[1][0]: crand(2, 6, 6, 3)})
    assert ops(r.graph_def)["Sub"] == 1


# ---------------------------------------------------------------- real models
def test_keras_applications_equivalence(app, rel_err):
    """Folded graph vs frozen graph, batch 1 and 4, within 1e-4 of the logits' magnitude."""
    ref, got = app.outputs("frozen"), app.outputs("fold_batchnorm")
    for b in BATCHES:
        assert rel_err(got[b], ref[b]) <= 1e-4, (app.name, b)
    o = ops(app.graphs["fold_batchnorm"])
    r = app.results["fold_batchnorm"]
    assert "FusedBatchNormV3" not in o
    if app.name == "ResNet50V2":  # 16 pre-activation BNs + post_bn stay as affines (FP32)
        assert o["Mul"] == 17 and len(r.refusals) == 17
    else:  # every BN folded
        assert "Mul" not in o and not r.refusals
        n_bn = {"ResNet50": 53, "MobileNetV2": 52, "InceptionV3": 94}[app.name]
        assert len(r.rewrites) == n_bn


def test_tf_keras_fused_batchnorm_v3_model(run_graph, rel_err):
    """tf-keras (Keras 2) emits FusedBatchNormV3: conv/depthwise/dense + BN, a pre-activation
    BN, and a BN on the input folded forward into a VALID conv."""
    import tf_keras as k2
    from tfq8.frontend import load_model

    inp = k2.Input((12, 12, 3), name="image")
    x = k2.layers.BatchNormalization()(inp)                       # forward into VALID conv
    x = k2.layers.Conv2D(8, 3, padding="valid")(x)
    x = k2.layers.BatchNormalization()(x)
    x = k2.layers.ReLU()(x)
    x = k2.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False)(x)
    x = k2.layers.BatchNormalization()(x)
    x = k2.layers.ReLU()(x)
    x = k2.layers.BatchNormalization()(x)                         # pre-activation: stays
    x = k2.layers.ReLU()(x)
    x = k2.layers.GlobalAveragePooling2D()(x)
    x = k2.layers.Dense(5)(x)
    out = k2.layers.BatchNormalization()(x)
    model = k2.Model(inp, out)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, k2.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, .1, c),
                               rng.normal(0, .1, c), rng.uniform(0.5, 1.5, c)])
    frozen = load_model(model)
    # 4 FusedBatchNormV3 (rank-4 inputs); the BN after Dense is decomposed by tf-keras itself.
    assert ops(frozen.graph_def)["FusedBatchNormV3"] == 4
    x = rng.uniform(-1, 1, (4, 12, 12, 3)).astype(np.float32)
    r = apply(FoldBatchNorm(), frozen.graph_def, frozen.input_tensors, frozen.output_tensors,
              run_graph, rel_err, tol=1e-5, feeds={frozen.input_tensors[0]: x})
    o = ops(r.graph_def)
    assert "FusedBatchNormV3" not in o and o["Mul"] == 1, (o, r.notes)  # pre-activation
    # conv, depthwise, dense: folded backward; input BN: → affine → folded forward (2 notes);
    # pre-activation BN: → affine (1 rewrite) kept before its Relu (1 refusal).
    assert len(r.rewrites) == 6 and len(r.refusals) == 1, r.notes
    keras_out = model(x, training=False).numpy()
    graph_out = run_graph(r.graph_def, {frozen.input_tensors[0]: x}, frozen.output_tensors)[0]
    assert rel_err(graph_out, keras_out) <= 1e-5
