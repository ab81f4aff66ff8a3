"""Reading and writing NodeDef attributes as plain Python values (one place for the plumbing)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2, node_def_pb2
from tensorflow.python.framework import tensor_util

_MISSING = object()


def get_attr(node: node_def_pb2.NodeDef, key: str, default: Any = _MISSING) -> Any:
    """The attribute as Python: ints, floats, bools, ``str`` (decoded), ``tf.DType``, lists of
    those, ``tf.TensorShape`` or ``np.ndarray`` (tensors). Missing → ``default`` or KeyError."""
    if key not in node.attr:
        if default is _MISSING:
            raise KeyError(f"node {node.name!r} ({node.op}) has no attribute {key!r}")
        return default
    v = node.attr[key]
    kind = v.WhichOneof("value")
    if kind == "list":
        lst = v.list
        for field, conv in (("s", _decode), ("i", int), ("f", float), ("b", bool),
                            ("type", tf.dtypes.as_dtype), ("shape", tf.TensorShape)):
            items = getattr(lst, field)
            if len(items):
                return [conv(x) for x in items]
        return []
    if kind == "s":
        return _decode(v.s)
    if kind == "type":
        return tf.dtypes.as_dtype(v.type)
    if kind == "shape":
        return tf.TensorShape(v.shape)
    if kind == "tensor":
        return tensor_util.MakeNdarray(v.tensor)
    if kind is None:
        return default if default is not _MISSING else None
    return getattr(v, kind)


def _decode(b):
    return b.decode() if isinstance(b, bytes) else b


def set_attr(node: node_def_pb2.NodeDef, key: str, value: Any) -> None:
    """Sets an attribute from Python. Strings, ints, floats, bools, ``tf.DType``,
    ``tf.TensorShape``, ``np.ndarray`` (as a tensor) and homogeneous lists of those."""
    node.attr[key].CopyFrom(make_attr(value))


def make_attr(value: Any) -> attr_value_pb2.AttrValue:
    a = attr_value_pb2.AttrValue()
    if isinstance(value, attr_value_pb2.AttrValue):
        a.CopyFrom(value)
    elif isinstance(value, (bool, np.bool_)):
        a.b = bool(value)
    elif isinstance(value, (int, np.integer)):
        a.i = int(value)
    elif isinstance(value, (float, np.floating)):
        a.f = float(value)
    elif isinstance(value, (str, bytes)):
        a.s = value.encode() if isinstance(value, str) else value
    elif isinstance(value, tf.DType):
        a.type = value.as_datatype_enum
    elif isinstance(value, tf.TensorShape):
        a.shape.CopyFrom(value.as_proto())
    elif isinstance(value, np.ndarray):
        a.tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    elif isinstance(value, Sequence):
        a.list.SetInParent()
        items = list(value)
        if items:
            first = items[0]
            if isinstance(first, (bool, np.bool_)):
                a.list.b.extend(bool(x) for x in items)
            elif isinstance(first, (int, np.integer)):
                a.list.i.extend(int(x) for x in items)
            elif isinstance(first, (float, np.floating)):
                a.list.f.extend(float(x) for x in items)
            elif isinstance(first, (str, bytes)):
                a.list.s.extend(x.encode() if isinstance(x, str) else x for x in items)
            elif isinstance(first, tf.DType):
                a.list.type.extend(x.as_datatype_enum for x in items)
            else:
                raise TypeError(f"cannot store a list of {type(first).__name__} in an attribute")
    else:
        raise TypeError(f"cannot store {type(value).__name__} in an attribute")
    return a
