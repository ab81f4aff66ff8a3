"""``validate(graph_def)``: the structural checks every pass's input and output must pass."""
from __future__ import annotations

from typing import Iterable, Optional

from tensorflow.core.framework import graph_pb2

from tfq8.graph import opdefs
from tfq8.graph.errors import GraphError
from tfq8.graph.index import GraphIndex
from tfq8.graph.names import parse_input, parse_tensor


def validate(graph_def: graph_pb2.GraphDef, inputs: Iterable[str] = (),
             outputs: Iterable[str] = (), index: Optional[GraphIndex] = None) -> GraphIndex:
    """Checks that node names are unique, every input names an existing node and output,
    the graph has no cycle (data or control), data edges agree on dtypes (where the op
    registry knows both ends), ``inputs`` are Placeholders and ``outputs`` exist.

    Returns the GraphIndex it built; raises GraphError naming the node at fault."""
    index = index or GraphIndex(graph_def, outputs)
    nouts = {}

    def out_dtypes(name):
        if name not in nouts:
            nouts[name] = opdefs.output_dtypes(index.nodes[name])
        return nouts[name]

    for node in graph_def.node:
        if not node.op:
            raise GraphError(f"node {node.name!r} has no op", node=node.name)
        want = opdefs.input_dtypes(node)
        data_i = 0
        seen_control = False
        for inp in node.input:
            src, idx, control = parse_input(inp)
            if src not in index.nodes:
                raise GraphError(f"node {node.name!r} ({node.op}) reads {inp!r}, but there is no "
                                 f"node {src!r}", node=node.name)
            if control:
                seen_control = True
                continue
            if seen_control:
                raise GraphError(f"node {node.name!r}: data input {inp!r} after a control input",
                                 node=node.name)
            have = out_dtypes(src)
            if have is not None and idx >= len(have):
                raise GraphError(f"node {node.name!r} reads {inp!r}, but {src!r} "
                                 f"({index.nodes[src].op}) has {len(have)} output(s)", node=node.name)
            if have is not None and want is not None and data_i < len(want) \
                    and have[idx] != want[data_i]:
                raise GraphError(
                    f"node {node.name!r} ({node.op}) input {data_i} wants {want[data_i].name} but "
                    f"{inp!r} is {have[idx].name}", node=node.name)
            data_i += 1
        if want is not None and data_i != len(want):
            raise GraphError(f"node {node.name!r} ({node.op}) has {data_i} data inputs, its op "
                             f"takes {len(want)}", node=node.name)
    index.topological_order()  # raises on cycles
    for t in inputs:
        name, _ = parse_tensor(t)
        if name not in index.nodes:
            raise GraphError(f"graph input {t!r} does not exist", node=name)
        if index.nodes[name].op not in ("Placeholder", "PlaceholderWithDefault"):
            raise GraphError(f"graph input {t!r} is a {index.nodes[name].op}, not a Placeholder",
                             node=name)
    for t in outputs:
        name, idx = parse_tensor(t)
        if name not in index.nodes:
            raise GraphError(f"graph output {t!r} does not exist", node=name)
        have = out_dtypes(name)
        if have is not None and idx >= len(have):
            raise GraphError(f"graph output {t!r}: {name!r} has {len(have)} output(s)", node=name)
    return index
