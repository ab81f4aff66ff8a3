"""What the op registry says about a NodeDef: its input/output dtypes and whether it is stateful.

Ops that are not registered in this process (a custom op library not loaded yet) answer ``None``;
callers treat that as "unknown" and skip the check.
"""
from __future__ import annotations

from typing import List, Optional

import tensorflow as tf
from tensorflow.core.framework import node_def_pb2
from tensorflow.python.framework import op_def_registry


def op_def(op_type: str):
    return op_def_registry.get(op_type)


def is_registered(op_type: str) -> bool:
    return op_def(op_type) is not None


def is_stateful(op_type: str) -> Optional[bool]:
    od = op_def(op_type)
    return None if od is None else bool(od.is_stateful)


def _attr(node, od, name):
    """The node's attribute, or the op's default for it, or None."""
    if name in node.attr:
        return node.attr[name]
    for a in od.attr:
        if a.name == name and a.HasField("default_value"):
            return a.default_value
    return None


def _arg_dtypes(node: node_def_pb2.NodeDef, od, args) -> Optional[List[tf.DType]]:
    out: List[tf.DType] = []
    for arg in args:
        if arg.type_list_attr:
            a = _attr(node, od, arg.type_list_attr)
            if a is None:
                return None
            out.extend(tf.dtypes.as_dtype(t) for t in a.list.type)
            continue
        if arg.type:
            dt = tf.dtypes.as_dtype(arg.type)
        else:
            a = _attr(node, od, arg.type_attr)
            if a is None:
                return None
            dt = tf.dtypes.as_dtype(a.type)
        n = 1
        if arg.number_attr:
            a = _attr(node, od, arg.number_attr)
            if a is None:
                return None
            n = a.i
        out.extend([dt] * n)
    return out


def output_dtypes(node: node_def_pb2.NodeDef) -> Optional[List[tf.DType]]:
    """Dtypes of the node's outputs, or None if the op is unknown or an attr is missing."""
    od = op_def(node.op)
    return None if od is None else _arg_dtypes(node, od, od.output_arg)


def input_dtypes(node: node_def_pb2.NodeDef) -> Optional[List[tf.DType]]:
    """Dtypes the node's data inputs must have, or None if unknown."""
    od = op_def(node.op)
    return None if od is None else _arg_dtypes(node, od, od.input_arg)
