"""Quantize pass: which INT8 ops it emits, and that their numerics are exactly the contract's.

The strongest check here is bit-equality of a quantized conv model with the numpy reference of
docs/int8_numerics.md (tests/ops/numpy_ref.py) fed with the scales the pass chose: it proves
weight quantization, padding, scales and the fused epilogue are wired as specified. The other
tests check structure (fused requantization, residual summands, concat scales, FP32 fallback and
its report) and end-to-end closeness to FP32 (cosine ≥ 0.999 on small random models, where
8-bit quantization noise is ~1e-3 of the signal).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfq8
from tfq8.calibration import quantize_weights, weight_scales
from tests.ops import numpy_ref

RNG = np.random.default_rng(0)


def _randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.1, c))
            layer.moving_mean.assign(rng.normal(0, 0.1, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def _ops(model):
    counts = {}
    for n in model.graph_def.node:
        counts[n.op] = counts.get(n.op, 0) + 1
    return counts


def _cosine(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _config(**kw):
    kw.setdefault("verbose", False)
    kw.setdefault("method", "minmax")
    return tfq8.QuantConfig(**kw)


def test_single_conv_matches_numpy_reference_bit_exactly():
    keras.utils.set_random_seed(1)
    inp = keras.Input((9, 11, 5))
    out = keras.layers.Conv2D(7, 3, strides=2, padding="same", activation="relu")(inp)
    model = keras.Model(inp, out)
    model.layers[1].bias.assign(RNG.normal(0, 0.5, 7))
    x = RNG.normal(0, 1, (6, 9, 11, 5)).astype(np.float32)
    q = tfq8.quantize(model, x, _config())

    table = q.calibration_table
    (in_t,) = [t for t in table if "conv2d" not in t.lower()]
    qin = table[in_t].qparams
    assert qin.zero_point == 128  # the input has negative values: s8 shifted by +128
    w, b = model.layers[1].kernel.numpy(), model.layers[1].bias.numpy()
    # bias correction (on by default) shifts the f32 bias by the measured mean error
    (delta,) = table.metadata["bias_correction"].values()
    b = (b.astype(np.float64) - np.asarray(delta, np.float64)).astype(np.float32)
    scales = weight_scales(w, axis=-1)
    wq = quantize_weights(w, scales, axis=-1)
    xq = numpy_ref.quantize(x, qin.scale, qin.zero_point)
    pt, pb = numpy_ref.same_pads(9, 3, 2)
    pl, pr = numpy_ref.same_pads(11, 3, 2)
    ref = numpy_ref.conv2d(xq, wq, b, scales, input_scale=qin.scale,
                           input_zero_point=qin.zero_point, strides=(2, 2),
                           pads=(pt, pb, pl, pr), activation="RELU", out_type="float32")
    got = q(x).numpy()
    np.testing.assert_array_equal(got, ref)
    # and it is close to FP32 (one conv: error ≈ input + weight quantization noise)
    np.testing.assert_allclose(got, model(x).numpy(), atol=0.05 * np.abs(ref).max())
    assert _ops(q) == {"Placeholder": 1, "Tfq8Quantize": 1, "Tfq8Conv2D": 1, "Const": 3,
                       "Identity": _ops(q).get("Identity", 0)}


def _resnet_block_model():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out)


def test_residual_block_is_fully_int8_with_fused_summand():
    keras.utils.set_random_seed(2)
    model = _resnet_block_model()
    _randomize_bn(model, RNG)
    x = RNG.normal(0, 1, (40, 16, 16, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    assert ops.get("Tfq8Conv2D") == 3 and ops.get("Tfq8MatMul") == 1
    assert ops.get("Tfq8MaxPool") == 1 and ops.get("Tfq8Mean") == 1
    # Fused requantization: only the model input is quantized, and the logits come out of the
    # MatMul as f32 directly: no Dequantize anywhere, no FP32 Add/Relu left.
    assert ops.get("Tfq8Quantize") == 1
    assert "Tfq8Dequantize" not in ops and "Tfq8Add" not in ops
    assert not {"AddV2", "Add", "Relu", "Conv2D", "_FusedConv2D"} & set(ops)
    convs = [n for n in q.graph_def.node if n.op == "Tfq8Conv2D"]
    summed = [n for n in convs if n.attr["num_summand"].i == 1]
    assert len(summed) == 1 and summed[0].attr["activation"].s == b"RELU"
    assert all(r.int8 for r in q.layers)
    cos = _cosine(model(x[32:]).numpy(), q(x[32:]).numpy())
    assert cos.min() >= 0.999, cos


def test_concat_inputs_written_in_the_concat_scale():
    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 4))
    a = keras.layers.Conv2D(8, 1, activation="relu")(inp)
    b = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    c = keras.layers.AveragePooling2D(3, strides=1, padding="same")(inp)
    c = keras.layers.Conv2D(5, 1, activation="relu")(c)
    x = keras.layers.Concatenate()([a, b, c])
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Flatten()(x))
    data = RNG.normal(0, 1, (24, 12, 12, 4)).astype(np.float32)
    q = tfq8.quantize(model, data[:16], _config())
    ops = _ops(q)
    assert ops.get("Tfq8Concat") == 1 and ops.get("Tfq8AvgPool") == 1
    (cat,) = [n for n in q.graph_def.node if n.op == "Tfq8Concat"]
    out_scale = cat.attr["output_scale"].f
    assert list(cat.attr["input_scales"].list.f) == [out_scale] * 3  # the concat only copies
    assert _cosine(model(data[16:]).numpy(), q(data[16:]).numpy()).min() >= 0.999


def test_unsupported_and_kept_layers_stay_fp32_and_are_reported():
    keras.utils.set_random_seed(4)
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="first")(inp)
    x = keras.layers.Conv2D(8, 3, activation="sigmoid", name="sig")(x)   # sigmoid: FP32
    x = keras.layers.Conv2D(4, 3, activation="relu", name="kept")(x)
    model = keras.Model(inp, keras.layers.Flatten()(x))
    data = RNG.normal(0, 1, (16, 10, 10, 3)).astype(np.float32)
    q = tfq8.quantize(model, data, _config(keep_fp32=["kept"]))
    rep = q.report()
    assert "Sigmoid" in rep["fp32_ops"]
    kept = [r for r in rep["layers"] if not r["int8"]]
    assert kept and all("configuration" in r["reason"] for r in kept)
    assert any("kept" in r["node"] for r in kept)
    assert "kept in FP32" in q.summary() and "Sigmoid" in q.summary()
    np.testing.assert_allclose(q(data).numpy(), model(data).numpy(),
                               atol=0.05 * np.abs(model(data).numpy()).max())


def test_stale_calibration_table_is_refused(tmp_path):
    keras.utils.set_random_seed(5)
    model = _resnet_block_model()
    x = RNG.normal(0, 1, (8, 16, 16, 3)).astype(np.float32)
    q = tfq8.quantize(model, x, _config())
    path = tmp_path / "table.json"
    q.calibration_table.save(str(path))
    # Re-quantizing from the table gives the same graph without data.
    again = tfq8.quantize(model, None, _config(calibration_table=str(path)))
    np.testing.assert_array_equal(again(x).numpy(), q(x).numpy())
    other = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="zz")])
    with pytest.raises(ValueError, match="recalibrate"):
        tfq8.quantize(other, None, _config(calibration_table=str(path)))


def test_strided_subsample_runs_as_int8_maxpool():
    # move_strides inserts x[:, ::2, ::2, :] where a stride cannot move further; on INT8 data it
    # becomes a 1×1 stride-2 Tfq8MaxPool (the same selection, without TF's slow uint8 slice).
    rng = np.random.default_rng(6)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 4, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 9, 9, 4], tf.float32)])
    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.strided_slice(y, [0, 0, 0, 0], [0, 0, 0, 0], [1, 2, 2, 1], begin_mask=15,
                             end_mask=15)
        return tf.nn.conv2d(y, w2, 1, "VALID")

    data = rng.normal(0, 1, (8, 9, 9, 4)).astype(np.float32)
    q = tfq8.quantize(f, data, _config())
    ops = _ops(q)
    assert "StridedSlice" not in ops and ops.get("Tfq8MaxPool") == 1
    (pool,) = [n for n in q.graph_def.node if n.op == "Tfq8MaxPool"]
    assert list(pool.attr["ksize"].list.i) == [1, 1] and list(pool.attr["strides"].list.i) == [2, 2]
    ref = f(data).numpy()
    assert q(data).numpy().shape == ref.shape == (8, 5, 5, 6)
    assert _cosine(ref, q(data).numpy()).min() >= 0.999


def _densenet_like_model():
    """Batch norms that cannot fold into a conv (after a concat, and after an add whose sum is
    also the next skip), and a lone ReLU on an add that has another reader."""
    inp = keras.Input((12, 12, 4))
    a = keras.layers.Conv2D(8, 1)(inp)
    b = keras.layers.Conv2D(8, 3, padding="same")(inp)
    cat = keras.layers.Concatenate()([a, b])
    x = keras.layers.BatchNormalization()(cat)          # DenseNet: BN → ReLU → conv on a concat
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    s = keras.layers.Add()([cat, x])                    # pre-activation ResNet: BN on the sum
    y = keras.layers.BatchNormalization()(s)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(16, 1)(y)
    s2 = keras.layers.Add()([s, y])
    z = keras.layers.ReLU()(s2)                         # Xception: ReLU on a sum read twice
    z = keras.layers.Conv2D(16, 3, padding="same")(z)
    out = keras.layers.Add()([s2, z])
    out = keras.layers.GlobalAveragePooling2D()(out)
    return keras.Model(inp, keras.layers.Dense(10)(out))


def _run_int8_tensors(graph_def, feeds, names):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run([graph.get_tensor_by_name(n + ":0") for n in names],
                        {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def test_unfoldable_batchnorm_runs_as_exact_int8_affine_and_lone_relu_as_lookup():
    keras.utils.set_random_seed(5)
    model = _densenet_like_model()
    _randomize_bn(model, RNG)
    x = RNG.normal(0, 1, (40, 12, 12, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    # two BN → ReLU chains became 1×1 depthwise convs, the lone ReLU a lookup table; nothing
    # is left in FP32
    assert not {"Mul", "AddV2", "Add", "Relu", "Tfq8Dequantize"} & set(ops), ops
    affines = [r for r in q.report()["layers"] if "affine" in r["op"]]
    assert len(affines) == 2, affines
    assert ops.get("Tfq8DepthwiseConv2D") == 2 and ops.get("Tfq8Lookup") == 1
    assert _cosine(model(x[32:]).numpy(), q(x[32:]).numpy()).min() >= 0.999

    # Each affine is exact up to its output rounding: its u8 output equals the numpy
    # quantization of relu(s·dequantize(input) + t) within 1 LSB (the op multiplies by the
    # combined scale in f32; the reference works in float64), and mostly exactly.
    (feed,) = [n.name for n in q.graph_def.node if n.op == "Placeholder"]
    nodes = {n.name: n for n in q.graph_def.node}
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor)
              for n in q.graph_def.node if n.op == "Const"}
    for node in (n for n in q.graph_def.node if n.op == "Tfq8DepthwiseConv2D"):
        src = nodes[node.input[0]].name
        qin, qout = _run_int8_tensors(q.graph_def, {feed + ":0": x[32:]}, [src, node.name])
        wq = consts[node.input[1]].astype(np.float64)
        assert np.all(np.abs(wq) == 127) or np.all(wq == 0), "affine weights must be ±127"
        s = wq.reshape(-1) * consts[node.input[3]].astype(np.float64)      # the FP32 weights
        t = consts[node.input[2]].astype(np.float64)
        a = node.attr
        real = (qin.astype(np.float64) - a["input_zero_point"].i) * a["input_scale"].f
        y = np.maximum(real * s + t, 0.0) if a["activation"].s == b"RELU" else real * s + t
        ref = np.clip(np.round(y / a["output_scale"].f) + a["output_zero_point"].i, 0, 255)
        diff = np.abs(qout.astype(np.int64) - ref.astype(np.int64))
        assert diff.max() <= 1 and np.mean(diff == 0) >= 0.99, (node.name, diff.max())


def _activation_zoo_model():
    """Convs joined by unary functions that have no fused INT8 activation."""
    inp = keras.Input((10, 10, 4))
    x = keras.layers.Conv2D(12, 3, padding="same", activation="swish")(inp)        # EfficientNet
    y = keras.layers.Conv2D(12, 1)(x)
    y = keras.layers.Multiply()([y, keras.layers.ReLU(6.0)(y + 3.0) * (1.0 / 6.0)])  # hard-swish
    z = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    z = keras.layers.Activation("gelu")(z)
    z = keras.layers.Conv2D(8, 1, activation="tanh")(z)
    z = keras.layers.Conv2D(8, 3)(z)
    return keras.Model(inp, keras.layers.Flatten()(z))


NUMPY_FUNCTIONS = {
    "swish": lambda v: v / (1.0 + np.exp(-v)),
    "hard_swish": lambda v: v * np.clip(v + 3.0, 0.0, 6.0) / 6.0,
    "gelu": lambda v: 0.5 * v * (1.0 + np.vectorize(__import__("math").erf)(v / np.sqrt(2.0))),
    "tanh": np.tanh,
}


def test_unary_functions_between_int8_ops_run_as_exact_lookup_tables():
    keras.utils.set_random_seed(6)
    model = _activation_zoo_model()
    x = RNG.normal(0, 1, (40, 10, 10, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    assert ops.get("Tfq8Lookup") == 4, ops
    assert not {"Sigmoid", "Mul", "Relu6", "AddV2", "Erf", "Tanh", "Tfq8Dequantize"} & set(ops)
    # A table adds one rounding (its input's) that the FP32 functions did not have: 10 roundings
    # here instead of 6. Table inputs and outputs get asymmetric qparams (any zero point is free
    # for a table), which buys most of it back: the error is 1.06× that of keeping the functions
    # in FP32 (1.45× with symmetric qparams); bounded at 1.3×.
    fp32 = model(x[32:]).numpy()
    cos = _cosine(fp32, q(x[32:]).numpy())
    kept = tfq8.quantize(model, x[:32], _config(keep_fp32=["Sigmoid", "Relu6", "Erf", "Tanh",
                                                             "AddV2", "Mul"]))
    assert "Tfq8Lookup" not in _ops(kept)
    cos_kept = _cosine(fp32, kept(x[32:]).numpy())
    assert cos.min() >= 0.9985, cos
    assert 1 - cos.mean() <= 1.3 * (1 - cos_kept.mean()), (cos.mean(), cos_kept.mean())
    # the lookups' tensors took the asymmetric scheme: zero points other than 0 / 128
    zps = {rows_zp for nd in q.graph_def.node if nd.op == "Tfq8Lookup"
           for rows_zp in [q.calibration_table[nd.name.removesuffix("/int8") + ":0"]
                           .qparams.zero_point]}
    assert zps - {0, 128}, zps

    # Each table is its function of the input's dequantized levels, quantized with the output's
    # qparams: checked against numpy (float64) within 1 LSB — TF's float32 sigmoid/erf may round
    # a level to the other side of a rounding boundary — and exactly for almost every entry.
    from tfq8.calibration.qparams import QParams
    nodes = {n.name: n for n in q.graph_def.node}
    tables = [n for n in q.graph_def.node if n.op == "Tfq8Lookup"]
    kinds = {"Sigmoid+Mul": "swish", "AddV2+Relu6+Mul+Mul": "hard_swish", "Tanh": "tanh"}
    rows = {r["node"]: r for r in q.report()["layers"]}
    seen = set()
    for nd in tables:
        fn = nd.attr["function"].s.decode()
        kind = kinds.get(fn, "gelu" if "Erf" in fn else None)
        assert kind is not None, fn
        seen.add(kind)
        table = tf.make_ndarray(nodes[nd.input[1]].attr["value"].tensor)
        row = rows[nd.name.removesuffix("/int8")]
        qin, qout = row["input_scales"][0], row["output_scale"]
        src = next(r for r in q.layers if r.node == row["node"])
        levels = src.input_qparams[0].dequantize(np.arange(256)).astype(np.float64)
        want = src.output_qparams.quantize(NUMPY_FUNCTIONS[kind](levels).astype(np.float32))
        diff = np.abs(table.astype(int) - want.astype(int))
        assert diff.max() <= 1 and np.mean(diff == 0) >= 0.98, (fn, diff.max(), qin, qout)
    assert seen == set(NUMPY_FUNCTIONS)


def test_lookup_regions_at_fp32_boundaries_stay_fp32():
    keras.utils.set_random_seed(7)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, activation="swish")(inp)   # read by the output only: FP32
    model = keras.Model(inp, x)
    data = RNG.normal(0, 1, (16, 8, 8, 3)).astype(np.float32)
    q = tfq8.quantize(model, data, _config())
    ops = _ops(q)
    assert "Tfq8Lookup" not in ops and ops.get("Sigmoid") == 1
    assert "Sigmoid" in q.report()["fp32_ops"]


def _squeeze_excite_model():
    """EfficientNet's SE block (pool → Reshape → reduce conv → expand conv → sigmoid gate) and
    MobileNetV3's (keepdims pool, ReLU, hard-sigmoid gate), each between INT8 convs."""
    inp = keras.Input((10, 10, 4))
    x = keras.layers.Conv2D(24, 3, padding="same", activation="swish")(inp)
    se = keras.layers.GlobalAveragePooling2D()(x)
    se = keras.layers.Reshape((1, 1, 24))(se)        # Keras 3: Shape → StridedSlice → Pack
    se = keras.layers.Conv2D(6, 1, activation="swish")(se)
    se = keras.layers.Conv2D(24, 1, activation="sigmoid")(se)
    x = keras.layers.Multiply()([x, se])
    x = keras.layers.Conv2D(16, 1)(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    g = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
    g = keras.layers.Conv2D(8, 1, activation="relu")(g)
    g = keras.layers.Conv2D(16, 1)(g)
    g = keras.layers.ReLU(6.0)(g + 3.0) * (1.0 / 6.0)  # hard sigmoid
    y = keras.layers.Multiply()([g, y])                 # gate first: either order is matched
    y = keras.layers.Conv2D(8, 3)(y)
    return keras.Model(inp, keras.layers.Flatten()(y))


def test_squeeze_excitation_gates_run_as_int8_channel_mul():
    keras.utils.set_random_seed(8)
    model = _squeeze_excite_model()
    x = RNG.normal(0, 1, (40, 10, 10, 4)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    assert ops.get("Tfq8ChannelMul") == 2, ops
    # the big tensors never leave INT8: no Dequantize (the pooled vector's Shape reads uint8);
    # what stays FP32 is the sigmoid gate's Sigmoid and the output Flatten's shape arithmetic.
    # The hard sigmoid's · 1/6 is folded into its Tfq8ChannelMul's input scale.
    assert "Tfq8Dequantize" not in ops and ops.get("Tfq8Quantize") == 1, ops
    fp32_ops = q.report()["fp32_ops"]
    assert fp32_ops.get("Sigmoid") == 1 and "Mul" not in fp32_ops, fp32_ops
    assert set(fp32_ops) <= {"Sigmoid", "Reshape"}, fp32_ops
    # the SE Reshape's Shape reads uint8 and writes int32: integer shape arithmetic
    integer_ops = q.report()["integer_ops"]
    assert integer_ops.get("Shape") == 1 and set(integer_ops) <= {"Shape", "StridedSlice",
                                                                   "Pack"}, integer_ops
    fp32 = model(x[32:]).numpy()
    cos = _cosine(fp32, q(x[32:]).numpy())
    # Keeping the gate multiply in FP32 costs the same two roundings (dequantize, then the
    # quantize for the next conv) plus the conversions: the error must not grow by more than
    # the f32 association of the multiplier (measured 1.00×).
    gates = [n.name for n in q.graph_def.node if n.op == "Tfq8ChannelMul"]
    kept = tfq8.quantize(model, x[:32], _config(keep_fp32=gates))
    assert "Tfq8ChannelMul" not in _ops(kept) and _ops(kept)["Tfq8Lookup"] == ops["Tfq8Lookup"]
    cos_kept = _cosine(fp32, kept(x[32:]).numpy())
    assert cos.min() >= 0.998, cos
    assert 1 - cos.mean() <= 1.1 * (1 - cos_kept.mean()), (cos.mean(), cos_kept.mean())

    # Bit-exact against the numpy reference, fed with the op's own input and FP32 gate tensors.
    (feed,) = [n.name for n in q.graph_def.node if n.op == "Placeholder"]
    for nd in (n for n in q.graph_def.node if n.op == "Tfq8ChannelMul"):
        qin, gate, qout = _run_int8_tensors(q.graph_def, {feed + ":0": x[32:]},
                                            [nd.input[0], nd.input[1], nd.name])
        a = nd.attr
        assert gate.dtype == np.float32 and gate.shape[1:3] == (1, 1) and qin.dtype == np.uint8
        want = numpy_ref.channel_mul(qin, gate, a["input_scale"].f, a["input_zero_point"].i,
                                     a["output_scale"].f, a["output_zero_point"].i)
        np.testing.assert_array_equal(qout, want, err_msg=nd.name)


def test_channel_mul_at_an_fp32_boundary_stays_fp32():
    keras.utils.set_random_seed(9)
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    g = keras.layers.Conv2D(8, 1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D(keepdims=True)(x))
    model = keras.Model(inp, keras.layers.Multiply()([x, g]))   # read by the output only
    q = tfq8.quantize(model, RNG.normal(0, 1, (16, 6, 6, 3)).astype(np.float32), _config())
    assert "Tfq8ChannelMul" not in _ops(q) and "Mul" in q.report()["fp32_ops"]


def _movement_model():
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    up = keras.layers.UpSampling2D(2)(keras.layers.MaxPooling2D(2)(a))   # ExpandDims/Tile/Reshape
    b = keras.layers.Conv2D(8, 1, activation="relu")(a)
    s = keras.layers.Add()([up, b])
    d2s = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(s)          # [16, 16, 2]
    pad = keras.layers.Lambda(lambda t: tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]],
                                               mode="REFLECT"))(d2s)
    out = keras.layers.Conv2D(4, 3)(pad)
    return keras.Model(inp, out)


