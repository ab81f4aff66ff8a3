"""Loads libtfq8_ops.so and exposes the Tfq8* ops as Python functions.

`import tfq8` calls `load_op_library()`; after that the ops are registered with TensorFlow, so
SavedModels that contain them load with `tf.saved_model.load` and the TF1 loader.
"""
import os
import threading

import tensorflow as tf

_LIB_NAME = "libtfq8_ops.so"
_lock = threading.Lock()
_module = None


class OpLibraryError(ImportError):
    """The op library is missing, or was built for another TensorFlow."""


def library_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def _build_info():
    """{'tensorflow': version, 'cuda': 'yes'|'no'} compiled into the library (tfq8_build_info)."""
    import ctypes

    try:
        lib = ctypes.CDLL(library_path())
        fn = lib.tfq8_build_info
    except (OSError, AttributeError):
        return {}
    fn.restype = ctypes.c_char_p
    info = {}
    for line in fn().decode().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            info[k] = v
    return info


_REBUILD = ("Rebuild it against the installed TensorFlow: from the tfq8 source tree run "
            "`pip install --no-build-isolation .` (or `-e .`).")


def load_op_library():
    """Loads the op library once per process and returns the generated op module."""
    global _module
    with _lock:
        if _module is not None:
            return _module
        path = library_path()
        if not os.path.exists(path):
            raise OpLibraryError(f"tfq8's op library {path} does not exist. {_REBUILD}")
        try:
            built_for = _build_info().get("tensorflow")
        except OSError as e:
            raise OpLibraryError(f"could not load {path}: {e}. {_REBUILD}") from e
        if built_for and built_for != tf.__version__:
            raise OpLibraryError(
                f"tfq8's op library was built for TensorFlow {built_for}, but TensorFlow "
                f"{tf.__version__} is installed. {_REBUILD}")
        try:
            _module = tf.load_op_library(path)
        except (tf.errors.NotFoundError, OSError) as e:
            raise OpLibraryError(f"could not load {path}: {e}. {_REBUILD}") from e
        return _module


def built_with_cuda():
    return _build_info().get("cuda") == "yes"


def __getattr__(name):
    # tfq8.ops.tfq8_conv2d(...) etc. resolve to the generated wrappers.
    module = load_op_library()
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"tfq8.ops has no op wrapper {name!r}") from None
