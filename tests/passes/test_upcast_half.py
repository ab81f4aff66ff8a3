"""upcast_half: a mixed-precision model's 16-bit compute becomes float32, the signature keeps
its dtypes, and tfq8.quantize then quantizes the model instead of leaving it all in FP32."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import PassContext, UpcastHalf
from tfq8.passes.upcast_half import HALF_TYPES
from tests.conftest import _run_graph

RNG = np.random.default_rng(7)


def _net(policy, output_dtype=None):
    """A small CNN under a Keras dtype policy, plus its float32 twin with the same weights."""
    def make(pol, out_dtype):
        keras.mixed_precision.set_global_policy(pol)
        try:
            keras.utils.set_random_seed(5)
            inp = keras.Input((16, 16, 3))
            x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
            x = keras.layers.BatchNormalization(name="bn")(x)
            x = keras.layers.ReLU()(x)
            y = keras.layers.Conv2D(8, 1, name="c2")(x)
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
            x = keras.layers.GlobalAveragePooling2D()(x)
            out = keras.layers.Dense(4, name="head", dtype=out_dtype)(x)
            return keras.Model(inp, out)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    half = make(policy, output_dtype)
    twin = make("float32", None)
    twin.set_weights(half.get_weights())
    for layer in half.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            ch = layer.moving_mean.shape[-1]
            layer.moving_mean.assign(RNG.normal(0, 0.5, ch).astype(np.float32))
            layer.moving_variance.assign(RNG.uniform(0.5, 2, ch).astype(np.float32))
    twin.set_weights(half.get_weights())
    return half, twin


def _half_nodes(graph_def):
    return [n.name for n in graph_def.node
            if any(v.type in HALF_TYPES or set(v.list.type) & HALF_TYPES
                   for v in n.attr.values())]


@pytest.mark.parametrize("policy,out_dtype", [("mixed_float16", "float32"),
                                              ("mixed_bfloat16", "float32"),
                                              ("mixed_float16", None)])
def test_widens_every_half_op_and_keeps_the_signature(policy, out_dtype):
    half, twin = _net(policy, out_dtype)
    frozen = load_model(half)
    assert _half_nodes(frozen.graph_def)          # the model does compute in 16 bits
    ctx = PassContext.for_model(frozen, upcast_half=True)
    r = UpcastHalf().run(frozen.graph_def, ctx)
    assert r.changed and "widened to float32" in r.rewrites[0].message
    out_node = frozen.outputs[0].tensor.split(":")[0]
    # only the output Identity and the Cast that feeds it keep a 16-bit type (when the
    # model's output is 16-bit)
    kept = {out_node, out_node + "/tfq8_downcast"}
    assert set(_half_nodes(r.graph_def)) == (kept if out_dtype is None else set())
    x = RNG.normal(0, 1, (3, 16, 16, 3)).astype(np.float32)
    got = _run_graph(r.graph_def, {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor])[0]
    assert got.dtype == (np.float16 if out_dtype is None else np.float32)
    want = twin(x, training=False).numpy()
    # float32 arithmetic now; the weights the 16-bit model stored may be 16-bit rounded
    # (bfloat16: 8 significant bits, ~0.4 % per weight), and a float16 output rounds too
    tol = 2e-2 if "bfloat16" in policy else 4e-3
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=0,
                               atol=tol * np.abs(want).max())


def test_is_off_unless_asked_and_refuses_a_half_output_it_cannot_cast_back():
    half, _ = _net("mixed_float16", None)
    frozen = load_model(half)
    off = UpcastHalf().run(frozen.graph_def, PassContext.for_model(frozen))
    assert not off.changed and off.graph_def is frozen.graph_def
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float16, [None, 4], name="x")
        tf.nn.relu(x * tf.constant(2.0, tf.float16), name="y")
    r = UpcastHalf().run(g.as_graph_def(), PassContext(["x:0"], ["y:0"], {"upcast_half": True}))
    assert not r.changed
    assert "not an Identity" in r.refusals[0].message and r.refusals[0].node == "y"


def test_a_float16_input_is_cast_after_its_placeholder():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float16, [None, 4], name="x")
        y = tf.matmul(x, tf.constant(RNG.normal(0, 1, (4, 3)), tf.float16))
        tf.identity(tf.cast(y, tf.float32), name="out")
    r = UpcastHalf().run(g.as_graph_def(), PassContext(["x:0"], ["out:0"],
                                                       {"upcast_half": True}))
    nodes = {n.name: n for n in r.graph_def.node}
    assert nodes["x"].attr["dtype"].type == tf.float16.as_datatype_enum     # signature kept
    assert nodes["x/tfq8_upcast"].op == "Cast"
    xv = RNG.normal(0, 1, (2, 4)).astype(np.float16)
    want = _run_graph(g.as_graph_def(), {"x:0": xv}, ["out:0"])[0]
    got = _run_graph(r.graph_def, {"x:0": xv}, ["out:0"])[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-3 * np.abs(want).max())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_quantize_quantizes_a_mixed_precision_model(policy):
    """Before upcast_half the equalize pass crashed on these models, and without equalize
    nothing was quantized ("dtype float16 is not float32")."""
    half, twin = _net(policy, "float32")
    x = RNG.normal(0, 1, (24, 16, 16, 3)).astype(np.float32)
    q = tfq8.quantize(half, x[:16], tfq8.QuantConfig(verbose=False))
    kinds = {r["op"] for r in q.report()["layers"] if r["int8"]}
    assert {"Conv2D", "MatMul"} <= kinds, q.summary()
    assert not any(not r["int8"] for r in q.report()["layers"]), q.summary()
    ref, out = twin(x[16:], training=False).numpy(), q(x[16:]).numpy()
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert cos.min() >= 0.99, cos       # INT8 vs FP32 on a small well-conditioned net