def test_data_movement_between_int8_ops_runs_on_uint8_exactly():
    keras.utils.set_random_seed(9)
    model = _movement_model()
    x = RNG.normal(0, 1, (24, 8, 8, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], _config())
    rep = q.report()
    moving = rep["stock_ops_on_int8"]
    # the upsampling chain, the rearrangement and the reflection padding all move uint8 data
    for op in ("Tile", "DepthToSpace", "MirrorPad"):
        assert moving.get(op), moving
    # so the graph is INT8 from the input Quantize to the last conv: no conversion between
    ops = _ops(q)
    assert ops.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    assert ops.get("Tfq8Add") == 1, ops

    # Movement is exact: each op's uint8 output is numpy's movement of its uint8 input.
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    checks = {
        "DepthToSpace": lambda t: tf.nn.depth_to_space(t, 2).numpy(),
        "MirrorPad": lambda t: np.pad(t, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect"),
    }
    for op, fn in checks.items():
        (nd,) = [n for n in q.graph_def.node if n.op == op]
        src, got = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [nd.input[0], nd.name])
        assert src.dtype == np.uint8 and got.dtype == np.uint8
        np.testing.assert_array_equal(got, fn(src), err_msg=op)
    # the upsampled tensor (the Add's first input) is the pooled uint8 tensor repeated 2×2
    (add,) = [n for n in q.graph_def.node if n.op == "Tfq8Add"]
    (pool,) = [n for n in q.graph_def.node if n.op == "Tfq8MaxPool"]
    pooled, up = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [pool.name, add.input[0]])
    np.testing.assert_array_equal(up, pooled.repeat(2, 1).repeat(2, 2))

    fp32 = model(x[16:]).numpy()
    cos = _cosine(fp32, q(x[16:]).numpy())
    assert cos.min() >= 0.995, cos   # 4 INT8 layers and an add on a random model


