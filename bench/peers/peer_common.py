"""Shared pieces of the bench/models.py workers: threads, models, data, timing.

Every worker process calls `setup_threads()` before building anything, builds the same
seeded random-weight model (`build_keras3` / `build_tfkeras`), times a callable with `time_cell`
and returns result rows made by `row()`.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THREADS = 2
IMAGE = {"resnet50": 224, "mobilenetv2": 224, "inceptionv3": 299}
KERAS_NAMES = {"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2", "inceptionv3": "InceptionV3"}


def thread_env(threads=THREADS):
    """Environment for a worker process: 2 threads everywhere, quiet TF logs."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
                "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": ""})
    return env


def setup_threads(threads=THREADS):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def input_shape(model_name, batch):
    s = IMAGE[model_name]
    return (batch, s, s, 3)


def images(model_name, n, seed):
    """n random images in [-1, 1] (float32, NHWC). Random weights make real data pointless."""
    return np.random.RandomState(seed).uniform(-1.0, 1.0, input_shape(model_name, n)).astype(
        np.float32)


def calibration_data(model_name, n):
    return images(model_name, n, seed=1234)


def bench_input(model_name, batch):
    return images(model_name, batch, seed=7)


def build_keras3(model_name):
    """The Keras 3 application with seeded random weights and logits out (no softmax)."""
    import keras
    keras.utils.set_random_seed(0)
    ctor = getattr(keras.applications, KERAS_NAMES[model_name])
    model = ctor(weights=None, classifier_activation=None)
    realistic_bn(model, images(model_name, 8, seed=99))
    return model


def realistic_bn(model, x):
    """Sets every BatchNormalization's moving mean/variance to the batch statistics of its input
    on `x` (one training-mode forward pass with momentum 0), so that activations keep a unit-ish
    scale through the network. Keras' default random init (moving var 1) makes them vanish
    (MobileNetV2 logits ~1e-11), which would make the INT8 outputs meaningless to compare."""
    import keras
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    model(x, training=True)
    for l, m in zip(bns, saved):
        l.momentum = m


def build_tfkeras(model_name, weights_from=None):
    """The same architecture in tf-keras (Keras 2), weights copied from the Keras 3 model when
    the layouts match (else its own seeded random weights). Returns (model, copied: bool)."""
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    ctor = getattr(tf_keras.applications, KERAS_NAMES[model_name])
    m = ctor(weights=None, classifier_activation=None)
    copied = False
    if weights_from is not None:
        src = weights_from.get_weights()
        dst = m.get_weights()
        if len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst)):
            m.set_weights(src)
            copied = True
    return m, copied


def cosine(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    d = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / d) if d > 0 else float("nan")


def time_cell(fn, batch, warmup, reps, min_seconds=0.0):
    """Calls fn() `warmup` times, then at least `reps` times (and at least min_seconds).
    Returns a dict with the median latency (ms) and spread."""
    for _ in range(warmup):
        fn()
    times = []
    cpu0, own0 = _cpu_counters(), os.times()
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    cpu1, own1 = _cpu_counters(), os.times()
    times_ms = sorted(t * 1e3 for t in times)
    med = statistics.median(times_ms)
    r = {"median_ms": med, "min_ms": times_ms[0],
         "p10_ms": times_ms[len(times_ms) // 10], "p90_ms": times_ms[(9 * len(times_ms)) // 10],
         "reps": len(times_ms), "warmup": warmup, "img_per_s": batch * 1e3 / med}
    if cpu0 and cpu1:
        # Cores' worth of CPU that other processes used during the timed calls (0 = quiet
        # machine; 1 = one of the 2 cores busy elsewhere), and the hypervisor's steal.
        hz = os.sysconf("SC_CLK_TCK")
        busy = (cpu1[0] - cpu0[0]) / hz
        own = (own1.user + own1.system) - (own0.user + own0.system)
        r["other_cpu_cores"] = max(busy - own, 0.0) / wall
        r["steal_cores"] = (cpu1[1] - cpu0[1]) / hz / wall
    return r


def _cpu_counters():
    """(busy jiffies, steal jiffies) of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return sum(v[:3]) + sum(v[5:8]), v[7]
    except (OSError, ValueError, IndexError):
        return None


def row(engine, model_name, batch, **kw):
    r = {"engine": engine, "model": model_name, "batch": batch, "status": "ok"}
    r.update(kw)
    try:
        r["loadavg"] = os.getloadavg()[0]
    except OSError:
        pass
    return r


def na(engine, model_name, batch, reason):
    return {"engine": engine, "model": model_name, "batch": batch, "status": "n/a",
            "reason": reason}


def short_error(exc):
    msg = f"{type(exc).__name__}: {exc}".strip().splitlines()
    text = " ".join(line.strip() for line in msg if line.strip())
    return text[:300]


def log(*args):
    print("[worker]", *args, file=sys.stderr, flush=True)
