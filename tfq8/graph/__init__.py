"""GraphDef toolkit for tfq8's passes: index, pattern matcher, rewrite helpers, validation.

    from tfq8.graph import GraphIndex, Editor, validate, match, Op, Const, Any
"""
from tfq8.graph.attrs import get_attr, make_attr, set_attr
from tfq8.graph.errors import GraphError
from tfq8.graph.index import Edge, GraphIndex
from tfq8.graph.names import (TensorInfo, canonical, control_ref, input_ref, parse_input,
                              parse_tensor, tensor_name)
from tfq8.graph.pattern import Any, Const, Match, Mismatch, Op, match
from tfq8.graph.rewrite import Editor, make_const, make_node
from tfq8.graph.shapes import infer_shapes
from tfq8.graph.validate import validate

__all__ = [
    "Any", "Const", "Edge", "Editor", "GraphError", "GraphIndex", "Match", "Mismatch", "Op",
    "TensorInfo", "canonical", "control_ref", "get_attr", "infer_shapes", "input_ref",
    "make_attr", "make_const", "make_node", "match", "parse_input", "parse_tensor", "set_attr",
    "tensor_name", "validate",
]
