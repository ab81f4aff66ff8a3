"""ONNX Runtime static INT8: tf2onnx (opset 17, from a tf.function over the Keras 3 model) →
onnxruntime.quantization.quant_pre_process → quantize_static (QOperator and QDQ formats,
u8 activations / s8 per-channel weights, MinMax calibration) → InferenceSession on the CPU
provider with intra_op_num_threads=2, inter_op_num_threads=1, sequential, all graph
optimizations."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

import peer_common as C

OPSET = 17


def to_onnx(tf, model, model_name, path):
    import tf2onnx
    spec = [tf.TensorSpec([None] + list(C.input_shape(model_name, 1)[1:]), tf.float32,
                          name="input")]
    fn = tf.function(lambda x: model(x, training=False), autograph=False)
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET,
                                                   output_path=path)
    return model_proto.graph.input[0].name


def quantize(fp32_path, out_path, input_name, calib, fmt, reduce_range=False):
    from onnxruntime import quantization as Q

    class Reader(Q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib[i:i + 1]} for i in range(calib.shape[0])])

        def get_next(self):
            return next(self.it, None)

    pre = fp32_path.replace(".onnx", "_pre.onnx")
    if not os.path.exists(pre):
        try:
            Q.quant_pre_process(fp32_path, pre, skip_symbolic_shape=False)
        except Exception as e:  # noqa: BLE001  (needs sympy; fall back to the plain model)
            C.log("quant_pre_process failed, quantizing the plain model:", C.short_error(e))
            pre = fp32_path
    Q.quantize_static(pre, out_path, Reader(),
                      quant_format=Q.QuantFormat.QOperator if fmt == "qop" else Q.QuantFormat.QDQ,
                      activation_type=Q.QuantType.QUInt8, weight_type=Q.QuantType.QInt8,
                      per_channel=True, calibrate_method=Q.CalibrationMethod.MinMax,
                      reduce_range=reduce_range)


def session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = C.THREADS
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(args, engine=None):
    tf = C.setup_threads()
    engines = {"ort_qop": "ORT INT8 QOperator", "ort_qdq": "ORT INT8 QDQ"}
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except Exception as e:  # noqa: BLE001
        reason = "not installed (bash bench/peers/setup_env.sh): " + C.short_error(e)
        return [C.na(e_, args.model, b, reason) for e_ in engines for b in args.batches]
    model = C.build_keras3(args.model)
    calib = C.calibration_data(args.model, args.calib)
    tmp = tempfile.mkdtemp(prefix="tfq8-bench-onnx-")
    fp32_path = os.path.join(tmp, f"{args.model}.onnx")
    t0 = time.perf_counter()
    try:
        input_name = to_onnx(tf, model, args.model, fp32_path)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        return [C.na(e_, args.model, b, "tf2onnx: " + C.short_error(e))
                for e_ in engines for b in args.batches]
    export_s = time.perf_counter() - t0
    rows = []
    for eng, label in engines.items():
        q_path = os.path.join(tmp, f"{args.model}_{eng}.onnx")
        t0 = time.perf_counter()
        try:
            quantize(fp32_path, q_path, input_name, calib, eng[4:])
            sess = session(q_path)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            rows += [C.na(eng, args.model, b, "quantize_static: " + C.short_error(e))
                     for b in args.batches]
            continue
        convert_s = export_s + time.perf_counter() - t0
        out_name = sess.get_outputs()[0].name
        for b in args.batches:
            try:
                x = C.bench_input(args.model, b)
                feed = {input_name: x}

                def call():
                    return sess.run([out_name], feed)[0]

                out = call()
                ref = model(x, training=False).numpy()
                stats = C.time_cell(call, b, args.warmup, args.reps, args.min_seconds)
                rows.append(C.row(eng, args.model, b, label=label, convert_s=convert_s,
                                  cos_vs_fp32=C.cosine(out, ref), **stats))
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                rows.append(C.na(eng, args.model, b, C.short_error(e)))
            C.log(eng, args.model, b, rows[-1].get("median_ms", rows[-1].get("reason")))
    return rows
