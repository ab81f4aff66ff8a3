"""range_search: each threshold becomes the candidate with the least error at its readers.

Checked against a brute-force numpy evaluation of the same candidates on a tiny graph
(tolerance: TF's FakeQuant rounds halves away from zero where the INT8 kernels round to even,
so the errors agree to ~1e-3 relative; the test only needs the argmin, with a margin)."""
import numpy as np
import tensorflow as tf

from tfq8.calibration import CalibrationTable, TableEntry, qparams_from_amax
from tfq8.calibration.range_search import FACTORS, search_ranges

RNG = np.random.default_rng(3)


def _graph(w1, w2):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 6, 6, 4), name="x")
        r = tf.nn.relu(x, name="r")
        p = tf.pad(r, [[0, 0], [1, 1], [1, 1], [0, 0]], name="p")
        c1 = tf.nn.conv2d(p, w1, 1, "VALID", name="c1")           # reads r through a Pad
        c2 = tf.nn.conv2d(x, w2, 1, "SAME", name="c2")            # reads x (signed)
        tf.identity(c1, name="out1")
        tf.identity(c2, name="out2")
    return g.as_graph_def()


def _entry(x, amax, signed):
    qp, _ = qparams_from_amax(amax, signed, "percentile")
    return TableEntry(qparams=qp, min=float(x.min()), max=float(x.max()), num_samples=len(x),
                      num_elements=x.size)


def _reader_error(x, amax, signed, w, padding):
    qp, _ = qparams_from_amax(amax, signed, "t")
    xq = qp.dequantize(qp.quantize(x))
    if padding == "VALID":
        x = np.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        xq = np.pad(xq, [[0, 0], [1, 1], [1, 1], [0, 0]])
    a = tf.nn.conv2d(x, w, 1, padding).numpy()
    b = tf.nn.conv2d(xq, w, 1, padding).numpy()
    return float(np.sum((a.astype(np.float64) - b) ** 2))


def test_threshold_is_the_readers_best_candidate():
    x = RNG.normal(size=(8, 6, 6, 4)).astype(np.float32)
    x[0, 0, 0, 1] = 12.0                                  # an outlier far above the bulk
    w1 = RNG.normal(size=(3, 3, 4, 5)).astype(np.float32)
    w2 = RNG.normal(size=(1, 1, 4, 3)).astype(np.float32)
    gd = _graph(w1, w2)
    r = np.maximum(x, 0)
    table = CalibrationTable({"r:0": _entry(r, 2.0, False), "x:0": _entry(x, 2.5, True),
                              "c1:0": _entry(r, 1.0, True)})
    before_c1 = table["c1:0"]
    changes = search_ranges(gd, table, ["r:0", "x:0", "c1:0"], lambda b: {"x:0": b},
                            [x[:4], x[4:]])
    assert set(changes) == {"r:0", "x:0"}                 # c1:0 has no linear reader
    assert table["c1:0"] == before_c1
    for t, v, amax, signed, w, pad in (("r:0", r, 2.0, False, w1, "VALID"),
                                       ("x:0", x, 2.5, True, w2, "SAME")):
        top = float(np.abs(v).max())
        cands = sorted({amax * f for f in FACTORS if amax * f < top} | {top})
        errs = [_reader_error(v, c, signed, w, pad) for c in cands]
        best = cands[int(np.argmin(errs))]
        assert changes[t][0] == amax
        chosen = changes[t][1]
        assert chosen in cands
        assert _reader_error(v, chosen, signed, w, pad) <= min(errs) * 1.01, (t, chosen, best)
        assert table[t].qparams.amax == chosen and table[t].qparams.signed == signed
        assert table[t].method == "percentile+search"


def test_asymmetric_entries_are_left_alone():
    x = RNG.normal(size=(4, 6, 6, 4)).astype(np.float32)
    gd = _graph(RNG.normal(size=(3, 3, 4, 5)).astype(np.float32),
                RNG.normal(size=(1, 1, 4, 3)).astype(np.float32))
    from tfq8.calibration import qparams_from_range
    qp, _ = qparams_from_range(1.0, 3.0, "percentile")
    e = TableEntry(qparams=qp, min=float(x.min()), max=float(x.max()), num_samples=4)
    table = CalibrationTable({"x:0": e})
    assert search_ranges(gd, table, ["x:0"], lambda b: {"x:0": b}, [x]) == {}
    assert table["x:0"] == e
