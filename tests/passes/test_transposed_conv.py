"""transposed_conv: Conv2DBackpropInput (Keras Conv2DTranspose, Conv1DTranspose) becomes
Conv2D → DepthToSpace (or Reshape/Transpose for unequal strides) → Slice with the same values for
every kernel/stride/padding combination, and then runs as an INT8 conv with the rearrangement on
uint8."""
import keras
import numpy as np
import pytest

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import PassContext, Pipeline, TransposedConv
from tests.conftest import _run_graph
from tests.passes.int8_graph import conv_reference, cosine_rows

RNG = np.random.default_rng(13)


@pytest.mark.parametrize("k,s,padding,output_padding", [
    (2, 2, "same", None), (2, 2, "valid", None), (3, 2, "same", None), (3, 2, "valid", None),
    (4, 2, "same", None), (3, 3, "valid", None), (5, 2, "same", None), (1, 2, "valid", None),
    (3, 2, "same", 1), ((3, 2), 2, "same", None)])
def test_transposed_conv_becomes_an_equal_conv_and_depth_to_space(k, s, padding,
                                                                  output_padding):
    keras.utils.set_random_seed(14)
    inp = keras.Input((5, 7, 3))
    y = keras.layers.Conv2DTranspose(4, k, strides=s, padding=padding,
                                     output_padding=output_padding)(inp)
    model = keras.Model(inp, y)
    frozen = load_model(model)
    r = Pipeline([TransposedConv()]).run(frozen.graph_def, PassContext.for_model(frozen))
    assert len(r.results["transposed_conv"].rewrites) == 1, r.results["transposed_conv"].notes
    ops = [n.op for n in r.graph_def.node]
    assert "Conv2DBackpropInput" not in ops and "DepthToSpace" in ops
    x = RNG.normal(0, 1, (2, 5, 7, 3)).astype(np.float32)
    feeds, fetch = {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor]
    want = model(x).numpy()
    got = _run_graph(r.graph_def, feeds, fetch)[0]
    assert got.shape == want.shape
    # the same products per output, summed in another order: float rounding only
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("k,s,padding", [
    ((3, 3), (1, 2), "same"), ((1, 4), (1, 2), "valid"), ((4, 3), (2, 1), "same"),
    ((3, 5), (2, 3), "same"), ((2, 3), (2, 3), "valid")])
def test_unequal_strides_interleave_by_reshape(k, s, padding):
    keras.utils.set_random_seed(16)
    inp = keras.Input((5, 7, 3))
    model = keras.Model(inp, keras.layers.Conv2DTranspose(4, k, strides=s, padding=padding)(inp))
    frozen = load_model(model)
    r = Pipeline([TransposedConv()]).run(frozen.graph_def, PassContext.for_model(frozen))
    assert len(r.results["transposed_conv"].rewrites) == 1, r.results["transposed_conv"].notes
    ops = [n.op for n in r.graph_def.node]
    assert "Conv2DBackpropInput" not in ops and "DepthToSpace" not in ops
    assert ("Transpose" in ops) == (s[0] != 1), ops
    x = RNG.normal(0, 1, (2, 5, 7, 3)).astype(np.float32)
    want = model(x).numpy()
    got = _run_graph(r.graph_def, {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor])[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_conv1d_transpose_runs_in_int8():
    """Keras Conv1DTranspose: a 2-D transposed conv with stride (1, s) between the conv1d pass's
    unit axes; it becomes an INT8 conv and a uint8 Reshape."""
    keras.utils.set_random_seed(17)
    inp = keras.Input((16, 4))
    y = keras.layers.Conv1D(8, 3, strides=2, padding="same", activation="relu")(inp)
    y = keras.layers.Conv1DTranspose(8, 4, strides=2, padding="same", activation="relu")(y)
    model = keras.Model(inp, keras.layers.Conv1D(3, 3, padding="same")(y))
    x = RNG.normal(0, 1, (24, 16, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False, method="minmax"))
    ops = [n.op for n in q.graph_def.node]
    assert "Conv2DBackpropInput" not in ops and ops.count("Tfq8Conv2D") == 3, ops
    assert ops.count("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    assert q.report()["stock_ops_on_int8"].get("Reshape"), q.report()["stock_ops_on_int8"]
    cos = cosine_rows(model(x[16:]).numpy(), q(x[16:]).numpy())
    assert cos.min() >= 0.995, cos    # three INT8 convs on a random model


def test_transposed_conv_decoder_runs_in_int8():
    keras.utils.set_random_seed(15)
    inp = keras.Input((6, 6, 4))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(y)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(y))
    bn = model.layers[3]
    bn.gamma.assign(RNG.uniform(0.5, 1.5, 8))
    bn.moving_variance.assign(RNG.uniform(0.5, 2.0, 8))
    x = RNG.normal(0, 1, (24, 6, 6, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False, method="minmax"))
    ops = [n.op for n in q.graph_def.node]
    assert "Conv2DBackpropInput" not in ops and ops.count("Tfq8Conv2D") == 3, ops
    moving = q.report()["stock_ops_on_int8"]
    assert moving.get("DepthToSpace") == 1 and moving.get("Slice") == 1, moving
    assert ops.count("Tfq8Quantize") == 1, ops     # INT8 from the input to the last conv

    # the phase conv is an ordinary INT8 conv: bit-exact with the reference
    nodes = {n.name: n for n in q.graph_def.node}
    (d2s,) = [n for n in q.graph_def.node if n.op == "DepthToSpace"]
    conv = nodes[d2s.input[0]]
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    xq, got = _run_graph(q.graph_def, {feed: x[16:]}, [conv.input[0] + ":0", conv.name + ":0"])
    np.testing.assert_array_equal(got, conv_reference(q.graph_def, conv, xq))
    cos = cosine_rows(model(x[16:]).numpy(), q(x[16:]).numpy())
    # three INT8 convs and an INT8 affine, ~1e-3 relative noise each (measured: mean 0.9995,
    # min 0.998 on 8 samples)
    assert cos.mean() >= 0.999 and cos.min() >= 0.995, cos
