"""tfq8.quantize / QuantizedModel end to end: inputs it accepts, errors it gives, and the
SavedModel it writes running in a fresh process through both loaders (TF Serving's path is the
TF1 loader). Numerics: the reloaded model must give the *same bytes* as the in-process one
(same graph, same kernels), and stay close to FP32 (cosine ≥ 0.999 on a small random model)."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfq8

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="scores")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def data():
    return RNG.normal(0, 1, (24, 12, 12, 3)).astype(np.float32)


def _cfg(**kw):
    kw.setdefault("verbose", False)
    return tfq8.QuantConfig(**kw)


@pytest.fixture(scope="module")
def int8(model, data):
    return tfq8.quantize(model, data[:16], _cfg())


def test_close_to_fp32_and_unknown_batch(model, data, int8):
    for bs in (1, 3, 8):
        ref, out = model(data[:bs]).numpy(), int8(data[:bs]).numpy()
        cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
        assert cos.min() >= 0.999
    assert int8.inputs[0].shape[0] is None


@pytest.mark.parametrize("kind", ["dict", "dataset", "generator", "tuple_with_labels"])
def test_calibration_data_forms(model, data, int8, kind):
    x = data[:16]
    if kind == "dict":
        d = {"pixels": x}
    elif kind == "dataset":
        d = tf.data.Dataset.from_tensor_slices(x).batch(4)
    elif kind == "generator":
        d = (x[i:i + 4] for i in range(0, 16, 4))
    else:
        d = [(x[i:i + 8], np.zeros(8)) for i in range(0, 16, 8)]
    # Same samples → same ranges as the numpy-array calibration. minmax, because histogram
    # methods legitimately depend on how the samples are split into batches (re-binning);
    # no equalization / range search, which need the data twice (a generator is skipped).
    cfg = dict(method="minmax", range_search=False, passes={"equalize": False})
    q = tfq8.quantize(model, d, _cfg(**cfg))
    ref = tfq8.quantize(model, x, _cfg(**cfg))
    assert q.calibration_table.to_dict()["tensors"] == ref.calibration_table.to_dict()["tensors"]


@pytest.mark.parametrize("bad,match", [
    (np.full((4, 12, 12, 3), np.nan, np.float32), "pixels"),
    (np.zeros((4, 10, 12, 3), np.float32), "pixels"),
    (np.zeros((0, 12, 12, 3), np.float32), "empty|no calibration|0 samples"),
])
def test_bad_calibration_data_names_the_input(model, bad, match):
    with pytest.raises(ValueError, match=match):
        tfq8.quantize(model, bad, _cfg())


def test_bias_correction_and_scheme_options(model, data, int8, tmp_path):
    x = data[:16]
    corr = int8.calibration_table.metadata["bias_correction"]
    assert corr and all(np.all(np.isfinite(v)) for v in corr.values())
    plain = tfq8.quantize(model, x, _cfg(bias_correction=False))
    assert "bias_correction" not in plain.calibration_table.metadata
    assert plain.calibration_table.to_dict()["tensors"] == \
        int8.calibration_table.to_dict()["tensors"]   # only the biases differ
    # re-quantizing from the saved table reproduces the corrected model without data
    path = tmp_path / "table.json"
    int8.calibration_table.save(path)
    again = tfq8.quantize(model, None, _cfg(calibration_table=str(path)))
    np.testing.assert_array_equal(again(data[:4]).numpy(), int8(data[:4]).numpy())
    # a one-shot generator is consumed by calibration: no correction, no error
    gen = tfq8.quantize(model, (x[i:i + 4] for i in range(0, 16, 4)), _cfg())
    assert "bias_correction" not in gen.calibration_table.metadata
    asym = tfq8.quantize(model, x, _cfg(activation_scheme="asymmetric"))
    zps = {e.qparams.zero_point for e in asym.calibration_table.values() if e.qparams.signed}
    assert zps and 128 not in zps or len(zps) > 1
    ref = model(data[:8]).numpy()
    out = asym(data[:8]).numpy()
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert cos.min() >= 0.999
    with pytest.raises(ValueError, match="activation_scheme"):
        tfq8.quantize(model, x, _cfg(activation_scheme="affine"))


def _filters(q):
    """{INT8 op name: its int8 filter} from the emitted graph."""
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in q.graph_def.node
              if n.op == "Const"}
    return {n.name: consts[n.input[1]] for n in q.graph_def.node
            if n.op in ("Tfq8Conv2D", "Tfq8DepthwiseConv2D", "Tfq8MatMul")}


def test_weight_rounding_option_and_table(model, data, int8, tmp_path):
    from tfq8.calibration.weight_rounding import decode_int8_weights

    x = data[:16]
    meta = int8.calibration_table.metadata["weight_rounding"]
    assert meta["per_channel"] is True
    # conv (432 patch rows per batch for K = 27) and depthwise; the Dense sees 16 rows for 8
    # weights per channel (< MIN_ROWS_PER_WEIGHT · K) and keeps round-to-nearest
    assert sorted(_filters(int8)) and len(meta["layers"]) == 2
    assert "output-error weight rounding on 2 layer(s)" in int8.summary()
    plain = tfq8.quantize(model, x, _cfg(weight_rounding=False))
    assert "weight_rounding" not in plain.calibration_table.metadata
    assert "round-to-nearest weights" in plain.summary()
    got, rtn = _filters(int8), _filters(plain)
    assert got.keys() == rtn.keys()
    changed = 0
    for name in got:
        d = got[name].astype(int) - rtn[name].astype(int)
        assert np.abs(d).max() <= 2, name          # a re-rounding, not other weights
        changed += int(np.count_nonzero(d))
        key = [k for k in meta["layers"] if k == name or name.startswith(k + "/")]
        if key:
            np.testing.assert_array_equal(
                got[name], decode_int8_weights(meta["layers"][key[0]], rtn[name]))
        else:
            np.testing.assert_array_equal(got[name], rtn[name])
    assert changed > 0
    # the table reproduces the rounding without data; it cannot be dropped or reinterpreted
    path = tmp_path / "table.json"
    int8.calibration_table.save(path)
    again = tfq8.quantize(model, None, _cfg(calibration_table=str(path)))
    for name, f in _filters(again).items():
        np.testing.assert_array_equal(f, got[name])
    with pytest.raises(ValueError, match="weight_rounding=True"):
        tfq8.quantize(model, None, _cfg(calibration_table=str(path), weight_rounding=False))
    with pytest.raises(ValueError, match="per_channel"):
        tfq8.quantize(model, None, _cfg(calibration_table=str(path), per_channel=False))


def test_bad_config_and_model():
    with pytest.raises(ValueError, match="method"):
        tfq8.quantize(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                      np.zeros((2, 4), np.float32), _cfg(method="kl"))
    with pytest.raises((TypeError, ValueError), match="model"):
        tfq8.quantize(object(), np.zeros((2, 4), np.float32), _cfg())
    with pytest.raises((OSError, ValueError), match="no_such_dir"):
        tfq8.quantize("/no_such_dir", np.zeros((2, 4), np.float32), _cfg())


def test_saved_model_runs_in_fresh_process_through_both_loaders(int8, data, tmp_path):
    path = str(tmp_path / "m")
    int8.save(path)
    np.save(tmp_path / "x.npy", data[:5])
    expected = int8(data[:5]).numpy()
    assets = os.listdir(os.path.join(path, "assets"))
    assert "tfq8_calibration.json" in assets
    table = json.load(open(os.path.join(path, "assets", "tfq8_calibration.json")))
    assert table["format"] == "tfq8.calibration_table"
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        import tfq8
        x = np.load({str(tmp_path / 'x.npy')!r})
        m = tf.saved_model.load({path!r})
        a = m.signatures["serving_default"](pixels=tf.constant(x))
        (a,) = a.values()
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], {path!r})
            sig = meta.signature_def["serving_default"]
            assert list(sig.inputs) == ["pixels"], list(sig.inputs)
            b = sess.run(list(sig.outputs.values())[0].name, {{sig.inputs["pixels"].name: x}})
        np.save({str(tmp_path / 'a.npy')!r}, a.numpy()); np.save({str(tmp_path / 'b.npy')!r}, b)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), expected)


def test_saved_model_without_tfq8_names_the_op(int8, tmp_path):
    path = str(tmp_path / "m")
    int8.save(path)
    script = f"import tensorflow as tf; tf.saved_model.load({path!r})"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode != 0
    assert "Tfq8" in proc.stderr  # "Op type not registered 'Tfq8…'": the fix is `import tfq8`


def test_summary_and_report(int8):
    s = int8.summary()
    assert "Tfq8Conv2D 1" in s and "Tfq8DepthwiseConv2D 1" in s and "Tfq8MatMul 1" in s
    rep = int8.report()
    assert all(r["int8"] for r in rep["layers"])
    assert not rep["fp32_ops"], rep["fp32_ops"]


def test_optimize_summary_reports_folding(model, data):
    opt = tfq8.optimize(model)
    np.testing.assert_allclose(opt(data[:4]).numpy(), model(data[:4]).numpy(), rtol=1e-4,
                               atol=1e-4 * np.abs(model(data[:4]).numpy()).max())
    s = opt.summary()
    assert "fold_batchnorm: changed" in s and "MACs" in s


def test_keep_fp32_typo_is_an_error_naming_close_layer_names():
    import keras
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="stem_conv")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1, name="head")(x))
    data = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"'stem_cnv'.*did you mean \['stem_conv'"):
        tfq8.quantize(model, data, tfq8.QuantConfig(verbose=False, keep_fp32=["stem_cnv"]))
    # a layer name, an op type absent from this model and a node name are all fine
    q = tfq8.quantize(model, data, tfq8.QuantConfig(verbose=False,
                                                    keep_fp32=["stem_conv", "Softmax"]))
    assert q.op_counts().get("Tfq8Conv2D") == 1


def test_calibration_batches_of_different_image_sizes():
    """A fully convolutional model calibrated on batches of two sizes: the bias correction's
    per-position means are kept per size and weighted by samples."""
    import keras
    keras.utils.set_random_seed(4)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, padding="same")(x))
    rng = np.random.default_rng(1)
    batches = [rng.random((8, s, s, 3), np.float32) for s in (12, 20)]
    q = tfq8.quantize(model, batches, tfq8.QuantConfig(verbose=False))
    x = rng.random((2, 16, 16, 3), np.float32)
    want, got = model(x).numpy().ravel(), q(x).numpy().ravel()
    assert np.dot(want, got) / np.linalg.norm(want) / np.linalg.norm(got) >= 0.999


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_sequential_built_by_a_call_on_one_sample_keeps_the_batch_unknown():
    """Keras records batch 1 in a Sequential built by `model(x[:1])` but runs any batch;
    the INT8 model must too (cosine ≥ 0.999 vs FP32: a 2-layer random model)."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(2).random((16, 12, 12, 3), np.float32)
    model(x[:1])
    q = tfq8.quantize(model, x, _cfg())
    assert q.inputs[0].shape[0] is None
    assert q(x).shape == (16, 3)
    assert _cosine(model(x), q(x)) >= 0.999


