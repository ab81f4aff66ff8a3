"""Real, offline test data for the end-to-end accuracy tests.

* Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (idx files, gzipped or not,
  under /usr/share/datasets/fashion-mnist; ``TFQ8_FASHION_MNIST_DIR`` overrides the folder).
* Real photos that ship *inside* the scikit-image wheel (``skimage/data/*.png|jpg``; the ones that
  skimage would download through pooch are never touched) and scikit-learn's two bundled
  sample images (``sklearn.datasets.load_sample_images``): a calibration set and a disjoint
  evaluation set (different source images, different crop scheme), preprocessed like torchvision's
  ImageNet models (RGB, [0, 1], per-channel mean/std), NHWC float32.

Missing data or a missing test-only package skips the test locally and fails it when
``TFQ8_REQUIRE_TEST_DATA=1`` (CI sets it), so CI never silently skips an accuracy test.

Test-only dependencies: scikit-image (and its pillow), scikit-learn.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct

import numpy as np
import pytest

REQUIRE_ENV = "TFQ8_REQUIRE_TEST_DATA"
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Source photos. No image appears in both lists (and the stereo pair motorcycle_left/right is
# kept out of calibration entirely, so no near-duplicate leaks across the split).
CALIBRATION_IMAGES = (
    "skimage:astronaut", "sklearn:china", "skimage:hubble_deep_field", "skimage:ihc",
    "skimage:retina", "skimage:camera", "skimage:coins", "skimage:moon", "skimage:grass",
    "skimage:gravel", "skimage:brick", "skimage:color", "skimage:clock_motion",
)
EVALUATION_IMAGES = (
    "skimage:chelsea", "skimage:coffee", "sklearn:flower", "skimage:motorcycle_left",
    "skimage:rocket",
)


def data_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing(reason: str):
    """Skips the calling test (locally) or fails it (TFQ8_REQUIRE_TEST_DATA=1, as in CI)."""
    if data_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: missing test data is a failure)", pytrace=False)
    pytest.skip(reason)


def import_or_missing(module: str, install_hint: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        missing(f"{module} is not importable ({e}); install it with: {install_hint}")


# ----------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (header {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes of data, header says {dims}")
    return arr.reshape(dims)


def _find_fashion_mnist_dir():
    candidates = ([os.environ["TFQ8_FASHION_MNIST_DIR"]] if os.environ.get(
        "TFQ8_FASHION_MNIST_DIR") else []) + list(FASHION_MNIST_DIRS)
    for d in candidates:
        if os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")) or os.path.exists(
                os.path.join(d, "train-images-idx3-ubyte")):
            return d
    return None


@functools.lru_cache(maxsize=None)
def _fashion_mnist_arrays(directory: str):
    def load(stem):
        p = os.path.join(directory, stem)
        return _read_idx(p + ".gz" if os.path.exists(p + ".gz") else p)

    return (load("train-images-idx3-ubyte"), load("train-labels-idx1-ubyte"),
            load("t10k-images-idx3-ubyte"), load("t10k-labels-idx1-ubyte"))


def load_fashion_mnist():
    """(x_train uint8 [60000,28,28], y_train uint8 [60000], x_test [10000,28,28], y_test [10000]).

    Skips (or fails under TFQ8_REQUIRE_TEST_DATA=1) when the Debian package is not installed.
    """
    d = _find_fashion_mnist_dir()
    if d is None:
        missing("Fashion-MNIST not found in " + ", ".join(FASHION_MNIST_DIRS)
                + " (apt-get install dataset-fashion-mnist, or set TFQ8_FASHION_MNIST_DIR)")
    xtr, ytr, xte, yte = _fashion_mnist_arrays(d)
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,), (xtr.shape, ytr.shape)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,), (xte.shape, yte.shape)
    return xtr, ytr, xte, yte


# ----------------------------------------------------------------------------- photos

def _skimage_data_dir():
    skimage_data = import_or_missing("skimage.data", "pip install scikit-image")
    return os.path.dirname(skimage_data.__file__)


def load_photo(name: str) -> np.ndarray:
    """'skimage:chelsea' / 'sklearn:flower' → uint8 RGB [H, W, 3] (gray → 3 channels)."""
    source, stem = name.split(":")
    if source == "skimage":
        io = import_or_missing("skimage.io", "pip install scikit-image")
        d = _skimage_data_dir()
        for ext in (".png", ".jpg"):
            path = os.path.join(d, stem + ext)
            if os.path.exists(path):
                break
        else:
            missing(f"scikit-image's bundled image {stem!r} is not in {d} (only files that ship "
                    "in the wheel are used, never pooch downloads)")
        img = np.asarray(io.imread(path))
    elif source == "sklearn":
        sk = import_or_missing("sklearn.datasets", "pip install scikit-learn")
        bunch = sk.load_sample_images()
        names = [os.path.splitext(os.path.basename(f))[0] for f in bunch.filenames]
        img = np.asarray(bunch.images[names.index(stem)])
    else:
        raise ValueError(name)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8, got {img.dtype}")
    return np.ascontiguousarray(img)


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image  # scikit-image depends on pillow
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def preprocess(images_u8: np.ndarray, normalization: str = "torch") -> np.ndarray:
    """uint8 RGB NHWC → float32: 'torch' = (x/255 − mean)/std (torchvision ImageNet models)."""
    x = images_u8.astype(np.float32) / 255.0
    if normalization == "torch":
        return (x - IMAGENET_MEAN) / IMAGENET_STD
    if normalization == "unit":
        return x
    raise ValueError(normalization)


def _eval_crops(img: np.ndarray, size: int):
    """Deterministic crops: 3 full-height squares along the long axis, 5 crops (4 corners +
    centre) at 75% and at 55% of the shorter side, each also mirrored: 26 per image."""
    h, w = img.shape[:2]
    short = min(h, w)
    out = []
    side = short
    for t in (0.0, 0.5, 1.0):
        y, x = int(round((h - side) * t)), int(round((w - side) * t))
        out.append(img[y:y + side, x:x + side])
    for frac in (0.75, 0.55):
        side = int(round(short * frac))
        for ty, tx in ((0, 0), (0, 1), (1, 0), (1, 1), (0.5, 0.5)):
            y, x = int(round((h - side) * ty)), int(round((w - side) * tx))
            out.append(img[y:y + side, x:x + side])
    out = out + [c[:, ::-1] for c in out]
    return [_resize(np.ascontiguousarray(c), size) for c in out]


def _calibration_crops(img: np.ndarray, size: int, n: int, rng: np.random.Generator):
    """Random-resized crops (scale 30–100% of the area of the shorter-side square, aspect 3/4–4/3,
    random position, random mirror), like training-time augmentation."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        area = rng.uniform(0.3, 1.0) * min(h, w) ** 2
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        c = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out.append(_resize(np.ascontiguousarray(c), size))
    return out


