"""tfq8.export: frontend → callable and SavedModel round trips, both loaders (the TF1 one in a
fresh process, as TF Serving loads it), saved_model_cli, assets, custom ops.

Tolerance: 1e-5 relative to the output magnitude (the exported graph is the frozen graph; the
only differences are TF's runtime choices of kernels)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfq8.export import GraphModel, make_callable, save_saved_model
from tfq8.frontend import load_model

RNG = np.random.default_rng(11)
TOL = 1e-5


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def keras_model():
    import keras
    model = keras.Sequential([keras.Input((8, 8, 3), name="image"), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    bn = model.layers[1]
    bn.moving_mean.assign(rand(4) * .1)
    bn.moving_variance.assign(np.abs(rand(4)) + .5)
    return model


@pytest.fixture(scope="module")
def two_input_fn():
    w = tf.Variable(rand(4, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="feat"),
                                  tf.TensorSpec([None], tf.int32, name="ids")])
    def f(feat, ids):
        return {"scores": tf.nn.relu(feat) @ w, "shifted": feat + tf.cast(ids, tf.float32)[:, None]}
    return f


@pytest.fixture(scope="module")
def add_one_op(tmp_path_factory):
    """A tiny custom op library built with TF's flags (what Tfq8* ops will look like)."""
    d = tmp_path_factory.mktemp("op")
    src = d / "add_one.cc"
    src.write_text(textwrap.dedent("""
        #include "tensorflow/core/framework/op.h"
        #include "tensorflow/core/framework/op_kernel.h"
        #include "tensorflow/core/framework/common_shape_fns.h"
        using namespace tensorflow;
        REGISTER_OP("Tfq8ExportTestAddOne").Input("x: float").Output("y: float")
            .SetShapeFn(shape_inference::UnchangedShape);
        class AddOne : public OpKernel {
         public:
          explicit AddOne(OpKernelConstruction* c) : OpKernel(c) {}
          void Compute(OpKernelContext* c) override {
            const Tensor& x = c->input(0);
            Tensor* y = nullptr;
            OP_REQUIRES_OK(c, c->allocate_output(0, x.shape(), &y));
            auto in = x.flat<float>();
            auto out = y->flat<float>();
            for (int64_t i = 0; i < in.size(); ++i) out(i) = in(i) + 1.0f;
          }
        };
        REGISTER_KERNEL_BUILDER(Name("Tfq8ExportTestAddOne").Device(DEVICE_CPU), AddOne);
        """))
    so = d / "add_one.so"
    cmd = (["g++", "-shared", "-fPIC", "-O1", "-Wno-deprecated-declarations", str(src), "-o",
            str(so)] + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(so), tf.load_op_library(str(so))


def run_fresh_v1_loader(tmp_path, jobs, op_library=None):
    """In one new Python process: for each (path, signature, feeds) the TF1 loader +
    Session.run, the path TF Serving's loader takes. Returns [(outputs, input specs)]."""
    script = tmp_path / "load_v1.py"
    script.write_text(textwrap.dedent("""
        import sys, json, numpy as np, tensorflow as tf
        jobs, lib = json.loads(sys.argv[1]), sys.argv[2]
        if lib != "-":
            tf.load_op_library(lib)
        specs = []
        for path, sig, feeds_file, out_file in jobs:
            feeds = dict(np.load(feeds_file))
            with tf.compat.v1.Session(graph=tf.Graph()) as sess:
                meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
                s = meta.signature_def[sig]
                names = sorted(s.outputs)
                outs = sess.run([s.outputs[k].name for k in names],
                                {s.inputs[k].name: v for k, v in feeds.items()})
            np.savez(out_file, **dict(zip(names, outs)))
            specs.append({k: [s.inputs[k].dtype, [d.size for d in s.inputs[k].tensor_shape.dim]]
                          for k in s.inputs})
        print(json.dumps(specs))
        """))
    args = []
    for i, (path, signature, feeds) in enumerate(jobs):
        np.savez(tmp_path / f"feeds{i}.npz", **feeds)
        args.append([path, signature, str(tmp_path / f"feeds{i}.npz"),
                     str(tmp_path / f"out{i}.npz")])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script), json.dumps(args), op_library or "-"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    specs = json.loads(proc.stdout.strip().splitlines()[-1])
    return [(dict(np.load(a[3])), spec) for a, spec in zip(args, specs)]


