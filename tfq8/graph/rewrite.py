"""Rewrite helpers: edit a private copy of a GraphDef, get back a new, topologically sorted one.

    ed = Editor(graph_def, outputs=ctx.outputs)      # graph_def itself is never touched
    w = ed.add_const(conv.name + "/folded_filter", w_folded, before=conv.name)
    ed.node(conv.name).input[1] = w
    ed.remove(bias_node.name)
    new_graph_def = ed.finish()                      # dead constants pruned, order kept

Names are kept: a rewrite replaces a node by a node *of the same name* (so consumers need no
rewiring) or says explicitly what to rewire. ``finish()`` keeps the original node order wherever
it is already valid and places new nodes next to the node they were added before/after.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Set

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.python.framework import tensor_util

from tfq8.graph import opdefs
from tfq8.graph.attrs import set_attr
from tfq8.graph.errors import GraphError
from tfq8.graph.names import canonical, input_ref, parse_input, parse_tensor, tensor_name


def make_node(op: str, name: str, inputs: Sequence[str] = (),
              attrs: Optional[Mapping[str, Any]] = None, device: str = "") -> node_def_pb2.NodeDef:
    """A NodeDef; ``attrs`` values are plain Python (see ``tfq8.graph.attrs.make_attr``)."""
    n = node_def_pb2.NodeDef(name=name, op=op, device=device)
    n.input.extend(inputs)
    for k, v in (attrs or {}).items():
        set_attr(n, k, v)
    return n


def make_const(name: str, value, dtype=None) -> node_def_pb2.NodeDef:
    value = np.asarray(value, dtype=None if dtype is None else tf.as_dtype(dtype).as_numpy_dtype)
    n = node_def_pb2.NodeDef(name=name, op="Const")
    n.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    n.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    return n


class Editor:
    """Mutable view of a *copy* of ``graph_def``."""

    def __init__(self, graph_def: graph_pb2.GraphDef, outputs: Iterable[str] = ()):
        self._versions = graph_def.versions if graph_def.HasField("versions") else None
        self._library = graph_def.library if graph_def.HasField("library") else None
        self._nodes: Dict[str, node_def_pb2.NodeDef] = {}
        self._key: Dict[str, float] = {}
        for i, n in enumerate(graph_def.node):
            copy = node_def_pb2.NodeDef()
            copy.CopyFrom(n)
            self._nodes[n.name] = copy
            self._key[n.name] = float(i)
        self._pending: Dict[str, tuple] = {}  # new node → ("before"|"after", anchor)
        self._serial = itertools.count(1)
        self._maybe_dead: Set[str] = set()
        self.outputs = frozenset(canonical(t) for t in outputs)
        self._output_nodes = {parse_tensor(t)[0] for t in self.outputs}
        self.changed = False

    # ---------------------------------------------------------------- access
    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def node(self, name: str) -> node_def_pb2.NodeDef:
        """The editable copy of a node."""
        try:
            return self._nodes[name]
        except KeyError:
            raise GraphError(f"no node named {name!r}", node=name) from None

    def unique_name(self, base: str) -> str:
        if base not in self._nodes:
            return base
        for i in itertools.count(1):
            name = f"{base}_{i}"
            if name not in self._nodes:
                return name

    # ---------------------------------------------------------------- edits
    def add(self, node: node_def_pb2.NodeDef, before: Optional[str] = None,
            after: Optional[str] = None) -> node_def_pb2.NodeDef:
        """Adds ``node`` (its name must be free). It is placed just before ``before`` or just
        after ``after``; with neither, just before its first consumer at ``finish()``."""
        if node.name in self._nodes:
            raise GraphError(f"node {node.name!r} already exists", node=node.name)
        self._nodes[node.name] = node
        if before is not None:
            self._pending[node.name] = ("before", before)
        elif after is not None:
            self._pending[node.name] = ("after", after)
        else:
            self._pending[node.name] = ("auto", None)
        self._key[node.name] = float("nan")
        self.changed = True
        return node

    def add_node(self, op: str, name: str, inputs: Sequence[str] = (),
                 attrs: Optional[Mapping[str, Any]] = None, before: Optional[str] = None,
                 after: Optional[str] = None) -> node_def_pb2.NodeDef:
        return self.add(make_node(op, self.unique_name(name), inputs, attrs), before, after)

    def add_const(self, name: str, value, dtype=None, before: Optional[str] = None) -> str:
        """Adds a Const (unique name derived from ``name``) and returns its name."""
        node = make_const(self.unique_name(name), value, dtype)
        self.add(node, before=before)
        return node.name

    def replace(self, node: node_def_pb2.NodeDef) -> node_def_pb2.NodeDef:
        """Replaces the node of the same name (same position); its old inputs may die."""
        old = self.node(node.name)
        self._forget_inputs(old)
        self._nodes[node.name] = node
        self.changed = True
        return node

    def remove(self, name: str) -> None:
        """Removes a node. Its consumers must be rewired before ``finish()``."""
        node = self.node(name)
        self._forget_inputs(node)
        del self._nodes[name]
        self._pending.pop(name, None)
        self._maybe_dead.discard(name)
        self.changed = True

    def set_input(self, name: str, i: int, tensor: str) -> None:
        """Makes input ``i`` of node ``name`` read ``tensor``."""
        node = self.node(name)
        old = parse_input(node.input[i])[0]
        node.input[i] = input_ref(*parse_tensor(tensor))
        self._maybe_dead.add(old)
        self.changed = True

    def rewire(self, old: str, new: str, exclude: Iterable[str] = ()) -> int:
        """Every data consumer of tensor ``old`` (except nodes in ``exclude``) reads ``new``.
        Refuses when ``old`` is a graph output. Returns the number of edges changed."""
        old = canonical(old)
        if old in self.outputs:
            raise GraphError(f"cannot rewire {old!r}: it is a graph output", node=old)
        exclude = set(exclude)
        ref = input_ref(*parse_tensor(new))
        count = 0
        for node in self._nodes.values():
            if node.name in exclude:
                continue
            for i, inp in enumerate(node.input):
                src, idx, control = parse_input(inp)
                if not control and tensor_name(src, idx) == old:
                    node.input[i] = ref
                    count += 1
        if count:
            self._maybe_dead.add(parse_tensor(old)[0])
            self.changed = True
        return count

    def mark_maybe_dead(self, *names: str) -> None:
        """Asks ``finish()`` to drop these nodes if nothing uses them any more."""
        self._maybe_dead.update(names)

    def _forget_inputs(self, node):
        for inp in node.input:
            self._maybe_dead.add(parse_input(inp)[0])

    # ---------------------------------------------------------------- result
    def finish(self, prune: bool = True) -> graph_pb2.GraphDef:
        """The edited graph: dead nodes dropped (only side-effect-free nodes whose inputs were
        edited away, never Placeholders or outputs), topologically sorted, stable."""
        nodes = self._nodes
        uses: Dict[str, int] = {name: 0 for name in nodes}
        for node in nodes.values():
            for inp in node.input:
                src = parse_input(inp)[0]
                if src in uses:
                    uses[src] += 1
        if prune:
            work = [n for n in self._maybe_dead if n in nodes]
            while work:
                name = work.pop()
                node = nodes.get(name)
                if (node is None or uses.get(name, 0) or name in self._output_nodes
                        or node.op in ("Placeholder", "PlaceholderWithDefault")
                        or opdefs.is_stateful(node.op) is not False):
                    continue
                del nodes[name]
                self._pending.pop(name, None)
                for inp in node.input:
                    src = parse_input(inp)[0]
                    if src in uses:
                        uses[src] -= 1
                        work.append(src)
        self._place_new_nodes()
        out = graph_pb2.GraphDef()
        if self._versions is not None:
            out.versions.CopyFrom(self._versions)
        if self._library is not None:
            out.library.CopyFrom(self._library)
        for name in _stable_topo(nodes, self._key):
            out.node.append(nodes[name])
        return out

    def _place_new_nodes(self):
        consumers: Dict[str, list] = {}
        for node in self._nodes.values():
            for inp in node.input:
                consumers.setdefault(parse_input(inp)[0], []).append(node.name)

        def key_of(name, depth=0):
            k = self._key.get(name, float("nan"))
            if k == k or depth > 10_000:  # not NaN
                return k
            how, anchor = self._pending.get(name, ("auto", None))
            serial = next(self._serial) * 1e-7
            if how in ("before", "after") and anchor in self._nodes:
                base = key_of(anchor, depth + 1)
                k = base - 0.5 + serial if how == "before" else base + serial
            else:
                ks = [key_of(c, depth + 1) for c in consumers.get(name, ()) if c != name]
                ks = [x for x in ks if x == x]
                if ks:
                    k = min(ks) - 0.5 + serial
                else:
                    ins = [key_of(parse_input(i)[0], depth + 1) for i in self._nodes[name].input
                           if parse_input(i)[0] in self._nodes]
                    ins = [x for x in ins if x == x]
                    k = (max(ins) if ins else -1.0) + serial
            self._key[name] = k
            return k

        for name in list(self._pending):
            if name in self._nodes:
                key_of(name)


def _stable_topo(nodes: Dict[str, node_def_pb2.NodeDef], key: Dict[str, float]):
    indeg = {n: 0 for n in nodes}
    succ: Dict[str, list] = {}
    for node in nodes.values():
        for inp in node.input:
            src = parse_input(inp)[0]
            if src in nodes:
                indeg[node.name] += 1
                succ.setdefault(src, []).append(node.name)
    heap = [(key[n], n) for n, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, name = heapq.heappop(heap)
        order.append(name)
        for s in succ.get(name, ()):
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (key[s], s))
    if len(order) != len(nodes):
        # Leave cycles / dangling inputs for validate() to report with a proper message.
        done = set(order)
        rest = sorted((n for n in nodes if n not in done), key=lambda n: key[n])
        order.extend(rest)
    return order
