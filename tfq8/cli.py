"""`tfq8` command line.

    tfq8 demo
    tfq8 optimize --model DIR --output DIR [--signature NAME]
    tfq8 quantize --model DIR --output DIR --calibration PATH [--method entropy|percentile|minmax|mse]
                  [--num_samples N] [--signature NAME] [--keep_fp32 NAME,...]
                  [--calibration_table JSON] [image preprocessing flags]
    tfq8 inspect DIR --data PATH [--calibration PATH] [...quantize flags]

--calibration / --data PATH: a .npy file (one input), a .npz file (arrays named after the
inputs, or one array), or a folder of images. Images are decoded, resized to the model's input
size (--resize bilinear, or --central_crop FRACTION first), converted to float32 and mapped with
`x * --pixel_scale + --pixel_offset` per channel (e.g. --pixel_scale=0.00784 --pixel_offset=-1 for
[-1, 1] MobileNet inputs, or --mean=123.7,116.3,103.5 --std=58.4,57.1,57.4 for torchvision
models; --channel_order=bgr for Caffe-style ResNets).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Input SavedModel directory.")
flags.DEFINE_string("output", None, "Output SavedModel directory.")
flags.DEFINE_string("signature", "serving_default", "Signature of the SavedModel to convert.")
flags.DEFINE_string("calibration", None, "Calibration data: .npy, .npz or a folder of images.")
flags.DEFINE_string("data", None, "Evaluation data for `inspect` (same formats).")
flags.DEFINE_enum("method", "percentile", ["entropy", "percentile", "minmax", "mse"],
                  "Activation range method.")
flags.DEFINE_float("percentile", 99.99, "Percentile for --method=percentile.")
flags.DEFINE_integer("num_samples", 512, "Calibration samples to use.")
flags.DEFINE_integer("batch_size", 16, "Batch size while calibrating.")
flags.DEFINE_list("keep_fp32", [], "Node names or op types to keep in FP32.")
flags.DEFINE_string("calibration_table", None,
                    "Reuse a calibration table (JSON, or a tfq8 SavedModel directory).")
flags.DEFINE_bool("per_channel", True, "Per-output-channel weight scales.")
flags.DEFINE_bool("u8_safe_pairs", False,
                  "Opt-in: keep same-sign conv/matmul weight pairs at |w0|+|w1| <= 128 (coarser "
                  "weight scales) for a faster exact kernel on AVX2 CPUs without VNNI; costs "
                  "accuracy (see QuantConfig.u8_safe_pairs).")
flags.DEFINE_float("u8_pair_max_noise", 1.25,
                   "With --u8_safe_pairs: the largest weight-noise factor (>= 1) a layer may "
                   "take to become u8-safe; inf for every eligible layer (more speed, less "
                   "accuracy; see QuantConfig.u8_pair_max_noise).")
flags.DEFINE_float("pixel_scale", 1.0, "Images: x * pixel_scale + pixel_offset (x in 0..255).")
flags.DEFINE_float("pixel_offset", 0.0, "Images: see --pixel_scale.")
flags.DEFINE_list("mean", [], "Images: per-channel mean subtracted after --pixel_scale/offset.")
flags.DEFINE_list("std", [], "Images: per-channel std divided after --mean.")
flags.DEFINE_enum("channel_order", "rgb", ["rgb", "bgr"], "Images: channel order.")
flags.DEFINE_float("central_crop", 1.0, "Images: central crop fraction before resizing.")
flags.DEFINE_integer("max_images", 1000, "Images: read at most this many files.")
flags.DEFINE_integer("top", 30, "inspect: rows to print (worst SQNR first).")

COMMANDS = ("demo", "optimize", "quantize", "inspect")


def _fail(msg):
    sys.stderr.write(f"tfq8: error: {msg}\n")
    sys.exit(2)


def _need(name):
    value = getattr(FLAGS, name)
    if not value:
        _fail(f"--{name} is required")
    return value


def load_data(path, input_specs):
    """.npy / .npz / image folder → dict {input name: array}."""
    import numpy as np

    from tfq8 import images

    if not os.path.exists(path):
        _fail(f"data path {path!r} does not exist")
    names = [s.name for s in input_specs]
    if os.path.isdir(path):
        if len(input_specs) != 1:
            _fail("an image folder can only feed a model with one input")
        arr = images.load_folder(
            path, input_specs[0].shape, max_images=FLAGS.max_images,
            pixel_scale=FLAGS.pixel_scale, pixel_offset=FLAGS.pixel_offset,
            mean=_floats("mean"), std=_floats("std"),
            bgr=FLAGS.channel_order == "bgr", central_crop=FLAGS.central_crop)
        return {names[0]: arr}
    if path.endswith(".npy"):
        if len(names) != 1:
            _fail(f"a .npy file feeds one input, but the model has inputs {names}; use .npz")
        return {names[0]: np.load(path)}
    if path.endswith(".npz"):
        z = np.load(path)
        if len(z.files) == 1 and len(names) == 1:
            return {names[0]: z[z.files[0]]}
        missing = [n for n in names if n not in z.files]
        if missing:
            _fail(f"{path} lacks arrays for inputs {missing} (it has {z.files})")
        return {n: z[n] for n in names}
    _fail(f"unsupported data file {path!r}: use .npy, .npz or a folder of images")


def _floats(name):
    try:
        return [float(v) for v in getattr(FLAGS, name)]
    except ValueError:
        _fail(f"--{name} must be comma-separated numbers, got {','.join(getattr(FLAGS, name))}")


def _config():
    import tfq8

    return tfq8.QuantConfig(method=FLAGS.method, percentile=FLAGS.percentile,
                            num_samples=FLAGS.num_samples, batch_size=FLAGS.batch_size,
                            keep_fp32=FLAGS.keep_fp32, per_channel=FLAGS.per_channel,
                            u8_safe_pairs=FLAGS.u8_safe_pairs,
                            u8_pair_max_noise=FLAGS.u8_pair_max_noise,
                            calibration_table=FLAGS.calibration_table)


def _quantize(model_dir, data_path):
    import tfq8
    from tfq8 import frontend

    frozen = frontend.load_model(model_dir, signature=FLAGS.signature)
    data = None
    if FLAGS.calibration_table is None:
        data = load_data(data_path or _need("calibration"), frozen.inputs)
    return tfq8.quantize(model_dir, data, _config(), signature=FLAGS.signature)


def cmd_optimize(args):
    import tfq8

    model = tfq8.optimize(_need("model"), signature=FLAGS.signature)
    model.save(_need("output"))
    print(model.summary())
    print(f"wrote {FLAGS.output}")


def cmd_quantize(args):
    model = _quantize(_need("model"), FLAGS.calibration)
    out = _need("output")
    model.save(out)
    print(model.summary())
    print(f"wrote {out}")


def cmd_inspect(args):
    from tfq8 import inspect as inspect_lib

    if len(args) != 1:
        _fail("usage: tfq8 inspect FP32_MODEL_DIR --data PATH [--calibration PATH]")
    model_dir = args[0]
    data_path = _need("data")
    model = _quantize(model_dir, FLAGS.calibration or data_path)
    data = load_data(data_path, model.inputs)
    rows = inspect_lib.layer_sqnr(model, data, batch_size=FLAGS.batch_size)
    print(inspect_lib.format_rows(rows, top=FLAGS.top))


def cmd_demo(args):
    from tfq8 import demo

    demo.main()


def main(argv):
    args = argv[1:]
    if not args or args[0] not in COMMANDS:
        _fail(f"usage: tfq8 {{{'|'.join(COMMANDS)}}} [flags]; see `tfq8 --helpfull`")
    command, rest = args[0], args[1:]
    run_command = {"demo": cmd_demo, "optimize": cmd_optimize, "quantize": cmd_quantize,
                   "inspect": cmd_inspect}[command]
    if os.environ.get("TFQ8_TRACEBACK"):
        return run_command(rest)
    try:
        run_command(rest)
    except (ValueError, TypeError, OSError) as e:
        # tfq8's own errors (ModelError, GraphError, QuantizeError, bad data) are ValueErrors
        # that already name the input, node or flag: print them, not a traceback.
        _fail(f"{e}\n(set TFQ8_TRACEBACK=1 to see where it was raised)")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