# ---------------------------------------------------------------- callable
def test_callable_keras_model(keras_model, rel_err):
    frozen = load_model(keras_model)
    fn = make_callable(frozen.graph_def, frozen.inputs, frozen.outputs, frozen.output_structure)
    assert isinstance(fn, GraphModel)
    (spec,) = fn.function.input_signature
    assert (spec.name, spec.dtype, spec.shape.as_list()) == ("image", tf.float32, [None, 8, 8, 3])
    for batch in (1, 3):
        x = rand(batch, 8, 8, 3)
        y = fn(x)
        assert isinstance(y, tf.Tensor) and y.shape == (batch, 5)
        assert rel_err(y, keras_model(x)) <= TOL
    assert rel_err(fn(image=x), keras_model(x)) <= TOL
    with pytest.raises(TypeError, match="unknown input"):
        fn(nope=x)


def test_callable_dict_and_list_outputs(two_input_fn, rel_err):
    frozen = load_model(two_input_fn)
    fn = make_callable(frozen)  # a FrozenModel alone: its own output structure (dict)
    feat, ids = rand(2, 4), np.array([3, -1], np.int32)
    got, want = fn(feat, ids=ids), two_input_fn(feat, ids)
    assert set(got) == {"scores", "shifted"}
    assert all(rel_err(got[k], want[k]) <= TOL for k in want)
    as_list = make_callable(frozen.graph_def, frozen.inputs, frozen.outputs, "tuple")(feat, ids)
    assert isinstance(as_list, tuple) and len(as_list) == 2


def test_eager_tensor_fast_path_matches_and_checks_the_signature(keras_model, two_input_fn):
    """Eager tensors that fit the signature go to the concrete function directly (skipping the
    tf.function's dispatch): same bytes as the tf.function; a tensor of the wrong shape or
    dtype is refused before the graph runs, as the tf.function refuses it."""
    frozen = load_model(keras_model)
    fn = make_callable(frozen)
    x = tf.constant(rand(2, 8, 8, 3))
    np.testing.assert_array_equal(fn(x).numpy(), fn.function(x).numpy())
    assert fn._concrete is not None
    for bad in (tf.zeros([2, 6, 6, 3]), tf.zeros([2, 8, 8, 3], tf.float64)):
        with pytest.raises(TypeError, match="Can not cast TensorSpec"):
            fn(bad)
    frozen = load_model(two_input_fn)
    fn = make_callable(frozen.graph_def, frozen.inputs, frozen.outputs, "tuple")
    feat, ids = tf.constant(rand(2, 4)), tf.constant([3, -1], tf.int32)
    got, want = fn(feat, ids), fn.function(feat, ids)
    assert isinstance(got, tuple)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