def test_an_int8_tensor_that_is_also_a_model_output_is_not_clipped():
    """A conv output that the user sees (a model output) and INT8 layers read: the conv writes
    f32 for the output and a Quantize feeds its INT8 readers, so the output carries no output
    rounding or percentile clipping. A max pool's output in the same position (an op that writes
    only uint8) makes its input quantized over its full observed range instead."""
    keras.utils.set_random_seed(15)
    inp = keras.Input((8, 8, 3))
    feat = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    pooled = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(8, 3, padding="same",
                                                              activation="relu")(feat))
    head = keras.layers.Conv2D(4, 1)(pooled)
    model = keras.Model(inp, [head, feat, pooled])
    x = RNG.normal(0, 1, (24, 8, 8, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False, method="percentile",
                                                       percentile=99.0))
    nodes = {n.name: n for n in q.graph_def.node}
    # the first conv: reads the input's Quantize
    (fc,) = [n for n in q.graph_def.node if n.op == "Tfq8Conv2D"
             and nodes[n.input[0].split(":")[0]].op == "Tfq8Quantize"
             and nodes[nodes[n.input[0].split(":")[0]].input[0].split(":")[0]].op == "Placeholder"]
    assert fc.attr["out_type"].type == tf.float32.as_datatype_enum
    readers = [n.op for n in q.graph_def.node if any(i.split(":")[0] == fc.name for i in n.input)]
    assert "Tfq8Quantize" in readers, readers
    # the feature output is the conv's f32 result: numpy_ref's f32 conv on its uint8 input
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    xq, got = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [fc.input[0], fc.name])
    w, b, ws = (tf.make_ndarray(nodes[fc.input[i]].attr["value"].tensor) for i in (1, 2, 3))
    want = numpy_ref.conv2d(xq, w, b, ws, input_scale=fc.attr["input_scale"].f,
                            input_zero_point=fc.attr["input_zero_point"].i,
                            pads=(1, 1, 1, 1), activation="RELU", out_type="float32")
    np.testing.assert_array_equal(got, want)
    # the pool's output, read by the user, is the second conv's uint8 output: full observed
    # range, not the 99th percentile
    (pool,) = [n for n in q.graph_def.node if n.op == "Tfq8MaxPool"]
    src = pool.input[0].split(":")[0]
    entry = q.calibration_table[src + ":0"]
    assert entry.qparams.method == "percentile+max" and entry.qparams.amax == entry.max
    outs = q(x[16:])
    outs = list(outs.values()) if isinstance(outs, dict) else list(outs)
    got_pool = [o.numpy() for o in outs if o.shape[1:] == (4, 4, 8)][0]
    assert got_pool.max() <= entry.max * (1 + 1e-6)