@functools.lru_cache(maxsize=None)
def _photo_sets_u8(size: int, calib_per_image: int, seed: int):
    rng = np.random.default_rng(seed)
    calib, calib_src = [], []
    for name in CALIBRATION_IMAGES:
        crops = _calibration_crops(load_photo(name), size, calib_per_image, rng)
        calib += crops
        calib_src += [name] * len(crops)
    ev, ev_src = [], []
    for name in EVALUATION_IMAGES:
        crops = _eval_crops(load_photo(name), size)
        ev += crops
        ev_src += [name] * len(crops)
    return np.stack(calib), tuple(calib_src), np.stack(ev), tuple(ev_src)


def photo_sets(size: int = 224, normalization: str = "torch", calib_per_image: int = 10,
               seed: int = 0):
    """(calibration, evaluation) float32 NHWC photo crops, plus their source names.

    Calibration: 13 source images × `calib_per_image` random-resized crops (130 by default).
    Evaluation: 5 *other* source images × 26 deterministic crops/mirrors = 130 crops.
    Returns dict(calibration=, calibration_sources=, evaluation=, evaluation_sources=).
    """
    calib, calib_src, ev, ev_src = _photo_sets_u8(size, calib_per_image, seed)
    assert not set(calib_src) & set(ev_src)
    return dict(calibration=preprocess(calib, normalization), calibration_sources=calib_src,
                evaluation=preprocess(ev, normalization), evaluation_sources=ev_src)
