"""The `tfq8` command line on a small SavedModel: quantize (.npy and image-folder calibration),
inspect (per-layer SQNR table) and optimize. Numerics: the CLI's INT8 SavedModel must agree with
FP32 to cosine ≥ 0.999 (small random model, 8-bit noise ≈ 1e-3), and inspect's SQNR must be a
finite, plausible number (> 20 dB) for every INT8 layer of such a model."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfq8

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tfq8(*args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "tfq8.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4)(x)
    model = keras.Model(inp, out)
    path = str(tmp_path_factory.mktemp("fp32") / "model")
    model.export(path, verbose=False)
    return path, model


def test_quantize_npy_then_load(fp32_dir, tmp_path):
    path, model = fp32_dir
    x = np.random.default_rng(1).uniform(0, 1, (32, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    out = str(tmp_path / "int8")
    proc = _tfq8("quantize", "--model", path, "--output", out, "--calibration",
                 str(tmp_path / "calib.npy"), "--method", "minmax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Tfq8Conv2D 2" in proc.stdout
    loaded = tf.saved_model.load(out)
    (got,) = loaded.signatures["serving_default"](image=tf.constant(x[:8])).values()
    ref = model(x[:8]).numpy()
    got = got.numpy()
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() >= 0.999


def test_quantize_image_folder_and_inspect(fp32_dir, tmp_path):
    path, _ = fp32_dir
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        img = rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)
        tf.io.write_file(str(folder / f"im{i}.png"), tf.io.encode_png(img))
    out = str(tmp_path / "int8")
    proc = _tfq8("quantize", "--model", path, "--output", out, "--calibration", str(folder),
                 "--pixel_scale", str(1 / 255.0))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _tfq8("inspect", path, "--data", str(folder), "--pixel_scale", str(1 / 255.0))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [l for l in proc.stdout.splitlines() if " yes " in l]
    assert len(rows) >= 4, proc.stdout
    sqnr = [float(l.split()[0]) for l in rows]
    assert sqnr == sorted(sqnr)          # worst first
    assert all(20 < s < 200 for s in sqnr), sqnr


def test_optimize_and_errors(fp32_dir, tmp_path):
    path, _ = fp32_dir
    proc = _tfq8("optimize", "--model", path, "--output", str(tmp_path / "opt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fold_batchnorm" in proc.stdout
    proc = _tfq8("quantize", "--model", path, "--output", str(tmp_path / "x"))
    assert proc.returncode != 0 and "--calibration" in proc.stderr
    proc = _tfq8("quantize", "--model", path, "--output", str(tmp_path / "x"),
                 "--calibration", str(tmp_path / "missing.npy"))
    assert proc.returncode != 0 and "missing.npy" in proc.stderr
    proc = _tfq8("frobnicate")
    assert proc.returncode != 0 and "usage" in proc.stderr


def test_user_errors_are_one_line_without_traceback(fp32_dir, tmp_path):
    path, _ = fp32_dir
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        tf.io.write_file(str(imgs / f"{k}.png"),
                         tf.io.encode_png((rng.random((20, 24, 3)) * 255).astype(np.uint8)))
    (imgs / "broken.png").write_bytes(b"not a png")
    np.save(tmp_path / "wrong.npy", rng.random((4, 9, 9, 3)).astype(np.float32))
    out = str(tmp_path / "q")
    cases = [(["--calibration", str(tmp_path / "wrong.npy")], "'image' has shape (4, 9, 9, 3)"),
             (["--calibration", str(imgs), "--mean=1,2"], "mean has 2 values"),
             (["--calibration", str(imgs), "--std=0"], "contains 0"),
             (["--calibration", str(imgs), "--std=x"], "--std must be comma-separated numbers")]
    for extra, message in cases:
        proc = _tfq8("quantize", "--model", path, "--output", out, *extra)
        assert proc.returncode == 2, (extra, proc.stderr[-2000:])
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # an undecodable file among images is skipped with a warning that names it
    proc = _tfq8("quantize", "--model", path, "--output", out, "--calibration", str(imgs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 1 of 4" in proc.stderr and "broken.png" in proc.stderr
