"""dedupe — merge nodes that compute the same value (common-subexpression elimination).

    y1 = Relu(x), y2 = Relu(x)          ⇒  y1 = Relu(x), readers of y2 read y1

Keras models repeat work that a graph can share: NASNet applies a separate ``Activation("relu")``
to the same tensor at the head of every separable-conv branch, models written with functional
helpers call ``tf.shape`` / ``Reshape`` on the same tensor several times. Each copy of an
activation costs a pass over the tensor, and for the quantizer it is worse: a tensor read by two
ReLUs cannot have its ReLU fused into the conv that produces it, and the copies stayed FP32
between a Dequantize and a Quantize. After this pass there is one ReLU, which later passes fuse
or turn into an INT8 lookup like any other.

Two nodes are merged when they have the same op, attributes, device, data inputs (after earlier
merges, so chains of copies collapse in one sweep) and control inputs, and the op is registered
and stateless (random ops, variables, queues, unknown custom ops and ops that call a function
are never merged).
Constant inputs of up to ``SMALL_CONST`` elements count as equal when their values are (two
``Pad`` nodes with separate but equal padding constants); larger constants, such as weights, only
when they are the same node — hashing every weight would cost more than it finds. Constants
themselves are not merged (passes edit weights in place per layer). Placeholders and the graph's
outputs are kept: a signature's tensors keep their names. Nodes that ``ctx.options["keep_fp32"]``
(``QuantConfig.keep_fp32``) names are left alone, so that the quantizer still finds them.

Exact: a stateless op computes the same value from the same inputs.
"""
from __future__ import annotations

import hashlib
from typing import Dict, Tuple

import numpy as np

from tfq8.graph import Editor, parse_input
from tfq8.graph import opdefs
from tfq8.graph.names import input_ref
from tfq8.passes.pipeline import Pass, PassContext, PassResult
from tfq8.passes.quantize import kept_by

SMALL_CONST = 4096
_NEVER = frozenset({"Const", "Placeholder", "PlaceholderWithDefault", "NoOp"})


class Dedupe(Pass):
    name = "dedupe"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        index = ctx.index(graph_def)
        keep = set(ctx.options.get("keep_fp32") or ())
        value_keys: Dict[str, object] = {}

        def const_key(name):
            # A small constant is identified by its value, anything else by its node name.
            if name not in value_keys:
                node = index.node(name)
                key = name
                if node.op == "Const" and not index.control_inputs(node):
                    v = index.const_value(name + ":0")
                    if v is not None and v.size <= SMALL_CONST:
                        v = np.ascontiguousarray(v)
                        key = ("const", str(v.dtype), v.shape,
                               hashlib.sha1(v.tobytes()).hexdigest())
                value_keys[name] = key
            return value_keys[name]

        rep: Dict[str, str] = {}          # merged node → the node it now reads instead
        seen: Dict[Tuple, str] = {}
        for name in index.topological_order():
            node = index.node(name)
            if (node.op in _NEVER or opdefs.is_stateful(node.op) is not False
                    or _calls_function(node) or (keep and kept_by(node, keep))):
                continue
            data, control = [], []
            for text in node.input:
                src, idx, is_control = parse_input(text)
                src = rep.get(src, src)
                if is_control:
                    control.append(src)
                else:
                    data.append((const_key(src), idx))
            attrs = tuple(sorted((k, v.SerializeToString(deterministic=True))
                                 for k, v in node.attr.items()))
            key = (node.op, node.device, tuple(data), tuple(sorted(set(control))), attrs)
            first = seen.setdefault(key, name)
            if first != name and not index.node_is_output(name):
                rep[name] = first
        if not rep:
            return PassResult(graph_def, False, [])
        ed = Editor(graph_def, ctx.outputs)
        for node_name in index.topological_order():
            if node_name in rep:
                continue
            node = ed.node(node_name)
            for i, text in enumerate(node.input):
                src, idx, is_control = parse_input(text)
                if src in rep:
                    node.input[i] = "^" + rep[src] if is_control else input_ref(rep[src], idx)
        for name, first in rep.items():
            ed.remove(name)
            notes.rewrite(name, f"{index.node(name).op} computes the same as {first}: merged")
        # A node may now list the same control input twice; TF accepts that, but keep it tidy.
        for node_name in list(index.topological_order()):
            if node_name in rep:
                continue
            node = ed.node(node_name)
            kept, controls = [], set()
            for text in node.input:
                if text.startswith("^"):
                    if text in controls:
                        continue
                    controls.add(text)
                kept.append(text)
            if len(kept) != len(node.input):
                del node.input[:]
                node.input.extend(kept)
        return PassResult(ed.finish(), True, list(notes))


def _calls_function(node) -> bool:
    # A stateless call op (PartitionedCall, If, While) may still run stateful ops in its body.
    return any(v.HasField("func") or len(v.list.func) for v in node.attr.values())
