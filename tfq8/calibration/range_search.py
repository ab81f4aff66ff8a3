"""Range search: pick each activation's clipping threshold by the error it causes downstream.

The observers choose a threshold from the tensor's own histogram (percentile, KL, MSE). What
matters is not the tensor's own error but the error of the linear layers that read it: a
threshold that clips a few large values can be harmless there while the finer step it buys
helps every other value, or the reverse. Here every tensor that INT8 linear ops read gets
candidates around the observer's threshold, and keeps the one with the least squared error at
the output of its readers (conv, depthwise or matmul, activation included) on calibration data:

    T_t = argmin_{T ∈ candidates(t)}  Σ_readers r  Σ_batches ‖ r(Q_T(x_t)) − r(x_t) ‖²

Q_T is the tensor's INT8 quantize–dequantize at threshold T (u8 for non-negative tensors, s8
shifted by 128 for signed ones, as :mod:`tfq8.calibration.qparams` writes it) and r runs in
FP32 with its FP32 weights, so the search isolates this tensor's activation error. Each tensor
is judged alone (the others unquantized), so all tensors are searched in the same graph runs:
one run of the FP32 graph, plus every reader once more per candidate, per batch.

Integer-valued tensors that the observers quantized losslessly (scale 1) and the inputs of max
reductions (full range) are not searched.
Candidates: the observer's threshold times ``FACTORS`` (0.5 … 2), never above the observed
max |x|, plus the observed max itself.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfq8.calibration.observers import FULL_RANGE_SUFFIX, INTEGER_SUFFIX
from tfq8.calibration.qparams import qparams_from_amax
from tfq8.calibration.table import CalibrationTable, TableEntry

__all__ = ["FACTORS", "READER_OPS", "search_ranges"]

FACTORS = (0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.45, 1.7, 2.0)
READER_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "MatMul", "_FusedMatMul"}


def _candidates(entry: TableEntry) -> np.ndarray:
    qp = entry.qparams
    top = max(-entry.min, entry.max) if qp.signed else max(entry.max, 0.0)
    c = [qp.amax * f for f in FACTORS if qp.amax * f < top] + [top]
    return np.asarray(sorted(set(c)), np.float64)


def search_ranges(graph_def: graph_pb2.GraphDef, table: CalibrationTable,
                  tensors: Sequence[str], feed: Callable[[object], Mapping[str, np.ndarray]],
                  batches: Iterable[object], session_config=None) -> dict:
    """Updates ``table`` in place for the given tensors (symmetric entries only; asymmetric
    ones are left as they are). ``feed(batch)`` maps a batch to {input tensor: value}.
    Returns {tensor: (old amax, new amax)} for the tensors it searched."""
    by_name = {n.name: n for n in graph_def.node}

    def canon(t):
        return t if ":" in t else t + ":0"

    # tensor → {source: [readers]}: a reader reads the tensor itself or a zero Pad of it
    # (padding zeros quantize exactly, so Q(pad(x)) = pad(Q(x)))
    readers: dict = {}
    for n in graph_def.node:
        if n.op not in READER_OPS or not n.input or n.input[0].startswith("^"):
            continue
        src = canon(n.input[0])
        t = src
        p = by_name.get(src.split(":")[0])
        if p is not None and p.op in ("Pad", "PadV2") and src.endswith(":0"):
            t = canon(p.input[0])
        readers.setdefault(t, {}).setdefault(src, []).append(n.name)
    # integer-valued tensors are already lossless (scale 1); a max reduction's input needs its
    # extremes, which a search judged at the conv readers would clip
    todo = [t for t in tensors if t in table and t in readers
            and table[t].qparams.zero_point in (0, 128) and table[t].qparams.amax > 0
            and not table[t].qparams.method.endswith((INTEGER_SUFFIX, FULL_RANGE_SUFFIX))]
    if not todo:
        return {}
    cands = {t: _candidates(table[t]) for t in todo}
    k_max = max(len(c) for c in cands.values())

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        # candidate k of tensor i: lo[k, i] … hi[k, i]; every candidate has its own copy of the
        # readers, so one run evaluates the FP32 graph once and all candidates
        lo = tf.compat.v1.placeholder(tf.float32, [k_max, len(todo)], name="tfq8_rs/lo")
        hi = tf.compat.v1.placeholder(tf.float32, [k_max, len(todo)], name="tfq8_rs/hi")
        copies = graph_pb2.GraphDef()
        copies.versions.CopyFrom(graph_def.versions)
        input_map = {}
        pairs = {}   # (k, tensor) → [(reader, copy)]
        for k in range(k_max):
            for i, t in enumerate(todo):
                for j, (src, names) in enumerate(readers[t].items()):
                    fq = tf.quantization.fake_quant_with_min_max_vars(
                        graph.get_tensor_by_name(src), lo[k, i], hi[k, i], num_bits=8,
                        name=f"tfq8_rs/{k}/{i}/fq{j}")
                    for r in names:
                        node = copies.node.add()
                        node.CopyFrom(by_name[r])
                        node.name = f"tfq8_rs/{k}/{i}/{r}"
                        del node.input[:]
                        for m, inp in enumerate(by_name[r].input):
                            if inp.startswith("^"):
                                continue
                            key = f"tfq8_rs_in/{k}/{i}/{j}" if m == 0 else canon(inp)
                            input_map[key] = fq if m == 0 else graph.get_tensor_by_name(key)
                            node.input.append(key)
                        pairs.setdefault((k, t), []).append((r, node.name))
        tf.graph_util.import_graph_def(copies, input_map=input_map, name="")
        rows = []
        for k in range(k_max):
            errs = []
            for t in todo:
                e = tf.constant(0.0, tf.float64)
                for r, c in pairs[(k, t)]:
                    d = graph.get_tensor_by_name(c + ":0") - graph.get_tensor_by_name(r + ":0")
                    e = e + tf.reduce_sum(tf.square(tf.cast(d, tf.float64)))
                errs.append(e)
            rows.append(tf.stack(errs))
        err = tf.stack(rows)
    lo_v = np.zeros((k_max, len(todo)), np.float32)
    hi_v = np.zeros((k_max, len(todo)), np.float32)
    for i, t in enumerate(todo):
        c = cands[t]
        for k in range(k_max):
            qp, _ = qparams_from_amax(c[min(k, len(c) - 1)], table[t].qparams.signed, "search")
            lo_v[k, i] = -qp.zero_point * qp.scale
            hi_v[k, i] = (255 - qp.zero_point) * qp.scale
    sess = tf.compat.v1.Session(graph=graph, config=session_config)
    total = np.zeros((k_max, len(todo)))
    for batch in batches:
        fd = {graph.get_tensor_by_name(name): v for name, v in feed(batch).items()}
        fd[lo], fd[hi] = lo_v, hi_v
        total += sess.run(err, fd)
    sess.close()
    changes = {}
    for i, t in enumerate(todo):
        c = cands[t]
        k = int(np.argmin(total[:len(c), i]))
        old = table[t]
        qp, _ = qparams_from_amax(c[k], old.qparams.signed, old.qparams.method + "+search")
        table.add(t, TableEntry(qparams=qp, min=old.min, max=old.max,
                                num_samples=old.num_samples, num_elements=old.num_elements,
                                notes=old.notes))
        changes[t] = (old.qparams.amax, float(c[k]))
    return changes