def test_input_names_keras_had_to_sanitize_work_in_data_and_calls():
    """An input named "meta feats" becomes the op name "meta_feats"; calibration dicts and
    calls take either spelling and give the same bytes."""
    keras.utils.set_random_seed(6)
    a = keras.Input((8, 8, 3), name="image")
    b = keras.Input((4,), name="meta feats")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same")(a))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([x, keras.layers.Dense(4)(b)]))
    model = keras.Model({"image": a, "meta feats": b}, out)
    rng = np.random.default_rng(3)
    raw = {"image": rng.random((16, 8, 8, 3), np.float32),
           "meta feats": rng.random((16, 4), np.float32)}
    q = tfq8.quantize(model, raw, _cfg())
    assert sorted(t.name for t in q.inputs) == ["image", "meta_feats"]
    got = q(raw).numpy()
    np.testing.assert_array_equal(
        got, q({"image": raw["image"], "meta_feats": raw["meta feats"]}).numpy())
    assert _cosine(model(raw), got) >= 0.999
    with pytest.raises(TypeError, match="unknown: \\['meta feat'\\]"):
        q({"image": raw["image"], "meta feat": raw["meta feats"]})


def test_infinite_dataset_without_num_samples_is_an_error(model, data):
    ds = tf.data.Dataset.from_tensor_slices(data).batch(8).repeat()
    with pytest.raises(ValueError, match="infinite tf.data.Dataset.*num_samples"):
        tfq8.quantize(model, ds, _cfg(num_samples=None))
    q = tfq8.quantize(model, ds, _cfg(num_samples=16))  # bounded: fine
    assert q(data[:2]).shape == (2, 5)


