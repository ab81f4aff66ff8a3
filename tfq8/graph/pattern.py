"""A small pattern matcher over a GraphIndex.

    CONV = Op({"Conv2D", "DepthwiseConv2dNative"}, "conv", [Any("x"), Const("filter")])
    PAT = Op({"Relu", "Relu6"}, "act", [Op("BiasAdd", "bias", [CONV, Const("b")])])

    m = match(index, node, PAT)
    if m:                       # a Match: m["conv"] is the NodeDef, m.value("b") a numpy array
        ...
    elif m.interesting:         # the op types matched, a check failed: m.reason says which
        notes.refuse(m.node, m.reason)

A pattern is a tree rooted at the *last* node of the chain; inputs are matched positionally.
Checks, each producing a reason when it fails:

* op type in a set (a mismatch here is "structural", i.e. not worth reporting);
* an intermediate (any ``Op`` below the root) feeds nothing but its parent: no other data
  consumers, not a graph output, no control consumers (``sole_consumer=False`` lifts this);
* no control inputs on matched nodes (``allow_control=True`` lifts this);
* ``Const`` leaves are constant (a Const or a constant subgraph);
* ``commutative=True`` tries both orders of a binary op's inputs;
* ``where=`` an extra predicate ``(index, node) -> None | reason``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from tensorflow.core.framework import node_def_pb2

from tfq8.graph.index import GraphIndex
from tfq8.graph.names import parse_tensor, tensor_name


class Pattern:
    label: Optional[str] = None


@dataclasses.dataclass
class Any(Pattern):
    """Any tensor."""

    label: Optional[str] = None


@dataclasses.dataclass
class Const(Pattern):
    """A constant tensor (Const node or a constant subgraph)."""

    label: Optional[str] = None


@dataclasses.dataclass
class Op(Pattern):
    types: Union[str, Iterable[str], None] = None
    label: Optional[str] = None
    inputs: Optional[Sequence[Pattern]] = None
    commutative: bool = False
    sole_consumer: bool = True
    allow_control: bool = False
    output: int = 0
    where: Optional[Callable[[GraphIndex, node_def_pb2.NodeDef], Optional[str]]] = None

    def __post_init__(self):
        if isinstance(self.types, str):
            self.types = frozenset({self.types})
        elif self.types is not None:
            self.types = frozenset(self.types)

    def accepts(self, op: str) -> bool:
        return self.types is None or op in self.types


class Match:
    """A successful match: labels → nodes (``m["conv"]``) and tensors (``m.tensor("x")``)."""

    def __init__(self, index: GraphIndex):
        self.index = index
        self.nodes: Dict[str, node_def_pb2.NodeDef] = {}
        self.tensors: Dict[str, str] = {}
        self.matched: List[str] = []  # names of all matched Op nodes, root first

    def __bool__(self):
        return True

    def __getitem__(self, label: str) -> node_def_pb2.NodeDef:
        return self.nodes[label]

    def get(self, label: str, default=None):
        return self.nodes.get(label, default)

    def tensor(self, label: str) -> str:
        return self.tensors[label]

    def value(self, label: str) -> np.ndarray:
        """The numpy value of a ``Const`` leaf."""
        return self.index.const_value(self.tensors[label])

    def _copy(self):
        m = Match(self.index)
        m.nodes, m.tensors, m.matched = dict(self.nodes), dict(self.tensors), list(self.matched)
        return m


@dataclasses.dataclass
class Mismatch:
    """A failed match. ``interesting`` is False when an op type simply differs (the pattern does
    not apply here) and True when the shape matched but a check refused (worth a note)."""

    reason: str
    node: str
    interesting: bool = False

    def __bool__(self):
        return False


def match(index: GraphIndex, node: Union[str, node_def_pb2.NodeDef], pattern: Op):
    """Matches ``pattern`` rooted at ``node``; returns a Match or a Mismatch."""
    root = index.node(node) if isinstance(node, str) else node
    # First the shape alone (op types, arity): failing that, the pattern just does not apply.
    shape = _match_op(index, root, pattern, Match(index), is_root=True, strict=False)
    if not shape:
        shape.interesting = False
        return shape
    # Then every check; a failure now is a refusal worth reporting.
    result = _match_op(index, root, pattern, Match(index), is_root=True, strict=True)
    if not result:
        result.interesting = True
    return result


def _match_op(index, node, pat: Op, m: Match, is_root: bool, strict: bool):
    if not pat.accepts(node.op):
        return Mismatch(f"{node.name} is {node.op}, not {'/'.join(sorted(pat.types))}",
                        node.name, interesting=False)
    if strict and not pat.allow_control and index.control_inputs(node):
        return Mismatch(f"{node.name} ({node.op}) has control inputs", node.name, True)
    if strict and not is_root and pat.sole_consumer:
        if index.node_is_output(node.name):
            return Mismatch(f"{node.name} ({node.op}) is a graph output", node.name, True)
        if index.control_consumers(node.name):
            return Mismatch(f"{node.name} ({node.op}) has control consumers", node.name, True)
        edges = index.node_consumers(node.name)
        if len(edges) != 1:
            others = sorted({e.node for e in edges})
            return Mismatch(f"{node.name} ({node.op}) has other consumers: {', '.join(others[:4])}",
                            node.name, True)
    if strict and pat.where is not None:
        reason = pat.where(index, node)
        if reason:
            return Mismatch(f"{node.name} ({node.op}): {reason}", node.name, True)
    if pat.label:
        m.nodes[pat.label] = node
        m.tensors[pat.label] = tensor_name(node.name, pat.output)
    m.matched.append(node.name)
    if not pat.inputs:
        return m
    inputs = index.data_inputs(node)
    if len(inputs) < len(pat.inputs):
        return Mismatch(f"{node.name} ({node.op}) has {len(inputs)} inputs", node.name, False)
    orders = [list(range(len(pat.inputs)))]
    if pat.commutative and len(pat.inputs) == 2:
        orders.append([1, 0])
    best: Optional[Mismatch] = None
    for order in orders:
        trial = m._copy()
        result = trial
        for pi, ii in enumerate(order):
            result = _match_input(index, inputs[ii], pat.inputs[pi], trial, strict)
            if not result:
                break
            trial = result  # an Op input returns its own extended copy
        if result:
            return result
        if best is None or (result.interesting and not best.interesting):
            best = result
    return best


def _match_input(index, tensor: str, pat: Pattern, m: Match, strict: bool):
    if isinstance(pat, Any):
        if pat.label:
            m.tensors[pat.label] = tensor
        return m
    if isinstance(pat, Const):
        if strict and not index.is_const(tensor):
            name = parse_tensor(tensor)[0]
            return Mismatch(f"{tensor} ({index.node(name).op}) is not a constant", name, True)
        if pat.label:
            m.tensors[pat.label] = tensor
            m.nodes[pat.label] = index.producer(tensor)
        return m
    name, idx = parse_tensor(tensor)
    if idx != pat.output:
        return Mismatch(f"{tensor} is output {idx} of {name}, not {pat.output}", name, False)
    return _match_op(index, index.node(name), pat, m, is_root=False, strict=strict)
