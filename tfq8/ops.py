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
    """{'tensorflow': version, 'cuda': 'yes'|'no'} as compiled into the library.

    Read from the file's bytes (custom_ops/tf/build_info.cc), not by loading it: a library built
    for another TensorFlow may not even load.
    """
    import mmap

    try:
        with open(library_path(), "rb") as f, \
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            start = m.find(b"TFQ8_BUILD_INFO\n")
            if start < 0:
                return {}
            end = m.find(b"END\n", start)
            text = m[start:end].decode("ascii", "replace")
    except (OSError, ValueError):
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


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
        built_for = _build_info().get("tensorflow")
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
