"""Quantize many Keras applications and report what happened: a robustness sweep, not a speed test.

For every architecture: random weights with BN statistics set on the calibration photos (one
training-mode pass with momentum 0, as in tests/e2e/test_keras_apps_cosine.py), `tfq8.quantize`
with the default config, then on held-out photos: logits cosine vs FP32 (raw and centred),
top-1 agreement, how many ops run in INT8, which stay FP32 and why, and the wall time.
A model that fails to quantize or to run is reported with the error, and the sweep goes on.

Random-weight networks are far less well-conditioned than trained ones, so the cosine here says
"nothing is badly broken" (a wrong rewrite shows as cosine ≈ 0), not "this is the accuracy a
trained model gets". Input sizes are kept small to fit a 2-core machine.

    python bench/zoo.py                          # the default list
    python bench/zoo.py --models EfficientNetB0 DenseNet121 --size 96
    python bench/zoo.py --json out.json          # machine-readable rows as well
    python bench/zoo.py --time 30                # and batch-1 latency, FP32 vs INT8
    python bench/zoo.py --config weight_rounding=False   # a QuantConfig field changed
    python bench/zoo.py --tflite                 # and TFLite full-INT8's cosine on the same data

`--tflite` converts the same Keras model with TFLiteConverter (full INT8 builtins, the same
calibration photos as the representative dataset, batch 1) and scores it on the same held-out
photos: the peer a TensorFlow user would reach for first, as a yardstick for the cosines of
these badly conditioned random-weight networks.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# name → (input size, keyword arguments); sizes are the smallest each architecture accepts well
DEFAULT_MODELS = {
    "MobileNet": (96, {}),
    "MobileNetV3Small": (96, {"include_preprocessing": False}),
    "MobileNetV3Large": (96, {"include_preprocessing": False}),
    "EfficientNetB0": (96, {}),
    "EfficientNetV2B0": (96, {"include_preprocessing": False}),
    "DenseNet121": (96, {}),
    "Xception": (96, {}),
    "ResNet50V2": (96, {}),
    "VGG16": (64, {}),
    "NASNetMobile": (224, {}),  # NASNet only builds at 224 without weights
    "InceptionResNetV2": (96, {}),
    "ConvNeXtTiny": (64, {"include_preprocessing": False}),
    # not Keras applications: a small segmentation net (see _unet), a WaveNet-style 1-D net on
    # the image rows (_gated_tcn) and a MobileFaceNet-style PReLU net (_prelu_facenet)
    "UNetSmall": (64, {}),
    "GatedTCN": (64, {}),
    "PReLUFaceNet": (96, {}),
}
CUSTOM = {"UNetSmall": lambda size: _unet(size), "GatedTCN": lambda size: _gated_tcn(size),
          "PReLUFaceNet": lambda size: _prelu_facenet(size)}


def _unet(size, classes=8):
    """U-Net-style encoder/decoder with the layers segmentation models use: dilated conv,
    Conv2DTranspose, bilinear and nearest upsampling, skip concatenations, per-pixel logits."""
    import keras
    L = keras.layers
    inp = keras.Input((size, size, 3))

    def block(x, ch, **kw):
        x = L.Conv2D(ch, 3, padding="same", use_bias=False, **kw)(x)
        return L.ReLU()(L.BatchNormalization()(x))

    e1 = block(inp, 16)
    e2 = block(L.MaxPooling2D(2)(e1), 32)
    e3 = block(L.MaxPooling2D(2)(e2), 64, dilation_rate=2)
    d2 = L.Conv2DTranspose(32, 2, strides=2, padding="same")(e3)
    d2 = block(L.Concatenate()([d2, e2]), 32)
    d1 = L.UpSampling2D(2, interpolation="bilinear")(d2)
    d1 = block(L.Concatenate()([d1, e1]), 16)
    ctx = L.UpSampling2D(4)(L.Conv2D(16, 1)(L.AveragePooling2D(4)(e1)))
    return keras.Model(inp, L.Conv2D(classes, 1)(L.Add()([d1, ctx])), name="unet_small")


def _gated_tcn(size, classes=10):
    """WaveNet-style 1-D net over the image's rows (each row a step of width·3 features):
    causal dilated Conv1D, gated activations tanh·sigmoid, residual and skip sums, global max
    pooling — 1-D convs, Tfq8Mul and a max reduction on uint8."""
    import keras
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.Conv1D(32, 1)(L.Reshape((size, size * 3))(inp))
    skips = []
    for rate in (1, 2, 4, 8):
        f = L.Conv1D(32, 3, padding="causal", dilation_rate=rate, activation="tanh")(x)
        g = L.Conv1D(32, 3, padding="causal", dilation_rate=rate, activation="sigmoid")(x)
        z = L.Multiply()([f, g])
        skips.append(L.Conv1D(32, 1)(z))
        x = L.Add()([x, L.Conv1D(32, 1)(z)])
    y = L.ReLU()(L.Add()(skips))
    y = L.Conv1D(64, 1, activation="relu")(y)
    return keras.Model(inp, L.Dense(classes)(L.GlobalMaxPooling1D()(y)), name="gated_tcn")


def _prelu_facenet(size, dim=128):
    """MobileFaceNet-style embedding net: conv/BN/PReLU (per channel), depthwise blocks with
    linear bottlenecks and residual adds, a global depthwise conv, a linear embedding."""
    import keras
    L = keras.layers

    def cbp(x, ch, k=1, s=1, dw=False):
        conv = (L.DepthwiseConv2D(k, s, padding="same", use_bias=False) if dw else
                L.Conv2D(ch, k, s, padding="same", use_bias=False))
        return L.PReLU(shared_axes=[1, 2])(L.BatchNormalization()(conv(x)))

    inp = keras.Input((size, size, 3))
    x = cbp(inp, 32, 3, 2)
    x = cbp(x, 32, 3, dw=True)
    for ch, stride in ((48, 2), (48, 1), (64, 2), (64, 1)):
        y = cbp(x, ch * 2)
        y = cbp(y, ch * 2, 3, stride, dw=True)
        y = L.BatchNormalization()(L.Conv2D(ch, 1, use_bias=False)(y))
        x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == ch else y
    x = cbp(x, 256)
    x = L.BatchNormalization()(L.DepthwiseConv2D(x.shape[1], use_bias=False)(x))   # GDC
    x = L.Conv2D(dim, 1, use_bias=False)(x)
    return keras.Model(inp, L.Flatten()(L.BatchNormalization()(x)), name="prelu_facenet")


def _photos(size, n_calib, n_eval):
    try:
        from tests.e2e import datasets
        sets = datasets.photo_sets(size, "torch")
        return sets["calibration"][:n_calib], sets["evaluation"][:n_eval], "photos"
    except Exception as e:  # noqa: BLE001 - test-only packages may be missing
        print(f"(no bundled photos: {e}; using smooth random images)")
        rng = np.random.default_rng(0)
        def smooth(n):
            x = rng.normal(size=(n, size // 8, size // 8, 3)).astype(np.float32)
            return np.repeat(np.repeat(x, 8, 1), 8, 2)
        return smooth(n_calib), smooth(n_eval), "random"


def build(name, size, kwargs, bn_data, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    if name in CUSTOM:
        model = CUSTOM[name](size)
    else:
        ctor = getattr(keras.applications, name)
        model = ctor(weights=None, input_shape=(size, size, 3), classes=1000,
                     classifier_activation=None, **kwargs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:      # trained PReLU slopes are not Keras' initial zeros
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.3, layer.alpha.shape).astype(np.float32))
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    momenta = []
    for layer in bns:
        ch = layer.moving_mean.shape[-1]
        if layer.gamma is not None:
            layer.gamma.assign(rng.uniform(0.5, 1.5, ch).astype(np.float32))
        if layer.beta is not None:
            layer.beta.assign(rng.normal(0.0, 0.1, ch).astype(np.float32))
        momenta.append(layer.momentum)
        layer.momentum = 0.0
    if bns:
        model(bn_data, training=True)
    for layer, m in zip(bns, momenta):
        layer.momentum = m
    return model


def cosine_rows(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def _out(x):
    if isinstance(x, dict):
        x = next(iter(x.values()))
    if isinstance(x, (list, tuple)):
        x = x[0]
    return np.asarray(x)


def _median_ms(fn, x, runs):
    for _ in range(3):
        fn(x)   # warm-up: tracing, first-call allocations
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _out(fn(x))
        times.append(time.perf_counter() - t0)
    return round(1e3 * float(np.median(times)), 2)


def tflite_outputs(model, calib, evaluation):
    """TFLite full-INT8 (builtin INT8 ops, float input/output) of `model` on `evaluation`."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = tf.lite.Interpreter(model_content=converter.convert(), num_threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    outs = []
    for i in range(len(evaluation)):
        interpreter.set_tensor(inp, evaluation[i:i + 1])
        interpreter.invoke()
        outs.append(interpreter.get_tensor(out).copy())
    return np.concatenate(outs)