def test_global_max_pooling_runs_on_the_uint8_codes():
    """Max over axes selects an element and dequantization is monotone, so the max of the
    codes is the code of the max: Keras' GlobalMaxPooling2D between a conv and a Dense runs
    on uint8 with no Dequantize/Quantize around it."""
    keras.utils.set_random_seed(12)
    inp = keras.Input((9, 9, 3))
    y = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.GlobalMaxPooling2D()(y)))
    x = RNG.normal(0, 1, (24, 9, 9, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], tfq8.QuantConfig(verbose=False, method="percentile",
                                                       percentile=99.0))
    ops = _ops(q)
    assert ops.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    assert q.report()["stock_ops_on_int8"].get("Max") == 1
    # the max reads the extremes, which a percentile threshold would clip: the conv output it
    # reads is quantized over its full observed range
    (conv,) = [n for n in q.graph_def.node if n.op == "Tfq8Conv2D"]
    entry = q.calibration_table[conv.name + ":0"]
    assert entry.qparams.method == "percentile+max" and entry.qparams.amax == entry.max
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    (mx,) = [n for n in q.graph_def.node if n.op == "Max"]
    src, got = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [mx.input[0], mx.name])
    assert src.dtype == np.uint8
    np.testing.assert_array_equal(got, src.max(axis=(1, 2)))
    cos = _cosine(model(x[16:]).numpy(), q(x[16:]).numpy())
    assert cos.min() >= 0.995, cos   # two INT8 layers on a random model