def test_nan_input_is_an_error_not_a_finite_answer(model, data, int8):
    """FP32 gives NaN for a NaN pixel; INT8 has no NaN, so the model's Tfq8Quantize refuses."""
    x = data[:2].copy()
    x[1, 3, 3, 0] = np.nan
    assert np.isnan(model(x).numpy()[1]).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="contains NaN"):
        int8(x)
    x[1] = np.inf  # Inf saturates, as any out-of-range value does
    assert np.isfinite(int8(x).numpy()).all()


def test_uint8_image_input_is_read_directly_and_equals_the_float_input_model():
    """A model taking uint8 images (Input(dtype="uint8") → Rescaling) needs no Cast and no
    Quantize: its input at scale 1 is its own code. It must give exactly the bytes of the same
    model taking the same pixel values as float32 (whose input also quantizes at scale 1:
    integer-valued calibration data is quantized losslessly)."""
    def build(dtype):
        keras.utils.set_random_seed(3)
        inp = keras.Input((10, 10, 3), dtype=dtype)
        x = keras.layers.Rescaling(1 / 255.0)(inp)
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, keras.layers.Dense(4)(x))

    pixels = RNG.integers(0, 256, (20, 10, 10, 3)).astype(np.uint8)
    pixels[0, :3] = 255       # saturated pixels that a histogram threshold would clip
    q8 = tfq8.quantize(build("uint8"), pixels[:12], _cfg())
    qf = tfq8.quantize(build("float32"), pixels[:12].astype(np.float32), _cfg())
    ops = [n.op for n in q8.graph_def.node]
    assert "Cast" not in ops and "Tfq8Quantize" not in ops, ops
    (conv,) = [n for n in q8.graph_def.node if n.op == "Tfq8Conv2D"]
    placeholder = [n.name for n in q8.graph_def.node if n.op == "Placeholder"]
    assert conv.input[0].split(":")[0] in placeholder
    (quant,) = [n for n in qf.graph_def.node if n.op == "Tfq8Quantize"]
    assert quant.attr["scale"].f == 1.0 and quant.attr["zero_point"].i == 0
    np.testing.assert_array_equal(q8(pixels[12:]).numpy(),
                                  qf(pixels[12:].astype(np.float32)).numpy())


