"""`tfq8 demo`: train a small ResNet on embedded synthetic data, quantize it, compare.

The data set is generated, not downloaded: 10 classes of noisy oriented gratings (orientation
and frequency set the class), 32×32 RGB. The model has what matters for INT8 — BatchNorm,
residual adds, stride-2 blocks with 1×1 projection shortcuts, global average pooling.
"""
from __future__ import annotations

import time

import numpy as np


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    theta = (labels % 5) * np.pi / 5 + rng.normal(0, 0.2, n)
    freq = np.where(labels < 5, 0.3, 0.45) + rng.normal(0, 0.04, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    proj = (np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy)
    img = np.sin(freq[:, None, None] * proj + phase[:, None, None])
    color = rng.uniform(0.5, 1.0, (n, 1, 1, 3))
    x = img[..., None] * color + rng.normal(0, 0.6, (n, 32, 32, 3))
    return x.astype(np.float32), labels.astype(np.int64)


def small_resnet():
    import keras
    from keras import layers

    def block(x, filters, stride):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization(momentum=0.9)(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization(momentum=0.9)(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inp = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = block(x, 16, 1)
    x = block(x, 32, 2)
    x = block(x, 64, 2)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="demo_resnet")


def _median_ms(fn, x, reps=20):
    fn(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(epochs=3, verbose=True):
    import keras
    import tensorflow as tf

    import tfq8

    keras.utils.set_random_seed(0)
    x_train, y_train = make_data(4000, seed=1)
    x_test, y_test = make_data(2000, seed=2)
    model = small_resnet()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    print(f"tfq8 demo: training a small ResNet ({model.count_params()} parameters) on "
          f"embedded synthetic data, {epochs} epochs ...")
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=2 if verbose else 0)

    print("quantizing (calibration on 512 training images) ...")
    int8 = tfq8.quantize(model, x_train[:512], tfq8.QuantConfig(verbose=verbose))
    print(int8.summary())

    fp32_fn = tf.function(lambda x: model(x, training=False))
    fp32_logits = np.concatenate([fp32_fn(x_test[i:i + 500]).numpy()
                                  for i in range(0, len(x_test), 500)])
    int8_logits = np.concatenate([int8(x_test[i:i + 500]).numpy()
                                  for i in range(0, len(x_test), 500)])
    acc32 = float(np.mean(fp32_logits.argmax(1) == y_test))
    acc8 = float(np.mean(int8_logits.argmax(1) == y_test))
    agree = float(np.mean(fp32_logits.argmax(1) == int8_logits.argmax(1)))
    print(f"\naccuracy on {len(y_test)} test images: FP32 {100 * acc32:.2f}%  "
          f"INT8 {100 * acc8:.2f}%  top-1 agreement {100 * agree:.2f}%")
    for bs in (1, 32):
        xb = x_test[:bs]
        t32 = _median_ms(fp32_fn, xb)
        t8 = _median_ms(int8, xb)
        print(f"latency batch {bs:2d}: FP32 {t32:7.2f} ms  INT8 {t8:7.2f} ms  "
              f"({t32 / t8:.2f}x; median of 20, tf.function call included)")
    return {"fp32_accuracy": acc32, "int8_accuracy": acc8, "agreement": agree}


if __name__ == "__main__":
    main()
