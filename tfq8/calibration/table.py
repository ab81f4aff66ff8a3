"""The calibration table: tensor name → QParams + statistics, saved as human-readable JSON.

Format (version 1)::

    {
      "format": "tfq8.calibration_table",
      "format_version": 1,
      "metadata": {"method": "entropy", "num_batches": 16, "num_bins": 2048, ...},
      "tensors": {
        "conv1/Relu:0": {
          "amax": 5.123, "max": 6.02, "method": "entropy", "min": 0.0,
          "notes": [], "num_elements": 25690112, "num_samples": 512,
          "scale": 0.020090196, "signed": false, "zero_point": 0
        }
      }
    }

Keys are sorted, indentation is 2, floats are written with ``repr`` (shortest round-tripping
form), so ``from_json(to_json(t)) == t`` exactly and a re-saved table is byte-identical.
``scale`` and ``zero_point`` are authoritative (the quantize pass uses them as they are);
``amax``, ``min``, ``max`` and the counts are informational. Metadata is free-form JSON.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import os

import numpy as np

from tfq8.calibration.qparams import QParams

__all__ = ["TableEntry", "CalibrationTable", "FORMAT", "FORMAT_VERSION"]

FORMAT = "tfq8.calibration_table"
FORMAT_VERSION = 1

_ENTRY_KEYS = ("amax", "max", "method", "min", "notes", "num_elements", "num_samples", "scale",
               "signed", "zero_point")


@dataclasses.dataclass(frozen=True)
class TableEntry:
    """QParams of one tensor plus the statistics they came from."""

    qparams: QParams
    min: float
    max: float
    num_samples: int
    num_elements: int = 0
    notes: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return self.qparams.method

    def to_dict(self) -> dict:
        qp = self.qparams
        return {"amax": float(qp.amax), "max": float(self.max), "method": str(qp.method),
                "min": float(self.min), "notes": list(self.notes),
                "num_elements": int(self.num_elements), "num_samples": int(self.num_samples),
                "scale": float(qp.scale), "signed": bool(qp.signed),
                "zero_point": int(qp.zero_point)}

    @classmethod
    def from_dict(cls, d: dict, name: str = "?") -> "TableEntry":
        where = f"calibration table entry {name!r}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        missing = [k for k in _ENTRY_KEYS if k not in d and k != "notes"]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")

        def num(key, kind=float):
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: {key!r} must be a number, got {v!r}")
            if kind is int:
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError(f"{where}: {key!r} must be an integer, got {v!r}")
                return int(v)
            if not math.isfinite(v):
                raise ValueError(f"{where}: {key!r} must be finite, got {v!r}")
            return float(v)

        scale, zp = num("scale"), num("zero_point", int)
        if not scale > 0:
            raise ValueError(f"{where}: scale must be > 0, got {scale!r}")
        if not 0 <= zp <= 255:
            raise ValueError(f"{where}: zero_point must be in 0..255, got {zp}")
        if not isinstance(d["signed"], bool):
            raise ValueError(f"{where}: 'signed' must be true or false, got {d['signed']!r}")
        notes = d.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"{where}: 'notes' must be a list of strings")
        qp = QParams(scale=scale, zero_point=zp, signed=d["signed"], amax=num("amax"),
                     method=str(d["method"]))
        return cls(qparams=qp, min=num("min"), max=num("max"),
                   num_samples=num("num_samples", int), num_elements=num("num_elements", int),
                   notes=tuple(notes))


def _jsonable(v):
    """Metadata values → plain JSON types (numpy scalars and arrays included)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"metadata value {v!r} is not valid JSON")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"metadata value {v!r} of type {type(v).__name__} is not JSON-serializable")


class CalibrationTable(collections.abc.Mapping):
    """Read-only mapping tensor name → :class:`TableEntry`, plus free-form ``metadata``."""

    def __init__(self, entries: dict | None = None, metadata: dict | None = None):
        self._entries: dict[str, TableEntry] = {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)
        self.metadata = _jsonable(dict(metadata or {}))

    def add(self, name: str, entry: TableEntry) -> None:
        if not isinstance(entry, TableEntry):
            raise TypeError(f"entry for {name!r} must be a TableEntry, got {type(entry).__name__}")
        self._entries[str(name)] = entry

    def __getitem__(self, name: str) -> TableEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"tensor {name!r} is not in the calibration table "
                           f"({len(self._entries)} tensors)") from None

    def __iter__(self):
        return iter(sorted(self._entries))

    def __len__(self):
        return len(self._entries)

    def qparams(self, name: str) -> QParams:
        return self[name].qparams

    def __eq__(self, other):
        if not isinstance(other, CalibrationTable):
            return NotImplemented
        return self._entries == other._entries and self.metadata == other.metadata

    __hash__ = None

    def __repr__(self):
        return f"CalibrationTable({len(self)} tensors, metadata={self.metadata!r})"

    # -- serialization --------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": self.metadata,
                "tensors": {name: self._entries[name].to_dict() for name in sorted(self._entries)}}

    @classmethod
    def from_dict(cls, d: dict) -> "CalibrationTable":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a tfq8 calibration table (expected \"format\": \"{FORMAT}\")")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"calibration table format_version {version!r} is not supported "
                             f"(this tfq8 reads version {FORMAT_VERSION})")
        tensors = d.get("tensors")
        if not isinstance(tensors, dict):
            raise ValueError("calibration table: 'tensors' must be an object")
        metadata = d.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError("calibration table: 'metadata' must be an object")
        return cls({name: TableEntry.from_dict(e, name) for name, e in tensors.items()},
                   metadata)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False,
                          ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "CalibrationTable":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"calibration table is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationTable":
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)}: {e}") from None
