"""Intel Neural Compressor (neural-compressor-tf 3.x, `neural_compressor.tensorflow`) static INT8
on a frozen GraphDef: `quantize_model(graph_def, StaticQuantConfig(), calib_dataloader)`, run in a
tf.compat.v1.Session (intra_op 2, inter_op 1) the way INC's own benchmark runs it.

Variant "tfkeras": the tf-keras (Keras 2) application (weights copied from the Keras 3 model),
whose frozen graph has FusedBatchNormV3 — the graph INC fuses into conv+bias+ReLU(+sum)+requantize.
Variant "keras3": the Keras 3 model's graph (BN decomposed into Mul/AddV2), which INC leaves
mostly unfused (FACTS.md: ~3× slower). INC patches TF at import: always a process of its own.
"""
from __future__ import annotations

import time

import numpy as np

import peer_common as C

LABELS = {"inc_tfkeras": "INC INT8 (tf-keras graph)", "inc_keras3": "INC INT8 (Keras 3 graph)"}


def freeze(tf, model, model_name):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    spec = tf.TensorSpec([None] + list(C.input_shape(model_name, 1)[1:]), tf.float32,
                         name="input")
    cf = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(
        spec)
    frozen = convert_variables_to_constants_v2(cf)
    gd = frozen.graph.as_graph_def()
    ins = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outs = [t.name for t in frozen.outputs]
    return gd, ins, outs


def run(args, engine):
    tf = C.setup_threads()
    try:
        from neural_compressor.tensorflow import StaticQuantConfig, quantize_model
        from neural_compressor.tensorflow.utils import BaseDataLoader
    except Exception as e:  # noqa: BLE001
        reason = "not installed (bash bench/peers/setup_env.sh): " + C.short_error(e)
        return [C.na(engine, args.model, b, reason) for b in args.batches]
    k3 = C.build_keras3(args.model)
    extra = {}
    if engine == "inc_tfkeras":
        try:
            model, copied = C.build_tfkeras(args.model, weights_from=k3)
        except Exception as e:  # noqa: BLE001
            return [C.na(engine, args.model, b, "tf-keras: " + C.short_error(e))
                    for b in args.batches]
        extra["weights_copied_from_keras3"] = copied
    else:
        model = k3
    calib = C.calibration_data(args.model, args.calib)
    t0 = time.perf_counter()
    try:
        gd, ins, outs = freeze(tf, model, args.model)
        fp32_ops = {}
        for n in gd.node:
            fp32_ops[n.op] = fp32_ops.get(n.op, 0) + 1
        extra["fp32_graph_FusedBatchNormV3"] = fp32_ops.get("FusedBatchNormV3", 0)
        dataset = [(calib[i], 0) for i in range(calib.shape[0])]
        loader = BaseDataLoader(dataset=dataset, batch_size=1)
        q = quantize_model(gd, StaticQuantConfig(), calib_dataloader=loader,
                           calib_iteration=calib.shape[0])
        if q is None:
            raise RuntimeError("quantize_model returned None")
        qgd = q.graph_def
        q_in = list(q.input_tensor_names)
        q_out = list(q.output_tensor_names)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        return [C.na(engine, args.model, b, "quantize_model: " + C.short_error(e))
                for b in args.batches]
    convert_s = time.perf_counter() - t0
    counts = {}
    for n in qgd.node:
        counts[n.op] = counts.get(n.op, 0) + 1
    extra["op_counts"] = {k: v for k, v in sorted(counts.items()) if k != "Const"}
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(qgd, name="")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=C.THREADS,
                                   inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(graph=graph, config=cfg)
    tin = graph.get_tensor_by_name(q_in[0] if ":" in q_in[0] else q_in[0] + ":0")
    tout = graph.get_tensor_by_name(q_out[0] if ":" in q_out[0] else q_out[0] + ":0")
    rows = []
    for b in args.batches:
        try:
            x = C.bench_input(args.model, b)

            def call():
                return sess.run(tout, {tin: x})

            out = call()
            ref = model(x, training=False).numpy()
            stats = C.time_cell(call, b, args.warmup, args.reps, args.min_seconds)
            rows.append(C.row(engine, args.model, b, label=LABELS[engine], convert_s=convert_s,
                              cos_vs_fp32=C.cosine(out, ref), **stats, **extra))
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            rows.append(C.na(engine, args.model, b, C.short_error(e)))
        C.log(engine, args.model, b, rows[-1].get("median_ms", rows[-1].get("reason")))
    return rows
