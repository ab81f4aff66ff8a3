"""A folder of images → a float32 batch shaped for a model's input (CLI calibration data)."""
from __future__ import annotations

import logging
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
    for what, values in (("mean", mean), ("std", std)):
        if values and len(values) not in (1, channels):
            raise ValueError(f"{what} has {len(values)} values, but the model's input has "
                             f"{channels} channels: give 1 or {channels} (--{what}=a,b,c)")
    if std and any(v == 0 for v in std):
        raise ValueError(f"std {list(std)} contains 0 (the images would be divided by zero)")
    out, unreadable = [], []
    for f in files:
        try:
            img = tf.io.decode_image(tf.io.read_file(f), channels=channels,
                                     expand_animations=False)
        except tf.errors.InvalidArgumentError:
            unreadable.append(f)  # one broken file in a large folder should not stop the run
            continue
        if central_crop < 1.0:
            img = tf.image.central_crop(img, central_crop)
        img = tf.image.resize(tf.cast(img, tf.float32), (shape[1], shape[2]))
        out.append(img.numpy())
    if unreadable:
        logging.getLogger("tfq8").warning("skipped %d of %d files that are not decodable images (%s)",
                                          len(unreadable), len(files),
                                          ", ".join(map(repr, unreadable[:5])))
    if not out:
        raise ValueError(f"none of the {len(files)} image files under {path!r} could be decoded "
                         f"(e.g. {files[0]!r}); JPEG, PNG, GIF, BMP and WebP are supported")
    x = np.stack(out).astype(np.float32)
    if bgr:
        x = x[..., ::-1]
    x = x * np.float32(pixel_scale) + np.float32(pixel_offset)
    if mean:
        x = x - np.asarray(mean, np.float32)
    if std:
        x = x / np.asarray(std, np.float32)
    return np.ascontiguousarray(x)
