"""What one INT8 rewrite buys: a model quantized as usual against the same model with the nodes
of one INT8 op type kept in FP32 (the behaviour before that rewrite existed), batch-1 latency
in the same process, called alternately.

    python bench/rewrite_ab.py --op Tfq8ChannelMul --models EfficientNetB0 MobileNetV3Large
    python bench/rewrite_ab.py --op Tfq8Lookup --models EfficientNetB0 --size 224 --runs 100

Random-weight Keras applications (weights=None, preprocessing off where Keras allows it),
calibrated on 16 random images (default method; range search and bias correction off:
this measures speed, not accuracy). "B" passes the FP32 names of the A model's `--op` nodes to
`QuantConfig(keep_fp32=...)`. Prints median ms of TF FP32 (the Keras model in a tf.function),
A and B, and B/A. Compare ratios, not milliseconds across runs: on a shared machine only calls
interleaved in one process see the same load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

NO_PREPROCESSING = {"MobileNetV3Small", "MobileNetV3Large", "EfficientNetV2B0"}


def _fp32_name(node):
    """The FP32 node an INT8 node replaces (an X/int8 node is followed by a Dequantize X)."""
    return node.removesuffix("/int8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", required=True, help="INT8 op type to keep in FP32 in the B model")
    ap.add_argument("--models", nargs="+", default=["EfficientNetB0"])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    import tfq8

    print(f"op {args.op}, input {args.size}x{args.size}, batch 1, {args.runs} alternating calls")
    for name in args.models:
        kwargs = {"include_preprocessing": False} if name in NO_PREPROCESSING else {}
        model = getattr(keras.applications, name)(weights=None,
                                                  input_shape=(args.size, args.size, 3), **kwargs)
        calib = np.random.default_rng(0).uniform(0, 255, (16, args.size, args.size, 3))
        calib = calib.astype(np.float32)
        cfg = dict(verbose=False, num_samples=16, range_search=False, bias_correction=False)
        a = tfq8.quantize(model, calib, tfq8.QuantConfig(**cfg))
        nodes = [_fp32_name(n.name) for n in a.graph_def.node if n.op == args.op]
        if not nodes:
            print(f"{name}: no {args.op} node; nothing to compare")
            continue
        b = tfq8.quantize(model, calib, tfq8.QuantConfig(keep_fp32=nodes, **cfg))
        left = sum(n.op == args.op for n in b.graph_def.node)
        x = tf.constant(calib[:1])
        fns = {"fp32": tf.function(lambda v: model(v, training=False)), "A": a, "B": b}
        times = {k: [] for k in fns}
        for _ in range(5):
            for fn in fns.values():
                fn(x)
        for _ in range(args.runs):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                out = fn(x)
                np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
                times[k].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(f"{name}: {len(nodes)} {args.op} in A ({left} left in B); median ms FP32 "
              f"{ms['fp32']:.2f}, A {ms['A']:.2f}, B {ms['B']:.2f}; B/A {ms['B'] / ms['A']:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
