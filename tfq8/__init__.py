"""tfq8: INT8 post-training quantization for TensorFlow CNNs.

    import tfq8
    int8_model = tfq8.quantize(keras_model, calibration_images)
    int8_model.save("resnet50_int8")      # a SavedModel; load it anywhere after `import tfq8`

Importing tfq8 loads libtfq8_ops.so, which registers the Tfq8* ops with TensorFlow.
"""
__version__ = "0.1.0"

from tfq8.ops import OpLibraryError, load_op_library  # noqa: E402

load_op_library()


def __getattr__(name):
    # The pipeline modules import Keras and friends; load them on first use only.
    if name in ("quantize", "optimize", "QuantConfig", "QuantizedModel", "OptimizedModel"):
        from tfq8 import api
        return getattr(api, name)
    raise AttributeError(f"module 'tfq8' has no attribute {name!r}")


__all__ = ["quantize", "optimize", "QuantConfig", "load_op_library", "OpLibraryError",
           "__version__"]
