"""dedupe: nodes computing the same value are merged; stateful ops, different constants, control
edges and graph outputs are not. Merging is exact, so outputs are compared for equality."""
import collections

import keras
import numpy as np
import tensorflow as tf

import tfq8
from tfq8.passes import Dedupe, PassContext
from tests.passes.helpers import apply, build, ops
from tests.passes.int8_graph import cosine_rows

L = keras.layers
RNG = np.random.default_rng(57)


def rand(*shape):
    # own generator: helpers.rand's shared one would shift other test files' data
    return RNG.normal(size=shape).astype(np.float32)


def test_repeated_activations_and_pads_merge_in_one_sweep(run_graph, rel_err):
    """NASNet-style: one ReLU per branch of the same tensor, each padded by its own (equal)
    constant; the copies collapse level by level."""
    w1, w2 = rand(3, 3, 4, 4), rand(3, 3, 4, 4)

    def f(x):
        y = []
        for w in (w1, w2):
            a = tf.pad(tf.nn.relu(x), tf.constant([[0, 0], [1, 1], [1, 1], [0, 0]]))
            y.append(tf.nn.conv2d(a, w, 1, "VALID"))
        return y[0] + y[1]
    r = apply(Dedupe(), *build(f, (None, 6, 6, 4)), run_graph, rel_err, tol=0.0,
              feeds={"x0:0": rand(2, 6, 6, 4)})
    o = ops(r.graph_def)
    assert o["Relu"] == 1 and o["Pad"] == 1 and o["Conv2D"] == 2
    assert len(r.rewrites) == 2


def test_different_constants_control_edges_and_stateful_ops_are_kept():
    def f(x):
        a = x * tf.constant(rand(4))
        b = x * tf.constant(rand(4))        # same op and tensor, another constant
        with tf.control_dependencies([a]):
            c = tf.nn.relu(x)
        d = tf.nn.relu(x)                    # same as c but for the control edge
        noise = tf.random.uniform([4]) + tf.random.uniform([4])   # stateful: never merged
        return a + b + c + d, noise
    g, ins, outs = build(f, (None, 4), outputs=2)
    r = Dedupe().run(g, PassContext(ins, outs))
    o = ops(r.graph_def)
    assert o["Mul"] == 2 and o["Relu"] == 2 and o["RandomUniform"] == 2
    assert not r.changed


def test_graph_outputs_keep_their_names(run_graph, rel_err):
    """out1 computes exactly what out0 does; both stay, with the right values."""
    g, ins, outs = build(lambda x: (tf.nn.relu(x) * 2.0, tf.nn.relu(x) * 2.0), (None, 5),
                         outputs=2)
    r = apply(Dedupe(), g, ins, outs, run_graph, rel_err, tol=0.0, feeds={"x0:0": rand(2, 5)})
    o = ops(r.graph_def)
    assert o["Relu"] == 1 and o["Mul"] == 1 and o["Identity"] == 2


def test_nasnet_style_cell_quantizes_without_fp32_islands():
    """Repeated ReLUs of a tensor that is also read raw, and a batch norm after a concat of two
    1×1 convs (NASNet's adjust block): before dedupe and the concat fold, both stayed FP32
    between a Dequantize and a Quantize. Now the model is INT8 from its one Quantize to the
    output. Cosine ≥ 0.99: an 8-layer INT8 net of random weights measures ~0.999."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 8))
    h = L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp))
    a = L.SeparableConv2D(16, 3, padding="same")(L.Activation("relu")(h))
    b = L.SeparableConv2D(16, 5, padding="same")(L.Activation("relu")(h))
    c = L.Add()([L.AveragePooling2D(3, strides=1, padding="same")(h), h])
    y = L.Concatenate()([a, b, c])
    y = L.Concatenate()([L.Conv2D(8, 1, use_bias=False)(y), L.Conv2D(8, 1, use_bias=False)(y)])
    y = L.Activation("relu")(L.BatchNormalization()(y))
    model = keras.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(y)))
    data = rand(48, 12, 12, 8)
    model(data, training=True)   # moving statistics that differ from the initial 0 / 1
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(rand(layer.moving_mean.shape[0]) * 0.3)
    q = tfq8.quantize(model, data[:32], tfq8.QuantConfig(verbose=False))
    counts = collections.Counter(n.op for n in q.graph_def.node)
    assert counts["Tfq8Quantize"] == 1 and "Tfq8Dequantize" not in counts, counts
    assert not {"Relu", "Mul", "AddV2", "Tfq8Prelu"} & set(counts), counts
    assert counts["Tfq8Lookup"] == 1          # the one shared ReLU, on the INT8 codes
    cos = cosine_rows(model(data[32:]).numpy(), q(data[32:]).numpy())
    assert cos.min() >= 0.99, cos


def test_a_copy_named_in_keep_fp32_is_not_merged_away():
    """keep_fp32 names the second of two identical ReLUs: it stays a separate FP32 ReLU (merged
    into its twin, the quantizer would no longer find it), the first runs INT8."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((8, 8, 4))
    h = L.Conv2D(8, 3, padding="same")(inp)
    a = L.Conv2D(4, 1)(L.Activation("relu", name="first_relu")(h))
    b = L.Conv2D(4, 1)(L.Activation("relu", name="kept_relu")(h))
    model = keras.Model(inp, L.Add()([a, b, h[..., :4]]))
    data = rand(24, 8, 8, 4)
    q = tfq8.quantize(model, data[:16], tfq8.QuantConfig(verbose=False, keep_fp32=["kept_relu"]))
    relus = [n.name for n in q.graph_def.node if n.op == "Relu"]
    assert len(relus) == 1 and "kept_relu" in relus[0], relus
    full = tfq8.quantize(model, data[:16], tfq8.QuantConfig(verbose=False))
    assert not [n for n in full.graph_def.node if n.op == "Relu"]   # merged, then INT8
    cos = cosine_rows(model(data[16:]).numpy(), q(data[16:]).numpy())
    assert cos.min() >= 0.99, cos
