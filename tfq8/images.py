"""A folder of images → a float32 batch shaped for a model's input (CLI calibration data)."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load_folder(path, input_shape, *, max_images=1000, pixel_scale=1.0, pixel_offset=0.0,
                mean=(), std=(), bgr=False, central_crop=1.0):
    """Decodes, crops, resizes (bilinear) and normalizes every image under `path`.

    input_shape: the model input's shape (batch, height, width, channels); height and width must
    be known. Pixels are 0..255 floats, then x * pixel_scale + pixel_offset, then (x - mean) / std
    per channel.
    """
    shape = list(input_shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"image folders need a model input of shape [batch, height, width, "
                         f"channels] with a known size, got {shape}")
    files = []
    for dirpath, _, names in sorted(os.walk(path)):
        files += [os.path.join(dirpath, n) for n in sorted(names)
                  if n.lower().endswith(EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({', '.join(EXTENSIONS)}) under {path!r}")
    files = files[:max_images]
    channels = shape[3] or 3
    out = []
    for f in files:
        try:
            img = tf.io.decode_image(tf.io.read_file(f), channels=channels,
                                     expand_animations=False)
        except tf.errors.InvalidArgumentError as e:
            raise ValueError(f"cannot decode image {f!r}: {e.message}") from None
        if central_crop < 1.0:
            img = tf.image.central_crop(img, central_crop)
        img = tf.image.resize(tf.cast(img, tf.float32), (shape[1], shape[2]))
        out.append(img.numpy())
    x = np.stack(out).astype(np.float32)
    if bgr:
        x = x[..., ::-1]
    x = x * np.float32(pixel_scale) + np.float32(pixel_offset)
    if mean:
        x = x - np.asarray(mean, np.float32)
    if std:
        x = x / np.asarray(std, np.float32)
    return np.ascontiguousarray(x)
