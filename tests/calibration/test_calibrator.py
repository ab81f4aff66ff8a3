"""The Calibrator driver with a fake run_batch (numpy stands in for the FP32 graph)."""
import io
import itertools
import logging

import numpy as np
import pytest

from tfq8.calibration import Calibrator, CalibrationTable, calibrate


def _run_batch(batch):
    x = batch["image"]
    conv = x @ np.array([[1.0, -2.0], [0.5, 1.0]])
    return {"conv:0": conv, "relu:0": np.maximum(conv, 0), "dead:0": np.zeros(len(x))}


def _batches(n_batches=5, bs=8, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield {"image": rng.standard_normal((bs, 2))}


def test_minmax_table_matches_direct_computation():
    table = Calibrator(_run_batch, "minmax", verbose=False).calibrate(_batches())
    x = np.concatenate([b["image"] for b in _batches()])
    ref = _run_batch({"image": x})
    assert list(table) == ["conv:0", "dead:0", "relu:0"]
    conv = table["conv:0"]
    assert conv.qparams.signed and conv.qparams.amax == np.abs(ref["conv:0"]).max()
    assert conv.min == ref["conv:0"].min() and conv.max == ref["conv:0"].max()
    assert conv.num_samples == 40 and conv.num_elements == 80
    relu = table["relu:0"].qparams
    assert not relu.signed and relu.zero_point == 0 and relu.amax == ref["relu:0"].max()
    dead = table["dead:0"]
    assert dead.qparams.scale == 1.0 and "scale set to 1.0" in dead.notes[0]
    assert table.metadata == {"method": "minmax", "num_batches": 5, "num_samples": 40,
                              "scheme": "symmetric"}


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_histogram_methods_run_and_round_trip(method):
    table = calibrate(_run_batch, _batches(20, 64), method, verbose=False, percentile=99.0,
                      metadata={"model": "toy"})
    for name in ("conv:0", "relu:0"):
        e = table[name]
        assert 0 < e.qparams.amax <= max(-e.min, e.max) and e.method == method
    assert table.metadata["model"] == "toy"
    assert ("percentile" in table.metadata) == (method == "percentile")
    assert table.metadata["num_bins"] == 2048 and table.metadata["num_batches"] == 20
    assert CalibrationTable.from_json(table.to_json()) == table


def test_num_samples_trims_and_stops_consuming():
    pulled = []

    def endless():
        rng = np.random.default_rng(1)
        for i in itertools.count():
            pulled.append(i)
            yield {"image": rng.standard_normal((8, 2))}

    seen = []

    def run(batch):
        seen.append(len(batch["image"]))
        return _run_batch(batch)

    table = Calibrator(run, "minmax", num_samples=20, verbose=False).calibrate(endless())
    assert seen == [8, 8, 4] and pulled == [0, 1, 2]
    assert table.metadata["num_samples"] == 20 and table["conv:0"].num_samples == 20
    # tuple batches are trimmed too
    seen.clear()
    Calibrator(lambda b: run({"image": b[0]}), "minmax", num_samples=3,
               verbose=False).calibrate([(np.ones((8, 2)), np.ones(8))])
    assert seen == [3]


def test_signed_override():
    table = Calibrator(_run_batch, "minmax", signed={"relu:0": True},
                       verbose=False).calibrate(_batches())
    assert table["relu:0"].qparams.signed and table["relu:0"].qparams.zero_point == 128
    with pytest.raises(ValueError, match="never returned.*'nope'"):
        Calibrator(_run_batch, "minmax", signed={"nope": True}, verbose=False).calibrate(
            _batches())


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_tty_and_when_verbose(capsys):
    calibrate(_run_batch, _batches(), "minmax")  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    tty = _Tty()
    calibrate(_run_batch, _batches(), "minmax", verbose=False, stream=tty)
    assert tty.getvalue() == ""
    calibrate(_run_batch, _batches(), "minmax", stream=tty)
    out = tty.getvalue()
    assert out.startswith("\rtfq8 calibrating (minmax): ") and out.endswith("\n")
    assert "5 batches, 40 samples, 3 tensors" in out


def test_notes_logged_only_when_verbose(caplog):
    with caplog.at_level(logging.INFO, logger="tfq8.calibration"):
        calibrate(_run_batch, _batches(), "minmax", verbose=False)
        assert caplog.records == []
        calibrate(_run_batch, _batches(), "minmax")
    assert any("'dead:0'" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_corrupt_sample_is_reported_by_index(caplog):
    """Sample 11 (batch 1, row 3) scaled by 1e6: warned about even when not verbose, with its
    global index; ordinary data (peaks within 100× of the median) gives no warning."""
    batches = list(_batches())
    with caplog.at_level(logging.WARNING, logger="tfq8.calibration"):
        calibrate(_run_batch, batches, "percentile", verbose=False)
        assert caplog.records == []
        batches[1]["image"][3] *= 1e6
        calibrate(_run_batch, batches, "percentile", verbose=False)
    (rec,) = caplog.records
    assert "'image': 1 sample(s) (e.g. #11," in rec.getMessage()


def test_errors():
    with pytest.raises(ValueError, match="calibration data is empty"):
        calibrate(_run_batch, [], "minmax", verbose=False)
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator(_run_batch, "max")
    with pytest.raises(ValueError, match="num_samples"):
        Calibrator(_run_batch, num_samples=0)
    with pytest.raises(TypeError, match="must return a dict"):
        calibrate(lambda b: [1.0], _batches(), verbose=False)
    with pytest.raises(ValueError, match="batch axis"):
        calibrate(_run_batch, [np.float32(1)], verbose=False)

    def nan_graph(batch):
        return {"bad/BiasAdd:0": np.full(3, np.nan)}

    with pytest.raises(ValueError, match="'bad/BiasAdd:0'.*NaN"):
        calibrate(nan_graph, _batches(), verbose=False)
