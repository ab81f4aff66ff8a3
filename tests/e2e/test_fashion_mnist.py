"""Fashion-MNIST, real labels: a small ResNet trained here, INT8 within 0.3 points of FP32.

The network has what the quantizer must get right on a ResNet: conv + BN (folded), ReLU,
residual adds with identity and 1×1 stride-2 projection shortcuts, global average pool, Dense.
It is trained in the test with a fixed seed (40k training images, 2 epochs, ~90 s of CPU on two
cores, FP32 test accuracy ≈ 89–90 %); the weights are cached in pytest's cache folder
(.pytest_cache) so a local re-run skips training. Calibration: 500 training images that were
not in the training subset. Evaluation: the full 10k test set.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from . import datasets, util

SEED = 0
N_TRAIN = 40000
EPOCHS = 2
BATCH = 128
LR = 3e-3
N_CALIB = 500
WIDTHS = (16, 32, 64)
RECIPE = "fmnist-resnet-v1"  # bump when the model or the training changes
MEAN, STD = 0.2860, 0.3530
MAX_DROP_POINTS = 0.3
MIN_FP32_ACCURACY = 0.87


def preprocess(x_u8: np.ndarray) -> np.ndarray:
    return ((x_u8.astype(np.float32) / 255.0 - MEAN) / STD)[..., None]


def build_resnet():
    import keras
    from keras import layers

    def bn(name):
        return layers.BatchNormalization(momentum=0.9, name=name)

    def block(x, ch, stride, name):
        y = layers.Conv2D(ch, 3, strides=stride, padding="same", use_bias=False,
                          name=name + "_conv1")(x)
        y = layers.ReLU(name=name + "_relu1")(bn(name + "_bn1")(y))
        y = layers.Conv2D(ch, 3, padding="same", use_bias=False, name=name + "_conv2")(y)
        y = bn(name + "_bn2")(y)
        shortcut = x
        if stride != 1 or x.shape[-1] != ch:
            shortcut = layers.Conv2D(ch, 1, strides=stride, use_bias=False,
                                     name=name + "_proj")(x)
            shortcut = bn(name + "_proj_bn")(shortcut)
        return layers.ReLU(name=name + "_out")(layers.Add(name=name + "_add")([y, shortcut]))

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(WIDTHS[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(bn("stem_bn")(x))
    x = block(x, WIDTHS[0], 2, "b1")   # 14×14, projection shortcut
    x = block(x, WIDTHS[1], 2, "b2")   # 7×7, projection shortcut
    x = block(x, WIDTHS[1], 1, "b3")   # 7×7, identity shortcut
    x = block(x, WIDTHS[2], 2, "b4")   # 4×4, projection shortcut
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="fmnist_resnet")


def _recipe_key():
    import keras
    blob = json.dumps(dict(recipe=RECIPE, seed=SEED, n=N_TRAIN, epochs=EPOCHS, batch=BATCH,
                           lr=LR, widths=WIDTHS, keras=keras.__version__), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train(model, x, y):
    import keras
    keras.utils.set_random_seed(SEED)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=2)


@pytest.fixture(scope="module")
def fmnist():
    return datasets.load_fashion_mnist()


@pytest.fixture(scope="module")
def trained_resnet(request, fmnist):
    import keras
    xtr, ytr, _, _ = fmnist
    keras.utils.set_random_seed(SEED)
    model = build_resnet()
    cache = getattr(request.config, "cache", None)
    path = None
    if cache is not None:
        path = cache.mkdir("tfq8_e2e") / f"fmnist_resnet_{_recipe_key()}.weights.h5"
        if path.exists():
            try:
                model.load_weights(str(path))
                print(f"\nloaded trained weights from {path}")
                return model
            except Exception as e:  # a corrupt cache entry: train again
                print(f"\nignoring cached weights {path}: {e}")
    with util.Timer() as t:
        train(model, preprocess(xtr[:N_TRAIN]), ytr[:N_TRAIN])
    print(f"\ntrained in {t.seconds:.1f} s")
    if path is not None:
        model.save_weights(str(path))
    return model


def test_fashion_mnist_resnet_int8_accuracy(trained_resnet, fmnist):
    import tfq8  # not skipped when it fails: a broken pipeline is a test failure

    xtr, _, xte, yte = fmnist
    x_test = preprocess(xte)
    fp32_logits = util.keras_logits(trained_resnet, x_test, 1000)
    acc_fp32 = float(np.mean(fp32_logits.argmax(1) == yte))
    print(f"\nFP32 test accuracy: {100 * acc_fp32:.2f} %")
    assert acc_fp32 >= MIN_FP32_ACCURACY, "the FP32 model did not train; not a quantizer problem"

    calib = preprocess(xtr[-N_CALIB:])  # training images outside the training subset
    with util.Timer() as tq:
        int8 = tfq8.quantize(trained_resnet, calib,
                             tfq8.QuantConfig(num_samples=N_CALIB, verbose=False))
    with util.Timer() as ti:
        int8_logits = util.run_batched(int8, x_test, 1000)
    assert int8_logits.shape == fp32_logits.shape
    acc_int8 = float(np.mean(int8_logits.argmax(1) == yte))
    agree = util.top1_agreement(fp32_logits, int8_logits)
    cos = util.cosine_rows(fp32_logits, int8_logits)
    print(f"INT8 test accuracy: {100 * acc_int8:.2f} %  (FP32 {100 * acc_fp32:.2f} %, "
          f"Δ {100 * (acc_int8 - acc_fp32):+.2f} points)")
    print(f"top-1 agreement {100 * agree:.2f} %, logits cosine mean {cos.mean():.5f} "
          f"min {cos.min():.5f}; quantize {tq.seconds:.1f} s, INT8 10k inference "
          f"{ti.seconds:.1f} s")
    summary = util.short_summary(int8)
    assert abs(acc_int8 - acc_fp32) * 100 <= MAX_DROP_POINTS, (
        f"INT8 {100 * acc_int8:.2f} % vs FP32 {100 * acc_fp32:.2f} %\n{summary}")
