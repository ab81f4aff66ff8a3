"""Frontend: a TensorFlow model in any of its usual forms → a frozen, Grappler-cleaned GraphDef.

    frozen = load_model(keras_model)            # or a tf.function, ConcreteFunction, SavedModel dir
    frozen.graph_def                            # variables are Consts, functions inlined
    frozen.inputs, frozen.outputs               # [TensorInfo(name, "node:0", dtype, shape)]

Steps:

1. Get a ConcreteFunction: a tf.function's (it needs an ``input_signature``), a Keras model's
   ``call(x, training=False)`` traced on ``model.inputs`` (or its build shapes), or a SavedModel
   signature.
2. Freeze it: ``convert_variables_to_constants_v2`` turns variables into Consts and lowers
   control flow.
3. Run TensorFlow's own Grappler once (``tf_optimizer.OptimizeGraph``) with only portable,
   value-preserving optimizers: function inlining, constant folding, pruning, dependency and
   debug-op stripping. Remapper (``_Fused*`` ops), layout and arithmetic optimizers are off.
   Note that constant folding includes Grappler's "mul into conv" push-down, so a Keras BN's
   ``Mul`` directly after a bias-free ``Conv2D`` arrives already folded into the filter (a
   ≤1-ulp change of rounding, well inside tfq8's 1e-4 FP32 equivalence tolerance).
4. Check what cannot run as a frozen graph (py_function, resource/variable ops, stateful ops,
   inputs that are not Placeholders) and raise ``ModelError`` naming the node and op.

While loops (RNN layers, ``tf.while_loop``) stay functional ``While`` ops with their bodies in
the graph's function library (lowered, they would be cycles): FP32 nodes that the passes leave
alone and the report lists.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2

from tfq8.graph import GraphIndex, TensorInfo, opdefs, parse_tensor, validate
from tfq8.graph.names import input_op_name
from tfq8.graph.errors import GraphError

__all__ = ["FrozenModel", "ModelError", "load_model", "freeze_concrete_function",
           "check_frozen", "run_grappler", "GRAPPLER_OPTIMIZERS"]

# Grappler optimizers tfq8 runs, in Grappler's own names. Everything else (remapper, layout,
# arithmetic, loop, memory, auto-mixed-precision, ...) stays off.
GRAPPLER_OPTIMIZERS = ("function", "constfold", "debug_stripper", "pruning", "dependency")

_PY_FUNCS = frozenset({"EagerPyFunc", "PyFunc", "PyFuncStateless"})
_CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


class ModelError(TypeError, ValueError):
    """The model cannot be turned into a frozen graph; the message says which argument, node
    or op is at fault (and, for signatures, which ones exist)."""


@dataclasses.dataclass
class FrozenModel:
    """A frozen inference graph with its signature.

    graph_def:        variables are Consts, functions inlined, Grappler-cleaned.
    inputs, outputs:  TensorInfo records in signature order.
    signature_name:   the SavedModel signature it came from (or "serving_default").
    output_structure: "tensor" (a single tensor), "dict", "list" or "tuple" — how the original
                      callable returned its outputs; ``tfq8.export`` returns the same.
    """

    graph_def: graph_pb2.GraphDef
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    signature_name: str = "serving_default"
    output_structure: str = "dict"

    @property
    def input_tensors(self) -> List[str]:
        return [t.tensor for t in self.inputs]

    @property
    def output_tensors(self) -> List[str]:
        return [t.tensor for t in self.outputs]

    def op_counts(self) -> Dict[str, int]:
        return dict(Counter(n.op for n in self.graph_def.node).most_common())

    def replace(self, graph_def: graph_pb2.GraphDef) -> "FrozenModel":
        """The same signature over another graph (e.g. after passes)."""
        return dataclasses.replace(self, graph_def=graph_def)


# ==================================================================== entry point
def load_model(model, signature: Optional[str] = "serving_default", *,
               optimize: bool = True) -> FrozenModel:
    """Freezes ``model`` into a :class:`FrozenModel`.

    model: a ``tf.function`` with an input_signature (or traced exactly once), a
        ConcreteFunction, a Keras 3 model (Sequential, functional or subclassed and built), a
        tf-keras (Keras 2) model, an object returned by ``tf.saved_model.load``, or a path: a
        SavedModel directory or a ``.keras`` / ``.h5`` file.
    signature: the SavedModel signature to use; ``None`` picks the only one. Ignored for
        functions and Keras models (their signature is called "serving_default").
    optimize: run Grappler's portable cleanups (see module docstring). Turn off only to debug.
    """
    cf, sig_name, input_names, owner = _concrete_function(model, signature)
    # ``owner`` (a loaded SavedModel or Keras model) keeps the variables alive while freezing.
    frozen = freeze_concrete_function(cf, signature_name=sig_name, input_names=input_names,
                                      optimize=optimize)
    del owner
    return frozen


def freeze_concrete_function(cf, signature_name: str = "serving_default",
                             input_names: Optional[Sequence[str]] = None,
                             optimize: bool = True) -> FrozenModel:
    """Freezes one ConcreteFunction (see :func:`load_model`)."""
    flat_specs = [s for s in tf.nest.flatten(cf.structured_input_signature)
                  if isinstance(s, tf.TensorSpec)]
    n_in = len(flat_specs)
    if input_names is None:
        input_names = _input_names(cf, n_in)
    graph_def = _allow_inlining(_freeze(cf))
    in_tensors = cf.inputs[:n_in]
    if any(t.dtype == tf.resource for t in in_tensors):
        raise ModelError("the function's signature takes a resource tensor; only data tensors "
                         "can be graph inputs")
    inputs = []
    for name, spec, t in zip(input_names, flat_specs, in_tensors):
        shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
        inputs.append(TensorInfo(name, t.name, spec.dtype, shape))
    outputs, structure = _outputs(cf)
    if optimize:
        graph_def = run_grappler(graph_def, [t.tensor for t in inputs],
                                 [t.tensor for t in outputs])
    graph_def = _drop_unread_placeholders(graph_def, inputs)
    check_frozen(graph_def, inputs, outputs)
    return FrozenModel(graph_def, inputs, outputs, signature_name, structure)


def _drop_unread_placeholders(graph_def, inputs):
    """Removes Placeholders that are not signature inputs and that no node reads. A graph
    imported with an input_map (tfq8's own SavedModels, other converters') keeps its original
    Placeholders beside the mapped inputs; they never need a value."""
    input_nodes = {t.node for t in inputs}
    read = {parse_tensor(i.lstrip("^"))[0] for n in graph_def.node for i in n.input}
    drop = {n.name for n in graph_def.node
            if n.op in ("Placeholder", "PlaceholderV2") and n.name not in input_nodes
            and n.name not in read}
    if not drop:
        return graph_def
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(n for n in graph_def.node if n.name not in drop)
    return out


# ==================================================================== model kinds
def _concrete_function(model, signature):
    """(ConcreteFunction, signature name, input names or None, owner) for any model."""
    if isinstance(model, (str, os.PathLike)):
        return _from_path(os.fspath(model), signature)
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        return model, "serving_default", None, None
    if isinstance(model, tf.types.experimental.PolymorphicFunction):
        return _from_tf_function(model), "serving_default", None, None
    if _is_keras3(model) or _is_tf_keras(model):
        return _from_keras(model), "serving_default", None, model
    if hasattr(model, "signatures") and hasattr(model.signatures, "keys"):
        return _from_signatures(model.signatures, signature, "the loaded SavedModel") + (model,)
    raise ModelError(
        f"model: unsupported object of type {type(model).__module__}.{type(model).__qualname__}; "
        "expected a tf.function with input_signature, a ConcreteFunction, a Keras model, a "
        "tf-keras model, a SavedModel directory or a loaded SavedModel")


def _from_path(path, signature):
    if not os.path.exists(path):
        raise ModelError(f"model: path {path!r} does not exist")
    if os.path.isdir(path):
        if not any(os.path.exists(os.path.join(path, f))
                   for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ModelError(f"model: directory {path!r} is not a SavedModel "
                             "(no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:
            raise ModelError(f"model: could not load the SavedModel at {path!r}: {e}") from e
        return _from_signatures(loaded.signatures, signature,
                                f"the SavedModel at {path!r}") + (loaded,)
    if path.endswith((".keras", ".h5", ".hdf5")):
        import keras
        model = keras.saving.load_model(path, compile=False)
        return _from_keras(model), "serving_default", None, model
    raise ModelError(f"model: {path!r} is a file, not a SavedModel directory or a .keras file")


def _from_signatures(signatures, signature, what):
    names = sorted(signatures.keys())
    if signature is None:
        if len(names) != 1:
            raise ModelError(f"signature: {what} has {len(names)} signatures "
                             f"({', '.join(names) or 'none'}); pick one with signature=...")
        signature = names[0]
    if signature not in signatures:
        raise ModelError(f"signature: {what} has no signature {signature!r}; available: "
                         f"{', '.join(names) or 'none'}")
    cf = signatures[signature]
    kwargs = cf.structured_input_signature[1]
    # Signature functions take keyword arguments; their flat order is sorted by key.
    return cf, signature, sorted(kwargs.keys()) if kwargs else None


def _from_tf_function(fn):
    if fn.input_signature is not None:
        return fn.get_concrete_function()
    traced = fn._list_all_concrete_functions_for_serialization()  # noqa: SLF001 (public in spirit)
    if len(traced) == 1:
        return traced[0]
    raise ModelError(f"model: tf.function {getattr(fn, '__name__', fn)!r} has no input_signature "
                     f"and {len(traced)} traced concrete functions; give it an input_signature "
                     "or pass fn.get_concrete_function(spec)")


def _is_keras3(model):
    keras = sys.modules.get("keras")
    return keras is not None and hasattr(keras, "Model") and isinstance(model, keras.Model)


def _is_tf_keras(model):
    if "tf_keras" not in sys.modules:
        # Only look if the object comes from tf-keras; importing it otherwise costs seconds.
        if not type(model).__module__.startswith("tf_keras"):
            return False
    import tf_keras
    return isinstance(model, tf_keras.Model)


def _from_keras(model):
    """Traces ``model(x, training=False)`` on the model's input specs."""
    specs, call = _keras_signature(model)
    # A Keras model takes any batch size even where its inputs record one (a Sequential built
    # by calling it on one sample has batch 1 there), so the batch stays unknown; only a model
    # that cannot be traced that way keeps the recorded batch.
    relaxed = [tf.TensorSpec(_relax_batch(s.shape), s.dtype, name=s.name) for s in specs]
    for attempt in ([relaxed, specs] if relaxed != specs else [specs]):
        fn = tf.function(call, input_signature=attempt, autograph=False)
        try:
            return fn.get_concrete_function()
        except Exception as e:  # noqa: BLE001 - reported with the model's name below
            error = e
    raise ModelError(f"model: tracing Keras model {model.name!r} on {specs} failed: "
                     f"{type(error).__name__}: {error}") from error


