"""equalize: channel spaces found (and refused) correctly; rescaling leaves FP32 outputs equal.

Tolerance: 1e-5 of the output magnitude on hand-built graphs, 1e-4 on the Keras applications
(float32 rounding of rescaled weights, and TF may pick another conv algorithm)."""
import numpy as np
import pytest
import tensorflow as tf

from tfq8.graph import GraphIndex
from tfq8.passes import FuseActivations, PassContext, Pipeline
from tfq8.passes.equalize import RELU6_PREFIX, Equalize, channel_spaces, relu6_chains

from tests.passes.helpers import build, rand


def ranges_from(run_graph, feeds):
    """The channel_ranges option tfq8.quantize passes, on fixed feeds."""
    def ranges(graph_def, tensors):
        values = run_graph(graph_def, feeds, tensors)
        return {t: np.abs(v).reshape(-1, v.shape[-1]).max(0) for t, v in zip(tensors, values)}
    return ranges


def stream_graph(final=tf.identity):
    """A residual stream with one large channel: conv → (+ conv(relu6(conv))) → relu →
    maxpool → conv, plus a second reader (1×1 conv → mean) of the stream."""
    w0 = rand(3, 3, 3, 8)
    w0[..., 3] *= 20.0                                   # channel 3 is 20× larger

    def f(x):
        y0 = tf.nn.bias_add(tf.nn.conv2d(x, w0, 1, "SAME"), rand(8))
        h = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(y0, rand(1, 1, 8, 16), 1, "SAME"), rand(16)))
        y1 = y0 + tf.nn.bias_add(tf.nn.conv2d(h, rand(1, 1, 16, 8), 1, "SAME"), rand(8))
        z = tf.nn.max_pool2d(tf.nn.relu(y1), 2, 2, "VALID")
        a = tf.nn.conv2d(z, rand(3, 3, 8, 4), 1, "SAME")
        b = tf.reduce_mean(tf.nn.conv2d(y1, rand(1, 1, 8, 4), 1, "SAME"), [1, 2], keepdims=True)
        return final(a + b)
    gd, ins, outs = build(f, (None, 8, 8, 3))
    fused = Pipeline([FuseActivations()]).run(gd, PassContext(ins, outs)).graph_def
    return fused, ins, outs


def test_residual_stream_is_one_space_and_rescaling_is_exact(run_graph, rel_err):
    gd, ins, outs = stream_graph()
    spaces = [s for s in channel_spaces(gd, outs) if s.reason is None]
    assert len(spaces) == 1
    sp = spaces[0]
    assert len(sp.producers) == 2 and len(sp.consumers) == 3 and sp.channels == 8
    feeds = {ins[0]: rand(4, 8, 8, 3)}
    p = Equalize()
    ctx = PassContext(ins, outs, {"channel_ranges": ranges_from(run_graph, feeds)})
    before = gd.SerializeToString(deterministic=True)
    r = p.run(gd, ctx)
    assert gd.SerializeToString(deterministic=True) == before
    assert r.changed and len(r.rewrites) == 1
    s = np.asarray(r.data["scales"][sp.name])
    assert s.shape == (8,) and np.all(s >= 1.0) and np.argmax(s) == 3 and s[3] > 2
    # outputs unchanged; the stream's channel ranges are closer together
    x = {ins[0]: rand(3, 8, 8, 3)}
    assert rel_err(run_graph(r.graph_def, x, outs)[0], run_graph(gd, x, outs)[0]) <= 1e-5
    spread = []
    for g in (gd, r.graph_def):
        a = ranges_from(run_graph, feeds)(g, sp.tensors[-1:])[sp.tensors[-1]]
        spread.append(a.max() / np.median(a))
    assert spread[1] < spread[0] / 2, spread
    # the same scales re-applied (as from a calibration table) give the same graph
    again = p.run(gd, PassContext(ins, outs, {"channel_scales": r.data["scales"]}))
    assert again.graph_def.SerializeToString(deterministic=True) == \
        r.graph_def.SerializeToString(deterministic=True)


def test_refusals(run_graph):
    # a space read by Relu6 (not positively homogeneous) or leaving the graph is refused
    gd, ins, outs = stream_graph(final=tf.nn.relu6)
    reasons = [s.reason for s in channel_spaces(gd, outs)]
    assert any(r and "Relu6" in r for r in reasons)
    gd2, ins2, outs2 = build(lambda x: tf.nn.conv2d(x, rand(1, 1, 3, 4), 1, "SAME"),
                             (None, 4, 4, 3))
    (sp,) = channel_spaces(gd2, outs2)
    assert "graph output" in sp.reason
    # without calibration data the pass changes nothing and says why
    r = Equalize().run(gd, PassContext(ins, outs))
    assert not r.changed and r.graph_def is gd and "no calibration data" in r.notes[0].message
    # saved scales that do not fit this graph are an error, not a silent skip
    with pytest.raises(ValueError, match="recalibrate"):
        Equalize().run(gd, PassContext(ins, outs, {"channel_scales": {"nope:0": [1.0]}}))


