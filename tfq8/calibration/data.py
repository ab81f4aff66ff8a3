"""Calibration data in every form users have it → batches ``{input_name: np.ndarray}``.

Accepted forms of ``data`` (N = number of model inputs):

* one array (N = 1): split into batches of ``batch_size`` rows;
* a dict ``{input_name: array}``: split the same way (all arrays must have equal length);
  a key may omit a ``:0`` suffix of the input name;
* a list/tuple of N arrays (N > 1): positional inputs, split the same way;
* a ``tf.data.Dataset`` (TensorFlow is only touched if it is already imported, as it must be
  for a Dataset to exist): iterated once with ``as_numpy_iterator()``;
* any other iterable of batches (a generator, a list of batches when N = 1, …). Each item is
  an array (N = 1), a dict, a tuple/list of N arrays, or a Keras-style ``(x, y)`` /
  ``(x, y, sample_weight)`` tuple whose ``x`` is one of the former (the labels are dropped).
  An item whose arrays all have one dimension fewer than the input spec is a single sample;
  consecutive samples are stacked into batches of ``batch_size``. Batches larger than
  ``batch_size`` are split.

If an input's spec has a fixed batch dimension b, batches of exactly b rows are produced and
left-over rows are dropped (with a warning).

Every batch is checked against the specs, with errors that name the input: missing or unknown
inputs, rank and fixed dimensions, dtype (casts allowed: any float → float, integer/bool →
float, integer → integer when the values fit; others are refused), NaN/Inf, unequal batch
lengths, and data that holds no samples at all. In-memory arrays are checked when
``normalize_calibration_data`` is called; iterables while they are consumed (they are
consumed once, lazily).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tfq8.graph.names import input_op_name

__all__ = ["normalize_calibration_data", "InputSpec"]

_log = logging.getLogger("tfq8.calibration")
_CHECK_CHUNK = 1 << 22  # elements per finiteness check (bounds temporary memory)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Normalized input spec: name, numpy dtype, shape (None entries; None = unknown rank)."""

    name: str
    dtype: np.dtype
    shape: tuple | None

    @classmethod
    def from_any(cls, spec) -> "InputSpec":
        for attr in ("name", "dtype", "shape"):
            if not hasattr(spec, attr):
                raise TypeError(f"input spec {spec!r} has no .{attr}")
        name = str(spec.name)
        dtype = getattr(spec.dtype, "as_numpy_dtype", spec.dtype)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"input {name!r}: unsupported spec dtype {spec.dtype!r}") from None
        shape = spec.shape
        if shape is not None and hasattr(shape, "as_list"):  # tf.TensorShape
            shape = None if shape.rank is None else shape.as_list()
        if shape is not None:
            shape = tuple(None if d is None else int(d) for d in shape)
        return cls(name, dtype, shape)

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def shape_str(self) -> str:
        if self.shape is None:
            return "(unknown rank)"
        return "(" + ", ".join("None" if d is None else str(d) for d in self.shape) + ")"


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "__array__") and hasattr(x, "shape")
                                         and hasattr(x, "dtype"))


def _is_dataset(x) -> bool:
    tf = sys.modules.get("tensorflow")
    data_mod = getattr(tf, "data", None) if tf is not None else None
    return data_mod is not None and isinstance(x, data_mod.Dataset)


