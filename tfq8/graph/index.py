"""A read-only index over a GraphDef: nodes by name, consumers, constant values, topological order.

The index never modifies the GraphDef it was built from; build a new one after rewriting
(``tfq8.graph.rewrite.Editor`` does that for you).
"""
from __future__ import annotations

import dataclasses
import heapq
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.python.framework import tensor_util

from tfq8.graph import opdefs
from tfq8.graph.errors import GraphError
from tfq8.graph.names import canonical, parse_input, tensor_name

# Ops that never fold into constants even when their inputs are constant.
_NOT_FOLDABLE = frozenset({"Placeholder", "PlaceholderWithDefault", "PlaceholderV2",
                           "VarHandleOp", "ReadVariableOp", "Variable", "VariableV2",
                           "NoOp", "_Arg", "_Retval"})


@dataclasses.dataclass(frozen=True)
class Edge:
    """A data edge: ``node`` reads the tensor as its ``index``-th input."""

    node: str
    index: int


class GraphIndex:
    """Nodes by name, data and control consumers, constant values and topological order.

    ``outputs``: tensor names that leave the graph (signature outputs). They count as consumers
    in :meth:`has_only_consumer` and :meth:`is_output`, so passes never fold them away.
    """

    def __init__(self, graph_def: graph_pb2.GraphDef, outputs: Iterable[str] = ()):
        self.graph_def = graph_def
        self.nodes: Dict[str, node_def_pb2.NodeDef] = {}
        self.position: Dict[str, int] = {}
        for i, n in enumerate(graph_def.node):
            if n.name in self.nodes:
                raise GraphError(f"duplicate node name {n.name!r}", node=n.name)
            self.nodes[n.name] = n
            self.position[n.name] = i
        self.outputs = frozenset(canonical(t) for t in outputs)
        self.output_nodes = frozenset(t.rpartition(":")[0] for t in self.outputs)
        self._consumers: Dict[str, List[Edge]] = {}
        self._node_consumers: Dict[str, List[Edge]] = {}
        self._control_consumers: Dict[str, List[str]] = {}
        for n in graph_def.node:
            for i, inp in enumerate(n.input):
                src, idx, control = parse_input(inp)
                if control:
                    self._control_consumers.setdefault(src, []).append(n.name)
                else:
                    edge = Edge(n.name, i)
                    self._consumers.setdefault(tensor_name(src, idx), []).append(edge)
                    self._node_consumers.setdefault(src, []).append(edge)
        self._const_cache: Dict[str, Optional[np.ndarray]] = {}
        self._foldable: Dict[str, bool] = {}

    # ---------------------------------------------------------------- nodes and edges
    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def __iter__(self):
        return iter(self.graph_def.node)

    def node(self, name: str) -> node_def_pb2.NodeDef:
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphError(f"no node named {name!r}", node=name) from None

    def producer(self, tensor: str) -> node_def_pb2.NodeDef:
        """The node that computes ``tensor`` (any spelling: ``"a"``, ``"a:1"``)."""
        return self.node(parse_input(tensor)[0])

    def data_inputs(self, node: node_def_pb2.NodeDef | str) -> List[str]:
        """The node's data inputs as canonical tensor names."""
        n = self.node(node) if isinstance(node, str) else node
        out = []
        for inp in n.input:
            src, idx, control = parse_input(inp)
            if not control:
                out.append(tensor_name(src, idx))
        return out

    def control_inputs(self, node: node_def_pb2.NodeDef | str) -> List[str]:
        n = self.node(node) if isinstance(node, str) else node
        return [i[1:] for i in n.input if i.startswith("^")]

    def consumers(self, tensor: str) -> List[Edge]:
        """Data consumers of one tensor (``"a"`` means ``"a:0"``)."""
        return list(self._consumers.get(canonical(tensor), ()))

    def node_consumers(self, name: str) -> List[Edge]:
        """Data consumers of any output of node ``name``."""
        return list(self._node_consumers.get(name, ()))

    def control_consumers(self, name: str) -> List[str]:
        """Nodes with a control edge ``^name``."""
        return list(self._control_consumers.get(name, ()))

    def is_output(self, tensor: str) -> bool:
        """True if ``tensor`` is a graph (signature) output."""
        return canonical(tensor) in self.outputs

    def node_is_output(self, name: str) -> bool:
        return name in self.output_nodes

    def has_only_consumer(self, tensor: str, consumer: str) -> bool:
        """``tensor`` feeds ``consumer`` only: no other data consumers, not a graph output,
        and its producer has no control consumers and no other outputs in use."""
        name = parse_input(tensor)[0]
        if self.node_is_output(name) or self.control_consumers(name):
            return False
        edges = self.node_consumers(name)
        return bool(edges) and all(e.node == consumer for e in edges)

    # ---------------------------------------------------------------- order
    def topological_order(self) -> List[str]:
        """Node names in a topological order (data and control edges); ties keep the GraphDef
        order, so an already sorted graph comes back unchanged. Raises GraphError on a cycle."""
        indeg = {name: 0 for name in self.nodes}
        succ: Dict[str, List[str]] = {}
        for n in self.graph_def.node:
            for inp in n.input:
                src = parse_input(inp)[0]
                if src in self.nodes:
                    indeg[n.name] += 1
                    succ.setdefault(src, []).append(n.name)
        heap = [(self.position[k], k) for k, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, name = heapq.heappop(heap)
            order.append(name)
            for s in succ.get(name, ()):
                indeg[s] -= 1
                if indeg[s] == 0:
                    heapq.heappush(heap, (self.position[s], s))
        if len(order) != len(self.nodes):
            stuck = sorted((k for k, d in indeg.items() if d > 0), key=self.position.get)
            raise GraphError(f"the graph has a cycle through {', '.join(stuck[:5])}"
                             + (" ..." if len(stuck) > 5 else ""), node=stuck[0])
        return order

    def is_sorted(self) -> bool:
        for n in self.graph_def.node:
            for inp in n.input:
                src = parse_input(inp)[0]
                if src in self.position and self.position[src] >= self.position[n.name]:
                    return False
        return True

    # ---------------------------------------------------------------- constants
    def is_const(self, tensor: str) -> bool:
        """True if ``tensor`` is a Const or computed from Consts only (no inputs, no state)."""
        return self._is_foldable(parse_input(tensor)[0])

    def const_value(self, tensor: str) -> Optional[np.ndarray]:
        """The value of a constant tensor as numpy, or None if it is not constant.

        A ``Const`` is decoded with ``tensor_util.MakeNdarray``; a constant subgraph (e.g.
        ``Rsqrt(Const + Const)`` that Grappler left) is evaluated by TensorFlow itself."""
        t = canonical(tensor)
        if t in self._const_cache:
            return self._const_cache[t]
        if not self.is_const(t):
            return None
        self.prefetch_constants([t])
        return self._const_cache[t]

    def prefetch_constants(self, tensors: Sequence[str]) -> None:
        """Evaluates many constant tensors in one TensorFlow run (cached)."""
        todo = []
        for t in map(canonical, tensors):
            if t in self._const_cache or not self.is_const(t):
                continue
            node = self.producer(t)
            if node.op == "Const":
                self._const_cache[t] = tensor_util.MakeNdarray(node.attr["value"].tensor)
            else:
                todo.append(t)
        if todo:
            self._const_cache.update(evaluate(self, todo))

    def _is_foldable(self, name: str) -> bool:
        if name in self._foldable:
            return self._foldable[name]
        # Iterative DFS: graphs are deep enough to hit Python's recursion limit.
        stack = [name]
        while stack:
            cur = stack[-1]
            if cur in self._foldable:
                stack.pop()
                continue
            node = self.nodes.get(cur)
            if node is None or node.op in _NOT_FOLDABLE or opdefs.is_stateful(node.op) is not False:
                self._foldable[cur] = False
                stack.pop()
                continue
            if node.op == "Const":
                self._foldable[cur] = True
                stack.pop()
                continue
            srcs = [parse_input(i)[0] for i in node.input]
            pending = [s for s in srcs if s not in self._foldable]
            if pending:
                stack.extend(pending)
                continue
            dts = opdefs.output_dtypes(node) or []
            self._foldable[cur] = (bool(srcs) and all(self._foldable[s] for s in srcs)
                                   and tf.resource not in dts and tf.variant not in dts)
            stack.pop()
        return self._foldable[name]

    def closure(self, tensors: Iterable[str]) -> List[str]:
        """Names of all nodes the tensors depend on (data and control), in graph order."""
        seen = set()
        stack = [parse_input(t)[0] for t in tensors]
        while stack:
            cur = stack.pop()
            if cur in seen or cur not in self.nodes:
                continue
            seen.add(cur)
            stack.extend(parse_input(i)[0] for i in self.nodes[cur].input)
        return sorted(seen, key=self.position.get)


def evaluate(index: GraphIndex, tensors: Sequence[str]) -> Dict[str, np.ndarray]:
    """Runs the constant subgraph behind ``tensors`` once with TensorFlow and returns numpy values."""
    sub = graph_pb2.GraphDef()
    sub.versions.CopyFrom(index.graph_def.versions)
    sub.library.CopyFrom(index.graph_def.library)
    for name in index.closure(tensors):
        sub.node.append(index.nodes[name])
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(sub, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run(list(tensors))
    return {t: np.asarray(v) for t, v in zip(tensors, values)}