@pytest.mark.parametrize("rank", [1, 2])
def test_gated_activation_product_runs_int8_bit_exactly(rank):
    """WaveNet's gated unit tanh(conv_f(x)) · sigmoid(conv_g(x)), in 1-D and 2-D: both
    functions become tables and their product a Tfq8Mul, so the block is INT8 throughout."""
    keras.utils.set_random_seed(13)
    shape = (32, 4) if rank == 1 else (10, 10, 4)
    conv = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    inp = keras.Input(shape)
    y = conv(8, 3, padding="same", activation="relu")(inp)
    gate = keras.layers.Multiply()([conv(8, 3, padding="same", activation="tanh")(y),
                                    conv(8, 3, padding="same", activation="sigmoid")(y)])
    y = keras.layers.Add()([y, conv(8, 1)(gate)])
    model = keras.Model(inp, conv(3, 1)(y))
    x = RNG.normal(0, 1, (24,) + shape).astype(np.float32)
    q = tfq8.quantize(model, x[:16], _config())
    ops = _ops(q)
    assert ops.get("Tfq8Mul") == 1 and ops.get("Tfq8Lookup") == 2, ops
    assert ops.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    (mul,) = [n for n in q.graph_def.node if n.op == "Tfq8Mul"]
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    a, b, got = _run_int8_tensors(q.graph_def, {feed: x[16:]},
                                  [mul.input[0], mul.input[1], mul.name])
    at = mul.attr
    np.testing.assert_array_equal(got, numpy_ref.mul(
        a, b, at["a_scale"].f, at["a_zero_point"].i, at["b_scale"].f, at["b_zero_point"].i,
        at["output_scale"].f, at["output_zero_point"].i))
    cos = _cosine(model(x[16:]).numpy(), q(x[16:]).numpy())
    assert cos.min() >= 0.99, cos   # six INT8 layers, two tables and a product on random weights