def test_keras_applications(app, run_graph, rel_err):
    """MobileNetV2: its 7 linear-bottleneck streams (residual or not; every other tensor ends
    in Relu6); the others: their conv → ReLU → conv pairs (ResNet50's residual streams reach a
    stride-2 StridedSlice that move_strides inserted and are refused; InceptionV3's concats
    end spaces)."""
    g = app.graphs["fuse_activations"]
    n_spaces = len([s for s in channel_spaces(g, app.ctx.outputs) if s.reason is None])
    assert n_spaces == {"ResNet50": 34, "ResNet50V2": 32, "MobileNetV2": 7,
                        "InceptionV3": 50}[app.name]
    if not n_spaces:
        return
    feeds = {app.frozen.inputs[0].tensor: app.feeds[4]}
    ctx = PassContext(app.ctx.inputs, app.ctx.outputs,
                      {"channel_ranges": ranges_from(run_graph, feeds)})
    r = Pipeline([Equalize()]).run(g, ctx).results["equalize"]   # validates the result
    n_chains = len(relu6_chains(g, app.ctx.outputs))   # conv → relu6 → conv(s)
    assert n_chains == (34 if app.name == "MobileNetV2" else 0)   # stem, 16 expand, 17 dw
    assert 0 < len(r.rewrites) <= n_spaces + n_chains
    out = app.frozen.outputs[0].tensor
    assert rel_err(run_graph(r.graph_def, feeds, [out])[0], run_graph(g, feeds, [out])[0]) <= 1e-4
    assert GraphIndex(r.graph_def).is_sorted()


def test_quantize_applies_and_saves_the_scales(tmp_path):
    """tfq8.quantize: equalize runs on the calibration data, its scales go into the table, and
    re-quantizing from the saved table reproduces the same INT8 model without data."""
    import keras

    import tfq8
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    y = keras.layers.Conv2D(8, 1, activation="relu6")(x)
    x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1)(y)])
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 1, activation="relu")(x))
    model = keras.Model(inp, keras.layers.Dense(4)(x))
    w, b = model.layers[1].get_weights()
    w[..., 2] *= 30.0                                    # one large channel in the stream
    model.layers[1].set_weights([w, b])
    data = np.random.default_rng(0).normal(size=(40, 8, 8, 3)).astype(np.float32)
    cfg = dict(verbose=False, range_search_samples=8, batch_size=4)
    int8 = tfq8.quantize(model, data, tfq8.QuantConfig(**cfg))
    scales = int8.calibration_table.metadata["equalization"]
    # the stream, and conv(relu) → mean → dense (conv → relu6 → conv: here every relu6
    # channel reaches 6, so nothing to scale)
    linear = {k: v for k, v in scales.items() if not k.startswith(RELU6_PREFIX)}
    assert len(linear) == 2 and max(max(v) for v in linear.values()) > 2
    assert f"{len(scales)} channel space(s) equalized" in int8.summary()
    rs = int8.calibration_table.metadata["range_search"]   # searched on 8, judged on 3 × 8 more
    assert rs["samples"] == 8 and rs["held_out_samples"] == 24 and "range search" in \
        int8.summary()
    assert sorted(v["channels"] for k, v in int8.report()["equalized_channel_spaces"].items()
                  if not k.startswith(RELU6_PREFIX)) == [6, 8]
    path = tmp_path / "table.json"
    int8.calibration_table.save(path)
    again = tfq8.quantize(model, None, tfq8.QuantConfig(calibration_table=str(path), **cfg))
    np.testing.assert_array_equal(again(data[:4]).numpy(), int8(data[:4]).numpy())
    with pytest.raises(ValueError, match="equalization"):
        tfq8.quantize(model, None, tfq8.QuantConfig(calibration_table=str(path),
                                                    passes={"equalize": False}, **cfg))
    off = tfq8.quantize(model, data, tfq8.QuantConfig(passes={"equalize": False}, **cfg))
    assert "equalization" not in off.calibration_table.metadata
    ref = model(data).numpy()
    err = [np.abs(m(data).numpy() - ref).max() for m in (int8, off)]
    assert err[0] < err[1], err    # the large channel no longer sets the stream's scale


def relu6_graph(fused, bias=True):
    """conv (+bias) → relu6 → zero pad → depthwise, and → 1×1 conv; channel 2 of the relu6
    output is 30× smaller than the rest. bias=False: conv → relu6 with no bias add (stays
    unfused)."""
    w0 = rand(3, 3, 3, 8)
    w0[..., 2] /= 30.0
    b0 = rand(8)
    b0[2] /= 30.0

    def f(x):
        h = tf.nn.conv2d(x, w0, 1, "SAME")
        h = tf.nn.relu6(tf.nn.bias_add(h, b0) if bias else h)
        d = tf.nn.depthwise_conv2d(tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]]),
                                   rand(3, 3, 8, 1), [1, 2, 2, 1], "VALID")
        return tf.identity(d), tf.identity(tf.nn.conv2d(h, rand(1, 1, 8, 4), 1, "SAME"))
    gd, ins, outs = build(f, (None, 8, 8, 3))
    if fused:
        gd = Pipeline([FuseActivations()]).run(gd, PassContext(ins, outs)).graph_def
    return gd, ins, outs