def _pairable_model():
    """Convs of every kind the u8_safe_pairs option treats differently, with trained-like
    (Laplace: mostly small, a few large) weights that channel pairing can exploit."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    inp = keras.Input((12, 12, 3), name="pixels")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="first")(inp)
    x = keras.layers.Conv2D(32, 1, activation="relu6", name="expand")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, name="project")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="winograd")(x)
    x = keras.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu",
                            name="strided")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="scores")(x)
    m = keras.Model(inp, out)
    for layer in m.layers:
        if getattr(layer, "kernel", None) is not None:
            k = layer.kernel.shape
            layer.kernel.assign(rng.laplace(0, 0.1, k).astype(np.float32))
    return m


def _layer_of(node):
    """Keras layer name of a node name ("model/expand_1/Relu6" → "expand"): Keras 3 suffixes
    the op scope with "_<n>"."""
    import re
    return re.sub(r"_\d+$", "", node.split("/")[-2])


def test_u8_safe_pairs_option(data, tmp_path):
    """QuantConfig(u8_safe_pairs=True): the layers the AVX2 u8 kernel runs (1×1, strided 3×3,
    Dense) are made u8-safe when it is cheap — no same-sign pair of input channels (2j, 2j+1)
    of their int8 filters over 128 (checked by loops here), noise factor ≤ 1.25 reported —
    while the first conv (3 input channels) and the 3×3 stride-1 conv (Winograd) keep plain
    scales. The model stays close to FP32 (cosine ≥ 0.995) and bit-identical between the
    reference kernels and the AVX2 ones; the table remembers the choice."""
    import os

    model = _pairable_model()
    x = RNG.normal(0, 1, (24, 12, 12, 3)).astype(np.float32)
    safe = tfq8.quantize(model, x[:16], _cfg(u8_safe_pairs=True))
    rows = {r["node"]: r for r in safe.report()["layers"]}
    noise = {_layer_of(n): r["u8_pairs_weight_noise"] for n, r in rows.items()
             if "u8_pairs_weight_noise" in r}
    assert all(1.0 <= v <= 1.25 for v in noise.values()), noise
    assert not {"first", "winograd", "dw"} & set(noise), noise
    assert len(noise) >= 2, noise                  # the pairing made some layers cheap
    assert "u8-safe weight pairs" in safe.summary()
    filters = _filters(safe)
    checked = 0
    for name, f in filters.items():
        if _layer_of(name) not in noise:
            continue
        w = f.reshape(-1, f.shape[-2], f.shape[-1]).astype(int)
        for t in range(w.shape[0]):
            for j in range(0, w.shape[1] - 1, 2):
                for o in range(w.shape[2]):
                    a, b = w[t, j, o], w[t, j + 1, o]
                    assert a * b <= 0 or abs(a) + abs(b) <= 128, (name, t, j, o, a, b)
        checked += 1
    assert checked == len(noise)
    ref, out = model(x).numpy(), safe(x).numpy()
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert cos.min() >= 0.995
    old = os.environ.get("TFQ8_ISA")
    try:
        os.environ["TFQ8_ISA"] = "ref"
        want = safe(x).numpy()
    finally:
        os.environ.pop("TFQ8_ISA") if old is None else os.environ.update(TFQ8_ISA=old)
    np.testing.assert_array_equal(out, want)
    meta = safe.calibration_table.metadata["weight_rounding"]
    assert meta["u8_safe_pairs"] is True
    path = tmp_path / "table.json"
    safe.calibration_table.save(path)
    again = tfq8.quantize(model, None, _cfg(calibration_table=str(path), u8_safe_pairs=True))
    for name, f in _filters(again).items():
        np.testing.assert_array_equal(f, filters[name])
    with pytest.raises(ValueError, match="u8_safe_pairs"):
        tfq8.quantize(model, None, _cfg(calibration_table=str(path)))


def test_u8_pair_max_noise_bound(tmp_path):
    """QuantConfig.u8_pair_max_noise: inf makes every layer the u8 kernel runs u8-safe
    (expand, project, strided, scores — never first, winograd or dw), 1.0 only those that
    cost nothing (fewer, on this model); the default 1.25 admits the rest here. The bound is kept in the calibration table and a
    different one is refused on reuse; a bound below 1 or NaN is refused up front."""
    model = _pairable_model()
    x = RNG.normal(0, 1, (16, 12, 12, 3)).astype(np.float32)

    def safe_layers(q):
        return {_layer_of(r["node"]): r["u8_pairs_weight_noise"]
                for r in q.report()["layers"] if "u8_pairs_weight_noise" in r}

    every = tfq8.quantize(model, x, _cfg(u8_safe_pairs=True, u8_pair_max_noise=float("inf")))
    all_safe = safe_layers(every)
    assert set(all_safe) == {"expand", "project", "strided", "scores"}, all_safe
    assert "u8_pair_max_noise=inf" in every.summary()
    free = safe_layers(tfq8.quantize(model, x, _cfg(u8_safe_pairs=True, u8_pair_max_noise=1.0)))
    assert all(v == 1.0 for v in free.values()), free
    default = safe_layers(tfq8.quantize(model, x, _cfg(u8_safe_pairs=True)))
    # here the bound decides: expand and strided need 1.1-1.12×, project and scores nothing
    assert set(free) < set(default) <= set(all_safe), (free, default)
    assert all(v <= 1.25 for v in default.values()), default
    path = tmp_path / "table.json"
    every.calibration_table.save(path)
    assert json.loads(path.read_text())["metadata"]["weight_rounding"]["u8_pair_max_noise"] \
        == "inf"
    again = tfq8.quantize(model, None, _cfg(calibration_table=str(path), u8_safe_pairs=True,
                                            u8_pair_max_noise=float("inf")))
    np.testing.assert_array_equal(again(x).numpy(), every(x).numpy())
    with pytest.raises(ValueError, match="u8_pair_max_noise=inf"):
        tfq8.quantize(model, None, _cfg(calibration_table=str(path), u8_safe_pairs=True))
    for bad in (0.5, float("nan")):
        with pytest.raises(ValueError, match="u8_pair_max_noise must be >= 1"):
            tfq8.quantize(model, x, _cfg(u8_safe_pairs=True, u8_pair_max_noise=bad))


def test_range_search_fallback_guard_keeps_only_helpful_runs():
    """When all of the range search's moves together make the outputs worse, the guard tries
    them in consecutive runs of graph order and keeps a run only if the error drops. Checked
    against an additive error model with a known answer: runs 1 and 3 of 4 help."""
    from tfq8.api import _keep_helpful_groups

    moved = [f"t{i}" for i in range(8)]                    # runs of 2: (t0 t1) (t2 t3) …
    gain = {"t0": -1.0, "t1": 0.5, "t2": 2.0, "t3": -0.5, "t4": -1.0, "t5": -1.0,
            "t6": 3.0, "t7": 0.0}                          # error change if moved
    before = {t: "old" for t in moved + ["other"]}
    after = {t: "new" for t in moved}

    def error(entries):
        return 10.0 + sum(gain[t] for t, v in entries.items() if v == "new")

    assert error({**before, **after}) > error(before)      # all together: worse
    entries, kept, tried = _keep_helpful_groups(moved, before, after, error, error(before), 4)
    assert kept == ["t0", "t1", "t4", "t5"]
    assert tried == [9.5, 11.0, 7.5, 10.5]
    assert entries == {**before, **{t: "new" for t in kept}}
    # one run per tensor when there are fewer tensors than runs; nothing kept if nothing helps
    _, kept, tried = _keep_helpful_groups(["t2"], before, after, error, error(before), 4)
    assert kept == [] and tried == [12.0]


def test_report_lists_unquantizable_layers_and_separates_integer_ops():
    """A layer kind tfq8 has no INT8 kernel for (Conv3D) is listed among the FP32 layers with
    the reason, not only counted as an op; int32 shape arithmetic (nearest UpSampling2D's
    StridedSlice / ConcatV2 on a Shape) is not counted as FP32 compute."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((4, 8, 8, 2))
    m3 = keras.Model(inp, keras.layers.Conv3D(4, 3, padding="same")(inp))
    q3 = tfq8.quantize(m3, RNG.normal(0, 1, (8, 4, 8, 8, 2)).astype(np.float32), _cfg())
    rows = [r for r in q3.report()["layers"] if r["op"] == "Conv3D"]
    assert len(rows) == 1 and not rows[0]["int8"], q3.report()["layers"]
    assert "no INT8 kernel for Conv3D" in rows[0]["reason"]
    assert "layers kept in FP32: 1" in q3.summary()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(4, 3)(keras.layers.UpSampling2D()(x))
    q = tfq8.quantize(keras.Model(inp, x), RNG.normal(0, 1, (8, 8, 8, 3)).astype(np.float32),
                      _cfg())
    rep = q.report()
    assert "StridedSlice" in rep["integer_ops"] and "StridedSlice" not in rep["fp32_ops"], rep
    assert not rep["fp32_ops"], rep["fp32_ops"]           # all float compute is INT8
    assert "integer ops (shapes, indices" in q.summary()
