"""Makes tfq8.calibration importable even when `import tfq8` cannot run.

tfq8/__init__.py loads the op library (libtfq8_ops.so) at import time. tfq8.calibration is pure
numpy, so when that import fails (library not built yet) these tests load the subpackage
standalone, under its real name, without the parent package's __init__; the header of the
pytest run says so. When `import tfq8` works, nothing is changed.
"""
import importlib.util
import os
import sys

_STANDALONE_REASON = None


def _load_standalone():
    pkg_dir = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "tfq8", "calibration")
    pkg_dir = os.path.abspath(pkg_dir)
    spec = importlib.util.spec_from_file_location(
        "tfq8.calibration", os.path.join(pkg_dir, "__init__.py"),
        submodule_search_locations=[pkg_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tfq8.calibration"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["tfq8.calibration"]
        raise


try:
    import tfq8.calibration  # noqa: F401
except ImportError as e:  # tfq8.ops.OpLibraryError is an ImportError
    if "tfq8.calibration" in sys.modules:
        raise
    _STANDALONE_REASON = f"{type(e).__name__}: {e}"
    _load_standalone()


def pytest_report_header(config):
    if _STANDALONE_REASON:
        return [f"tfq8.calibration loaded standalone (import tfq8 failed: "
                f"{_STANDALONE_REASON[:160]})"]
    return []