@pytest.mark.parametrize("fused,bias", [(False, True), (True, True), (False, False)])
def test_relu6_chain_rescaling_is_exact(run_graph, rel_err, fused, bias):
    gd, ins, outs = relu6_graph(fused, bias)
    (chain,) = relu6_chains(gd, outs)
    assert len(chain.readers) == 2 and chain.channels == 8
    feeds = {ins[0]: 3.0 * rand(4, 8, 8, 3)}
    r = Equalize().run(gd, PassContext(ins, outs, {"channel_ranges": ranges_from(run_graph,
                                                                                  feeds)}))
    s = np.asarray(r.data["scales"][chain.name])
    # The rule, recomputed from the measured ranges: s_c = sqrt(M / m_c) clipped to [1, 16]
    # (β = 1/2: one reader is a regular conv). Channel 2 (30× smaller weights) stands out;
    # how far depends on the draw (its max against the others' clamp at 6), so only ≥ 1.2.
    m = np.abs(run_graph(gd, feeds, [chain.relu6 + ":0"])[0]).reshape(-1, 8).max(0)
    np.testing.assert_allclose(s, np.clip(np.sqrt(m.max() / m), 1.0, 16.0), rtol=1e-6)
    assert np.argmax(s) == 2 and s[2] > 1.2 and np.all(np.delete(s, 2) < s[2])
    assert [n.op for n in r.graph_def.node].count("Relu6") == 0
    assert [n.op for n in r.graph_def.node].count("Minimum") == 1
    x = {ins[0]: 3.0 * rand(3, 8, 8, 3)}
    for a, b in zip(run_graph(r.graph_def, x, outs), run_graph(gd, x, outs)):
        assert rel_err(a, b) <= 1e-5
    off = Equalize(relu6=False).run(gd, PassContext(ins, outs, {"channel_ranges":
                                                                ranges_from(run_graph, feeds)}))
    assert not off.changed


def test_relu6_chain_fuses_as_clip_in_int8(run_graph):
    """The INT8 graph fuses relu → Minimum as CLIP(0, min bound) into the producer conv."""
    from tfq8.calibration import Calibrator
    from tfq8.passes.quantize import QuantizePlan
    gd, ins, outs = relu6_graph(True)
    feeds = {ins[0]: 3.0 * rand(4, 8, 8, 3)}
    r = Equalize().run(gd, PassContext(ins, outs, {"channel_ranges": ranges_from(run_graph,
                                                                                  feeds)}))
    plan = QuantizePlan(r.graph_def, outs)
    table = Calibrator(lambda b: dict(zip(plan.observe, run_graph(r.graph_def, b,
                                                                   plan.observe))),
                       "minmax").calibrate([feeds])
    int8, _ = plan.emit(table)
    ops = [n.op for n in int8.node]
    assert "Minimum" not in ops and "Relu6" not in ops
    (conv,) = [n for n in int8.node if n.op == "Tfq8Conv2D" and n.attr["activation"].s == b"CLIP"]
    assert conv.attr["clip_min"].f == 0.0 and abs(conv.attr["clip_max"].f - 6.0) < 1e-6


def test_relu6_chain_with_fp32_readers_keeps_the_bound_as_minimum(run_graph, rel_err):
    """Readers kept in FP32: the producer writes f32 with only the ReLU fused and the
    per-channel bound stays a stock Minimum after it, so the INT8 graph still tracks FP32
    (tolerance 0.05 of the output magnitude: one INT8 layer's quantization error)."""
    from tfq8.calibration import Calibrator
    from tfq8.passes.quantize import QuantizePlan
    gd, ins, outs = relu6_graph(True)
    feeds = {ins[0]: 3.0 * rand(4, 8, 8, 3)}
    r = Equalize().run(gd, PassContext(ins, outs, {"channel_ranges": ranges_from(run_graph,
                                                                                  feeds)}))
    plan = QuantizePlan(r.graph_def, outs, keep_fp32=["DepthwiseConv2dNative", "Conv2D"])
    table = Calibrator(lambda b: dict(zip(plan.observe, run_graph(r.graph_def, b,
                                                                   plan.observe))),
                       "minmax").calibrate([feeds])
    int8, _ = plan.emit(table)
    (conv,) = [n for n in int8.node if n.op == "Tfq8Conv2D"]
    assert conv.attr["activation"].s == b"RELU" and conv.attr["out_type"].type == tf.float32
    (mn,) = [n for n in int8.node if n.op == "Minimum"]
    assert conv.name in list(mn.input)
    for a, b in zip(run_graph(int8, feeds, outs), run_graph(gd, feeds, outs)):
        assert rel_err(a, b) <= 0.05
