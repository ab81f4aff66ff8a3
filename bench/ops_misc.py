"""Depthwise conv timing: tfq8 INT8 (each CPU path) vs TF FP32 DepthwiseConv2dNative on the
MobileNetV2 (224×224) depthwise layers, batch 1 by default.

    python bench/ops_misc.py [--batch 1] [--reps 50] [--isa avx2,avx512vnni] [--cpu-time]

Times are medians of `reps` calls of a one-op tf.function on prebuilt tensors (both sides pay
the same call overhead, ~20 µs; the eager Python wrapper of the tfq8 op adds ~100 µs of its own,
which is not the kernel), threads = TF's intra-op pool. The INT8 op includes its fused requantization (u8 out,
ReLU6), as MobileNetV2 runs it.
"""
import argparse
import os
import time

import numpy as np
import tensorflow as tf

import tfq8

# (H, W, C, stride) of MobileNetV2's 3×3 depthwise layers.
MOBILENET_V2 = [(112, 112, 32, 1), (112, 112, 96, 2), (56, 56, 144, 1), (56, 56, 144, 2),
                (28, 28, 192, 1), (28, 28, 192, 2), (14, 14, 384, 1), (14, 14, 576, 1),
                (14, 14, 576, 2), (7, 7, 960, 1)]


CLOCK = time.perf_counter


def _median_time(fn, reps):
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return float(np.median(ts))


def _same_pads(size, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + 3 - size, 0)
    return total // 2, total - total // 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--isa", default="avx2,avx512vnni,ref")
    p.add_argument("--cpu-time", action="store_true",
                   help="one intra-op thread, process CPU time (robust on a loaded machine)")
    args = p.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    isas = args.isa.split(",")
    x0 = tf.constant(np.zeros((1, 8, 8, 8), np.uint8))
    floor = _median_time(tf.function(lambda: tf.identity(x0)), args.reps)
    print(f"call overhead (one-op tf.function of tf.identity): {floor * 1e6:.1f} us, included "
          "in every number below")
    print(f"{'layer':>22} {'TF fp32 us':>11} " + " ".join(f"{i + ' us':>14}" for i in isas)
          + "  speedup(best)")
    tot_tf, tot = 0.0, {i: 0.0 for i in isas}
    for h, w, c, s in MOBILENET_V2:
        x = tf.constant(rng.integers(0, 256, (args.batch, h, w, c), dtype=np.uint8))
        wt = tf.constant(rng.integers(-127, 128, (3, 3, c, 1), dtype=np.int8))
        b = tf.constant(rng.uniform(-1, 1, c).astype(np.float32))
        fs = tf.constant(rng.uniform(0.001, 0.01, c).astype(np.float32))
        xf = tf.constant(rng.standard_normal((args.batch, h, w, c)).astype(np.float32))
        wf = tf.constant(rng.standard_normal((3, 3, c, 1)).astype(np.float32))
        t_tf = _median_time(tf.function(lambda: tf.nn.depthwise_conv2d(xf, wf, [1, s, s, 1],
                                                                       "SAME")), args.reps)
        ph, pw = _same_pads(h, s), _same_pads(w, s)
        row = {}
        for isa in isas:
            os.environ["TFQ8_ISA"] = isa

            @tf.function
            def run():
                return tfq8.ops.tfq8_depthwise_conv2d(
                    x, wt, b, fs, [], input_scale=0.02, input_zero_point=0, strides=[s, s],
                    explicit_paddings=[ph[0], ph[1], pw[0], pw[1]], activation="RELU6",
                    output_scale=6 / 255)
            try:
                row[isa] = _median_time(run, args.reps if isa != "ref" else max(3, args.reps // 10))
            except tf.errors.InvalidArgumentError:
                row[isa] = float("nan")
        os.environ.pop("TFQ8_ISA", None)
        best = np.nanmin([row[i] for i in isas])
        tot_tf += t_tf
        for i in isas:
            tot[i] += row[i]
        print(f"{f'{h}x{w}x{c} s{s}':>22} {t_tf * 1e6:11.1f} "
              + " ".join(f"{row[i] * 1e6:14.1f}" for i in isas) + f"  {t_tf / best:6.2f}x")
    print(f"{'total':>22} {tot_tf * 1e6:11.1f} " + " ".join(f"{tot[i] * 1e6:14.1f}" for i in isas))


if __name__ == "__main__":
    main()
