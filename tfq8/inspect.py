"""Per-layer accuracy of an INT8 model: SQNR between FP32 and INT8 activations.

For every INT8 op, the tensor it writes is compared with the same tensor of the FP32 graph
(after the FP32 passes) on the same data: SQNR = 10·log10(Σ ref² / Σ (ref − int8)²) dB. The
worst layers come first: that is where accuracy is lost (keep them in FP32 with keep_fp32, or
try another calibration method).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfq8.calibration import normalize_calibration_data


def _session(graph_def):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph, tf.compat.v1.Session(graph=graph)


def layer_sqnr(model, data, batch_size=16, max_samples=512):
    """Returns rows {node, op, int8, scale, zero_point, sqnr_db, reason}, worst SQNR first."""
    fp32_graph = model.pipeline_notes.graph_def
    g32, s32 = _session(fp32_graph)
    g8, s8 = _session(model.graph_def)
    int8_names = {n.name: n for n in model.graph_def.node}
    rows, fetch32, fetch8 = [], [], []
    for r in model.layers:
        row = {"node": r.node, "op": r.op, "int8": r.int8, "reason": r.reason}
        if r.int8:
            # The INT8 op keeps the FP32 name, or is X/int8 followed by a Dequantize named X.
            name8 = r.node + "/int8" if r.node + "/int8" in int8_names else r.node
            if r.output_qparams is not None:
                row["scale"] = r.output_qparams.scale
                row["zero_point"] = r.output_qparams.zero_point
            fetch32.append(r.node + ":0")
            fetch8.append(name8 + ":0")
            row["_i"] = len(fetch32) - 1
        rows.append(row)
    sig = np.zeros(len(fetch32))
    noise = np.zeros(len(fetch32))
    feeds32 = {s.name: g32.get_tensor_by_name(s.tensor) for s in model.inputs}
    feeds8 = {s.name: g8.get_tensor_by_name(s.tensor) for s in model.inputs}
    t32 = [g32.get_tensor_by_name(t) for t in fetch32]
    t8 = [g8.get_tensor_by_name(t) for t in fetch8]
    seen = 0
    for batch in normalize_calibration_data(data, model.inputs, batch_size=batch_size):
        v32 = s32.run(t32, {feeds32[k]: v for k, v in batch.items()})
        v8 = s8.run(t8, {feeds8[k]: v for k, v in batch.items()})
        for row in rows:
            if "_i" not in row:
                continue
            i = row["_i"]
            ref = v32[i].astype(np.float64)
            q = v8[i]
            if q.dtype == np.uint8:
                q = (q.astype(np.float64) - row["zero_point"]) * row["scale"]
            sig[i] += float(np.sum(ref * ref))
            noise[i] += float(np.sum((ref - q) ** 2))
        seen += next(iter(batch.values())).shape[0]
        if seen >= max_samples:
            break
    for row in rows:
        if "_i" in row:
            i = row.pop("_i")
            row["sqnr_db"] = (math.inf if noise[i] == 0 else
                              10 * math.log10(max(sig[i], 1e-30) / noise[i]))
    rows.sort(key=lambda r: (not r["int8"], r.get("sqnr_db", math.inf)))
    return rows


def format_rows(rows, top=30):
    lines = [f"{'SQNR dB':>8}  {'INT8':4}  {'op':22} {'scale':>10} {'zp':>3}  node"]
    for r in rows[:top]:
        if r["int8"]:
            scale = f"{r['scale']:.4g}" if "scale" in r else "f32 out"
            lines.append(f"{r['sqnr_db']:8.1f}  {'yes':4}  {r['op']:22} {scale:>10} "
                         f"{r.get('zero_point', ''):>3}  {r['node']}")
        else:
            lines.append(f"{'':8}  {'no':4}  {r['op']:22} {'':>10} {'':>3}  {r['node']}: "
                         f"{r['reason']}")
    if len(rows) > top:
        lines.append(f"... {len(rows) - top} more (use --top)")
    return "\n".join(lines)