def test_prelu_forms_run_int8_bit_exactly():
    """Keras' PReLU per channel (shared axes) and per position (its default), and
    max(x, α·x) written by hand, are found by what they compute and run as Tfq8Prelu between
    INT8 convs; nothing stays FP32."""
    keras.utils.set_random_seed(14)
    rng = np.random.default_rng(14)
    inp = keras.Input((9, 9, 3))
    y = keras.layers.Conv2D(8, 3, padding="same")(inp)
    y = keras.layers.PReLU(shared_axes=[1, 2])(y)
    y = keras.layers.Conv2D(8, 3, padding="same")(y)
    y = keras.layers.PReLU()(y)
    y = keras.layers.Conv2D(8, 1)(y)
    alpha = rng.uniform(0.05, 0.4, 8).astype(np.float32)
    y = keras.layers.Lambda(lambda t: tf.maximum(t, t * alpha))(y)
    model = keras.Model(inp, keras.layers.Conv2D(3, 1)(y))
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.4, layer.alpha.shape))
    x = RNG.normal(0, 1, (24, 9, 9, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], _config())
    ops = _ops(q)
    assert ops.get("Tfq8Prelu") == 3, ops
    assert not q.report()["fp32_ops"], q.report()["fp32_ops"]
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    nodes = {n.name: n for n in q.graph_def.node}
    for pr in [n for n in q.graph_def.node if n.op == "Tfq8Prelu"]:
        src, got = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [pr.input[0], pr.name])
        slopes = tf.make_ndarray(nodes[pr.input[1]].attr["value"].tensor)
        bias = tf.make_ndarray(nodes[pr.input[2]].attr["value"].tensor)
        a = pr.attr
        want = numpy_ref.prelu(src.reshape(len(src), -1, slopes.shape[1]), slopes, bias,
                               a["input_scale"].f, a["input_zero_point"].i, a["output_scale"].f,
                               a["output_zero_point"].i).reshape(src.shape)
        np.testing.assert_array_equal(got, want, err_msg=pr.name)
        assert np.any(slopes[0] != slopes[1])
    cos = _cosine(model(x[16:]).numpy(), q(x[16:]).numpy())
    assert cos.min() >= 0.995, cos   # five INT8 layers on a random model


def test_bilinear_upsampling_between_int8_ops_keeps_the_codes_scale():
    keras.utils.set_random_seed(10)
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")(a)
    b = keras.layers.Conv2D(8, 1, activation="relu")(inp)
    out = keras.layers.Conv2D(4, 3)(keras.layers.Add()([up, b]))
    model = keras.Model(inp, out)
    x = RNG.normal(0, 1, (24, 6, 6, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], _config())
    assert q.report()["stock_ops_on_int8"].get("ResizeBilinear") == 1
    ops = _ops(q)
    assert ops.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    # Interpolation weights sum to 1, so resizing the codes is resizing the values in the same
    # qparams: the output is the rounded (half to even) interpolation of the input codes.
    (rs,) = [n for n in q.graph_def.node if n.op == "ResizeBilinear"]
    (cast,) = [n for n in q.graph_def.node if n.op == "Cast"]
    (feed,) = [n.name + ":0" for n in q.graph_def.node if n.op == "Placeholder"]
    src, got = _run_int8_tensors(q.graph_def, {feed: x[16:]}, [rs.input[0], cast.name])
    want = tf.compat.v1.image.resize_bilinear(
        src.astype(np.float32), src.shape[1:3] * np.array(2),
        half_pixel_centers=rs.attr["half_pixel_centers"].b).numpy()
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.rint(want).astype(np.uint8))
    fp32 = model(x[16:]).numpy()
    assert _cosine(fp32, q(x[16:]).numpy()).min() >= 0.995


