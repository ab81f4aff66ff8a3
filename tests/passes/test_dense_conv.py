"""dense_as_conv: Keras 3 ``Dense`` on an NHWC tensor (Reshape → MatMul → Reshape, shapes from
Shape/GatherV2/Prod at run time) becomes a 1×1 Conv2D with identical values, so the rest of the
pipeline (BN / layer-scale folding, lookups for GELU, residual summands) applies to it."""
import keras
import numpy as np

import tfq8
from tfq8.frontend import load_model
from tfq8.passes import PassContext, Pipeline, default_pipeline
from tfq8.passes.dense_conv import DenseAsConv
from tests.passes.int8_graph import cosine_rows

RNG = np.random.default_rng(5)


class _LayerScale(keras.layers.Layer):
    """ConvNeXt's per-channel residual-branch scale."""

    def build(self, shape):
        self.gamma = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def _convnext_like_block():
    keras.utils.set_random_seed(6)
    inp = keras.Input((10, 10, 8))
    x = keras.layers.Conv2D(16, 3, padding="same")(inp)
    y = keras.layers.DepthwiseConv2D(7, padding="same")(x)
    y = keras.layers.Dense(32)(y)                 # pointwise expansion on NHWC
    y = keras.layers.Activation("gelu")(y)
    y = keras.layers.Dense(16)(y)
    scale = _LayerScale()
    y = scale(y)
    y = keras.layers.Add()([x, y])
    model = keras.Model(inp, y)
    scale.gamma.assign(RNG.uniform(0.2, 1.0, 16).astype(np.float32))
    return model


def _run(graph_def, frozen, x):
    from tests.conftest import _run_graph
    return _run_graph(graph_def, {frozen.inputs[0].tensor: x}, [frozen.outputs[0].tensor])[0]


def test_dense_on_nhwc_becomes_an_exact_pointwise_conv():
    model = _convnext_like_block()
    frozen = load_model(model)
    ctx = PassContext.for_model(frozen)
    r = Pipeline([DenseAsConv()]).run(frozen.graph_def, ctx).results["dense_as_conv"]
    assert len(r.rewrites) == 2, r.notes
    ops = [n.op for n in r.graph_def.node]
    assert "MatMul" not in ops and ops.count("Conv2D") == 3
    # the shape arithmetic of both tensordots is gone with them
    assert not {"Reshape", "Shape", "GatherV2", "Prod", "Pack"} & set(ops), ops
    x = RNG.normal(0, 1, (3, 10, 10, 8)).astype(np.float32)
    # the same dot products in the same order: equal up to the conv kernel's summation order
    want = _run(frozen.graph_def, frozen, x)
    np.testing.assert_allclose(_run(r.graph_def, frozen, x), want, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())
    # and the whole pipeline folds the layer scale into the second conv
    full = default_pipeline().run(frozen.graph_def, ctx)
    assert any("folded Mul" in n.message for n in full.results["fold_batchnorm"].rewrites)
    np.testing.assert_allclose(_run(full.graph_def, frozen, x), want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())


def test_dense_on_sequences_and_flat_vectors_stays_matmul():
    inp = keras.Input((6, 8))                     # [N, T, C]: not an NHWC tensor
    y = keras.layers.Dense(4)(inp)
    flat = keras.layers.Flatten()(keras.Input((3, 3, 2)))
    for model in (keras.Model(inp, y), keras.Model(flat._keras_history[0].input, flat)):
        frozen = load_model(model)
        r = Pipeline([DenseAsConv()]).run(frozen.graph_def, PassContext.for_model(frozen))
        assert not r.changed


def test_convnext_like_block_quantizes_to_int8_with_gelu_table_and_summand():
    model = _convnext_like_block()
    x = RNG.normal(0, 1, (40, 10, 10, 8)).astype(np.float32)
    q = tfq8.quantize(model, x[:32], tfq8.QuantConfig(verbose=False, method="minmax"))
    ops = {}
    for n in q.graph_def.node:
        ops[n.op] = ops.get(n.op, 0) + 1
    assert ops.get("Tfq8Conv2D") == 3 and ops.get("Tfq8Lookup") == 1, ops
    assert not {"MatMul", "Tfq8MatMul", "Erfc", "Reshape"} & set(ops), ops
    # the residual add is the last conv's summand (which writes the FP32 output itself): one
    # Quantize at the input and no conversion after it
    assert ops.get("Tfq8Quantize") == 1 and "Tfq8Dequantize" not in ops, ops
    summands = [n for n in q.graph_def.node if n.op == "Tfq8Conv2D"
                and n.attr["num_summand"].i == 1]
    assert len(summands) == 1
    cos = cosine_rows(model(x[32:]).numpy(), q(x[32:]).numpy())
    # four INT8 ops and a table on a small random model: ~1e-3 relative noise each (measured
    # 0.9999)
    assert cos.min() >= 0.999, cos
