"""Grouped convolutions (Keras ``Conv2D(groups=...)``: ConvNeXt, RegNet, ResNeXt).

Keras 3 wraps them in a ``jit_compile`` function that Grappler would not inline; the frontend
must still freeze them. One-channel groups become TF depthwise convs (FP32 values unchanged:
the same products summed per output), wider groups stay grouped Conv2Ds that TF's run-time
remapper must not be able to fuse (its _FusedConv2D has no groups on CPU), and the quantizer
runs each as one Tfq8GroupedConv2D — bit-exact with the numpy reference per group.
"""
import keras
import numpy as np
import tensorflow as tf

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import PassContext, default_pipeline
from tests.passes.int8_graph import conv_reference, cosine_rows
from tests.passes.conftest import randomize

RNG = np.random.default_rng(3)


def _grouped_model():
    keras.utils.set_random_seed(4)
    inp = keras.Input((12, 12, 8))
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    y = keras.layers.Conv2D(16, 7, padding="same", groups=16)(y)            # depthwise, m = 1
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Conv2D(32, 3, padding="same", groups=16, use_bias=False)(y)  # m = 2
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(32, 3, padding="same", groups=4, use_bias=False)(y)  # 4 × 8 channels
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same", groups=2)(y)   # strided, 2 × 16
    y = keras.layers.Conv2D(8, 1)(y)
    return randomize(keras.Model(inp, keras.layers.GlobalAveragePooling2D()(y)), seed=4)


def _run(graph_def, feeds, fetches, config=None):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        return sess.run([graph.get_tensor_by_name(t) for t in fetches],
                        {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def test_fp32_passes_keep_values_and_leave_no_fusable_grouped_conv():
    model = _grouped_model()
    frozen = load_model(model)    # used to fail: "a function call Grappler did not inline"
    assert {n.op for n in frozen.graph_def.node}.isdisjoint(
        {"PartitionedCall", "StatefulPartitionedCall"})
    result = default_pipeline().run(frozen.graph_def, PassContext.for_model(frozen))
    gd = result.graph_def
    rewrites = result.results["grouped_conv"].rewrites
    assert len(rewrites) == 2 and "multiplier 2" in rewrites[1].message, rewrites
    ops = [n.op for n in gd.node]
    # the ordinary convs (biased) are fused, the two grouped ones are not
    assert ops.count("DepthwiseConv2dNative") == 2 and ops.count("Conv2D") == 2, ops
    assert ops.count("_FusedConv2D") == 2, ops
    # the BN folded into the 4-group conv is an AddV2 bias, which the remapper leaves alone
    grouped = [n.name for n in gd.node if n.op == "Conv2D"]   # the others are fused
    readers = [n.op for n in gd.node if any(i.split(":")[0] in grouped for i in n.input)]
    assert len(grouped) == 2 and "BiasAdd" not in readers and "AddV2" in readers, readers
    x = RNG.normal(0, 1, (3, 12, 12, 8)).astype(np.float32)
    want = model(x).numpy()
    feeds = {frozen.inputs[0].tensor: x}
    # Default Session config: TF's own Grappler (remapper on) runs too. A grouped conv
    # followed by BiasAdd → Relu would be fused there and fail.
    (got,) = _run(gd, feeds, [frozen.outputs[0].tensor])
    # FP32 reassociation (folded BN, depthwise summation order): float rounding only
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_grouped_convs_run_as_int8_convs_per_group_bit_exactly():
    model = _grouped_model()
    x = RNG.normal(0, 1, (24, 12, 12, 8)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False, method="minmax"))
    rep = q.report()
    assert all(r["int8"] for r in rep["layers"]), [r for r in rep["layers"] if not r["int8"]]
    assert "Conv2D" not in rep["fp32_ops"] and "DepthwiseConv2dNative" not in rep["fp32_ops"]
    ops = [n.op for n in q.graph_def.node]
    assert ops.count("Tfq8DepthwiseConv2D") == 2 and ops.count("Tfq8Conv2D") == 2, ops
    grouped = [n for n in q.graph_def.node if n.op == "Tfq8GroupedConv2D"]
    assert sorted(n.attr["groups"].i for n in grouped) == [2, 4]
    assert "Slice" not in ops and "ConcatV2" not in ops, ops

    # Each grouped op equals numpy_ref's conv of every group's channel slice with that group's
    # filter columns, bias and scales, concatenated — bit for bit.
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor)
              for n in q.graph_def.node if n.op == "Const"}
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    for nd in grouped:
        got, xq = _run(q.graph_def, {feed: x[16:]}, [nd.name + ":0", nd.input[0] + ":0"])
        assert got.dtype == np.uint8 and xq.dtype == np.uint8
        w, b, s = (consts[nd.input[i]] for i in (1, 2, 3))
        g = nd.attr["groups"].i
        cin, cout = w.shape[2], w.shape[3] // g
        assert xq.shape[-1] == g * cin
        want = []
        for k in range(g):
            o = slice(k * cout, (k + 1) * cout)
            part = _with_consts(nd, w[..., o], b[o], s if s.size == 1 else s[o])
            want.append(conv_reference(part, part.node[-1], xq[..., k * cin:(k + 1) * cin]))
        np.testing.assert_array_equal(got, np.concatenate(want, -1), err_msg=nd.name)

    cos = cosine_rows(model(x[16:]).numpy(), q(x[16:]).numpy())
    # six INT8 layers on a small random model: ~1e-3 relative noise per layer
    assert cos.min() >= 0.995, cos


def _with_consts(nd, w, b, s):
    """A GraphDef of the filter, bias and scale consts plus a copy of nd reading them, for
    conv_reference (which reads a node's attributes and constant inputs)."""
    gd = tf.compat.v1.GraphDef()
    for name, value in (("w", w), ("b", b), ("s", s)):
        c = gd.node.add()
        c.name, c.op = name, "Const"
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    part = gd.node.add()
    part.CopyFrom(nd)
    part.input[1:4] = ["w", "b", "s"]
    return gd


def test_grouped_convs_kept_fp32_still_run_and_are_reported():
    model = _grouped_model()
    x = RNG.normal(0, 1, (8, 12, 12, 8)).astype(np.float32)
    grouped = [layer.name for layer in model.layers
               if getattr(layer, "groups", 1) > 1 and layer.kernel.shape[2] > 1]
    assert len(grouped) == 2
    q = tfq8.quantize(model, x, tfq8.QuantConfig(verbose=False, keep_fp32=grouped))
    kept = [r for r in q.report()["layers"] if not r["int8"]]
    assert len(kept) == 2 and all("kept in FP32" in r["reason"] for r in kept), kept
    assert q.report()["fp32_ops"].get("Conv2D") == 2
    # the grouped convs run in TF (its run-time remapper must not fuse them)
    want = model(x).numpy()
    np.testing.assert_allclose(q(x).numpy(), want, atol=0.05 * np.abs(want).max())
