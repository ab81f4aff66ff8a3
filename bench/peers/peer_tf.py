"""TF FP32 (a tf.function over the Keras 3 model) and tfq8 INT8, timed two ways:

- "call": the Python call of the tf.function, what a user's `model(x)` costs (includes the
  ~240 µs fixed tf.function call cost FACTS.md measured on this machine);
- "graph": the time per inference inside one graph — a tf.function runs the model N times in a
  tf.while_loop (parallel_iterations=1, each iteration's input waits on the previous one's
  output), minus the same with 1 iteration, over N-1. This is what a C++ server (TF Serving) pays per batch.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import peer_common as C


def graph_time_ms(tf, fn, x, n_iters, repeats=3):
    """Per-inference time (ms) of `fn` inside a tf.while_loop; see the module docstring."""

    @tf.function(autograph=False)
    def loop(x, n):
        def body(i, xx, acc):
            y = fn(xx)
            if isinstance(y, dict):
                y = list(y.values())[0]
            s = tf.cast(tf.reshape(y, [-1])[0], tf.float32)
            # The next iteration's input waits on this one's output (and parallel_iterations=1):
            # iterations never overlap, which would hide latency behind the other core.
            with tf.control_dependencies([s]):
                xx = tf.identity(xx)
            return i + 1, xx, acc + s
        return tf.while_loop(lambda i, xx, acc: i < n, body,
                             (tf.constant(0), x, tf.constant(0.0)), parallel_iterations=1)[2]

    xt = tf.constant(x)

    def run(n):
        t0 = time.perf_counter()
        loop(xt, tf.constant(n)).numpy()
        return time.perf_counter() - t0

    run(2)
    run(1)
    t1 = sorted(run(1) for _ in range(repeats))[repeats // 2]
    tn = sorted(run(n_iters) for _ in range(repeats))[repeats // 2]
    return max(tn - t1, 0.0) / (n_iters - 1) * 1e3


def tfq8_isa(tf, tfq8):
    """The CPU path tfq8's kernels take here (TFQ8_ISA if set, else the best one that runs)."""
    forced = os.environ.get("TFQ8_ISA")
    if forced:
        return forced + " (TFQ8_ISA)"
    try:
        for isa in ("amx", "avx512vnni", "avx2", "ref"):
            os.environ["TFQ8_ISA"] = isa
            try:
                tfq8.ops.tfq8_requantize(tf.zeros([1], tf.uint8), input_scale=1.0,
                                         output_scale=1.0)
                return isa
            except Exception:  # noqa: BLE001
                continue
        return "?"
    finally:
        os.environ.pop("TFQ8_ISA", None)


def run(args, engine):
    tf = C.setup_threads()
    rows = []
    model = C.build_keras3(args.model)
    if engine in ("tf_fp32", "tf_fp32_onednn"):
        t0 = time.perf_counter()
        fn = tf.function(model, input_signature=[tf.TensorSpec([None] + list(
            C.input_shape(args.model, 1)[1:]), tf.float32)], autograph=False)
        fn.get_concrete_function()
        convert_s = time.perf_counter() - t0
        label = ("TF FP32 (tf.function)" if engine == "tf_fp32" else
                 "TF FP32, TF_ENABLE_ONEDNN_OPTS=1")
        extra = {}
    else:
        # bench/models.py hands a snapshot of tfq8/ (python + op library) taken at its start, so
        # that a rebuild in the work tree during the run cannot change or break later cells.
        sys.path.insert(0, os.environ.get("TFQ8_BENCH_SRC") or C.REPO)
        try:
            import tfq8
        except Exception as e:  # noqa: BLE001
            return [C.na("tfq8", args.model, b, "import tfq8: " + C.short_error(e))
                    for b in args.batches]
        calib = C.calibration_data(args.model, args.calib)
        t0 = time.perf_counter()
        try:
            cfg = tfq8.QuantConfig(num_samples=args.calib, verbose=False)
            q = tfq8.quantize(model, calib, cfg)
        except Exception as e:  # noqa: BLE001
            C.log("tfq8.quantize failed:")
            import traceback
            traceback.print_exc()
            return [C.na("tfq8", args.model, b, "tfq8.quantize: " + C.short_error(e))
                    for b in args.batches]
        convert_s = time.perf_counter() - t0
        fn = q
        label = "tfq8 INT8"
        counts = q.op_counts()
        extra = {"op_counts": {k: v for k, v in sorted(counts.items()) if k != "Const"},
                 "isa": tfq8_isa(tf, tfq8), "tfq8_from": os.path.dirname(tfq8.__file__)}
        try:
            extra["summary"] = q.summary().split("\nFP32 passes:")[0]
        except Exception as e:  # noqa: BLE001
            extra["summary"] = "summary failed: " + C.short_error(e)
    for b in args.batches:
        x = C.bench_input(args.model, b)
        xt = tf.constant(x)
        try:
            ref = model(xt, training=False).numpy()
            out = fn(xt)
            out = (list(out.values())[0] if isinstance(out, dict) else out).numpy()
            cos = C.cosine(out, ref)

            def call():
                y = fn(xt)
                (list(y.values())[0] if isinstance(y, dict) else y).numpy()

            stats = C.time_cell(call, b, args.warmup, args.reps, args.min_seconds)
            r = C.row(engine, args.model, b, label=label, convert_s=convert_s, cos_vs_fp32=cos,
                      **stats, **extra)
            if b in args.graph_time_batches:
                n = max(args.reps, min(200, int(1000 / max(stats["median_ms"], 1e-3))))
                r["graph_ms"] = graph_time_ms(tf, fn, x, n)
                r["graph_iters"] = n
            rows.append(r)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            rows.append(C.na(engine, args.model, b, C.short_error(e)))
        C.log(engine, args.model, b, rows[-1].get("median_ms", rows[-1].get("reason")))
    return rows