def run_one(name, size, kwargs, calib, evaluation, num_samples, timing_runs=0, config=None,
            tflite=False):
    import tensorflow as tf
    import tfq8
    row = {"model": name, "size": size}
    t0 = time.perf_counter()
    model = build(name, size, kwargs, calib[:32])
    row["build_s"] = round(time.perf_counter() - t0, 1)
    fp32 = np.concatenate([_out(model(evaluation[i:i + 16], training=False))
                           for i in range(0, len(evaluation), 16)])
    t0 = time.perf_counter()
    q = tfq8.quantize(model, calib, tfq8.QuantConfig(
        **{"num_samples": num_samples, "verbose": False, **(config or {})}))
    row["quantize_s"] = round(time.perf_counter() - t0, 1)
    out = np.concatenate([_out(q(evaluation[i:i + 16])) for i in range(0, len(evaluation), 16)])
    cos = cosine_rows(fp32, out)
    mu = fp32.mean(0, keepdims=True)
    cos_c = cosine_rows(fp32 - mu, out - mu)
    if tflite:
        try:
            lite = tflite_outputs(model, calib[:num_samples], evaluation)
            row["tflite_centred_cosine_mean"] = round(float(
                cosine_rows(fp32 - mu, lite - mu).mean()), 5)
            row["tflite_top1_agreement"] = round(float(
                np.mean(fp32.argmax(-1) == lite.argmax(-1))), 3)
        except Exception as e:  # noqa: BLE001 - the peer failing is a result, not a crash
            row["tflite_error"] = f"{type(e).__name__}: {e}"[:300]
    if timing_runs:
        fp32_fn = tf.function(lambda b: model(b, training=False))
        row["fp32_ms_b1"] = _median_ms(fp32_fn, evaluation[:1], timing_runs)
        row["int8_ms_b1"] = _median_ms(q, evaluation[:1], timing_runs)
    rep = q.report()
    row.update(
        cosine_mean=round(float(cos.mean()), 5), cosine_min=round(float(cos.min()), 5),
        centred_cosine_mean=round(float(cos_c.mean()), 5),
        # class axis last: logits [N, classes] or per-pixel logits [N, H, W, classes]
        top1_agreement=round(float(np.mean(fp32.argmax(-1) == out.argmax(-1))), 3),
        int8_layers=sum(r["int8"] for r in rep["layers"]),
        fp32_layers={r["node"]: r.get("reason", "") for r in rep["layers"] if not r["int8"]},
        fp32_ops=rep["fp32_ops"], stock_ops_on_int8=rep["stock_ops_on_int8"])
    return row


