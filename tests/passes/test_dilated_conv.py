"""dilated_conv: TF's SpaceToBatchND → Conv2D → BatchToSpaceND form of a dilated conv becomes one
dilated Conv2D with the same values, and that conv runs in INT8 bit-exactly per the reference."""
import keras
import numpy as np
import pytest

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import DilatedConv, PassContext, Pipeline
from tests.conftest import _run_graph
from tests.passes.int8_graph import conv_reference, cosine_rows

RNG = np.random.default_rng(11)


def _model(size, rate, padding):
    keras.utils.set_random_seed(12)
    inp = keras.Input((size[0], size[1], 3))
    y = keras.layers.Conv2D(8, 3, padding=padding, dilation_rate=rate, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Conv2D(4, 1)(y))


@pytest.mark.parametrize("size,rate,padding", [((9, 12), 2, "same"), ((11, 7), 3, "same"),
                                               ((10, 10), (2, 3), "valid"),
                                               ((13, 8), 2, "valid")])
def test_space_to_batch_form_becomes_an_equal_dilated_conv(size, rate, padding):
    model = _model(size, rate, padding)
    frozen = load_model(model)
    # TF 2.21 + Keras 3 write a dilated conv in space-to-batch form on CPU
    assert "SpaceToBatchND" in [n.op for n in frozen.graph_def.node]
    r = Pipeline([DilatedConv()]).run(frozen.graph_def, PassContext.for_model(frozen))
    assert len(r.results["dilated_conv"].rewrites) == 1
    out_ops = [n.op for n in r.graph_def.node]
    assert "SpaceToBatchND" not in out_ops and "BatchToSpaceND" not in out_ops
    (conv,) = [n for n in r.graph_def.node if n.op == "Conv2D"
               and list(n.attr["dilations"].list.i) != [1, 1, 1, 1]]
    dh, dw = (rate, rate) if isinstance(rate, int) else rate
    assert list(conv.attr["dilations"].list.i) == [1, dh, dw, 1]
    x = RNG.normal(0, 1, (2,) + size + (3,)).astype(np.float32)
    feeds, fetch = {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor]
    want = _run_graph(frozen.graph_def, feeds, fetch)[0]
    # the same products per output, summed by another conv kernel: float rounding only
    np.testing.assert_allclose(_run_graph(r.graph_def, feeds, fetch)[0], want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())


def test_dilated_conv_runs_in_int8_bit_exactly():
    model = _model((9, 12), 2, "same")
    x = RNG.normal(0, 1, (20, 9, 12, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:12], tfq8.QuantConfig(verbose=False, method="minmax"))
    ops = [n.op for n in q.graph_def.node]
    assert "SpaceToBatchND" not in ops and ops.count("Tfq8Conv2D") == 2, ops
    (conv,) = [n for n in q.graph_def.node if n.op == "Tfq8Conv2D"
               and list(n.attr["dilations"].list.i) == [2, 2]]
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    xq, got = _run_graph(q.graph_def, {feed: x[12:]}, [conv.input[0] + ":0", conv.name + ":0"])
    # SAME for a 3×3 kernel dilated 2 (5×5 extent), stride 1
    assert list(conv.attr["explicit_paddings"].list.i) == [2, 2, 2, 2]
    np.testing.assert_array_equal(got, conv_reference(q.graph_def, conv, xq))
    cos = cosine_rows(model(x[12:]).numpy(), q(x[12:]).numpy())
    assert cos.min() >= 0.999, cos   # two INT8 convs: ~1e-3 relative noise


def test_unknown_spatial_sizes_become_one_dilated_conv():
    """With H, W unknown TF computes the space-to-batch paddings and crops at run time; they
    are evaluated at a few sizes, and the one dilated conv must agree at any other size."""
    keras.utils.set_random_seed(18)
    inp = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same", dilation_rate=3)(y))
    frozen = load_model(model)
    r = Pipeline([DilatedConv()]).run(frozen.graph_def, PassContext.for_model(frozen))
    assert len(r.results["dilated_conv"].rewrites) == 2, r.results["dilated_conv"].notes
    ops = [n.op for n in r.graph_def.node]
    assert "SpaceToBatchND" not in ops and "FloorMod" not in ops, ops
    for h, w in ((9, 12), (17, 5), (33, 34)):
        x = RNG.normal(0, 1, (2, h, w, 3)).astype(np.float32)
        got = _run_graph(r.graph_def, {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor])[0]
        want = model(x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_variable_length_causal_conv1d_runs_int8():
    keras.utils.set_random_seed(19)
    inp = keras.Input((None, 4))
    y = keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu")(inp)
    y = keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=4, activation="relu")(y)
    model = keras.Model(inp, keras.layers.Conv1D(3, 1)(y))
    x = RNG.normal(0, 1, (16, 40, 4)).astype(np.float32)
    q = tfq8.quantize(model, x, tfq8.QuantConfig(verbose=False, method="minmax"))
    ops = [n.op for n in q.graph_def.node]
    assert "SpaceToBatchND" not in ops and ops.count("Tfq8Conv2D") == 3, ops
    assert ops.count("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    for length in (40, 23, 77):
        xt = RNG.normal(0, 1, (3, length, 4)).astype(np.float32)
        cos = cosine_rows(model(xt).numpy(), q(xt).numpy())
        assert cos.min() >= 0.995, (length, cos)   # three INT8 convs on a random model


def test_gate_convs_sharing_one_space_to_batch_run_int8():
    """A WaveNet gate: tanh and sigmoid causal dilated convs of one tensor. The dedupe pass
    merges their identical pads and SpaceToBatchNDs, so one SpaceToBatchND feeds two convs,
    each with its own BatchToSpaceND; both become dilated convs and the pad their padding."""
    keras.utils.set_random_seed(21)
    inp = keras.Input((48, 4))
    y = keras.layers.Conv1D(8, 1)(inp)
    gate = keras.layers.Multiply()([
        keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="tanh")(y),
        keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="sigmoid")(y)])
    model = keras.Model(inp, keras.layers.Conv1D(3, 1)(keras.layers.Add()([y, gate])))
    frozen = load_model(model)
    r = Pipeline([tfq8.passes.Dedupe(), tfq8.passes.Conv1DAs2D(), DilatedConv()]).run(
        frozen.graph_def, PassContext.for_model(frozen))
    assert len(r.results["dilated_conv"].rewrites) == 2, r.results["dilated_conv"].notes
    x = RNG.normal(0, 1, (24, 48, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False))
    ops = [n.op for n in q.graph_def.node]
    assert not {"SpaceToBatchND", "BatchToSpaceND", "Pad", "PadV2"} & set(ops), ops
    assert ops.count("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    cos = cosine_rows(model(x[16:]).numpy().reshape(8, -1), q(x[16:]).numpy().reshape(8, -1))
    assert cos.min() >= 0.995, cos   # five INT8 ops on a random model: ~1e-3 noise each
