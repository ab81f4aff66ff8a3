"""Less common Keras layers through tfq8.quantize: a robustness sweep, not a speed test.

Each case is a small random-weight model around one kind of layer (1-D convs, activations,
merges, padding/cropping, transposed convs, attention, ...). For each: cosine of the INT8
outputs to FP32 on held-out random inputs, the INT8 op count, the stock ops moving uint8 data,
and what stays FP32 — the list to read when a user's model "quantizes but is not faster".
A case that fails is printed with its error and the sweep goes on. `bench/zoo.py` does the same
for whole Keras applications.

    python bench/layer_sweep.py
    python bench/layer_sweep.py --cases conv1d prelu
    python bench/layer_sweep.py --config "passes={'dedupe': False}"   # a QuantConfig field

Each case seeds its weights and draws its data from its own generator (seeded by its name), so a
case gives the same numbers whether it runs alone or in the whole sweep, in any process.
"""
import argparse
import collections
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def cases():
    """name → (input shape or ("int", length), model builder)."""
    import keras
    L = keras.layers

    def seq(shape, *layers):
        def build():
            inp = keras.Input(shape)
            y = inp
            for layer in layers:
                y = layer(y)
            return keras.Model(inp, y)
        return shape, build

    def merges():
        i = keras.Input((16, 16, 4))
        a = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        b = L.Conv2D(8, 1, activation="sigmoid")(i)
        y = L.Maximum()([L.Multiply()([a, b]), L.Subtract()([a, L.Conv2D(8, 1)(i)])])
        return keras.Model(i, L.Dense(3)(L.GlobalAveragePooling2D()(L.Concatenate()([y, a]))))

    def textcnn():
        i = keras.Input((20,), dtype="int32")
        c = L.Conv1D(32, 3, activation="relu")(L.Embedding(100, 16)(i))
        return keras.Model(i, L.Dense(2)(L.GlobalMaxPooling1D()(c)))

    def mha():
        i = keras.Input((16, 32))
        h = L.LayerNormalization()(L.MultiHeadAttention(2, 16)(i, i) + i)
        h = L.Dense(32)(L.Dense(64, activation="relu")(h))
        return keras.Model(i, L.Dense(3)(L.GlobalAveragePooling1D()(h)))

    def gated():
        i = keras.Input((64, 8))
        y = L.Conv1D(16, 1)(i)
        z = L.Multiply()([L.Conv1D(16, 3, padding="causal", dilation_rate=2,
                                   activation="tanh")(y),
                          L.Conv1D(16, 3, padding="causal", dilation_rate=2,
                                   activation="sigmoid")(y)])
        return keras.Model(i, L.Dense(3)(L.GlobalMaxPooling1D()(L.Add()([y, L.Conv1D(16, 1)(z)]))))

    return {
        "conv1d": seq((64, 8), L.Conv1D(16, 3, padding="same"), L.BatchNormalization(),
                      L.ReLU(), L.Conv1D(16, 3, strides=2), L.ReLU(), L.MaxPooling1D(2),
                      L.GlobalAveragePooling1D(), L.Dense(5)),
        "conv1d_causal_varlen": seq((None, 8), L.Conv1D(16, 3, padding="causal",
                                                        dilation_rate=2, activation="relu"),
                                    L.Conv1D(16, 3, padding="causal", dilation_rate=4,
                                             activation="relu"),
                                    L.GlobalMaxPooling1D(), L.Dense(5)),
        "separable_conv1d": seq((64, 8), L.SeparableConv1D(16, 5, padding="same",
                                                           activation="relu"),
                                L.DepthwiseConv1D(3, padding="same"), L.ReLU(),
                                L.AveragePooling1D(2), L.Flatten(), L.Dense(5)),
        "conv1d_transpose": seq((32, 4), L.ZeroPadding1D(2), L.Conv1D(16, 3, activation="relu"),
                                L.Conv1D(16, 3, strides=2, padding="same", activation="relu"),
                                L.Conv1DTranspose(8, 4, strides=2, padding="same",
                                                  activation="relu"),
                                L.UpSampling1D(2), L.Cropping1D((1, 3)), L.Conv1D(3, 1)),
        "gated_wavenet": ((64, 8), gated),
        "textcnn": (("int", 20), textcnn),
        "activations": seq((16, 16, 3), L.Conv2D(8, 3), L.LeakyReLU(0.1), L.Conv2D(8, 3),
                           L.PReLU(shared_axes=[1, 2]), L.Conv2D(8, 3), L.ELU(),
                           L.Conv2D(8, 3, activation="gelu"), L.Conv2D(8, 1),
                           L.PReLU(), L.GlobalMaxPooling2D(), L.Dense(4)),
        "merges": ((16, 16, 4), merges),
        "mlp_bn": seq((32,), L.Dense(64), L.BatchNormalization(), L.ReLU(), L.Dropout(0.1),
                      L.Dense(64, activation="tanh"), L.Dense(10, activation="softmax")),
        "pad_crop_pool": seq((20, 20, 3), L.ZeroPadding2D(2), L.Conv2D(8, 3, activation="relu"),
                             L.Cropping2D(1), L.AveragePooling2D(3, strides=2, padding="same"),
                             L.Conv2D(8, 1, activation="relu"), L.Flatten(), L.Dense(4)),
        "depth_multiplier": seq((32, 32, 3), L.Conv2D(16, 3, padding="same", activation="swish"),
                                L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                                L.Activation("hard_swish"), L.Conv2D(8, 1),
                                L.Activation("softplus"), L.Flatten(), L.Dense(3)),
        "upsampling_transpose": seq((16, 16, 3), L.Conv2D(8, 3, strides=2, padding="same",
                                                          activation="relu"),
                                    L.Conv2DTranspose(8, 3, strides=2, padding="same",
                                                      activation="relu"),
                                    L.UpSampling2D(2, interpolation="bilinear"),
                                    L.Conv2D(2, 1)),
        "conv3d": seq((8, 16, 16, 2), L.Conv3D(8, 3, activation="relu"), L.MaxPooling3D(2),
                      L.Conv3D(8, 3, activation="relu", padding="same"),
                      L.GlobalAveragePooling3D(), L.Dense(3)),
        "attention": ((16, 32), mha),
    }