def _relax_batch(shape):
    return shape if shape.rank is None or shape.rank == 0 else \
        tf.TensorShape([None] + shape.as_list()[1:])


def _keras_signature(model):
    """(input specs, call(*tensors)) from ``model.inputs`` or, for a subclassed model, the
    shapes it was built on (batch made None)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        struct = getattr(model, "_inputs_struct", None)  # Keras 3: a tensor, list or dict
        if struct is None:
            struct = inputs[0] if len(inputs) == 1 else list(inputs)
        flat = tf.nest.flatten(struct)
        names = sorted(struct) if isinstance(struct, dict) else [t.name for t in flat]
        specs = [tf.TensorSpec(_shape_of(t), _dtype_of(t), name=input_op_name(n, i))
                 for i, (t, n) in enumerate(zip(flat, names))]

        def call(*xs):
            return model(tf.nest.pack_sequence_as(struct, list(xs)), training=False)
        return specs, call

    shapes = getattr(model, "_build_shapes_dict", None)
    if not shapes:
        raise ModelError(f"model: Keras model {model.name!r} has no inputs and was never "
                         "built; call it once on a batch or pass a tf.function with "
                         "input_signature")
    if any(not _is_flat_shape(s) for s in shapes.values()):
        raise ModelError(f"model: Keras model {model.name!r} was built on nested inputs "
                         f"{shapes}; pass a tf.function with input_signature")
    dtype = getattr(model, "input_dtype", None) or "float32"
    specs = [tf.TensorSpec([None] + list(shape)[1:], dtype,
                           name=input_op_name(k[:-len("_shape")] if k.endswith("_shape")
                                              else k, i))
             for i, (k, shape) in enumerate(shapes.items())]

    def call(*xs):  # build-shape keys follow call()'s argument order
        return model(*xs, training=False)
    return specs, call


def _is_flat_shape(s):
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)


def _shape_of(t):
    shape = getattr(t, "shape", None)
    return tf.TensorShape(None if shape is None else list(shape))


def _dtype_of(t):
    return tf.as_dtype(getattr(t, "dtype", "float32") or "float32")


# ==================================================================== signatures
def _input_names(cf, n_in):
    args, kwargs = cf.structured_input_signature
    names = []
    for i, spec in enumerate(tf.nest.flatten(args)):
        if isinstance(spec, tf.TensorSpec):
            names.append(spec.name or None)
    names.extend(sorted(kwargs.keys()) if kwargs else [])
    # Fall back to the placeholder names TF chose (the Python argument names).
    placeholders = [t.name.split(":")[0] for t in cf.inputs[:n_in]]
    return [n or p for n, p in zip(names + [None] * n_in, placeholders)][:n_in]


def _freeze(cf) -> graph_pb2.GraphDef:
    """Variables → Consts, control flow lowered, function calls inlined (TF's own converter).

    Uses the converter's GraphDef directly: the public ``convert_variables_to_constants_v2``
    also wraps it back into a ConcreteFunction, which costs seconds and is not needed here."""
    from tensorflow.python.framework import convert_to_constants as c2c

    def convert(lower):
        if hasattr(c2c, "_FunctionConverterDataInEager") and hasattr(
                c2c, "_replace_variables_by_constants"):
            data = c2c._FunctionConverterDataInEager(func=cf, lower_control_flow=lower,
                                                     aggressive_inlining=False)
            return c2c._replace_variables_by_constants(converter_data=data)[0]
        # pragma: no cover - older/newer TF without the private helpers
        return c2c.convert_variables_to_constants_v2(
            cf, lower_control_flow=lower).graph.as_graph_def()

    try:
        graph_def = convert(True)
        # A lowered while loop (RNNs: LSTM, GRU; tf.while_loop) is a cycle through
        # NextIteration that no graph pass here can order. Keep loops as functional While ops
        # instead: opaque FP32 nodes that the passes leave alone (conds stay lowered otherwise,
        # which lets the passes see through them).
        if any(n.op == "NextIteration" for n in graph_def.node):
            graph_def = convert(False)
    except Exception as e:  # TF raises many kinds here; say what failed and keep the cause
        raise ModelError(f"could not freeze the function's variables into constants: "
                         f"{type(e).__name__}: {e}") from e
    return graph_def


# Function attributes that stop Grappler's function inliner. Keras 3 wraps grouped
# convolutions (ConvNeXt's depthwise convs) in a ``jit_compile`` function marked both ways,
# because stock TF once lacked grouped convs on CPU; the Conv2D inside runs without XLA.
_NO_INLINE_ATTRS = ("_noinline", "_XlaMustCompile")


def _allow_inlining(graph_def: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """Drops the XLA/no-inline markers from the library functions and their call sites so
    that Grappler inlines every call; a frozen graph for tfq8 has no function calls left."""
    for fdef in graph_def.library.function:
        for key in _NO_INLINE_ATTRS:
            if key in fdef.attr:
                del fdef.attr[key]
    for node in graph_def.node:
        if node.op in _CALLS and "_XlaMustCompile" in node.attr:
            del node.attr["_XlaMustCompile"]
    return graph_def


def _outputs(cf):
    structured = cf.structured_outputs
    if isinstance(structured, dict):
        structure = "dict"
    elif isinstance(structured, (list, tuple)):
        structure = type(structured).__name__
    else:
        structure = "tensor"
    paths = [p for p, t in _paths(structured) if t is not None]
    flat = list(cf.outputs)
    if len(paths) != len(flat):
        raise ModelError(f"outputs: the function returns {len(paths)} tensors but the frozen "
                         f"graph has {len(flat)}")
    outputs = []
    for i, (path, t) in enumerate(zip(paths, flat)):
        if structure == "tensor":
            name = "output_0"
        elif structure == "dict":
            name = "/".join(str(p) for p in path)
        else:
            name = "output_" + "_".join(str(p) for p in path)
        shape = None if t.shape.rank is None else tuple(t.shape.as_list())
        outputs.append(TensorInfo(name, t.name, t.dtype, shape))
    return outputs, structure


def _paths(structure, prefix=()):
    if isinstance(structure, dict):
        for k in sorted(structure.keys()):
            yield from _paths(structure[k], prefix + (k,))
    elif isinstance(structure, (list, tuple)):
        for i, v in enumerate(structure):
            yield from _paths(v, prefix + (i,))
    else:
        yield prefix, structure


# ==================================================================== Grappler
def run_grappler(graph_def: graph_pb2.GraphDef, inputs: Sequence[str], outputs: Sequence[str],
                 optimizers: Sequence[str] = GRAPPLER_OPTIMIZERS) -> graph_pb2.GraphDef:
    """Runs TensorFlow's Grappler once over ``graph_def`` with only ``optimizers`` enabled.

    ``inputs`` and ``outputs`` (tensor names) are kept: Grappler treats them as fetch nodes."""
    from tensorflow.python.grappler import tf_optimizer

    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
    fetch = meta_graph_pb2.CollectionDef()
    for t in list(inputs) + list(outputs):
        fetch.node_list.value.append(t)
    meta.collection_def["train_op"].CopyFrom(fetch)

    config = config_pb2.ConfigProto()
    rw = config.graph_options.rewrite_options
    rw.optimizers[:] = list(optimizers)
    rw.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    rw.min_graph_nodes = -1
    try:
        return tf_optimizer.OptimizeGraph(config, meta)
    except Exception as e:
        raise ModelError(f"Grappler failed on the frozen graph: {type(e).__name__}: {e}") from e


# ==================================================================== checks
def check_frozen(graph_def: graph_pb2.GraphDef, inputs: Sequence[TensorInfo],
                 outputs: Sequence[TensorInfo]) -> None:
    """Raises ModelError unless ``graph_def`` runs as a frozen inference graph: no Python
    callbacks, resources, stateful ops or function calls; inputs are Placeholders and every
    Placeholder is an input; the graph is valid (``tfq8.graph.validate``)."""
    index = GraphIndex(graph_def, [t.tensor for t in outputs])
    for t in inputs:
        name, _ = parse_tensor(t.tensor)
        if name not in index.nodes:
            raise ModelError(f"input {t.name!r}: node {name!r} is missing from the frozen graph")
        if index.nodes[name].op != "Placeholder":
            raise ModelError(f"input {t.name!r}: {t.tensor} is produced by a "
                             f"{index.nodes[name].op}, not a Placeholder")
    input_nodes = {t.node for t in inputs}
    functions = {f.signature.name: f for f in graph_def.library.function}
    for node in graph_def.node:
        _check_node(node, functions)
        if node.op in ("Placeholder", "PlaceholderV2") and node.name not in input_nodes:
            raise ModelError(f"node {node.name!r} is a Placeholder that is not a signature input; "
                             "the graph cannot run without feeding it")
    try:
        validate(graph_def, [t.tensor for t in inputs], [t.tensor for t in outputs], index=index)
    except GraphError as e:
        raise ModelError(f"the frozen graph is malformed: {e}") from e


# Functional control flow that stays in a frozen graph (while loops; see _freeze). TF marks
# While/If/Case stateful in case their bodies are; _pure_functions checks the bodies instead.
_FUNCTIONAL_CONTROL_FLOW = frozenset({"While", "StatelessWhile", "If", "StatelessIf", "Case",
                                      "StatelessCase"})


def _pure_functions(node, functions, seen=None) -> Optional[str]:
    """None if every function a control-flow node calls (transitively) is present, takes no
    resources and runs no stateful op; else a description of the first offender."""
    seen = set() if seen is None else seen
    names = []
    for key, v in node.attr.items():
        if v.HasField("func"):
            names.append(v.func.name)
        names.extend(f.name for f in v.list.func)
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        fdef = functions.get(name)
        if fdef is None:
            return f"its function {name!r} is missing from the graph's library"
        if any(a.type == tf.resource.as_datatype_enum for a in fdef.signature.input_arg):
            return f"its function {name!r} takes a resource (a variable freezing did not convert)"
        for inner in fdef.node_def:
            if inner.op in _FUNCTIONAL_CONTROL_FLOW:
                bad = _pure_functions(inner, functions, seen)
                if bad:
                    return bad
            elif opdefs.is_stateful(inner.op):
                return f"its function {name!r} runs the stateful op {inner.op} ({inner.name})"
    return None


def _check_node(node, functions=None):
    op = node.op
    if op in _FUNCTIONAL_CONTROL_FLOW:
        bad = _pure_functions(node, functions or {})
        if bad:
            raise ModelError(f"node {node.name!r} ({op}) cannot run as a frozen inference graph: "
                             f"{bad}")
        return
    if op in _PY_FUNCS:
        raise ModelError(f"node {node.name!r} ({op}) calls back into Python "
                         "(tf.py_function / tf.numpy_function), which cannot be frozen into a "
                         "graph; rewrite it with TF ops")
    dts = (opdefs.output_dtypes(node) or []) + (opdefs.input_dtypes(node) or [])
    if tf.resource in dts or op in ("VarHandleOp", "ReadVariableOp", "VariableV2", "Variable"):
        raise ModelError(f"node {node.name!r} ({op}) uses a resource (a variable, table or "
                         "iterator) that freezing could not turn into a constant")
    if op in _CALLS:
        raise ModelError(f"node {node.name!r} ({op}) is a function call Grappler did not "
                         "inline")
    stateful = opdefs.is_stateful(op)
    if stateful is None:
        raise ModelError(f"node {node.name!r}: op {op!r} is not registered in this process "
                         "(load its op library first)")
    if stateful:
        raise ModelError(f"node {node.name!r} ({op}) is stateful; a frozen inference graph "
                         "must be a pure function of its inputs")
