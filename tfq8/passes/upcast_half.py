"""upcast_half — run a mixed-precision model's float16 / bfloat16 compute in float32.

    x(f32) → Cast(f16) → Conv2D[T=f16](w16) → Relu[T=f16] → Cast(f32) → y
        ⇒  x → Identity → Conv2D[T=f32](float32(w16)) → Relu[T=f32] → Identity → y

Keras' ``mixed_float16`` / ``mixed_bfloat16`` policies (models trained for GPUs or TPUs) keep
float32 variables and compute in 16 bits: the frozen graph has 16-bit weight constants, 16-bit
ops and Casts at the policy's borders. The quantizer and the FP32 passes only rewrite float32
ops, so such a model would otherwise stay entirely unquantized. Every 16-bit type attribute
becomes float32, every 16-bit constant is widened (exactly: float16 and bfloat16 values are all
float32 values), and Casts that now cast float32 to float32 become Identity ops, which later
passes look through.

Not bit-exact with the 16-bit model — float32 arithmetic rounds less — but closer to the float32
model it was trained as, and the quantizer's INT8 error is far larger than either. The model's
signature does not change: 16-bit graph inputs are cast to float32 right after the Placeholder,
and a 16-bit graph output is cast back by the output node (an Identity, as tf.function and Keras
emit them; any other output op refuses the pass with a note, and the model stays as it was).

Runs only when ``ctx.options["upcast_half"]`` is true: ``tfq8.quantize`` sets it, while
``tfq8.optimize`` keeps the model's own arithmetic.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from tfq8.graph import Editor
from tfq8.graph import opdefs
from tfq8.graph.names import parse_tensor
from tfq8.passes.pipeline import Pass, PassContext, PassResult

__all__ = ["UpcastHalf", "HALF_TYPES"]

HALF_TYPES = frozenset({tf.float16.as_datatype_enum, tf.bfloat16.as_datatype_enum})
_FLOAT = tf.float32.as_datatype_enum


def _has_half(node) -> bool:
    for value in node.attr.values():
        if value.type in HALF_TYPES or any(t in HALF_TYPES for t in value.list.type):
            return True
    return False


class UpcastHalf(Pass):
    name = "upcast_half"

    def run(self, graph_def, ctx: PassContext) -> PassResult:
        notes = self.notes()
        if not ctx.options.get("upcast_half"):
            return PassResult(graph_def, False, [])
        half = [n for n in graph_def.node if _has_half(n)]
        if not half:
            return PassResult(graph_def, False, [])
        index = ctx.index(graph_def)
        # outputs that are 16-bit now must stay so: their node (an Identity) casts back
        half_outputs = {}
        for tensor in ctx.outputs:
            node_name, idx = parse_tensor(tensor)
            node = index.node(node_name)
            dtypes = opdefs.output_dtypes(node)
            dtype = dtypes[idx] if dtypes and idx < len(dtypes) else None
            if dtype is None or dtype.as_datatype_enum not in HALF_TYPES:
                continue
            if node.op != "Identity" or node.name in {parse_tensor(t)[0] for t in ctx.inputs}:
                notes.refuse(node_name, f"graph output {tensor} is {dtype.name} from a {node.op} "
                             f"op, not an Identity: cannot keep its dtype after widening the "
                             f"model to float32; the model stays in {dtype.name}")
                return PassResult(graph_def, False, list(notes))
            half_outputs[node_name] = node.attr["T"].type
        ed = Editor(graph_def, ctx.outputs)
        inputs = {parse_tensor(t)[0] for t in ctx.inputs}
        widened = 0
        for node in list(graph_def.node):
            if not _has_half(node):
                continue
            name = node.name
            if name in inputs or node.op in ("Placeholder", "PlaceholderWithDefault"):
                dtype = node.attr["dtype"].type
                if dtype in HALF_TYPES:       # keep the signature; widen right after it
                    cast = ed.add_node("Cast", name + "/tfq8_upcast", [name],
                                       {"SrcT": tf.as_dtype(dtype), "DstT": tf.float32},
                                       after=name)
                    if name + ":0" not in ctx.outputs:   # an input returned as is stays so
                        ed.rewire(name + ":0", cast.name + ":0", exclude={cast.name})
                continue
            if name in half_outputs:
                src = node.input[0]
                cast = ed.add_node("Cast", name + "/tfq8_downcast", [src],
                                   {"SrcT": tf.float32,
                                    "DstT": tf.as_dtype(half_outputs[name])}, before=name)
                ed.set_input(name, 0, cast.name + ":0")
                continue
            new = ed.node(name)
            if new.op == "Const":
                value = tensor_util.MakeNdarray(new.attr["value"].tensor).astype(np.float32)
                new.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
            for value in new.attr.values():
                if value.type in HALF_TYPES:
                    value.type = _FLOAT
                for i, t in enumerate(value.list.type):
                    if t in HALF_TYPES:
                        value.list.type[i] = _FLOAT
            if new.op == "Cast" and new.attr["SrcT"].type == new.attr["DstT"].type:
                dtype = new.attr["SrcT"].type
                for key in ("SrcT", "DstT", "Truncate"):
                    if key in new.attr:
                        del new.attr[key]
                new.op = "Identity"
                new.attr["T"].type = dtype
            widened += 1
        ed.changed = True
        notes.rewrite("(graph)", f"{widened} float16/bfloat16 ops and constants widened to "
                      f"float32 (mixed-precision model; the signature keeps its dtypes)")
        return PassResult(ed.finish(), True, list(notes))

