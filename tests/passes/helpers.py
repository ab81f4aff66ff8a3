"""Helpers for pass tests: build small graphs with TF ops, apply a pass, check it."""
import numpy as np
import tensorflow as tf

from tfq8.graph import GraphIndex, validate
from tfq8.passes import PassContext

RNG = np.random.default_rng(1234)


def rand(*shape, lo=None, hi=None):
    if lo is not None:
        return RNG.uniform(lo, hi, shape).astype(np.float32)
    return RNG.normal(size=shape).astype(np.float32)


def build(fn, *shapes, outputs=1):
    """Traces ``fn(*placeholders)`` into a GraphDef: (graph_def, input names, output names).
    Outputs pass through Identity nodes named out0, out1, ..."""
    g = tf.Graph()
    with g.as_default():
        xs = [tf.compat.v1.placeholder(tf.float32, s, name=f"x{i}") for i, s in enumerate(shapes)]
        out = fn(*xs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        outs = [tf.identity(o, name=f"out{i}") for i, o in enumerate(outs)]
    return g.as_graph_def(), [x.name for x in xs], [o.name for o in outs]


def feeds_for(graph_def, inputs, batch=2):
    shapes = {n.name: n.attr["shape"].shape for n in graph_def.node if n.op == "Placeholder"}
    feeds = {}
    for t in inputs:
        dims = [d.size if d.size >= 0 else batch for d in shapes[t.split(":")[0]].dim]
        feeds[t] = rand(*dims)
    return feeds


def apply(pass_, graph_def, inputs, outputs, run_graph, rel_err, tol=1e-5, feeds=None):
    """Runs the pass and checks: input untouched (pure), output valid and sorted, outputs equal
    to the original's within ``tol`` relative to their magnitude. Returns the PassResult."""
    before = graph_def.SerializeToString(deterministic=True)
    r = pass_.run(graph_def, PassContext(inputs, outputs))
    assert graph_def.SerializeToString(deterministic=True) == before, "pass mutated its input"
    validate(r.graph_def, inputs, outputs)
    assert GraphIndex(r.graph_def).is_sorted()
    feeds = feeds or feeds_for(graph_def, inputs)
    ref = run_graph(graph_def, feeds, outputs)
    got = run_graph(r.graph_def, feeds, outputs)
    for a, b in zip(got, ref):
        assert a.shape == b.shape
        assert rel_err(a, b) <= tol, rel_err(a, b)
    return r


def ops(graph_def):
    out = {}
    for n in graph_def.node:
        out[n.op] = out.get(n.op, 0) + 1
    return out
