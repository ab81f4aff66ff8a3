"""Tensor names and tensor descriptions.

A GraphDef names tensors in two spellings:

* a *tensor name* ``"node:idx"`` (what ``tf.Graph`` and signatures use), and
* a *node input* ``"node"`` (output 0), ``"node:idx"`` or ``"^node"`` (a control edge).

The helpers here convert between them; everything else in tfq8 stores tensor names in the
canonical ``"node:idx"`` form.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional, Tuple

import tensorflow as tf


_NAME_OK = re.compile(r"[^A-Za-z0-9_.\-/]")


def input_op_name(name, index: int = 0) -> str:
    """The signature/placeholder name tfq8 gives a model input called ``name`` (a Keras input
    name or dict key): characters TF rejects in op names become ``_`` ("meta feats" →
    "meta_feats"). Calibration data and calls also accept the unsanitized name."""
    name = _NAME_OK.sub("_", str(name or f"input_{index}")).strip("/")
    if not name or not re.match(r"[A-Za-z0-9.]", name[0]):
        name = f"input_{index}" if not name else "x" + name
    return name


def parse_input(text: str) -> Tuple[str, int, bool]:
    """``"^a"`` → ``("a", -1, True)``; ``"a"`` → ``("a", 0, False)``; ``"a:2"`` → ``("a", 2, False)``."""
    if text.startswith("^"):
        return text[1:], -1, True
    node, sep, idx = text.rpartition(":")
    if sep and idx.isdigit():
        return node, int(idx), False
    return text, 0, False


def parse_tensor(text: str) -> Tuple[str, int]:
    """``"a:1"`` → ``("a", 1)``; ``"a"`` → ``("a", 0)``. Control inputs are rejected."""
    node, idx, control = parse_input(text)
    if control:
        raise ValueError(f"{text!r} is a control input, not a tensor")
    return node, idx


def tensor_name(node: str, index: int = 0) -> str:
    """The canonical ``"node:idx"`` spelling."""
    return f"{node}:{index}"


def canonical(text: str) -> str:
    """Any tensor spelling (``"a"``, ``"a:0"``) → ``"a:0"``."""
    return tensor_name(*parse_tensor(text))


def input_ref(node: str, index: int = 0) -> str:
    """How a NodeDef input names output ``index`` of ``node`` (``"node"`` for output 0)."""
    return node if index == 0 else f"{node}:{index}"


def control_ref(node: str) -> str:
    return "^" + node


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    name:   the key in the signature (``"input_1"``, ``"output_0"``, a dict key of the outputs).
    tensor: the tensor in the GraphDef, ``"node:idx"``.
    dtype:  a ``tf.DType``.
    shape:  a tuple with ``None`` for unknown dimensions (the batch stays ``None``), or ``None``
            for unknown rank.
    """

    name: str
    tensor: str
    dtype: tf.DType
    shape: Optional[Tuple[Optional[int], ...]]

    @property
    def node(self) -> str:
        return parse_tensor(self.tensor)[0]

    def spec(self, name: Optional[str] = None) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, self.dtype, name=name or self.name)

    def __repr__(self):
        shape = "?" if self.shape is None else "(" + ", ".join(
            "None" if d is None else str(d) for d in self.shape) + ")"
        return f"TensorInfo({self.name!r}: {self.tensor} {self.dtype.name}{shape})"
