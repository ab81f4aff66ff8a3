"""tfq8.frontend: every model kind freezes to a graph that computes what the model computes,
with the signature's names, dtypes and None batch; clear errors for what cannot be frozen.

Tolerance: 1e-5 relative to the output magnitude (freezing and Grappler's constant folding
only reorder a few float32 products)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfq8.frontend import FrozenModel, ModelError, check_frozen, load_model
from tfq8.graph import TensorInfo, make_const, make_node

RNG = np.random.default_rng(5)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def run_frozen(frozen: FrozenModel, run_graph, *xs):
    feeds = {t.tensor: x for t, x in zip(frozen.inputs, xs)}
    return run_graph(frozen.graph_def, feeds, frozen.output_tensors)


def keras_conv_model():
    import keras
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    bn = model.layers[1]
    bn.moving_mean.assign(rand(4) * 0.1)
    bn.moving_variance.assign(np.abs(rand(4)) + 0.5)
    bn.beta.assign(rand(4) * 0.1)
    model.layers[0].bias.assign(rand(4) * 0.1)
    return model


# ---------------------------------------------------------------- model kinds
def test_tf_function_with_signature_dict_outputs(run_graph, rel_err):
    w = tf.Variable(rand(4, 3))

    @tf.function
    def inner(x):  # a nested function call: inlined by freezing
        return tf.nn.relu(x) * 2.0

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="feat"),
                                  tf.TensorSpec([None], tf.int32, name="ids")])
    def f(x, ids):
        return {"y": inner(x) @ w, "z": x + tf.cast(ids, tf.float32)[:, None]}

    frozen = load_model(f)
    assert [(t.name, t.dtype, t.shape) for t in frozen.inputs] == [
        ("feat", tf.float32, (None, 4)), ("ids", tf.int32, (None,))]
    assert [(t.name, t.shape) for t in frozen.outputs] == [("y", (None, 3)), ("z", (None, 4))]
    assert frozen.output_structure == "dict" and frozen.signature_name == "serving_default"
    assert len(frozen.graph_def.library.function) == 0
    assert {"VarHandleOp", "ReadVariableOp", "PartitionedCall",
            "StatefulPartitionedCall"}.isdisjoint(frozen.op_counts())
    x, ids = rand(3, 4), np.array([1, 2, 3], np.int32)
    got = run_frozen(frozen, run_graph, x, ids)
    want = f(x, ids)
    assert rel_err(got[0], want["y"]) <= 1e-5 and rel_err(got[1], want["z"]) <= 1e-5


def test_concrete_function_and_single_traced_function(run_graph, rel_err):
    @tf.function
    def f(x):
        return [x * 3.0, x - 1.0]

    cf = f.get_concrete_function(tf.TensorSpec([None, 2], tf.float32))
    for model in (cf, f):  # f was traced exactly once
        frozen = load_model(model)
        assert frozen.output_structure == "list"
        assert [t.name for t in frozen.inputs] == ["x"]
        assert [t.name for t in frozen.outputs] == ["output_0", "output_1"]
        x = rand(2, 2)
        got = run_frozen(frozen, run_graph, x)
        assert rel_err(got[0], x * 3) <= 1e-6 and rel_err(got[1], x - 1) <= 1e-6


def test_keras_sequential_batchnorm_is_decomposed_and_folded_constants(run_graph, rel_err):
    model = keras_conv_model()
    frozen = load_model(model)
    (inp,) = frozen.inputs
    assert inp.shape == (None, 8, 8, 3) and inp.dtype == tf.float32
    assert frozen.output_structure == "tensor" and frozen.outputs[0].name == "output_0"
    ops = frozen.op_counts()
    # Keras 3's BN after Grappler: Conv2D → BiasAdd → Mul → AddV2, constants folded.
    assert ops["Conv2D"] == 1 and ops["Mul"] == 1 and "Rsqrt" not in ops
    assert not any(op.startswith("_") for op in ops)  # no remapper/_Fused ops
    x = rand(2, 8, 8, 3)
    assert rel_err(run_frozen(frozen, run_graph, x)[0], model(x)) <= 1e-5


def test_keras_file_path(tmp_path, run_graph, rel_err):
    model = keras_conv_model()
    path = str(tmp_path / "m.keras")
    model.save(path)
    frozen = load_model(path)
    x = rand(2, 8, 8, 3)
    assert rel_err(run_frozen(frozen, run_graph, x)[0], model(x)) <= 1e-5


def test_keras_functional_multi_input_multi_output(run_graph, rel_err):
    import keras
    a, b = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    s = keras.layers.Dense(3)(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], [s, keras.layers.Dense(2)(s)])
    frozen = load_model(model)
    assert [t.name for t in frozen.inputs] == ["left", "right"]
    assert frozen.output_structure == "list" and len(frozen.outputs) == 2
    x, y = rand(2, 4), rand(2, 4)
    got, want = run_frozen(frozen, run_graph, x, y), model([x, y])
    assert all(rel_err(g, w) <= 1e-5 for g, w in zip(got, want))


def test_keras_functional_dict_inputs(run_graph, rel_err):
    import keras
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    model = keras.Model({"a": a, "b": b}, keras.layers.Add()([a, b]))
    frozen = load_model(model)
    assert [t.name for t in frozen.inputs] == ["a", "b"]
    x, y = rand(2, 4), rand(2, 4)
    assert rel_err(run_frozen(frozen, run_graph, x, y)[0], x + y) <= 1e-6


def test_keras_subclassed_built_model(run_graph, rel_err):
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3, bias_initializer="ones")

        def call(self, x):
            return tf.nn.relu6(self.d(x))

    net = Net()
    net(tf.zeros((2, 5)))
    frozen = load_model(net)
    assert frozen.inputs[0].shape == (None, 5)
    x = rand(3, 5)
    assert rel_err(run_frozen(frozen, run_graph, x)[0], net(x)) <= 1e-5

    with pytest.raises(ModelError, match="never built"):
        load_model(Net())


def test_tf_keras_model(run_graph, rel_err):
    import tf_keras as k2
    inp = k2.Input((6, 6, 2), name="img")
    out = k2.layers.BatchNormalization()(k2.layers.Conv2D(3, 3)(inp))
    model = k2.Model(inp, out)
    model.layers[-1].set_weights([np.ones(3), rand(3), rand(3) * .1, np.abs(rand(3)) + .5])
    frozen = load_model(model)
    assert frozen.inputs[0].name == "img" and frozen.op_counts()["FusedBatchNormV3"] == 1
    x = rand(2, 6, 6, 2)
    assert rel_err(run_frozen(frozen, run_graph, x)[0], model(x, training=False)) <= 1e-5


def test_saved_model_signatures(tmp_path, run_graph, rel_err):
    module = tf.Module()
    module.w = tf.Variable(rand(3, 2))
    module.serve = tf.function(lambda x: {"scores": x @ module.w},
                               input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    module.other = tf.function(lambda x: {"twice": 2.0 * x},
                               input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    path = str(tmp_path / "sm")
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.serve.get_concrete_function(),
        "double": module.other.get_concrete_function()})
    frozen = load_model(path)
    assert frozen.signature_name == "serving_default"
    assert [t.name for t in frozen.inputs] == ["x"]
    assert [t.name for t in frozen.outputs] == ["scores"] and frozen.output_structure == "dict"
    x = rand(4, 3)
    assert rel_err(run_frozen(frozen, run_graph, x)[0], x @ module.w.numpy()) <= 1e-5
    double = load_model(path, signature="double")
    assert double.outputs[0].name == "twice"
    assert rel_err(run_frozen(double, run_graph, x)[0], 2 * x) <= 1e-6
    with pytest.raises(ModelError, match="no signature 'nope'; available: double, serving_default"):
        load_model(path, signature="nope")
    with pytest.raises(ModelError, match="2 signatures.*pick one"):
        load_model(path, signature=None)
    loaded = tf.saved_model.load(path)  # an already loaded SavedModel works too
    assert load_model(loaded, signature="double").outputs[0].name == "twice"


# ---------------------------------------------------------------- errors
SPEC = [tf.TensorSpec([None, 4], tf.float32)]


def test_error_unsupported_object_and_paths(tmp_path):
    with pytest.raises(ModelError, match="model: unsupported object of type builtins.int"):
        load_model(42)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_model(str(tmp_path))
    assert issubclass(ModelError, ValueError) and issubclass(ModelError, TypeError)


def test_error_tf_function_without_signature():
    @tf.function
    def f(x):
        return x

    with pytest.raises(ModelError, match="no input_signature and 0 traced"):
        load_model(f)


def test_error_py_function():
    @tf.function(input_signature=SPEC)
    def f(x):
        return tf.py_function(lambda a: a * 2, [x], tf.float32)

    with pytest.raises(ModelError, match=r"EagerPyFunc.*calls back into Python"):
        load_model(f)


def test_error_stateful_op():
    @tf.function(input_signature=SPEC)
    def f(x):
        return x + tf.random.uniform(tf.shape(x))

    with pytest.raises(ModelError, match=r"'random_uniform/RandomUniform' \(RandomUniform\) is stateful"):
        load_model(f)


def test_error_variable_update_and_resource_left_after_freezing():
    v = tf.Variable(1.0)

    @tf.function(input_signature=SPEC)
    def f(x):
        v.assign_add(1.0)
        return x * v

    with pytest.raises(ModelError, match=r"AssignAddVariableOp.*resource"):
        load_model(f)

    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant([1, 2], tf.int64), tf.constant([3.0, 4.0])), -1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def g(x):
        return table.lookup(x)

    with pytest.raises(ModelError, match="resource"):
        load_model(g)


def test_check_frozen_rejects_placeholderless_inputs_and_unfed_placeholders():
    gd = graph_pb2.GraphDef()
    gd.node.extend([
        make_node("Placeholder", "x", [], {"dtype": tf.float32}),
        make_node("Placeholder", "extra", [], {"dtype": tf.float32}),
        make_const("c", np.ones(2, np.float32)),
        make_node("AddV2", "y", ["x", "c"], {"T": tf.float32}),
    ])
    out = [TensorInfo("y", "y:0", tf.float32, (2,))]
    with pytest.raises(ModelError, match="'extra' is a Placeholder that is not a signature input"):
        check_frozen(gd, [TensorInfo("x", "x:0", tf.float32, (2,))], out)
    del gd.node[1]
    with pytest.raises(ModelError, match="input 'x': c:0 is produced by a Const, not a Placeholder"):
        check_frozen(gd, [TensorInfo("x", "c:0", tf.float32, (2,))], out)
    check_frozen(gd, [TensorInfo("x", "x:0", tf.float32, (2,))], out)