def config_fields(items, parser):
    """--config FIELD=VALUE items → {field: value}; values are Python literals, a bare word a
    string (also used by bench/layer_sweep.py)."""
    config = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--config {item!r}: expected FIELD=VALUE")
        try:
            config[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[field] = value       # a bare word: a string
    return config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS))
    p.add_argument("--size", type=int, default=None, help="override every model's input size")
    p.add_argument("--num_samples", type=int, default=64)
    p.add_argument("--eval", type=int, default=64, help="held-out images to compare on")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--time", type=int, default=0, metavar="RUNS",
                   help="also time batch-1 inference, FP32 (Keras in a tf.function) and INT8, "
                        "median of RUNS calls (same process, same threads)")
    p.add_argument("--config", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="QuantConfig fields to change from the defaults, values as Python "
                        "literals, e.g. --config weight_rounding=False method='entropy'")
    p.add_argument("--tflite", action="store_true",
                   help="also score TFLite full-INT8 (TFLiteConverter) on the same photos")
    args = p.parse_args(argv)
    config = config_fields(args.config, p)

    rows = []
    for name in args.models:
        size, kwargs = DEFAULT_MODELS.get(name, (96, {}))
        size = args.size or size
        calib, evaluation, kind = _photos(size, args.num_samples, args.eval)
        print(f"== {name} @ {size}x{size} ({kind})", flush=True)
        try:
            row = run_one(name, size, kwargs, calib, evaluation, args.num_samples, args.time,
                          config, tflite=args.tflite)
        except Exception as e:  # noqa: BLE001 - the sweep reports failures and goes on
            row = {"model": name, "size": size, "error": f"{type(e).__name__}: {e}"[:2000],
                   "traceback": traceback.format_exc()[-3000:]}
            print(row["traceback"], flush=True)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)

    print("\nmodel               size  quantize_s  cos mean   cos min  centred  top1   INT8  FP32")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<20}{r['size']:>4}  ERROR {r['error'][:100]}")
            continue
        print(f"{r['model']:<20}{r['size']:>4}  {r['quantize_s']:>10}  {r['cosine_mean']:.5f}  "
              f"{r['cosine_min']:.5f}  {r['centred_cosine_mean']:.5f}  {r['top1_agreement']:.3f}"
              f"  {r['int8_layers']:>4}  {len(r['fp32_layers']):>4}  "
              + (f"  b1 ms FP32 {r['fp32_ms_b1']} INT8 {r['int8_ms_b1']}  "
                 if "int8_ms_b1" in r else "  ")
              + (f"TFLite centred {r['tflite_centred_cosine_mean']:.5f} top1 "
                 f"{r['tflite_top1_agreement']:.3f}  " if "tflite_centred_cosine_mean" in r
                 else f"TFLite {r['tflite_error'][:60]}  " if "tflite_error" in r else "")
              + ", ".join(f"{k} {v}" for k, v in sorted(r["fp32_ops"].items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
