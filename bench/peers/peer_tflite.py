"""TFLite full-INT8: TFLiteConverter.from_keras_model + representative dataset, INT8 builtin ops
only (float32 input/output, like tfq8's interface), run by tf.lite.Interpreter with
num_threads=2 (XNNPACK delegate applied by default)."""
from __future__ import annotations

import time

import numpy as np

import peer_common as C


def convert(tf, model, calib):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for i in range(calib.shape[0]):
            yield [calib[i:i + 1]]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def run(args, engine="tflite"):
    tf = C.setup_threads()
    model = C.build_keras3(args.model)
    calib = C.calibration_data(args.model, args.calib)
    t0 = time.perf_counter()
    try:
        flat = convert(tf, model, calib)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        return [C.na(engine, args.model, b, "convert: " + C.short_error(e)) for b in args.batches]
    convert_s = time.perf_counter() - t0
    rows = []
    for b in args.batches:
        try:
            interp = tf.lite.Interpreter(model_content=flat, num_threads=C.THREADS)
            inp = interp.get_input_details()[0]
            outd = interp.get_output_details()[0]
            interp.resize_tensor_input(inp["index"], list(C.input_shape(args.model, b)))
            interp.allocate_tensors()
            x = C.bench_input(args.model, b)
            if inp["dtype"] != np.float32:
                raise RuntimeError(f"unexpected input dtype {inp['dtype']}")

            def call():
                interp.set_tensor(inp["index"], x)
                interp.invoke()
                return interp.get_tensor(outd["index"])

            out = call()
            ref = model(x, training=False).numpy()
            ops = sorted({d["op_name"] for d in interp._get_ops_details()}) \
                if hasattr(interp, "_get_ops_details") else None
            stats = C.time_cell(call, b, args.warmup, args.reps, args.min_seconds)
            rows.append(C.row(engine, args.model, b, label="TFLite INT8 (XNNPACK)",
                              convert_s=convert_s, cos_vs_fp32=C.cosine(out, ref),
                              model_bytes=len(flat), tflite_ops=ops, **stats))
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            rows.append(C.na(engine, args.model, b, C.short_error(e)))
        C.log(engine, args.model, b, rows[-1].get("median_ms", rows[-1].get("reason")))
    return rows
