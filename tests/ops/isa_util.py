"""Helpers shared by the op tests: run a callable under every CPU path this machine offers.

The library re-reads TFQ8_ISA on every call, so one process can compare ref, avx2, avx512vnni
and amx outputs bit for bit.
"""
import contextlib
import os

import numpy as np
import tensorflow as tf

import tfq8

ALL_ISAS = ("ref", "avx2", "avx512vnni", "amx")


# Variants of a path chosen by another switch: "avx2-direct" is avx2 with exact Winograd
# F(2×2, 3×3) off (3×3 stride-1 convs on the direct kernel); "avx2-s16" is avx2 with the
# vpmaddubsw kernel for u8-safe weight pairs off (such weights on the exact s16 kernel).
PATH_ENV = {"avx2-direct": {"TFQ8_ISA": "avx2", "TFQ8_WINOGRAD": "0"},
            "avx2-s16": {"TFQ8_ISA": "avx2", "TFQ8_AVX2_U8": "0"}}
_SWITCHES = ("TFQ8_ISA", "TFQ8_WINOGRAD", "TFQ8_AVX2_U8")


@contextlib.contextmanager
def forced_isa(isa):
    env = PATH_ENV.get(isa, {"TFQ8_ISA": isa})
    old = {k: os.environ.get(k) for k in _SWITCHES}
    for k in old:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _available(isa):
    with forced_isa(isa):
        try:
            tfq8.ops.tfq8_requantize(tf.zeros([1], tf.uint8), input_scale=1.0, output_scale=1.0)
            return True
        except tf.errors.InvalidArgumentError:
            return False


AVAILABLE_ISAS = tuple(isa for isa in ALL_ISAS if _available(isa))


# Conv tests also run the avx2 path's direct 3×3 kernel beside its Winograd one, and u8-safe
# weights on the s16 kernel beside the vpmaddubsw one.
CONV_PATHS = AVAILABLE_ISAS + (("avx2-direct", "avx2-s16") if "avx2" in AVAILABLE_ISAS else ())


def run_all_isas(fn, paths=AVAILABLE_ISAS):
    """{path: numpy result of fn()} for every available path (or the given ones)."""
    out = {}
    for isa in paths:
        with forced_isa(isa):
            out[isa] = np.asarray(fn())
    return out


def assert_all_equal(results, expected, what=""):
    for isa, got in results.items():
        assert got.shape == expected.shape, (isa, what, got.shape, expected.shape)
        if got.dtype == np.float32:
            same = np.array_equal(got.view(np.uint32), expected.astype(np.float32).view(np.uint32))
        else:
            same = np.array_equal(got, expected)
        if not same:
            diff = np.argwhere(got != expected)
            i = tuple(diff[0])
            raise AssertionError(
                f"{isa} differs from the numpy reference ({what}): {len(diff)} elements, first at "
                f"{i}: got {got[i]}, expected {expected[i]}")