# ---------------------------------------------------------------- SavedModel
def test_saved_model_both_loaders_cli_and_assets(keras_model, two_input_fn, tmp_path, rel_err):
    frozen = load_model(keras_model)
    path = str(tmp_path / "keras_sm")
    save_saved_model(frozen.graph_def, frozen.inputs, frozen.outputs, path, "serving_default",
                     assets={"calibration.json": '{"a": 1}', "blob.bin": b"\x00\x01"},
                     output_structure=frozen.output_structure)
    assert open(os.path.join(path, "assets", "calibration.json")).read() == '{"a": 1}'
    assert open(os.path.join(path, "assets", "blob.bin"), "rb").read() == b"\x00\x01"
    x = rand(2, 8, 8, 3)
    want = keras_model(x).numpy()

    # TF2 loader: the callable keeps the original structure, the signature returns a dict.
    loaded = tf.saved_model.load(path)
    assert rel_err(loaded(x), want) <= TOL
    sig = loaded.signatures["serving_default"]
    (kwargs,) = [sig.structured_input_signature[1]]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in kwargs.items()} == {
        "image": (tf.float32, [None, 8, 8, 3])}
    out = sig(image=tf.constant(x))
    assert list(out) == ["output_0"] and rel_err(out["output_0"], want) <= TOL

    # A second model: two inputs of two dtypes, dict outputs, a custom signature name.
    frozen2 = load_model(two_input_fn)
    path2 = str(tmp_path / "fn_sm")
    save_saved_model(frozen2.graph_def, frozen2.inputs, frozen2.outputs, path2, "predict")
    feat, ids = rand(3, 4), np.array([1, 2, 3], np.int32)
    want2 = two_input_fn(feat, ids)

    # TF1 loader in a fresh process (TF Serving's path), both models.
    (got, inputs), (got2, inputs2) = run_fresh_v1_loader(tmp_path, [
        (path, "serving_default", {"image": x}), (path2, "predict", {"feat": feat, "ids": ids})])
    assert rel_err(got["output_0"], want) <= TOL
    assert inputs == {"image": [tf.float32.as_datatype_enum, [-1, 8, 8, 3]]}
    assert all(rel_err(got2[k], want2[k]) <= TOL for k in want2)
    assert inputs2["ids"] == [tf.int32.as_datatype_enum, [-1]]

    cli = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli",
                          "show", "--all", "--dir", path2], capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    text = cli.stdout
    assert "signature_def['predict']" in text
    assert "inputs['feat'] tensor_info" in text and "inputs['ids'] tensor_info" in text
    assert "DT_INT32" in text and "shape: (-1, 4)" in text
    assert "outputs['scores'] tensor_info" in text and "outputs['shifted'] tensor_info" in text


def test_export_keeps_the_graph_as_given(tmp_path):
    """No Grappler at export: an unfused Conv2D → BiasAdd → Relu stays three nodes."""
    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 2], tf.float32, name="x")])
    def f(x):
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, rand(3, 3, 2, 4), 1, "SAME"), rand(4)))
    frozen = load_model(f)
    path = str(tmp_path / "sm")
    save_saved_model(frozen.graph_def, frozen.inputs, frozen.outputs, path)
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    ops = {n.op for fn in sm.meta_graphs[0].graph_def.library.function for n in fn.node_def}
    assert {"Conv2D", "BiasAdd", "Relu"} <= ops and not any(o.startswith("_Fused") for o in ops)


def test_custom_op_graph_exports_and_loads_in_fresh_process(add_one_op, tmp_path, rel_err):
    so, lib = add_one_op

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="v")])
    def f(v):
        return lib.tfq8_export_test_add_one(v * 2.0)

    frozen = load_model(f)
    assert "Tfq8ExportTestAddOne" in frozen.op_counts()
    x = rand(4, 3)
    fn = make_callable(frozen)
    assert rel_err(fn(x), 2 * x + 1) <= TOL
    path = str(tmp_path / "custom_sm")
    save_saved_model(frozen.graph_def, frozen.inputs, frozen.outputs, path, "serving_default")
    assert rel_err(tf.saved_model.load(path).signatures["serving_default"](v=x)["output_0"],
                   2 * x + 1) <= TOL
    ((got, _),) = run_fresh_v1_loader(tmp_path, [(path, "serving_default", {"v": x})],
                                      op_library=so)
    assert rel_err(got["output_0"], 2 * x + 1) <= TOL


