"""Calibration: observe FP32 activations, choose INT8 scales, keep them in a JSON table.

    from tfq8.calibration import Calibrator, normalize_calibration_data
    batches = normalize_calibration_data(images, input_specs, batch_size=32)
    table = Calibrator(run_batch, method="entropy", num_samples=512).calibrate(batches)
    table.save("calibration.json")

Pure numpy (TensorFlow is only touched to read a ``tf.data.Dataset`` the caller already has).

Modules: ``qparams`` (QParams, the scale/zero-point math, weight scales), ``histogram``
(bounded |x| histogram, percentile / KL / MSE threshold searches), ``observers`` (one class per
method), ``table`` (CalibrationTable, JSON), ``calibrator`` (the one-pass driver), ``data``
(calibration data → batches), ``bias_correction`` (mean-error correction of conv biases),
``range_search`` (thresholds chosen by the error at the readers' outputs).
"""
from tfq8.calibration.bias_correction import BiasCorrector, CorrectionSite, correct_biases
from tfq8.calibration.calibrator import Calibrator, calibrate
from tfq8.calibration.data import normalize_calibration_data
from tfq8.calibration.histogram import DEFAULT_NUM_BINS, AbsHistogram
from tfq8.calibration.observers import (
    OBSERVERS,
    SCHEMES,
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
)
from tfq8.calibration.qparams import (
    QParams,
    qparams_from_amax,
    qparams_from_range,
    qparams_from_scale,
    quantize_weights,
    weight_scales,
)
from tfq8.calibration.table import FORMAT_VERSION, CalibrationTable, TableEntry

METHODS = tuple(OBSERVERS)

__all__ = [
    "AbsHistogram",
    "BiasCorrector",
    "CorrectionSite",
    "SCHEMES",
    "CalibrationTable",
    "Calibrator",
    "DEFAULT_NUM_BINS",
    "EntropyObserver",
    "FORMAT_VERSION",
    "HistogramObserver",
    "METHODS",
    "MSEObserver",
    "MinMaxObserver",
    "OBSERVERS",
    "Observer",
    "PercentileObserver",
    "QParams",
    "TableEntry",
    "calibrate",
    "correct_biases",
    "make_observer",
    "normalize_calibration_data",
    "qparams_from_amax",
    "qparams_from_range",
    "qparams_from_scale",
    "quantize_weights",
    "weight_scales",
]