def _as_numpy(x, spec: InputSpec, where: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists etc.
        raise ValueError(f"{where}: input {spec.name!r} cannot be converted to an array: "
                         f"{e}") from None
    if arr.dtype == object:
        raise TypeError(f"{where}: input {spec.name!r} is not a numeric array (got an object "
                        "array; ragged nested lists?)")
    return arr


class _Structure:
    """Maps one item (array / dict / tuple) onto the input specs."""

    def __init__(self, specs: Sequence[InputSpec]):
        self.specs = list(specs)
        self.by_alias: dict[str, InputSpec] = {}
        for s in self.specs:
            self.by_alias[s.name] = s
            if s.name.endswith(":0"):
                self.by_alias.setdefault(s.name[:-2], s)

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def to_dict(self, item, where: str) -> dict[str, np.ndarray]:
        specs = self.specs
        if isinstance(item, Mapping):
            out = {}
            for key, value in item.items():
                spec = self.by_alias.get(str(key))
                if spec is None and str(key).endswith(":0"):
                    spec = self.by_alias.get(str(key)[:-2])
                if spec is None:  # the Keras input name before tfq8 made it an op name
                    spec = self.by_alias.get(input_op_name(key))
                if spec is None:
                    raise ValueError(f"{where}: unknown input {key!r}; the model's inputs are "
                                     f"{self.names()}")
                if spec.name in out:
                    raise ValueError(f"{where}: input {spec.name!r} is given twice")
                out[spec.name] = _as_numpy(value, spec, where)
            missing = [s.name for s in specs if s.name not in out]
            if missing:
                raise ValueError(f"{where}: input {missing[0]!r} is missing (got "
                                 f"{sorted(map(str, item))}; the model's inputs are "
                                 f"{self.names()})")
            return out
        if isinstance(item, (list, tuple)):
            n = len(item)
            positional = len(specs) > 1 and n == len(specs) and \
                not any(isinstance(v, (Mapping, list, tuple)) for v in item)
            if positional:
                return {s.name: _as_numpy(v, s, where) for s, v in zip(specs, item)}
            if len(specs) == 1 and n == 1:
                return self.to_dict(item[0], where)
            if n in (2, 3) and (len(specs) == 1 or isinstance(item[0], (Mapping, list, tuple))):
                return self.to_dict(item[0], where)  # Keras (x, y[, sample_weight])
            raise ValueError(f"{where}: got a {type(item).__name__} of {n} elements, but the "
                             f"model has {len(specs)} input(s) {self.names()}; give a dict "
                             "{input_name: array}, a tuple of one array per input, or (x, y)")
        if _is_array(item) or isinstance(item, (int, float, np.generic)):
            if len(specs) != 1:
                raise ValueError(f"{where}: got a single array, but the model has "
                                 f"{len(specs)} inputs {self.names()}; give a dict "
                                 "{input_name: array} or a tuple of arrays")
            return {specs[0].name: _as_numpy(item, specs[0], where)}
        raise TypeError(f"{where}: cannot use a {type(item).__name__} as calibration data; "
                        "give arrays, a dict of arrays, a tuple of arrays or an iterable of "
                        "batches")


def _check_cast(spec: InputSpec, arr: np.ndarray, where: str) -> None:
    """Refuses casts to the spec's dtype that could change values (see the module docstring)."""
    src, dst = arr.dtype, spec.dtype
    if src == dst:
        return
    src_kind, dst_kind = src.kind, dst.kind
    if dst_kind == "f" and src_kind in "fiub":
        # float64 → float32 (numpy's default float) and integer images → float are fine,
        # unless a value would overflow
        if src_kind == "f" and src.itemsize > dst.itemsize and arr.size:
            with np.errstate(invalid="ignore"):
                big = np.nanmax(np.abs(arr))
            if big > np.finfo(dst).max and np.isfinite(big):
                raise ValueError(f"{where}: input {spec.name!r} has values beyond the range "
                                 f"of {dst.name}")
        return
    if dst_kind in "iu" and src_kind in "iub":
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            info = np.iinfo(dst)
            if lo < info.min or hi > info.max:
                raise ValueError(f"{where}: input {spec.name!r} has values in [{lo}, {hi}] "
                                 f"that do not fit its dtype {dst.name}")
        return
    if src_kind != "c" and np.can_cast(src, dst, "safe"):
        return
    raise TypeError(f"{where}: input {spec.name!r} has dtype {src.name}, which cannot be "
                    f"safely cast to the model's {dst.name}")


def _cast(spec: InputSpec, arr: np.ndarray) -> np.ndarray:
    return arr if arr.dtype == spec.dtype else arr.astype(spec.dtype)


def _check_finite(spec: InputSpec, arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind not in "fc":
        return
    flat = arr.reshape(-1)
    for i in range(0, flat.size, _CHECK_CHUNK):
        part = flat[i:i + _CHECK_CHUNK]
        if not np.isfinite(part).all():
            bad = np.flatnonzero(~np.isfinite(flat))
            row = np.unravel_index(bad[0], arr.shape)[0] if arr.ndim else 0
            raise ValueError(f"{where}: input {spec.name!r} contains NaN/Inf ({bad.size} "
                             f"values; first in row {row})")


def _check_shape(spec: InputSpec, arr: np.ndarray, where: str) -> None:
    if arr.ndim == 0:
        raise ValueError(f"{where}: input {spec.name!r} is a scalar; calibration data needs "
                         f"a batch axis (the model expects shape {spec.shape_str()})")
    if spec.shape is None:
        return
    bad = arr.ndim != len(spec.shape) or any(
        d is not None and d != a for d, a in zip(spec.shape[1:], arr.shape[1:]))
    if bad:
        raise ValueError(f"{where}: input {spec.name!r} has shape {tuple(arr.shape)}, but the "
                         f"model expects {spec.shape_str()} (batch axis first)")


def _prepare_batch(struct: _Structure, arrays: dict, where: str, cast: bool = True) -> int:
    """Checks a dict of whole-batch arrays in place; returns its number of rows."""
    rows = None
    for spec in struct.specs:
        arr = arrays[spec.name]
        _check_shape(spec, arr, where)
        _check_cast(spec, arr, where)
        _check_finite(spec, arr, where)
        if cast:
            arrays[spec.name] = arr = _cast(spec, arr)
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise ValueError(f"{where}: inputs have different batch sizes: "
                             f"{struct.specs[0].name!r} has {rows} rows, {spec.name!r} has "
                             f"{arr.shape[0]}")
    return rows


def _fixed_batch(specs: Sequence[InputSpec]) -> int | None:
    fixed = {s.shape[0] for s in specs if s.shape and s.shape[0] is not None}
    if len(fixed) > 1:
        raise ValueError(f"inputs have different fixed batch sizes: "
                         f"{ {s.name: s.shape[0] for s in specs if s.shape} }")
    return fixed.pop() if fixed else None


def _split(struct: _Structure, arrays: dict, rows: int, bs: int, exact: bool, where: str,
           cast_each: bool) -> Iterator[dict[str, np.ndarray]]:
    stop = rows - rows % bs if exact else rows
    if exact and stop != rows:
        _log.warning("%s: %d rows left over after batches of the model's fixed batch size %d "
                     "are dropped", where, rows - stop, bs)
    for i in range(0, stop, bs):
        batch = {}
        for spec in struct.specs:
            part = arrays[spec.name][i:i + bs]
            batch[spec.name] = _cast(spec, part) if cast_each else part
        yield batch


def normalize_calibration_data(data: Any, input_specs: Sequence[Any],
                               batch_size: int = 32) -> Iterator[dict[str, np.ndarray]]:
    """Yields calibration batches ``{input_name: np.ndarray}`` (see the module docstring).

    ``input_specs``: objects with ``.name``, ``.dtype`` (TensorFlow or numpy) and ``.shape``
    (batch axis first, None for unknown dimensions), e.g. ``tf.TensorSpec``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    specs = [InputSpec.from_any(s) for s in input_specs]
    if not specs:
        raise ValueError("the model has no inputs (input_specs is empty)")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"input names are not unique: {names}")
    struct = _Structure(specs)
    fixed = _fixed_batch(specs)
    bs = fixed or int(batch_size)
    if data is None:
        raise ValueError("calibration data is None")
    if isinstance(data, (str, bytes)):
        raise TypeError("calibration data must be arrays or batches, not a string (the CLI "
                        "takes image folders; the Python API takes arrays)")

    if _is_dataset(data):
        return _iterate(struct, data.as_numpy_iterator(), bs, fixed is not None)

    in_memory = _is_array(data) or isinstance(data, Mapping) or (
        isinstance(data, (list, tuple)) and len(specs) > 1 and len(data) == len(specs)
        and all(_is_array(v) for v in data))
    if in_memory:
        where = "calibration data"
        arrays = struct.to_dict(data, where)
        rows = _prepare_batch(struct, arrays, where, cast=False)
        if rows == 0:
            raise ValueError(f"calibration data is empty: input {specs[0].name!r} has 0 rows")
        if fixed is not None and rows < fixed:
            raise ValueError(f"calibration data has {rows} rows, fewer than the model's fixed "
                             f"batch size {fixed}")
        return _split(struct, arrays, rows, bs, fixed is not None, where, cast_each=True)

    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"cannot use a {type(data).__name__} as calibration data; give arrays, "
                        "a dict of arrays, a tuple of arrays, a tf.data.Dataset or an iterable "
                        "of batches") from None
    return _iterate(struct, it, bs, fixed is not None)


def _iterate(struct: _Structure, it, bs: int, exact: bool) -> Iterator[dict[str, np.ndarray]]:
    yielded = 0
    pending: list[dict] = []  # single samples waiting to be stacked

    def flush(where):
        batch = {s.name: np.stack([p[s.name] for p in pending]) for s in struct.specs}
        pending.clear()
        rows = _prepare_batch(struct, batch, where)
        return _split(struct, batch, rows, bs, exact, where, cast_each=False)

    index = -1
    for index, item in enumerate(it):
        where = f"calibration batch {index}"
        arrays = struct.to_dict(item, where)
        single = all(s.rank is not None and arrays[s.name].ndim == s.rank - 1
                     for s in struct.specs)
        if single:
            if pending and any(pending[0][s.name].shape != arrays[s.name].shape
                               for s in struct.specs):
                for b in flush(f"calibration samples before item {index}"):
                    yielded += 1
                    yield b
            pending.append(arrays)
            if len(pending) == bs:
                for b in flush(f"calibration samples up to item {index}"):
                    yielded += 1
                    yield b
            continue
        rows = _prepare_batch(struct, arrays, where)
        if rows == 0:
            continue
        for b in _split(struct, arrays, rows, bs, exact, where, cast_each=False):
            yielded += 1
            yield b
    if pending:
        for b in flush(f"calibration samples up to item {index}"):
            yielded += 1
            yield b
    if yielded == 0:
        raise ValueError("calibration data is empty: the iterable yielded no samples")
