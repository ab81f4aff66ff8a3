"""Quantize a Keras ResNet50 to INT8, compare it with FP32, save it as a SavedModel.

    python examples/quantize_keras_resnet.py --output /tmp/resnet50_int8 [--weights imagenet.h5]

Without --weights the model has random weights (enough to see the speed-up; accuracy needs real
weights and real calibration images — pass a folder with --images).
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import tfq8


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--output", default="/tmp/resnet50_int8")
    p.add_argument("--weights", default=None, help="a Keras .h5/.weights.h5 file")
    p.add_argument("--images", default=None, help="folder of calibration images")
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()

    model = keras.applications.ResNet50(weights=args.weights, classifier_activation=None,
                                        input_shape=(args.size, args.size, 3))
    if args.images:
        from tfq8.images import load_folder
        calib = keras.applications.resnet50.preprocess_input(
            load_folder(args.images, (None, args.size, args.size, 3), max_images=256))
    else:
        calib = np.random.default_rng(0).normal(0, 50, (64, args.size, args.size, 3)).astype(
            np.float32)

    int8 = tfq8.quantize(model, calib, tfq8.QuantConfig(method="percentile", num_samples=256))
    print(int8.summary())

    x = calib[:8]
    ref = model(x, training=False).numpy()
    out = int8(x).numpy()
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    print(f"logit cosine FP32 vs INT8: min {cos.min():.4f}; top-1 agreement "
          f"{np.mean(ref.argmax(1) == out.argmax(1)):.2f}")

    fp32_fn = tf.function(lambda x: model(x, training=False))
    for fn, name in ((fp32_fn, "FP32"), (int8, "INT8")):
        fn(x[:1])
        t = []
        for _ in range(20):
            s = time.perf_counter()
            fn(x[:1])
            t.append(time.perf_counter() - s)
        print(f"{name} batch 1: {1000 * np.median(t):.2f} ms (median of 20)")

    int8.save(args.output)
    print(f"saved {args.output}; load it with `import tfq8; tf.saved_model.load(...)`")


if __name__ == "__main__":
    main()
