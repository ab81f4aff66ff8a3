"""normalize_calibration_data: every accepted form, and errors that name the input."""
import collections

import numpy as np
import pytest

from tfq8.calibration import normalize_calibration_data

Spec = collections.namedtuple("Spec", "name dtype shape")
IMG = Spec("image", np.float32, (None, 4, 4, 3))
IDS = Spec("ids:0", np.int32, (None, 5))


def _collect(data, specs, **kw):
    return list(normalize_calibration_data(data, specs, **kw))


def _rows(batches, name):
    return np.concatenate([b[name] for b in batches])


def test_single_array_split_and_cast():
    x = np.random.default_rng(0).standard_normal((70, 4, 4, 3))  # float64 → float32
    out = _collect(x, [IMG])
    assert [len(b["image"]) for b in out] == [32, 32, 6]
    assert all(b["image"].dtype == np.float32 and list(b) == ["image"] for b in out)
    np.testing.assert_array_equal(_rows(out, "image"), x.astype(np.float32))
    assert [len(b["image"]) for b in _collect(x, [IMG], batch_size=50)] == [50, 20]


def test_dict_list_and_keras_tuples():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 4, 4, 3)).astype(np.float32)
    ids = rng.integers(0, 100, (10, 5))  # int64 → int32, values fit
    by_dict = _collect({"image": x, "ids": ids}, [IMG, IDS], batch_size=4)  # "ids" ~ "ids:0"
    by_pos = _collect((x, ids), [IMG, IDS], batch_size=4)
    for out in (by_dict, by_pos):
        assert [len(b["image"]) for b in out] == [4, 4, 2]
        assert list(out[0]) == ["image", "ids:0"] and out[0]["ids:0"].dtype == np.int32
        np.testing.assert_array_equal(_rows(out, "ids:0"), ids)
    # an iterable of batches: Keras (x, y) tuples with dict / tuple x
    gen = (((x[i:i + 5], ids[i:i + 5]), np.zeros(5)) for i in (0, 5))
    out = _collect(gen, [IMG, IDS])
    np.testing.assert_array_equal(_rows(out, "image"), x)
    out = _collect([(x[:3], np.ones(3)), (x[3:], np.ones(7), np.ones(7))], [IMG])
    np.testing.assert_array_equal(_rows(out, "image"), x)
    # a list of batches for a one-input model
    out = _collect([x[:6], x[6:]], [IMG], batch_size=4)
    assert [len(b["image"]) for b in out] == [4, 2, 4]


def test_single_samples_are_stacked_and_uint8_images_cast():
    imgs = [np.full((4, 4, 3), i, np.uint8) for i in range(5)]
    out = _collect(iter(imgs), [IMG], batch_size=2)
    assert [len(b["image"]) for b in out] == [2, 2, 1]
    assert out[0]["image"].dtype == np.float32
    np.testing.assert_array_equal(_rows(out, "image")[:, 0, 0, 0], np.arange(5))


def test_fixed_batch_dimension():
    spec = Spec("x", np.float32, (8, 2))
    out = _collect(np.zeros((20, 2), np.float32), [spec], batch_size=32)
    assert [len(b["x"]) for b in out] == [8, 8]  # 4 rows left over are dropped


def test_tf_data_dataset_batched_and_unbatched():
    tf = pytest.importorskip("tensorflow")
    x = np.arange(10 * 48, dtype=np.float32).reshape(10, 4, 4, 3)
    spec = tf.TensorSpec([None, 4, 4, 3], tf.float32, name="image")
    ds = tf.data.Dataset.from_tensor_slices(x)
    out = _collect(ds, [spec], batch_size=4)  # unbatched elements → stacked
    assert [len(b["image"]) for b in out] == [4, 4, 2]
    out = _collect(tf.data.Dataset.from_tensor_slices(({"image": x}, np.zeros(10))).batch(3),
                   [spec])
    assert [len(b["image"]) for b in out] == [3, 3, 3, 1]
    np.testing.assert_array_equal(_rows(out, "image"), x)
    # a tf.Tensor is an array, not an iterable of rows
    out = _collect(tf.constant(x), [spec], batch_size=5)
    assert [len(b["image"]) for b in out] == [5, 5]


@pytest.mark.parametrize("data,specs,exc,msg", [
    (np.zeros((0, 4, 4, 3)), [IMG], ValueError, "calibration data is empty"),
    ([], [IMG], ValueError, "calibration data is empty"),
    (iter([np.zeros((0, 4, 4, 3))]), [IMG], ValueError, "calibration data is empty"),
    (np.zeros((2, 4, 4)), [IMG], ValueError,
     r"input 'image' has shape \(2, 4, 4\), but the model expects \(None, 4, 4, 3\)"),
    (np.zeros((2, 4, 5, 3)), [IMG], ValueError, "input 'image' has shape"),
    (np.zeros((2, 4, 4, 3), np.complex64), [IMG], TypeError,
     "input 'image' has dtype complex64, which cannot be safely cast"),
    (np.zeros((2, 5), np.float32), [IDS], TypeError,
     "input 'ids:0' has dtype float32, which cannot be safely cast to the model's int32"),
    (np.full((2, 5), 2 ** 40), [IDS], ValueError, "input 'ids:0' has values in"),
    (np.full((2, 4, 4, 3), 1e300), [IMG], ValueError, "beyond the range of float32"),
    ({"image": np.zeros((2, 4, 4, 3))}, [IMG, IDS], ValueError, "input 'ids:0' is missing"),
    ({"image": np.zeros((2, 4, 4, 3)), "extra": 1}, [IMG], ValueError,
     "unknown input 'extra'"),
    ({"image": np.zeros((2, 4, 4, 3)), "ids": np.zeros((3, 5), np.int32)}, [IMG, IDS],
     ValueError, "different batch sizes"),
    (np.zeros((2, 4, 4, 3)), [IMG, IDS], ValueError, "got a single array, but the model has 2"),
    (np.float32(3), [Spec("s", np.float32, None)], ValueError, "'s' is a scalar"),
    ("images/", [IMG], TypeError, "not a string"),
    (None, [IMG], ValueError, "None"),
    (42, [IMG], TypeError, "cannot use a int"),
])
def test_errors_name_the_input(data, specs, exc, msg):
    with pytest.raises(exc, match=msg):
        _collect(data, specs)


def test_nan_inf_named_with_batch_and_row():
    x = np.zeros((40, 4, 4, 3), np.float32)
    x[35, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"calibration data: input 'image' contains NaN/Inf "
                                         r"\(1 values; first in row 35\)"):
        normalize_calibration_data(x, [IMG])  # in-memory data is checked on the call
    batches = [np.zeros((2, 4, 4, 3)), np.full((2, 4, 4, 3), np.inf)]
    it = normalize_calibration_data(batches, [IMG])
    next(it)
    with pytest.raises(ValueError, match="calibration batch 1: input 'image' contains NaN/Inf"):
        next(it)


def test_spec_validation():
    with pytest.raises(ValueError, match="no inputs"):
        _collect(np.zeros(3), [])
    with pytest.raises(ValueError, match="not unique"):
        _collect({"a": np.zeros(3)}, [Spec("a", np.float32, None)] * 2)
    with pytest.raises(TypeError, match="has no .name"):
        _collect(np.zeros(3), [object()])
    with pytest.raises(ValueError, match="batch_size"):
        _collect(np.zeros((3, 4, 4, 3)), [IMG], batch_size=0)