def _layernorm_model(**ln_kwargs):
    """ConvNeXt's pattern: conv → LayerNorm (channels) → pointwise convs, a depthwise conv →
    LayerNorm → Dense on NHWC, and a LayerNorm on the pooled [N, C] vector before the head."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(24, 2, strides=2)(inp)
    x = keras.layers.LayerNormalization(epsilon=1e-6, **ln_kwargs)(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    y = keras.layers.LayerNormalization(epsilon=1e-3, **ln_kwargs)(y)
    y = keras.layers.Dense(48, activation="relu")(y)
    y = keras.layers.Dense(24)(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(**ln_kwargs)(x)
    model = keras.Model(inp, keras.layers.Dense(5)(x))
    for layer in model.layers:      # trained-looking gamma/beta (Keras starts at 1 and 0)
        if isinstance(layer, keras.layers.LayerNormalization):
            for v in layer.weights:
                v.assign(RNG.uniform(0.5, 1.5, v.shape) if "gamma" in v.path
                         else RNG.normal(0, 0.3, v.shape))
    return model


def test_layer_norms_between_int8_ops_run_as_tfq8_layer_norm():
    keras.utils.set_random_seed(11)
    model = _layernorm_model()
    x = RNG.normal(0, 1, (40, 8, 8, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    assert ops.get("Tfq8LayerNorm") == 3, ops
    fp32_ops = q.report()["fp32_ops"]
    assert not {"Mean", "Rsqrt", "SquaredDifference", "Mul"} & set(fp32_ops), fp32_ops
    assert "Tfq8Dequantize" not in ops and ops.get("Tfq8Quantize") == 1, ops
    # the op's gamma, beta and epsilon are the layers' own (read off the graph numerically)
    lns = [layer for layer in model.layers if isinstance(layer, keras.layers.LayerNormalization)]
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor)
              for n in q.graph_def.node if n.op == "Const"}
    got = sorted((n.attr["epsilon"].f, tuple(consts[n.input[1]]), tuple(consts[n.input[2]]))
                 for n in q.graph_def.node if n.op == "Tfq8LayerNorm")
    want = sorted((np.float32(ln.epsilon), tuple(ln.gamma.numpy()), tuple(ln.beta.numpy()))
                  for ln in lns)
    for (ge, gg, gb), (we, wg, wb) in zip(got, want):
        assert ge == we
        np.testing.assert_allclose(gg, wg, rtol=1e-5)
        np.testing.assert_allclose(gb, wb, atol=1e-5)
    assert _cosine(model(x[32:]).numpy(), q(x[32:]).numpy()).min() >= 0.998

    # Bit-exact against the numpy reference on the op's own uint8 input.
    (feed,) = [n.name for n in q.graph_def.node if n.op == "Placeholder"]
    for nd in (n for n in q.graph_def.node if n.op == "Tfq8LayerNorm"):
        qin, qout = _run_int8_tensors(q.graph_def, {feed + ":0": x[32:]},
                                      [nd.input[0], nd.name])
        a = nd.attr
        want = numpy_ref.layer_norm(qin, consts[nd.input[1]], consts[nd.input[2]],
                                    a["input_scale"].f, a["output_scale"].f,
                                    a["output_zero_point"].i, a["epsilon"].f)
        np.testing.assert_array_equal(qout, want, err_msg=nd.name)


def test_hand_written_layer_norm_is_matched_and_near_misses_stay_fp32():
    """Any graph computing a layer norm over the last axis is matched (here
    tf.nn.moments + tf.nn.batch_normalization); an RMS norm, a norm over all non-batch axes
    and a "layer norm" whose variance skips the mean subtraction are not layer norms over the
    last axis and must stay FP32 with the model's output unchanged."""
    rng = np.random.default_rng(3)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 4, 16)), tf.float32)
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 16, 16)), tf.float32)
    gamma = tf.constant(rng.uniform(0.5, 1.5, 16), tf.float32)
    beta = tf.constant(rng.normal(0, 0.2, 16), tf.float32)

    def build(norm):
        @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32)])
        def f(x):
            h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
            h = norm(h)
            return tf.nn.conv2d(h, w2, 1, "SAME")
        return f

    def moments_ln(h):
        m, v = tf.nn.moments(h, axes=[-1], keepdims=True)
        return tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-5)

    def rms(h):
        return h * tf.math.rsqrt(tf.reduce_mean(tf.square(h), -1, keepdims=True) + 1e-5)

    def all_axes(h):
        m, v = tf.nn.moments(h, axes=[1, 2, 3], keepdims=True)
        return (h - m) * tf.math.rsqrt(v + 1e-5) * gamma + beta

    def no_centre(h):  # variance of x about 0, not about the mean: not a layer norm
        m = tf.reduce_mean(h, -1, keepdims=True)
        v = tf.reduce_mean(tf.square(h), -1, keepdims=True)
        return (h - m) * tf.math.rsqrt(v + 1e-5) * gamma + beta

    x = rng.normal(0, 1, (24, 6, 6, 4)).astype(np.float32)
    for norm, int8 in ((moments_ln, True), (rms, False), (all_axes, False), (no_centre, False)):
        f = build(norm)
        q = tfq8.quantize(f, x[:16], _config())
        assert (_ops(q).get("Tfq8LayerNorm") == 1) == int8, (norm.__name__, _ops(q))
        cos = _cosine(f(x[16:]).numpy(), q(x[16:]).numpy())
        assert cos.min() >= 0.995, (norm.__name__, cos.min())


