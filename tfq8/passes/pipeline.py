"""Passes and the pipeline that runs them.

A pass is an object with a ``name`` and a pure ``run(graph_def, ctx) -> PassResult``: it never
mutates its input (use ``tfq8.graph.Editor``, which works on a copy). The pipeline

* validates the graph before the first pass and after every pass (``tfq8.graph.validate``),
* lets any pass be switched off by name, like Grappler's ``RewriterConfig``
  (``Pipeline(passes, disable={"move_strides"})``),
* collects each pass's notes: what it rewrote and, for every rewrite it refused, the node and the
  reason — ``result.summary()`` prints them so users see why a layer stayed as it was.

``count_macs`` counts multiply-accumulates of the linear ops from static shapes (TF's own shape
inference on the graph imported with a concrete batch); summaries use it to show what a pass
saved. Other op types (e.g. the quantizer's Tfq8* ops) register a rule in ``MAC_RULES``.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from tensorflow.core.framework import graph_pb2, node_def_pb2

from tfq8.graph import GraphError, GraphIndex, canonical, get_attr, infer_shapes, validate

__all__ = ["Note", "PassResult", "PassContext", "Pass", "Pipeline", "PipelineResult",
           "PassError", "count_macs", "MacReport", "MAC_RULES"]


# ==================================================================== results
@dataclasses.dataclass(frozen=True)
class Note:
    """One line of a pass's report. kind: "rewrite" (done), "refused" (a rewrite that applied in
    shape but a check refused it; ``message`` is the reason) or "info"."""

    pass_name: str
    kind: str
    node: str
    message: str

    def __str__(self):
        return f"[{self.pass_name}] {self.kind}: {self.node}: {self.message}"


class Notes(list):
    """A list of Note with shorthands bound to one pass name."""

    def __init__(self, pass_name: str):
        super().__init__()
        self.pass_name = pass_name

    def rewrite(self, node: str, message: str) -> None:
        self.append(Note(self.pass_name, "rewrite", node, message))

    def refuse(self, node: str, reason: str) -> None:
        self.append(Note(self.pass_name, "refused", node, reason))

    def info(self, node: str, message: str) -> None:
        self.append(Note(self.pass_name, "info", node, message))


@dataclasses.dataclass
class PassResult:
    graph_def: graph_pb2.GraphDef
    changed: bool
    notes: List[Note] = dataclasses.field(default_factory=list)
    # what a pass hands back besides the graph (e.g. equalize: the scales it applied)
    data: Dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def refusals(self) -> List[Note]:
        return [n for n in self.notes if n.kind == "refused"]

    @property
    def rewrites(self) -> List[Note]:
        return [n for n in self.notes if n.kind == "rewrite"]


@dataclasses.dataclass
class PassContext:
    """What a pass may know besides the graph: the signature's tensors and free-form options.

    inputs / outputs: canonical tensor names ("node:0"). Outputs must survive every pass
    unchanged in name and value; passes refuse to fold them away.
    """

    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    options: Dict[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.inputs = tuple(canonical(t) for t in self.inputs)
        self.outputs = tuple(canonical(t) for t in self.outputs)

    @classmethod
    def for_model(cls, model, **options) -> "PassContext":
        """From a ``tfq8.frontend.FrozenModel`` (anything with ``inputs``/``outputs`` records)."""
        return cls([t.tensor for t in model.inputs], [t.tensor for t in model.outputs],
                   dict(options))

    def index(self, graph_def: graph_pb2.GraphDef) -> GraphIndex:
        return GraphIndex(graph_def, self.outputs)

    def shapes(self, graph_def: graph_pb2.GraphDef, batch: Optional[int] = None):
        """Static shapes of every tensor (see ``tfq8.graph.infer_shapes``)."""
        return infer_shapes(graph_def, batch=batch)


class PassError(RuntimeError):
    """A pass produced an invalid graph (a bug in the pass); names the pass and the node."""


class Pass:
    """Base class. Subclasses set ``name`` and implement ``run``; ``run`` must not mutate
    ``graph_def`` and returns ``PassResult(new_graph_def, changed, notes)``."""

    name: str = ""

    def run(self, graph_def: graph_pb2.GraphDef, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def notes(self) -> Notes:
        return Notes(self.name)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


# ==================================================================== pipeline
@dataclasses.dataclass
class PipelineResult:
    graph_def: graph_pb2.GraphDef
    results: Dict[str, Optional[PassResult]]  # None: the pass was switched off
    seconds: Dict[str, float]

    @property
    def notes(self) -> List[Note]:
        return [n for r in self.results.values() if r is not None for n in r.notes]

    @property
    def changed(self) -> bool:
        return any(r is not None and r.changed for r in self.results.values())

    def summary(self, before: Optional[graph_pb2.GraphDef] = None, batch: int = 1,
                max_notes: int = 50) -> str:
        """Per pass: on/off, changed, rewrites, and every refusal with its reason. With
        ``before`` also MACs before/after (batch ``batch``) and op counts."""
        lines = []
        for name, r in self.results.items():
            if r is None:
                lines.append(f"{name}: disabled")
                continue
            lines.append(f"{name}: {'changed' if r.changed else 'unchanged'}, "
                         f"{len(r.rewrites)} rewrite(s), {len(r.refusals)} refused "
                         f"({self.seconds.get(name, 0):.2f} s)")
            shown = [n for n in r.notes if n.kind != "rewrite"] + r.rewrites
            for n in shown[:max_notes]:
                lines.append(f"  {n.kind}: {n.node}: {n.message}")
            if len(shown) > max_notes:
                lines.append(f"  ... {len(shown) - max_notes} more")
        if before is not None:
            b, a = count_macs(before, batch), count_macs(self.graph_def, batch)
            change = (a.total - b.total) / b.total * 100 if b.total else 0.0
            lines.append(f"MACs (batch {batch}): {b.total:,} -> {a.total:,} ({change:+.1f}%)")
            cb = Counter(n.op for n in before.node)
            ca = Counter(n.op for n in self.graph_def.node)
            diff = {op: (cb[op], ca[op]) for op in sorted(set(cb) | set(ca)) if cb[op] != ca[op]}
            if diff:
                lines.append("ops: " + ", ".join(f"{op} {x}->{y}" for op, (x, y) in diff.items()))
        return "\n".join(lines)


class Pipeline:
    """Runs passes in order. ``disable``: names of passes to skip (unknown names are an error)."""

    def __init__(self, passes: Sequence[Pass], disable: Iterable[str] = (),
                 validate: bool = True):
        self.passes = list(passes)
        names = [p.name for p in self.passes]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"pass names must be unique and non-empty: {names}")
        disable = set(disable)
        unknown = disable - set(names)
        if unknown:
            raise ValueError(f"unknown pass name(s) {sorted(unknown)}; passes: {names}")
        self.disabled = disable
        self.validate = validate

    @property
    def names(self) -> List[str]:
        return [p.name for p in self.passes]

    def run(self, graph_def: graph_pb2.GraphDef, ctx: PassContext) -> PipelineResult:
        if self.validate:
            self._check(graph_def, ctx, "the pipeline's input")
        results: Dict[str, Optional[PassResult]] = {}
        seconds: Dict[str, float] = {}
        for p in self.passes:
            if p.name in self.disabled:
                results[p.name] = None
                continue
            t0 = time.perf_counter()
            r = p.run(graph_def, ctx)
            seconds[p.name] = time.perf_counter() - t0
            if not isinstance(r, PassResult):
                raise PassError(f"pass {p.name!r} returned {type(r).__name__}, not PassResult")
            if self.validate:
                self._check(r.graph_def, ctx, f"the output of pass {p.name!r}")
            results[p.name] = r
            graph_def = r.graph_def
        return PipelineResult(graph_def, results, seconds)

    @staticmethod
    def _check(graph_def, ctx, what):
        try:
            validate(graph_def, ctx.inputs, ctx.outputs)
        except GraphError as e:
            raise PassError(f"{what} is not a valid graph: {e}") from e


def default_pipeline(disable: Iterable[str] = ()) -> Pipeline:
    """The FP32 passes in their order: upcast_half (only with ``ctx.options["upcast_half"]``,
    which tfq8.quantize sets) → dedupe → conv1d → dilated_conv → transposed_conv →
    grouped_conv → dense_as_conv → pad_into_conv → fold_batchnorm → move_strides → fuse_activations → equalize (which needs
    calibration data in ``ctx.options`` and otherwise changes nothing) → pair_channels (only
    with ``ctx.options["u8_safe_pairs"]``)."""
    from tfq8.passes.conv1d import Conv1DAs2D
    from tfq8.passes.dedupe import Dedupe
    from tfq8.passes.dense_conv import DenseAsConv
    from tfq8.passes.dilated_conv import DilatedConv
    from tfq8.passes.equalize import Equalize
    from tfq8.passes.fold_batchnorm import FoldBatchNorm
    from tfq8.passes.fuse_activations import FuseActivations
    from tfq8.passes.grouped_conv import GroupedConv
    from tfq8.passes.move_strides import MoveStrides
    from tfq8.passes.pad_into_conv import PadIntoConv
    from tfq8.passes.pair_channels import PairChannels
    from tfq8.passes.transposed_conv import TransposedConv
    from tfq8.passes.upcast_half import UpcastHalf
    return Pipeline([UpcastHalf(), Dedupe(), Conv1DAs2D(), DilatedConv(), TransposedConv(), GroupedConv(),
                     DenseAsConv(), PadIntoConv(), FoldBatchNorm(), MoveStrides(), FuseActivations(), Equalize(),
                     PairChannels()],
                    disable=disable)


# ==================================================================== MACs
MacRule = Callable[[node_def_pb2.NodeDef, Sequence, Sequence], int]


def _prod(xs):
    return int(np.prod([int(x) for x in xs], dtype=np.int64)) if xs else 1


def _conv_macs(node, in_shapes, out_shapes):
    # output elements × (kh·kw·filter_in): Conv2D's filter is HWIO; grouped convs have a
    # smaller I than the input, which this formula already accounts for.
    kh, kw, ci, _ = in_shapes[1]
    return _prod(out_shapes[0]) * kh * kw * ci


def _depthwise_macs(node, in_shapes, out_shapes):
    kh, kw, _, _ = in_shapes[1]
    return _prod(out_shapes[0]) * kh * kw


def _matmul_macs(node, in_shapes, out_shapes):
    a = in_shapes[0]
    k = a[-2] if get_attr(node, "transpose_a", False) else a[-1]
    return _prod(out_shapes[0]) * k


def _batch_matmul_macs(node, in_shapes, out_shapes):
    a = in_shapes[0]
    k = a[-2] if get_attr(node, "adj_x", False) else a[-1]
    return _prod(out_shapes[0]) * k


MAC_RULES: Dict[str, MacRule] = {
    "Conv2D": _conv_macs,
    "_FusedConv2D": _conv_macs,
    "DepthwiseConv2dNative": _depthwise_macs,
    "_FusedDepthwiseConv2dNative": _depthwise_macs,
    "MatMul": _matmul_macs,
    "_FusedMatMul": _matmul_macs,
    "BatchMatMulV2": _batch_matmul_macs,
    "BatchMatMulV3": _batch_matmul_macs,
}


@dataclasses.dataclass
class MacReport:
    total: int
    per_node: Dict[str, int]
    unknown: List[str]  # linear nodes whose shapes were not static

    def __int__(self):
        return self.total


def count_macs(graph_def: graph_pb2.GraphDef, batch: int = 1,
               input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
               rules: Optional[Mapping[str, MacRule]] = None) -> MacReport:
    """Multiply-accumulates of every op with a rule in ``MAC_RULES`` (Conv2D, depthwise, MatMul
    and their fused forms) at the given batch size."""
    rules = dict(MAC_RULES if rules is None else rules)
    shapes = infer_shapes(graph_def, batch=batch, input_shapes=input_shapes)
    index = GraphIndex(graph_def)
    per_node: Dict[str, int] = {}
    unknown: List[str] = []
    for node in graph_def.node:
        rule = rules.get(node.op)
        if rule is None:
            continue
        ins = [shapes.get(t) for t in index.data_inputs(node)]
        outs = [shapes.get(f"{node.name}:0")]
        if any(s is None or None in s for s in ins[:2] + outs):
            unknown.append(node.name)
            continue
        per_node[node.name] = int(rule(node, ins, outs))
    return MacReport(sum(per_node.values()), per_node, unknown)
