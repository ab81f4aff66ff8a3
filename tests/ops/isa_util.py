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


@contextlib.contextmanager
def forced_isa(isa):
    old = os.environ.get("TFQ8_ISA")
    os.environ["TFQ8_ISA"] = isa
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TFQ8_ISA", None)
        else:
            os.environ["TFQ8_ISA"] = old


def _available(isa):
    with forced_isa(isa):
        try:
            tfq8.ops.tfq8_requantize(tf.zeros([1], tf.uint8), input_scale=1.0, output_scale=1.0)
            return True
        except tf.errors.InvalidArgumentError:
            return False


AVAILABLE_ISAS = tuple(isa for isa in ALL_ISAS if _available(isa))


def run_all_isas(fn):
    """{isa: numpy result of fn()} for every available path."""
    out = {}
    for isa in AVAILABLE_ISAS:
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