def _normalized_input_model(extra_output=False):
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    norm = keras.layers.Normalization(mean=[0.485, 0.456, 0.406],
                                      variance=[0.229 ** 2, 0.224 ** 2, 0.225 ** 2])(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(norm)
    y = keras.layers.Conv2D(4, 1)(y)
    return keras.Model(inp, [y, norm] if extra_output else y)


def test_input_normalization_is_absorbed_into_the_quantize():
    """Rescaling + Normalization in front of the first conv: one Tfq8QuantizeChannels reads the
    model input, with the chain's affine (x/255 − mean)/std as its channel_mul/add (rtol 1e-6:
    composed in float64, stored in f32); its bytes equal numpy_ref's for those attributes, and
    are within one code of quantizing the FP32 chain's output (f32 rounding of the chain)."""
    keras.utils.set_random_seed(12)
    model = _normalized_input_model()
    x = RNG.uniform(0, 255, (24, 10, 10, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:16], _config())
    ops = _ops(q)
    assert ops.get("Tfq8QuantizeChannels") == 1 and "Tfq8Quantize" not in ops, ops
    assert not {"Mul", "Sub", "RealDiv", "Add", "AddV2"} & set(ops), ops
    (nd,) = [n for n in q.graph_def.node if n.op == "Tfq8QuantizeChannels"]
    (feed,) = [n.name for n in q.graph_def.node if n.op == "Placeholder"]
    assert nd.input[0] == feed
    std = np.array([0.229, 0.224, 0.225])
    mean = np.array([0.485, 0.456, 0.406])
    a = nd.attr
    np.testing.assert_allclose(a["channel_mul"].list.f, 1 / 255 / std, rtol=1e-6)
    np.testing.assert_allclose(a["channel_add"].list.f, -mean / std, rtol=1e-6)
    (got,) = _run_int8_tensors(q.graph_def, {feed + ":0": x[16:]}, [nd.name])
    want = numpy_ref.quantize_channels(x[16:], a["scale"].f, a["zero_point"].i,
                                       list(a["channel_mul"].list.f),
                                       list(a["channel_add"].list.f))
    np.testing.assert_array_equal(got, want)
    chain = ((x[16:] / np.float32(255) - mean.astype(np.float32)) / std.astype(np.float32))
    ref = numpy_ref.quantize(chain.astype(np.float32), a["scale"].f, a["zero_point"].i)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert _cosine(model(x[16:]).numpy(), q(x[16:]).numpy()).min() >= 0.999


def test_input_affine_stays_fp32_when_its_result_is_also_used_elsewhere():
    """The normalized input is also a model output: the FP32 chain must stay (that output is
    FP32's), so the quantize is not fused."""
    keras.utils.set_random_seed(13)
    model = _normalized_input_model(extra_output=True)
    x = RNG.uniform(0, 255, (16, 10, 10, 3)).astype(np.float32)
    q = tfq8.quantize(model, x, _config())
    ops = _ops(q)
    assert "Tfq8QuantizeChannels" not in ops and ops.get("Tfq8Quantize") == 1, ops
    # FP32 up to f32 rounding: freezing turns Keras' x / std into x * (1 / std).
    np.testing.assert_allclose(q(x)[1].numpy(), model(x)[1].numpy(), rtol=1e-6, atol=1e-6)


def test_input_affine_composition_and_broadcast_guards():
    """absorb_input_affines on hand-built chains: c − x, x / c and BiasAdd compose exactly (float64
    reference); a constant varying along a non-last axis, or one that would raise the rank,
    leaves the quantize alone."""
    from tfq8.passes.input_affine import absorb_input_affines

    def build(make):
        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [None, 4, 3], name="x")
            y = make(x)
            tfq8.ops.tfq8_quantize(y, scale=0.05, zero_point=128, name="q")
        return g.as_graph_def()

    c = np.array([0.5, -2.0, 4.0], np.float32)
    gd = build(lambda x: tf.nn.bias_add(2.0 - x / c, c))
    done = absorb_input_affines(gd, {"q"}, lambda t: (None, 4, 3))
    assert [d[0] for d in done] == ["q"] and len(done[0][1]) == 3
    (q,) = [n for n in gd.node if n.name == "q"]
    assert q.op == "Tfq8QuantizeChannels" and q.input[0] == "x"
    c64 = c.astype(np.float64)
    np.testing.assert_allclose(q.attr["channel_mul"].list.f, -1 / c64, rtol=1e-7)
    np.testing.assert_allclose(q.attr["channel_add"].list.f, 2.0 + c64, rtol=1e-7)
    for make in (lambda x: x * tf.constant([[1.0], [2.0], [3.0], [4.0]]),     # varies along axis 1
                 lambda x: x + tf.constant(np.ones((1, 1, 1, 3), np.float32)),  # rank 3 → 4
                 lambda x: x / tf.constant([1.0, 0.0, 1.0])):                  # division by 0
        gd = build(make)
        assert absorb_input_affines(gd, {"q"}, lambda t: (None, 4, 3)) == []
        assert [n.op for n in gd.node if n.name == "q"] == ["Tfq8Quantize"]


def _strided_fcn(hw):
    """Fully convolutional: strided SAME conv, depthwise and 5×5 convs, a residual add. Named
    layers and a fixed seed: every build has the same weights and tensor names."""
    keras.utils.set_random_seed(11)
    inp = keras.Input(tuple(hw) + (3,), name="img")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu",
                                     name="dw")(x)
    y = keras.layers.Conv2D(8, 1, name="pw")(y)
    s = keras.layers.Conv2D(8, 5, strides=2, padding="same", name="c5")(x)
    y = keras.layers.ReLU(name="relu")(keras.layers.Add(name="add")([y, s]))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="head")(y)
    return keras.Model(inp, y, name="fcn")


def test_strided_same_convs_with_unknown_spatial_size_stay_int8():
    """With unknown H/W, a strided SAME conv's padding depends on the input's size: the op is
    fed a PadV2 whose pads come from int32 arithmetic on Shape(x) at run time (they used to
    stay FP32). Exact: on every input size — even and odd — the outputs are bit for bit those
    of the same model quantized with a static size and the same calibration table."""
    dynamic = _strided_fcn((None, None))
    x = RNG.normal(0, 1, (16, 20, 20, 3)).astype(np.float32)
    q = tfq8.quantize(dynamic, x, _config())
    rep = q.report()
    assert all(r["int8"] for r in rep["layers"]), q.summary()
    assert _ops(q).get("PadV2") == 4, _ops(q)      # one per strided 3×3 / 5×5 SAME op
    for h, w in ((20, 20), (17, 23), (9, 8)):
        want = tfq8.quantize(_strided_fcn((h, w)), None,
                             _config(calibration_table=q.calibration_table))
        assert "PadV2" not in _ops(want)           # static sizes: pads are attributes
        xs = RNG.normal(0, 1, (2, h, w, 3)).astype(np.float32)
        np.testing.assert_array_equal(q(xs).numpy(), want(xs).numpy())
        cos = _cosine(dynamic(xs).numpy().reshape(2, -1), q(xs).numpy().reshape(2, -1))
        assert cos.min() >= 0.99, (h, w, cos)      # and close to FP32 (an off-by-one pad
                                                   # would shift every output pixel)


@pytest.mark.parametrize("act", ["gelu", "swish", "tanh"])
def test_layer_norm_followed_by_an_activation_that_reads_it_twice(act):
    """GELU (0.5·y·erfc(−y/√2)) reads the norm's output y twice: the matcher's region grows into
    both readers and must still find the norm (it used to give up, leaving LayerNorm and GELU
    in FP32). The norm is one Tfq8LayerNorm and the activation a table; no float compute left."""
    keras.utils.set_random_seed(12)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inp)
    x = keras.layers.Activation(act)(keras.layers.LayerNormalization()(x))
    model = keras.Model(inp, keras.layers.Conv2D(8, 3, padding="same")(x))
    x = RNG.normal(0, 1, (40, 8, 8, 3)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], _config())
    ops = _ops(q)
    assert ops.get("Tfq8LayerNorm") == 1 and ops.get("Tfq8Lookup") == 1, ops
    assert not q.report()["fp32_ops"], q.report()["fp32_ops"]
    assert _cosine(model(x[32:]).numpy().reshape(8, -1),
                   q(x[32:]).numpy().reshape(8, -1)).min() >= 0.998
