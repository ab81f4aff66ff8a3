"""CalibrationTable: exact JSON round trip, stable bytes, format checks."""
import json

import numpy as np
import pytest

from tfq8.calibration import CalibrationTable, QParams, TableEntry, qparams_from_amax


def _table():
    t = CalibrationTable(metadata={"method": "percentile", "percentile": 99.99,
                                   "num_batches": np.int64(3), "model": "resnet50"})
    qp, _ = qparams_from_amax(0.1 + 0.2, signed=False, method="percentile")  # 0.30000000000000004
    t.add("conv1/Relu:0", TableEntry(qp, min=0.0, max=1 / 3, num_samples=96,
                                     num_elements=96 * 112 * 112 * 64))
    qp, note = qparams_from_amax(0.0, signed=False, method="percentile")
    t.add("dead/Relu:0", TableEntry(qp, min=0.0, max=0.0, num_samples=96, notes=(note,)))
    qp, _ = qparams_from_amax(np.float32(2.7182817), signed=True, method="percentile")
    t.add("add_1:0", TableEntry(qp, min=-2.5e-7, max=1e30, num_samples=96, num_elements=5))
    return t


def test_json_round_trip_is_exact_and_stable(tmp_path):
    t = _table()
    text = t.to_json()
    back = CalibrationTable.from_json(text)
    assert back == t
    assert back.to_json() == text  # byte-identical re-save
    e = back["conv1/Relu:0"]
    assert e.qparams.amax == 0.1 + 0.2 and e.max == 1 / 3 and e.method == "percentile"
    assert back.qparams("add_1:0").scale == float(np.float32(np.float32(2.7182817) / 127))
    path = tmp_path / "calibration.json"
    t.save(path)
    assert CalibrationTable.load(path) == t
    assert path.read_text() == text


def test_json_is_human_readable_sorted_and_versioned():
    text = _table().to_json()
    d = json.loads(text)
    assert d["format"] == "tfq8.calibration_table" and d["format_version"] == 1
    assert d["metadata"] == {"method": "percentile", "model": "resnet50", "num_batches": 3,
                             "percentile": 99.99}
    assert list(d["tensors"]) == sorted(d["tensors"])
    assert d["tensors"]["conv1/Relu:0"] == {
        "amax": 0.30000000000000004, "max": 0.3333333333333333, "method": "percentile",
        "min": 0.0, "notes": [], "num_elements": 96 * 112 * 112 * 64, "num_samples": 96,
        "scale": float(np.float32(0.30000000000000004 / 255)), "signed": False,
        "zero_point": 0}
    assert '\n  "format": "tfq8.calibration_table",\n' in text  # indented, one key per line
    assert list(_table()) == ["add_1:0", "conv1/Relu:0", "dead/Relu:0"]


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d.update(format="other"), "not a tfq8 calibration table"),
    (lambda d: d.update(format_version=2), "format_version 2 is not supported"),
    (lambda d: d["tensors"]["add_1:0"].pop("scale"), r"'add_1:0': missing keys \['scale'\]"),
    (lambda d: d["tensors"]["add_1:0"].update(scale=0.0), "'add_1:0': scale must be > 0"),
    (lambda d: d["tensors"]["add_1:0"].update(zero_point=300), "zero_point must be in 0..255"),
    (lambda d: d["tensors"]["add_1:0"].update(signed="yes"), "'signed' must be true or false"),
    (lambda d: d["tensors"]["add_1:0"].update(num_samples=1.5), "must be an integer"),
])
def test_load_errors(mutate, msg):
    d = json.loads(_table().to_json())
    mutate(d)
    with pytest.raises(ValueError, match=msg):
        CalibrationTable.from_json(json.dumps(d))


def test_misc_errors(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        CalibrationTable.from_json("{")
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match="bad.json: not a tfq8 calibration table"):
        CalibrationTable.load(bad)
    with pytest.raises(KeyError, match="'nope' is not in the calibration table"):
        _table()["nope"]
    with pytest.raises(ValueError, match="not valid JSON"):
        CalibrationTable(metadata={"x": float("nan")})
    with pytest.raises(TypeError, match="TableEntry"):
        CalibrationTable().add("t", QParams(1.0, 0, False, 1.0, "minmax"))