def run_case(name, config=None):
    import keras
    import tfq8
    # Layers are made here, after seeding: Keras draws an unseeded initializer's seed when the
    # layer is constructed, so layers made earlier would get other weights in every process.
    keras.utils.set_random_seed(0)
    shape, build = cases()[name]
    model = build()
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if shape[0] == "int":
        x = rng.integers(0, 100, (96, shape[1])).astype(np.int32)
    else:
        dims = [d if d is not None else 48 for d in shape]
        x = rng.normal(0, 1, [96] + dims).astype(np.float32)
    for layer in model.layers:      # trained-looking BN statistics and PReLU slopes
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.3, layer.alpha.shape).astype(np.float32))
    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        model(x[:64], training=True)
    q = tfq8.quantize(model, x[:64], tfq8.QuantConfig(verbose=False, **(config or {})))
    ref = np.asarray(model(x[64:], training=False), np.float64).reshape(32, -1)
    out = np.asarray(q(x[64:]), np.float64).reshape(32, -1)
    def cosine(a, b):
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)

    # centred: the FP32 outputs' mean over the samples taken out (random nets put most of a
    # logit vector in a sample-independent offset, which a plain cosine would credit)
    mu = ref.mean(0, keepdims=True)
    cos, cos_c = cosine(ref, out), cosine(ref - mu, out - mu)
    rep = q.report()
    ops = collections.Counter(n.op for n in q.graph_def.node)
    return {"cosine_min": round(float(cos.min()), 5),
            "centred_cosine_min": round(float(cos_c.min()), 5),
            "int8_ops": sum(v for k, v in ops.items() if k.startswith("Tfq8")),
            "on_uint8": dict(rep["stock_ops_on_int8"]), "fp32": dict(rep["fp32_ops"])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=None, help="default: all")
    p.add_argument("--config", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="QuantConfig fields to change; values are Python literals")
    args = p.parse_args(argv)
    from bench.zoo import config_fields
    config = config_fields(args.config, p)
    names = list(cases())
    print(f"{'case':22s} {'cos min':>8s} {'centred':>8s} {'INT8':>5s}  FP32 ops left / stock "
          "ops on uint8")
    for name in args.cases or names:
        if name not in names:
            p.error(f"unknown case {name!r}; cases: {names}")
        try:
            r = run_case(name, config)
        except Exception as e:  # noqa: BLE001 - a sweep reports and goes on
            print(f"{name:22s} FAILED {type(e).__name__}: {str(e)[:300]}")
            continue
        fp32 = ", ".join(f"{k} {v}" for k, v in sorted(r["fp32"].items())) or "none"
        u8 = ", ".join(f"{k} {v}" for k, v in sorted(r["on_uint8"].items())) or "none"
        print(f"{name:22s} {r['cosine_min']:8.5f} {r['centred_cosine_min']:8.5f} "
              f"{r['int8_ops']:5d}  FP32: {fp32} | "
              f"uint8: {u8}", flush=True)


if __name__ == "__main__":
    main()