def test_inputs_as_list_dict_or_keywords_also_after_saving(two_input_fn, tmp_path, rel_err):
    """Like a Keras model: one list/tuple, one {name: x} dict, keywords — and the SavedModel's
    loaded callable takes every one of those forms too (and positional inputs, also numpy);
    inputs in the wrong order get an error that names the input and the expected order."""
    fn = make_callable(load_model(two_input_fn))
    feat, ids = rand(3, 4), np.array([3, -1, 0], np.int32)
    want = two_input_fn(feat, ids)
    for got in (fn([feat, ids]), fn((feat, ids)), fn({"feat": feat, "ids": ids}),
                fn(ids=ids, feat=feat)):
        assert all(rel_err(got[k], want[k]) <= TOL for k in want)
    with pytest.raises(TypeError, match="missing: \\['ids'\\]"):
        fn({"feat": feat})
    path = fn.save(str(tmp_path / "sm"))
    loaded = tf.saved_model.load(path)
    ft, it = tf.constant(feat), tf.constant(ids)
    for got in (loaded(feat=ft, ids=it), loaded(ft, it), loaded([ft, it]),
                loaded({"feat": ft, "ids": it}), loaded(feat, ids), loaded({"feat": feat,
                                                                            "ids": ids})):
        assert all(rel_err(got[k], want[k]) <= TOL for k in want)
    with pytest.raises(TypeError, match="input 0 \\('feat'\\) must have shape \\(None, 4\\)"):
        fn(ids, feat)


def test_a_single_input_also_takes_a_name_dict(keras_model, tmp_path, rel_err):
    fn = make_callable(load_model(keras_model))
    name = fn.inputs[0].name
    x = rand(2, *[d for d in fn.inputs[0].shape[1:]])
    want = keras_model(x).numpy()
    assert rel_err(fn({name: x}).numpy(), want) <= TOL
    loaded = tf.saved_model.load(fn.save(str(tmp_path / "sm")))
    assert rel_err(loaded({name: tf.constant(x)}).numpy(), want) <= TOL
    assert rel_err(loaded(x).numpy(), want) <= TOL


def test_saved_model_written_by_tfq8_loads_back_into_tfq8(keras_model, tmp_path, rel_err):
    """import_graph_def with an input_map leaves the original Placeholders in the exported
    function, unread; freezing that SavedModel again must drop them, not refuse the graph."""
    import tfq8
    path = tfq8.optimize(keras_model).save(str(tmp_path / "opt"))
    again = load_model(path)
    assert [n.op for n in again.graph_def.node].count("Placeholder") == 1
    x = rand(2, 8, 8, 3)
    (got,) = make_callable(again)(x).values()     # via its signature: a dict of outputs
    assert rel_err(got, keras_model(x)) <= TOL


def test_recurrent_layers_stay_fp32_while_loops_and_export(tmp_path):
    """An LSTM/GRU is a while loop: lowered it is a graph cycle, so it stays a functional While
    (FP32, in the report) while the convs around it run INT8; the result saves and loads."""
    import keras

    import tfq8
    keras.utils.set_random_seed(2)
    inp = keras.Input((12, 4), name="series")
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GRU(8, return_sequences=True)(x)
    x = keras.layers.Conv1D(8, 3, padding="same")(x)
    x = keras.layers.LSTM(6)(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    data = RNG.normal(size=(48, 12, 4)).astype(np.float32)
    q = tfq8.quantize(model, data[:32], tfq8.QuantConfig(verbose=False, method="minmax"))
    report = q.report()
    assert report["fp32_ops"].get("While") == 2, report["fp32_ops"]
    assert report["op_counts"].get("Tfq8Conv2D") == 2, report["op_counts"]
    want, got = model(data[32:]).numpy(), q(data[32:]).numpy()
    cos = np.sum(want * got, 1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.999, cos      # two INT8 convs feeding smooth recurrent layers
    loaded = tf.saved_model.load(q.save(str(tmp_path / "rnn_int8")))
    np.testing.assert_array_equal(np.asarray(loaded(data[32:])), got)
