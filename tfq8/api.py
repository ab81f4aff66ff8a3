"""The tfq8 pipeline: frontend → FP32 passes → calibration → quantize pass → export.

    optimized = tfq8.optimize(model)                      # FP32 passes only (exact)
    int8 = tfq8.quantize(model, calibration_data)         # INT8
    int8(images); int8.save("model_int8"); print(int8.summary())
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfq8 import export, frontend
from tfq8.calibration import (
    SCHEMES,
    CalibrationTable,
    Calibrator,
    CorrectionSite,
    correct_biases,
    normalize_calibration_data,
)
from tfq8.calibration.calibrator import batch_size_of, take_rows
from tfq8.calibration.qparams import U8_PAIR_MAX_NOISE
from tfq8.calibration.range_search import search_ranges
from tfq8.calibration.weight_rounding import (
    RoundingSite,
    decode_int8_weights,
    encode_int8_weights,
    round_weights,
)
from tfq8.passes import pipeline as pipeline_lib
from tfq8.passes.quantize import QuantizePlan

TABLE_ASSET = "tfq8_calibration.json"
REPORT_ASSET = "tfq8_report.json"
METHODS = ("entropy", "percentile", "minmax", "mse")


@dataclasses.dataclass
class QuantConfig:
    """How `tfq8.quantize` calibrates and what it keeps in FP32.

    method: activation range method: "entropy" (KL, TensorRT's), "percentile", "minmax", "mse".
    percentile: for method="percentile".
    activation_scheme: how tensors that can be negative are quantized: "asymmetric" (one
      threshold per side, zero point 1…254: all 256 codes cover the observed range) or
      "symmetric" (zero point 128, one threshold for |x|). Non-negative tensors always get
      zero point 0.
    bias_correction: after choosing the scales, one more FP32 pass over the calibration data
      measures the mean error each INT8 conv/matmul adds (weight and input quantization) and
      folds it into its f32 bias (tfq8.calibration.bias_correction). The corrections are kept
      in the calibration table's metadata, so re-quantizing from a saved table reproduces them.
    range_search: after the observers chose the thresholds, search each tensor that INT8
      convs/matmuls read for the threshold (0.5×…2× the observer's, or the observed max) with
      the least squared error at the output of those readers on calibration data
      (tfq8.calibration.range_search) on the first range_search_samples calibration samples;
      the new thresholds are kept only if the INT8 model's outputs are closer to FP32 with
      them on the next (up to 3 ×) range_search_samples (held out from the search); if all of
      them together are not, each quarter of them (in graph order) is kept only if it helps.
      Symmetric scheme only.
      Costs about one FP32 pass per candidate over range_search_samples samples.
    range_search_samples: calibration samples the range search uses (the first ones).
    weight_rounding: choose each conv/matmul's int8 weights to minimize the layer's output
      error on the calibration data rather than each weight's own error (GPTQ-style,
      tfq8.calibration.weight_rounding; the scales stay max|w| / 127). One more FP32 pass over
      the calibration data plus O(rows · K²) numpy work per layer (K = weights per output
      channel): about 40 % more quantize time on ResNet50 and MobileNetV2. The chosen rounding
      is kept in the calibration table's metadata, so re-quantizing from a saved table
      reproduces it.
    num_samples: calibration samples to use (None: all the data given).
    batch_size: batch size used to run the FP32 model during calibration.
    per_channel: per-output-channel weight scales (True) or one scale per layer.
    u8_safe_pairs: opt-in speed for CPUs with AVX2 but without VNNI (AMD Zen 1–3, Intel before
      Ice Lake). Every pair of same-sign conv/matmul int8 weights that AVX2 multiplies together
      (input channels 2j and 2j + 1 of one tap and output channel) is kept at |w0| + |w1| ≤
      128, by widening each channel's scale to its largest such pair / 128
      (tfq8.calibration.qparams; with weight_rounding the rounding respects it too). Such
      layers run on an exact vpmaddubsw kernel, 1.1–1.2× faster per layer than the default
      exact one. To make that cheap, the pair_channels pass first reorders channels (exactly,
      through every per-channel op) so that large weights pair with small ones; then only the
      layers that kernel would run (not 3×3 stride-1 convs, which use Winograd, nor small-IC
      first layers) and whose weight noise grows by at most u8_pair_max_noise (mean (s'/s)²
      over output channels) are made u8-safe; the others keep their scales and the exact s16
      kernel. On trained MobileNetV2 that is all 17 project convs at ≤ 1.035×, for
      1.05–1.08× end to end at FP32 agreement equal to the default (logit cosine 0.9965;
      bench/u8_pairs.py, docs/benchmarks.md session 14). Uniformly random weights (e.g.
      Keras' initializers) cannot be paired well and keep their scales. Off by default; CPUs
      with VNNI or AMX and GPUs gain nothing from it.
    u8_pair_max_noise: with u8_safe_pairs, the largest weight-noise factor (mean (s'/s)² over a
      layer's output channels, ≥ 1) a layer may take to become u8-safe. The default 1.25 costs
      no measurable accuracy on trained MobileNetV2; float("inf") makes every eligible layer
      u8-safe, the most speed for some accuracy (MobileNetV2 with every layer widened, before
      channel pairing existed: 1.12–1.19× end to end, logit cosine 0.9954 against 0.9965;
      docs/benchmarks.md session 13). Kept in the calibration table with the weight rounding,
      like u8_safe_pairs.
    keep_fp32: node names or op types to leave in FP32 (e.g. ["Conv2D"] or a layer's node name).
      An entry that is neither a TensorFlow op type nor a node or layer name of the model is an
      error (with the closest names), so a typo cannot quietly quantize the layer.
    calibration_table: a CalibrationTable or a path to its JSON (from `.calibration_table.save`
      or a quantized SavedModel's assets/) to re-quantize without re-calibrating.
    passes: {pass_name: False} switches FP32 passes off (see tfq8.optimize). "equalize"
      (cross-layer channel equalization of linear channel spaces such as residual streams,
      tfq8/passes/equalize.py) runs only here, where calibration data gives per-channel ranges;
      its scales are kept in the calibration table's metadata, like the bias corrections.
    verbose: show calibration progress.
    """

    method: str = "percentile"
    percentile: float = 99.99
    activation_scheme: str = "symmetric"
    bias_correction: bool = True
    range_search: bool = True
    weight_rounding: bool = True
    range_search_samples: int = 32
    num_samples: int | None = 512
    batch_size: int = 16
    per_channel: bool = True
    u8_safe_pairs: bool = False
    u8_pair_max_noise: float = U8_PAIR_MAX_NOISE
    keep_fp32: Sequence[str] = ()
    calibration_table: Any = None
    passes: dict | None = None
    verbose: bool = True

    def validate(self):
        if self.method not in METHODS:
            raise ValueError(f"QuantConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.activation_scheme not in SCHEMES:
            raise ValueError(f"QuantConfig.activation_scheme must be one of {SCHEMES}, got "
                             f"{self.activation_scheme!r}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"QuantConfig.percentile must be in (0, 100], got {self.percentile}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"QuantConfig.num_samples must be >= 1 or None, got "
                             f"{self.num_samples}")
        if self.range_search_samples < 1:
            raise ValueError(f"QuantConfig.range_search_samples must be >= 1, got "
                             f"{self.range_search_samples}")
        if self.batch_size < 1:
            raise ValueError(f"QuantConfig.batch_size must be >= 1, got {self.batch_size}")
        if not self.u8_pair_max_noise >= 1.0:   # also refuses NaN
            raise ValueError(f"QuantConfig.u8_pair_max_noise must be >= 1 (a noise factor; "
                             f"float('inf') for every eligible layer), got "
                             f"{self.u8_pair_max_noise}")
        if isinstance(self.keep_fp32, str):
            self.keep_fp32 = [s for s in self.keep_fp32.split(",") if s]


class GraphModel:
    """A GraphDef with its signature, callable like the original model."""

    def __init__(self, graph_def, frozen, notes=None):
        self.graph_def = graph_def
        self.inputs = frozen.inputs
        self.outputs = frozen.outputs
        self.signature_name = frozen.signature_name
        self._frozen = frozen
        self._fn = export.make_callable(graph_def, frozen.inputs, frozen.outputs,
                                        frozen.output_structure)
        self.pipeline_notes = notes

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def _assets(self):
        return {}

    def save(self, path):
        """Writes a SavedModel with the original signature name, input and output names."""
        export.save_saved_model(self.graph_def, self.inputs, self.outputs, path,
                                signature_name=self.signature_name, assets=self._assets(),
                                output_structure=self._frozen.output_structure)
        return path

    def op_counts(self):
        counts = {}
        for n in self.graph_def.node:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts


class OptimizedModel(GraphModel):
    """Result of `tfq8.optimize`: the FP32 model after the exact graph passes."""

    def summary(self, batch=1):
        """Per pass: what it changed or why it refused; node counts and MACs before/after."""
        return self.pipeline_notes.summary(before=self._frozen.graph_def, batch=batch)


# Ops that are layers (weights, most of a model's arithmetic) but that no INT8 rewrite handles.
UNQUANTIZED_LAYER_OPS = frozenset({
    "Conv3D", "Conv3DBackpropInputV2", "DepthwiseConv2dNative", "Conv2D", "Conv2DBackpropInput",
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "_FusedConv2D",
    "_FusedMatMul", "_FusedDepthwiseConv2dNative"})


def _computes_no_float(node) -> bool:
    """True when none of the node's outputs is a floating-point tensor (int32 shape and index
    arithmetic such as StridedSlice / Pack on a Shape): not FP32 compute left behind."""
    from tfq8.graph import opdefs
    dtypes = opdefs.output_dtypes(node)
    return bool(dtypes) and not any(d.is_floating for d in dtypes)


class QuantizedModel(GraphModel):
    """Result of `tfq8.quantize`: the INT8 model."""

    def __init__(self, graph_def, frozen, notes, table, layers, config):
        super().__init__(graph_def, frozen, notes)
        self.calibration_table = table
        self.layers = layers
        self.config = config

    def _assets(self):
        return {TABLE_ASSET: self.calibration_table.to_json(),
                REPORT_ASSET: json.dumps(self.report(), indent=1, sort_keys=True)}

    def report(self):
        """Per layer: op, INT8 or FP32 and why, scales. JSON-serializable."""
        rows = []
        for r in self.layers:
            row = {"node": r.node, "op": r.op, "int8": r.int8}
            if r.reason:
                row["reason"] = r.reason
            if r.output_qparams is not None:
                row["output_scale"] = r.output_qparams.scale
                row["output_zero_point"] = r.output_qparams.zero_point
            if r.input_qparams:
                row["input_scales"] = [q.scale for q in r.input_qparams]
            if r.weight_scale_range is not None:
                row["weight_scale_range"] = list(r.weight_scale_range)
            if r.u8_pairs_noise is not None:
                row["u8_pairs_weight_noise"] = r.u8_pairs_noise
            rows.append(row)
        # Heavy FP32 ops the quantizer has no layer kind for (Conv3D, BatchMatMul, …) get a row
        # too, so that "layers kept in FP32" lists every layer that runs in FP32.
        listed = {r["node"] for r in rows}
        for n in self.graph_def.node:
            if n.op in UNQUANTIZED_LAYER_OPS and n.name not in listed:
                rows.append({"node": n.name, "op": n.op, "int8": False,
                             "reason": f"tfq8 has no INT8 kernel for {n.op}: it runs in FP32"})
        fp32_ops = {}
        shape_ops = {}
        int8_ops = {"Tfq8Conv2D", "Tfq8GroupedConv2D", "Tfq8DepthwiseConv2D", "Tfq8MatMul",
                    "Tfq8Add", "Tfq8MaxPool", "Tfq8AvgPool", "Tfq8Mean", "Tfq8Concat", "Tfq8Lookup",
                    "Tfq8ChannelMul", "Tfq8LayerNorm", "Tfq8Mul", "Tfq8Prelu"}
        on_uint8 = {}
        u8 = tf.uint8.as_datatype_enum
        by_name = {n.name: n for n in self.graph_def.node}

        def reads_uint8_op(n):   # the Round of an INT8 resize (uint8 in, float codes out)
            src = by_name.get(n.input[0].split(":")[0]) if n.input else None
            return src is not None and "T" in src.attr and src.attr["T"].type == u8

        for n in self.graph_def.node:
            if n.op in int8_ops or n.op in ("Const", "Placeholder", "Identity", "NoOp",
                                            "Tfq8Quantize", "Tfq8QuantizeChannels",
                                            "Tfq8Dequantize"):
                continue
            if (("T" in n.attr and n.attr["T"].type == u8)
                    or (n.op == "Cast" and n.attr["DstT"].type == u8)
                    or (n.op == "Round" and reads_uint8_op(n))):
                on_uint8[n.op] = on_uint8.get(n.op, 0) + 1   # stock data movement on INT8
            elif _computes_no_float(n):
                shape_ops[n.op] = shape_ops.get(n.op, 0) + 1      # int32 shape arithmetic
            else:
                fp32_ops[n.op] = fp32_ops.get(n.op, 0) + 1
        eq = self.calibration_table.metadata.get(EQUALIZATION_KEY) or {}
        return {"layers": rows, "fp32_ops": fp32_ops, "stock_ops_on_int8": on_uint8,
                "integer_ops": shape_ops,
                "op_counts": self.op_counts(),
                "equalized_channel_spaces": {k: {"channels": len(v), "max_scale": max(v)}
                                             for k, v in sorted(eq.items())}}

    def summary(self):
        rep = self.report()
        int8 = [r for r in rep["layers"] if r["int8"]]
        fp32 = [r for r in rep["layers"] if not r["int8"]]
        counts = self.op_counts()
        lines = ["tfq8 INT8 model",
                 f"  INT8 layers: {len(int8)}  (ops: "
                 + ", ".join(f"{op} {c}" for op, c in sorted(counts.items())
                             if op.startswith("Tfq8")) + ")",
                 f"  layers kept in FP32: {len(fp32)}"]
        for r in fp32:
            lines.append(f"    {r['node']} ({r['op']}): {r['reason']}")
        if rep["stock_ops_on_int8"]:
            lines.append("  stock TF ops moving INT8 data: "
                         + ", ".join(f"{op} {c}" for op, c in
                                     sorted(rep["stock_ops_on_int8"].items())))
        if rep["fp32_ops"]:
            lines.append("  FP32 ops left in the graph: "
                         + ", ".join(f"{op} {c}" for op, c in sorted(rep["fp32_ops"].items())))
        if rep["integer_ops"]:
            lines.append("  integer ops (shapes, indices; no float compute): "
                         + ", ".join(f"{op} {c}" for op, c in sorted(rep["integer_ops"].items())))
        bc = "bias correction" if BIAS_CORRECTION_KEY in self.calibration_table.metadata \
            else "no bias correction"
        wr = self.calibration_table.metadata.get(WEIGHT_ROUNDING_KEY)
        wr = (f"output-error weight rounding on {len(wr['layers'])} layer(s)" if wr
              else "round-to-nearest weights")
        eq = self.calibration_table.metadata.get(EQUALIZATION_KEY)
        eq = f"{len(eq)} channel space(s) equalized" if eq else "no channel equalization"
        rs = self.calibration_table.metadata.get(RANGE_SEARCH_KEY)
        if rs and rs.get("kept", True):
            rs = (f"range search ({rs['changed']} of {rs['searched']} thresholds moved, "
                  f"{rs['samples']} samples)")
        elif rs:
            rs = "range search rejected (no better on the calibration samples)"
        else:
            rs = "no range search"
        lines.append(f"  calibration: {self.config.method}, {self.config.activation_scheme}, "
                     f"{bc}, {wr}, {eq}, {rs}, "
                     f"{self.calibration_table.metadata.get('num_samples', '?')} samples")
        if self.config.u8_safe_pairs:
            safe = [r for r in int8 if "u8_pairs_weight_noise" in r]
            convs = [r for r in int8 if "weight_scale_range" in r and r["op"] not in
                     ("DepthwiseConv2dNative",)]
            worst = max((r["u8_pairs_weight_noise"] for r in safe), default=1.0)
            lines.append(f"  u8-safe weight pairs (AVX2 vpmaddubsw kernel): {len(safe)} of "
                         f"{len(convs)} conv/matmul layers, weight noise ≤ {worst:.3f}× "
                         f"(bound u8_pair_max_noise={self.config.u8_pair_max_noise:g}; the "
                         f"others keep their scales)")
        if self.pipeline_notes is not None:
            lines.append("FP32 passes:")
            lines.append(self.pipeline_notes.summary(before=self._frozen.graph_def, max_notes=3))
        return "\n".join(lines)


def _run_fp32_passes(frozen, passes, options=None):
    pipe = pipeline_lib.default_pipeline(disable=[k for k, v in (passes or {}).items() if not v])
    return pipe.run(frozen.graph_def,
                    pipeline_lib.PassContext.for_model(frozen, **(options or {})))


def optimize(model, passes=None, signature="serving_default") -> OptimizedModel:
    """Freezes `model` and runs the exact FP32 passes (BN folding, stride moving, fusion).

    model: a Keras model, a tf.function with an input_signature, a ConcreteFunction, or a
      SavedModel directory. passes: {pass_name: False} to switch passes off.
    """
    frozen = frontend.load_model(model, signature=signature)
    result = _run_fp32_passes(frozen, passes)
    return OptimizedModel(result.graph_def, frozen, result)


def _fp32_runner(graph_def, frozen, tensors):
    """batch dict → {tensor: value} running the FP32 graph in a Session."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=graph)
    feeds = {spec.name: graph.get_tensor_by_name(spec.tensor) for spec in frozen.inputs}
    fetches = [graph.get_tensor_by_name(t) for t in tensors]

    def run(batch):
        values = sess.run(fetches, {feeds[k]: v for k, v in batch.items()})
        return dict(zip(tensors, values))

    return run


def _load_table(src):
    if isinstance(src, CalibrationTable):
        return src
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if os.path.isdir(path):
            path = os.path.join(path, "assets", TABLE_ASSET)
        if not os.path.exists(path):
            raise FileNotFoundError(f"calibration_table {src!r}: no such file")
        return CalibrationTable.load(path)
    raise TypeError(f"calibration_table must be a CalibrationTable or a path, got "
                    f"{type(src).__name__}")


BIAS_CORRECTION_KEY = "bias_correction"
EQUALIZATION_KEY = "equalization"
RANGE_SEARCH_KEY = "range_search"
# the range search's guard judges on up to this many times range_search_samples held-out
# calibration samples: on 32 its all-or-nothing verdict flipped with the noise of small changes
# elsewhere (MobileNetV2 with u8_safe_pairs: 0.0202 vs 0.0206 relative error on 32 samples
# rejected a search that lifts three blocks' SQNR from 8 to 19 dB on other photos)
GUARD_SAMPLES_FACTOR = 3
GUARD_GROUPS = 4   # runs of graph order the guard tries one by one when all moves together lose
WEIGHT_ROUNDING_KEY = "weight_rounding"


def _range_search(plan, table, fp32, frozen, calibration_data, config):
    """Moves the table's thresholds to the ones their readers prefer (see QuantConfig), and
    keeps the move only if the INT8 model's outputs get closer to FP32 on those samples."""
    if (config.activation_scheme != "symmetric"
            or not _reusable(calibration_data, "range search")):
        return
    n = config.range_search_samples
    if config.num_samples is not None:
        n = min(n, config.num_samples)
    total = table.metadata.get("num_samples", 2 * n)
    rows = list(_limited(normalize_calibration_data(calibration_data, frozen.inputs,
                                                    batch_size=config.batch_size),
                         min(GUARD_SAMPLES_FACTOR * n + n, total)))
    # the first n samples for the search, the next ones (up to GUARD_SAMPLES_FACTOR · n, when
    # there are) for the guard
    batches, held_out, seen = [], [], 0
    for b in rows:
        (batches if seen < n else held_out).append(b)
        seen += batch_size_of(b)
    held_out = held_out or batches
    feeds = {spec.name: spec.tensor for spec in frozen.inputs}
    before = {t: table[t] for t in table}
    changes = search_ranges(fp32, table, plan.observe,
                            lambda b: {feeds[k]: v for k, v in b.items()}, batches)
    # The search judges each tensor alone, at its readers; the guard judges the whole model:
    # squared error of the INT8 outputs against FP32 on other calibration samples. All moves
    # first; if that is no better, the moves in GUARD_GROUPS runs of graph order one after
    # another, each kept only if it lowers the error (one model-wide verdict threw away good
    # moves in one block with bad ones in another).
    outputs = [o.tensor for o in frozen.outputs]
    ref = _fp32_runner(fp32, frozen, outputs)
    after = {t: table[t] for t in table}

    def error(entries):
        for t, e in entries.items():
            table.add(t, e)
        run = _fp32_runner(plan.emit(table)[0], frozen, outputs)   # runs the INT8 graph too
        err = sig = 0.0
        for batch in held_out:
            want, got = ref(batch), run(batch)
            for t in outputs:
                w = want[t].astype(np.float64)
                err += float(np.sum((got[t].astype(np.float64) - w) ** 2))
                sig += float(np.sum(w * w))
        return err / max(sig, 1e-30)

    errors = [error(before), error(after)]
    moved = [t for t, (a, b) in changes.items() if a != b]
    kept_moves = moved
    if errors[1] >= errors[0]:
        position = {n.name: i for i, n in enumerate(fp32.node)}
        moved.sort(key=lambda t: position.get(t.split(":")[0], 0))
        current, kept_moves, tried = _keep_helpful_groups(moved, before, after, error,
                                                          errors[0], GUARD_GROUPS)
        errors += tried
        for t, e in current.items():
            table.add(t, e)
    kept = True if kept_moves is moved else ("partial" if kept_moves else False)
    if kept == "partial":
        logging.getLogger("tfq8").info("range search: kept %d of %d moved thresholds (the "
                                       "others made the model's outputs worse)",
                                       len(kept_moves), len(moved))
    table.metadata[RANGE_SEARCH_KEY] = {
        "samples": sum(batch_size_of(b) for b in batches),
        "held_out_samples": sum(batch_size_of(b) for b in held_out), "searched": len(changes),
        "changed": len(kept_moves), "kept": kept, "relative_output_error": errors}


def _keep_helpful_groups(moved, before, after, error, base, groups):
    """The range search's fallback guard: ``moved`` (tensors in graph order) in ``groups``
    consecutive runs; each run's ``after`` entries are tried on top of those kept so far and
    kept if ``error(entries)`` drops below the best so far (starting at ``base``, the error of
    ``before``). Returns (entries, kept tensors, errors tried)."""
    current, best, kept, tried = dict(before), base, [], []
    size = max(1, -(-len(moved) // groups))
    for i in range(0, len(moved), size):
        trial = dict(current)
        trial.update({t: after[t] for t in moved[i:i + size]})
        e = error(trial)
        tried.append(e)
        if e < best:
            current, best, kept = trial, e, kept + moved[i:i + size]
    return current, kept, tried


def _reusable(calibration_data, what):
    """False (with a warning) for a one-shot iterator, which calibration itself consumes."""
    try:
        one_shot = iter(calibration_data) is calibration_data
    except TypeError:
        one_shot = False
    if one_shot:
        logging.getLogger("tfq8").warning(
            "%s skipped: the calibration data is a one-shot iterator and was consumed by "
            "calibration (pass an array, a dict, a list or a tf.data.Dataset)", what)
    return not one_shot


def _channel_ranges(frozen, calibration_data, config):
    """For the equalize pass: (graph_def, tensors) → {tensor: per-channel max |x|} over the
    calibration data (one FP32 run of the graph as that pass sees it)."""
    def ranges(graph_def, tensors):
        out = {}
        if not tensors:
            return out
        run = _fp32_runner(graph_def, frozen, tensors)
        batches = normalize_calibration_data(calibration_data, frozen.inputs,
                                             batch_size=config.batch_size)
        for batch in _limited(batches, config.num_samples):
            for t, v in run(batch).items():
                m = np.max(np.abs(v.reshape(-1, v.shape[-1])), axis=0)
                out[t] = m if t not in out else np.maximum(out[t], m)
        return out
    return ranges


def _correction_sites(plan, layers):
    reports = {r.node: r for r in layers if r.int8}
    sites = []
    for key, grp in plan.groups.items():
        if grp.kind not in ("conv", "depthwise", "matmul") or grp.attrs.get("affine"):
            continue    # an affine's weights are exact: nothing of its own to correct
        rep = reports.get(grp.out_node)
        if rep is None or not rep.input_qparams:
            continue
        a = grp.attrs
        sites.append(CorrectionSite(
            name=key, kind=grp.kind, input=grp.inputs[0], input_qparams=rep.input_qparams[0],
            weights=a["weights"], per_channel=plan.per_channel or a.get("affine", False),
            strides=tuple(a.get("strides", (1, 1))), dilations=tuple(a.get("dilations", (1, 1))),
            pads=_site_pads(a), summand=grp.summand,
            summand_qparams=rep.summand_qparams, int8_weights=plan.int8_weights(grp)))
    return sites


def _site_pads(attrs):
    """A group's pads for the calibration sites: "SAME" when the op pads at run time."""
    return "SAME" if attrs.get("dynamic_same") else tuple(attrs.get("pads", (0, 0, 0, 0)))


def _rounding_sites(plan, layers):
    int8 = {r.node for r in layers if r.int8 and r.input_qparams}
    sites = []
    for key, grp in plan.groups.items():
        a = grp.attrs
        if (grp.kind not in ("conv", "depthwise", "matmul") or a.get("affine")
                or a.get("groups") or grp.out_node not in int8):
            continue    # affine weights are exact; grouped convs would need one H per group
        sites.append(RoundingSite(
            name=key, kind=grp.kind, input=grp.inputs[0], weights=a["weights"],
            per_channel=plan.per_channel, strides=tuple(a.get("strides", (1, 1))),
            dilations=tuple(a.get("dilations", (1, 1))), pads=_site_pads(a),
            u8_safe_pairs=plan.u8_pairs(grp)))
    return sites



def _noise_bound_json(bound):
    """u8_pair_max_noise as the calibration table stores it: a number, or "inf" (strict JSON
    has no infinity)."""
    return "inf" if bound == float("inf") else round(float(bound), 6)

def _weight_rounding(plan, table, fp32, frozen, calibration_data, config):
    """Sets the plan's int8 weights to the output-error-minimizing rounding (see QuantConfig),
    measuring it (one FP32 pass over the calibration data) when the table has none.

    The table keeps, per layer, the difference from round-to-nearest (tfq8.calibration.
    weight_rounding.encode_int8_weights), so it stays valid only for the same weights and the
    same per-channel choice."""
    saved = table.metadata.get(WEIGHT_ROUNDING_KEY)
    if saved is not None and not config.weight_rounding:
        raise ValueError("the calibration table was made with weight rounding (its bias "
                         "corrections assume it); quantize with weight_rounding=True, or "
                         "recalibrate")
    if saved is None:
        # a table whose bias corrections were measured with round-to-nearest keeps it
        if (not config.weight_rounding or calibration_data is None
                or BIAS_CORRECTION_KEY in table.metadata
                or not _reusable(calibration_data, "weight rounding")):
            return
        _, layers = plan.emit(table)
        sites = _rounding_sites(plan, layers)
        if not sites:
            return
        run = _fp32_runner(fp32, frozen, sorted({s.input for s in sites}))
        batches = normalize_calibration_data(calibration_data, frozen.inputs,
                                             batch_size=config.batch_size)
        used = table.metadata.get("num_samples")     # what calibration actually saw
        expected = -(-int(used) // config.batch_size) if used else None
        rounded = round_weights(sites, run, _limited(batches, config.num_samples), expected)
        layers = {}
        for key, (wq, _) in sorted(rounded.items()):
            rtn, _ = plan.int8_weights(plan.groups[key], fit_pairs=False)
            layers[key] = encode_int8_weights(wq, rtn)
        saved = {"per_channel": bool(plan.per_channel),
                 "u8_safe_pairs": bool(plan.u8_safe_pairs), "layers": layers}
        if plan.u8_safe_pairs:
            saved["u8_pair_max_noise"] = _noise_bound_json(plan.u8_pair_max_noise)
        table.metadata[WEIGHT_ROUNDING_KEY] = saved
    if saved.get("per_channel") != bool(plan.per_channel):
        raise ValueError(f"the calibration table's weight rounding was made with per_channel="
                         f"{saved.get('per_channel')}; quantize with the same per_channel, or "
                         f"recalibrate")
    # tables from before u8_safe_pairs existed were rounded at the plain scales
    if bool(saved.get("u8_safe_pairs", False)) != bool(plan.u8_safe_pairs):
        raise ValueError(f"the calibration table's weight rounding was made with "
                         f"u8_safe_pairs={bool(saved.get('u8_safe_pairs', False))} (other "
                         f"weight scales); quantize with the same u8_safe_pairs, or recalibrate")
    # tables from before the bound was a QuantConfig field used the default
    bound = saved.get("u8_pair_max_noise", _noise_bound_json(U8_PAIR_MAX_NOISE))
    if plan.u8_safe_pairs and bound != _noise_bound_json(plan.u8_pair_max_noise):
        raise ValueError(f"the calibration table's weight rounding was made with "
                         f"u8_pair_max_noise={bound} (other layers u8-safe, other weight "
                         f"scales); quantize with the same u8_pair_max_noise, or recalibrate")
    for key, blob in saved.get("layers", {}).items():
        grp = plan.groups.get(key)
        if grp is None or grp.kind not in ("conv", "depthwise", "matmul"):
            raise ValueError(f"the calibration table's weight rounding for {key!r} does not "
                             f"fit this model; recalibrate")
        grp.attrs.pop("int8_weights", None)
        rtn, scales = plan.int8_weights(grp, fit_pairs=False)
        grp.attrs["int8_weights"] = (decode_int8_weights(blob, rtn, key), scales)


def _check_finite_data(calibration_data, config):
    """An endless tf.data.Dataset (`.repeat()`) with num_samples=None would calibrate forever."""
    if config.num_samples is not None or not isinstance(calibration_data, tf.data.Dataset):
        return
    if int(calibration_data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("calibration_data is an infinite tf.data.Dataset (e.g. made with "
                         ".repeat()) and QuantConfig.num_samples is None, so calibration "
                         "would never end; set num_samples (e.g. 512) or .take() a finite part")


def _limited(batches, num_samples):
    seen = 0
    for batch in batches:
        n = batch_size_of(batch)
        if num_samples is not None and n > num_samples - seen:
            batch, n = take_rows(batch, num_samples - seen), num_samples - seen
        if n:
            yield batch
        seen += n
        if num_samples is not None and seen >= num_samples:
            return


def _bias_correction(plan, table, fp32, frozen, calibration_data, config):
    """Adds the table's bias corrections to the plan's conv biases, measuring them first (one
    FP32 pass over the calibration data) when the table has none."""
    corrections = table.metadata.get(BIAS_CORRECTION_KEY)
    if corrections is None:
        if calibration_data is None or not _reusable(calibration_data, "bias correction"):
            return
        _, layers = plan.emit(table)  # the qparams each layer's input really gets
        sites = _correction_sites(plan, layers)
        if not sites:
            return
        tensors = sorted({s.input for s in sites} | {s.summand for s in sites if s.summand})
        run = _fp32_runner(fp32, frozen, tensors)
        batches = normalize_calibration_data(calibration_data, frozen.inputs,
                                             batch_size=config.batch_size)
        deltas = correct_biases(sites, run, _limited(batches, config.num_samples))
        corrections = {k: [float(v) for v in d] for k, d in sorted(deltas.items())}
        table.metadata[BIAS_CORRECTION_KEY] = corrections
    for key, delta in corrections.items():
        grp = plan.groups.get(key)
        if grp is None or "bias" not in grp.attrs or grp.attrs["bias"].size != len(delta):
            raise ValueError(f"the calibration table's bias correction for {key!r} does not fit "
                             f"this model; recalibrate")
        grp.attrs["bias"] = (grp.attrs["bias"].astype(np.float64)
                             - np.asarray(delta, np.float64)).astype(np.float32)


def _check_keep_fp32(keep, graph_defs):
    """Raises ValueError for a keep_fp32 entry that is neither a registered op type nor a node
    name or name scope (a Keras layer name) of the model: a typo would otherwise quietly
    quantize the layer the user wanted kept."""
    from tfq8.graph import opdefs

    names, scopes = set(), set()
    for gd in graph_defs:
        for n in gd.node:
            names.add(n.name)
            parts = n.name.split("/")[:-1]
            scopes.update(parts)
            # Keras suffixes repeated layer names "_<n>": conv2 also matches conv2_1
            scopes.update(p.rsplit("_", 1)[0] for p in parts
                          if "_" in p and p.rsplit("_", 1)[1].isdigit())
    for k in keep:
        if k in names or k in scopes or opdefs.op_def(k) is not None:
            continue
        close = difflib.get_close_matches(k, sorted(scopes | names), n=3, cutoff=0.6)
        raise ValueError(f"QuantConfig.keep_fp32 entry {k!r} is not an op type, node name or "
                         f"layer name of this model" + (f"; did you mean {close}?" if close
                                                        else "") +
                         " (layer names are the Keras layer's `name`; op types are TensorFlow's, "
                         "e.g. 'Conv2D', 'DepthwiseConv2dNative', 'MatMul')")


def quantize(model, calibration_data=None, config: QuantConfig | None = None,
             signature="serving_default") -> QuantizedModel:
    """Quantizes `model` to INT8 after calibrating on `calibration_data`.

    model: as in `tfq8.optimize`. calibration_data: numpy array(s), a dict {input name: array},
      a tf.data.Dataset or any iterable of batches; may be None when
      config.calibration_table is given.
    """
    config = config or QuantConfig()
    config.validate()
    _check_finite_data(calibration_data, config)
    frozen = frontend.load_model(model, signature=signature)
    table = None if config.calibration_table is None else _load_table(config.calibration_table)
    options = {}
    equalize = (config.passes or {}).get("equalize", True)
    if table is not None:
        saved = table.metadata.get(EQUALIZATION_KEY)
        if saved and not equalize:
            raise ValueError("the calibration table was made with channel equalization; "
                             "quantize with the 'equalize' pass on, or recalibrate")
        if saved:
            options["channel_scales"] = saved
    elif (equalize and calibration_data is not None
          and _reusable(calibration_data, "channel equalization")):
        options["channel_ranges"] = _channel_ranges(frozen, calibration_data, config)
    if config.keep_fp32:
        options["keep_fp32"] = list(config.keep_fp32)   # dedupe must not merge them away
    options["u8_safe_pairs"] = config.u8_safe_pairs     # pair_channels runs only then
    options["upcast_half"] = True       # mixed-precision models: quantize their float32 twin
    options["u8_pair_max_noise"] = float(config.u8_pair_max_noise)
    result = _run_fp32_passes(frozen, config.passes, options)
    fp32 = result.graph_def
    outputs = [o.tensor for o in frozen.outputs]
    _check_keep_fp32(config.keep_fp32, [frozen.graph_def, fp32])
    plan = QuantizePlan(fp32, outputs, keep_fp32=config.keep_fp32,
                        per_channel=config.per_channel, u8_safe_pairs=config.u8_safe_pairs,
                        u8_pair_max_noise=float(config.u8_pair_max_noise))
    if table is not None:
        missing = [t for t in plan.observe if t not in table]
        if missing:
            raise ValueError(f"the calibration table lacks {len(missing)} tensors this model "
                             f"needs (e.g. {missing[:3]}); it was made for another model or "
                             f"other passes — recalibrate")
    else:
        if calibration_data is None:
            raise ValueError("calibration_data is required (or give "
                             "QuantConfig(calibration_table=...))")
        batches = normalize_calibration_data(calibration_data, frozen.inputs,
                                             batch_size=config.batch_size)
        run = _fp32_runner(fp32, frozen, plan.observe)
        table = Calibrator(run, config.method, num_samples=config.num_samples,
                           percentile=config.percentile, scheme=config.activation_scheme,
                           asymmetric=plan.lookup_tensors,
                           full_range=plan.full_range_tensors,
                           verbose=config.verbose,
                           metadata={"signature": frozen.signature_name}).calibrate(batches)
        eq = result.results.get("equalize")
        if eq is not None and eq.data.get("scales"):
            table.metadata[EQUALIZATION_KEY] = eq.data["scales"]
        if config.range_search:
            _range_search(plan, table, fp32, frozen, calibration_data, config)
    _weight_rounding(plan, table, fp32, frozen, calibration_data, config)
    if config.bias_correction:
        _bias_correction(plan, table, fp32, frozen, calibration_data, config)
    int8_graph, layers = plan.emit(table)
    return QuantizedModel(int8_graph, frozen, result, table, layers, config)
