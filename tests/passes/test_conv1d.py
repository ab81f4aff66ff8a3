"""conv1d: 1-D conv networks (tf.nn.conv1d's ExpandDims → Conv2D → Squeeze) become 4-D graphs
with the same values, so batch norms fold, activations fuse, residual adds become summands and
the whole network runs INT8 between one Quantize and the output."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import Conv1DAs2D, PassContext, Pipeline, default_pipeline
from tests.conftest import _run_graph
from tests.passes.conftest import randomize
from tests.passes.helpers import apply, build, ops
from tests.passes.int8_graph import cosine_rows

L = keras.layers
RNG = np.random.default_rng(31)


def rand(*shape):
    # own generator: helpers.rand's shared one would shift other test files' data
    return RNG.normal(size=shape).astype(np.float32)


def _seq(shape, *layers):
    inp = keras.Input(shape)
    y = inp
    for layer in layers:
        y = layer(y)
    return keras.Model(inp, y)


def _bn_pool():
    return _seq((40, 6), L.Conv1D(12, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                L.MaxPooling1D(2), L.Conv1D(16, 5, strides=2, activation="relu"),
                L.GlobalAveragePooling1D(), L.Dense(5))


def _residual_dilated():
    # WaveNet/TCN-like: causal dilated convs (TF's space-to-batch form), residual adds whose
    # other operand is an earlier conv's output, a global max pool
    inp = keras.Input((48, 4))
    y = L.Conv1D(16, 1, activation="relu")(inp)
    for rate in (1, 2, 4):
        z = L.Conv1D(16, 3, padding="causal", dilation_rate=rate)(y)
        z = L.BatchNormalization()(z)
        y = L.ReLU()(L.Add()([y, z]))
    return keras.Model(inp, L.Dense(3)(L.GlobalMaxPooling1D()(y)))


def _separable_concat():
    inp = keras.Input((32, 8))
    a = L.SeparableConv1D(12, 5, padding="same", activation="relu")(inp)
    b = L.DepthwiseConv1D(3, padding="same")(inp)
    b = L.Activation("swish")(L.BatchNormalization()(b))
    y = L.Concatenate()([a, b])
    y = L.AveragePooling1D(2)(y)
    y = L.Conv1D(8, 3, padding="same", activation="relu6")(y)
    return keras.Model(inp, L.Dense(4)(L.Flatten()(y)))


def _keepdims_mean():
    inp = keras.Input((24, 5))
    y = L.Conv1D(8, 3, padding="same", activation="relu")(inp)
    g = L.GlobalAveragePooling1D(keepdims=True)(y)            # [N, 1, 8]: a gate
    y = L.Multiply()([y, L.Conv1D(8, 1, activation="sigmoid")(g)])
    return keras.Model(inp, L.Conv1D(3, 3)(y))


MODELS = {"bn_pool": _bn_pool, "residual_dilated": _residual_dilated,
          "separable_concat": _separable_concat, "keepdims_mean": _keepdims_mean}


def _frozen(name):
    keras.utils.set_random_seed(32)
    model = MODELS[name]()
    randomize(model)
    return model, load_model(model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_dimensional_chains_become_four_dimensional_with_the_same_values(name, run_graph,
                                                                              rel_err):
    model, frozen = _frozen(name)
    assert "Squeeze" in ops(frozen.graph_def)
    feeds = {frozen.inputs[0].tensor: rand(2, *model.input.shape[1:])}
    r = apply(Conv1DAs2D(), frozen.graph_def, [t.tensor for t in frozen.inputs],
              [t.tensor for t in frozen.outputs], run_graph, rel_err, tol=1e-6, feeds=feeds)
    counts = ops(r.graph_def)
    # what is left: one ExpandDims per model input, at most one Squeeze in front of a
    # consumer that cannot move (the Flatten's Reshape reads the 4-D tensor; its Shape stays)
    assert counts.get("ExpandDims", 0) == 1, counts
    assert counts.get("Squeeze", 0) <= 1, counts
    for n in r.graph_def.node:
        if n.op in ("Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool"):
            src = n.input[0].split(":")[0]
            producer = next(p for p in r.graph_def.node if p.name == src)
            assert producer.op != "Squeeze", n.name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_whole_pipeline_folds_and_fuses_and_keeps_the_model_output(name):
    model, frozen = _frozen(name)
    r = default_pipeline().run(frozen.graph_def, PassContext.for_model(frozen))
    counts = ops(r.graph_def)
    # dilated convs are one conv each; batch norms folded (no Mul left but the gate's);
    # activations fused (residual adds and their ReLUs stay: the quantizer fuses those)
    assert counts.get("Squeeze", 0) <= 1 and "BatchToSpaceND" not in counts, counts
    assert counts.get("Mul", 0) == (name in ("keepdims_mean", "separable_concat")), counts
    assert counts.get("Relu", 0) == (3 if name == "residual_dilated" else 0), counts
    x = RNG.normal(0, 1, (3,) + tuple(model.input.shape[1:])).astype(np.float32)
    got = _run_graph(r.graph_def, {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor])[0]
    want = model(x, training=False).numpy()
    # folding reorders float sums: ~1e-6 relative
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", ["bn_pool", "residual_dilated", "separable_concat"])
def test_one_dimensional_networks_run_int8_end_to_end(name):
    model, frozen = _frozen(name)
    n_frozen = sum(ops(frozen.graph_def).get(op, 0) for op in ("Conv2D", "DepthwiseConv2dNative"))
    x = RNG.normal(0, 1, (48,) + tuple(model.input.shape[1:])).astype(np.float32)
    q = tfq8.quantize(model, x[:32], tfq8.QuantConfig(verbose=False, method="minmax"))
    counts = ops(q.graph_def)
    fp32 = {op: c for op, c in counts.items() if not op.startswith("Tfq8")
            and op not in ("Const", "Placeholder", "Identity", "ExpandDims", "Max", "Reshape",
                           "Shape", "StridedSlice", "Pack", "Squeeze")}
    assert not fp32, fp32
    # one Quantize at the input, no Dequantize → Quantize between layers
    assert counts.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in counts, counts
    n_conv = sum(counts.get(op, 0) for op in ("Tfq8Conv2D", "Tfq8DepthwiseConv2D"))
    assert n_conv == n_frozen, counts
    cos = cosine_rows(model(x[32:]).numpy(), q(x[32:]).numpy())
    # a few INT8 layers on random weights: ~1e-3 relative noise each
    assert cos.min() >= 0.995, cos


def _conv1d(x, c_out=6, seed=0):
    w = np.random.default_rng(seed).normal(0, 0.3, (1, 3, x.shape[-1], c_out)).astype(np.float32)
    y = tf.nn.conv2d(tf.expand_dims(x, 1), w, 1, "SAME")
    return tf.squeeze(y, [1])


GRAPH_CASES = {
    # push down through unary, binary with rank-0/1/3 constants, BiasAdd, Cast round trip
    "elementwise": lambda x: _conv1d(tf.cast(tf.cast(tf.nn.bias_add(
        tf.nn.relu(_conv1d(x)) * rand(6) + rand(1, 1, 6) - 0.5, rand(6)), tf.float64),
        tf.float32)),
    # a rank-3 non-constant operand that is not a Squeeze gets its own ExpandDims
    "rank3_operand": lambda x: _conv1d(_conv1d(x, 4) + x[:, :, :4] * 2.0),
    # pull up through Pad and space-to-batch, push down through batch-to-space
    "pad_space_batch": lambda x: tf.nn.relu(tf.squeeze(tf.nn.conv2d(tf.expand_dims(
        tf.space_to_batch_nd(tf.pad(x, [[0, 0], [2, 0], [0, 0]]), [2], [[0, 0]]), 1),
        rand(1, 3, 4, 5), 1, "VALID"), [1])),
    # concat over the channels and over the length; reductions with and without keep_dims
    "concat_reduce": lambda x: tf.concat([
        tf.reduce_mean(_conv1d(x), axis=1, keepdims=True),
        tf.reduce_max(tf.concat([_conv1d(x, seed=1), _conv1d(x, seed=2)], axis=1), axis=[1],
                      keepdims=True) + tf.reduce_sum(_conv1d(x, seed=3), axis=-1,
                                                     keepdims=True)[:, :1]], axis=-1),
    "reduce_no_keepdims": lambda x: tf.reduce_min(_conv1d(x), axis=[0, 1]) + tf.reduce_sum(
        tf.nn.relu(_conv1d(x, seed=4)), axis=-1)[0, :6],
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_each_moved_op_keeps_its_values(case, run_graph, rel_err):
    g, ins, outs = build(GRAPH_CASES[case], [None, 16, 4])
    r = apply(Conv1DAs2D(), g, ins, outs, run_graph, rel_err, tol=1e-6,
              feeds={ins[0]: rand(2, 16, 4)})
    assert r.changed and r.rewrites


def test_a_squeeze_that_is_a_graph_output_and_other_axes_are_left_alone(run_graph, rel_err):
    def fn(x):
        s = _conv1d(x)                                              # an output itself
        t = tf.squeeze(tf.nn.conv2d(tf.expand_dims(x, 2), rand(3, 1, 4, 6), 1, "SAME"), [2])
        return s, tf.nn.relu(t)                                     # axis 2: not handled
    g, ins, outs = build(fn, [None, 16, 4])
    r = apply(Conv1DAs2D(), g, ins, outs, run_graph, rel_err, tol=0.0,
              feeds={ins[0]: rand(2, 16, 4)})
    counts = ops(r.graph_def)
    assert counts["Squeeze"] == 2 and counts["Relu"] == 1, counts
    (relu,) = [n for n in r.graph_def.node if n.op == "Relu"]
    assert relu.input[0].split(":")[0].endswith("Squeeze_1"), relu.input


def test_graph_without_unit_axes_is_returned_unchanged():
    g, ins, outs = build(lambda x: tf.nn.relu(tf.nn.conv2d(x, rand(3, 3, 3, 4), 1, "SAME")),
                         [None, 8, 8, 3])
    r = Pipeline([Conv1DAs2D()]).run(g, PassContext(ins, outs))
    assert not r.changed and r.graph_def is g
