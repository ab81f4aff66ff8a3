"""The calibration driver: run the FP32 graph on batches, feed observers, build the table.

One pass, bounded memory: each batch is evaluated once, every observed tensor goes to its
observer and is dropped. The batches are consumed once, so a generator or a one-shot
``tf.data`` iterator works; with ``num_samples`` the driver stops pulling batches as soon as
enough samples (rows along axis 0 of the batch) were seen, which makes infinite (``repeat()``)
datasets usable, and it trims the last batch so exactly ``num_samples`` rows are used.

Progress goes to stderr as one rewritten line, only when ``verbose`` is true and stderr is a
terminal; otherwise the driver is silent.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from tfq8.calibration.histogram import DEFAULT_NUM_BINS
from tfq8.calibration.observers import OBSERVERS, SCHEMES, Observer, make_observer
from tfq8.calibration.table import CalibrationTable, TableEntry

__all__ = ["Calibrator", "calibrate", "batch_size_of", "take_rows"]

_log = logging.getLogger("tfq8.calibration")
# A calibration sample whose max |x| exceeds this multiple of the median sample's is reported as
# a likely corrupt sample (real data varies far less from sample to sample).
OUTLIER_FACTOR = 100


def _leaves(batch):
    if isinstance(batch, Mapping):
        for v in batch.values():
            yield from _leaves(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _leaves(v)
    else:
        yield batch


def batch_size_of(batch: Any) -> int:
    """Rows along axis 0 of the first array in a batch (an array, dict, or tuple/list)."""
    for leaf in _leaves(batch):
        shape = getattr(leaf, "shape", None)
        if shape is None:
            shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError("cannot count calibration samples: the batch holds a scalar; "
                             "batches need a leading batch axis")
        return int(shape[0])
    raise ValueError("cannot count calibration samples: the batch holds no arrays")


def take_rows(batch: Any, n: int) -> Any:
    """The first ``n`` rows (axis 0) of every array in a batch, keeping its structure."""
    if isinstance(batch, Mapping):
        return {k: take_rows(v, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(take_rows(v, n) for v in batch)
    return batch[:n]


class _Progress:
    def __init__(self, enabled: bool, stream, method: str, limit: int | None):
        self.enabled = enabled
        self.stream = stream
        self.method = method
        self.limit = limit
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, batches: int, samples: int, tensors: int, force: bool = False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        total = f"/{self.limit}" if self.limit is not None else ""
        line = (f"\rtfq8 calibrating ({self.method}): {batches} batches, {samples}{total} samples, "
                f"{tensors} tensors, {now - self.start:.1f}s")
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self, note: str = ""):
        if self.enabled and self.shown:
            self.stream.write(f"{note}\n")
            self.stream.flush()


class Calibrator:
    """Runs ``run_batch`` over calibration batches and builds a :class:`CalibrationTable`.

    Args:
      run_batch: ``batch -> {tensor_name: array}``: the FP32 graph evaluated with the tensors
        to observe as outputs. ``batch`` is passed through as the iterable yields it (e.g. the
        dicts of :func:`normalize_calibration_data`), trimmed when ``num_samples`` cuts it.
      method: ``"minmax"``, ``"percentile"``, ``"entropy"`` or ``"mse"``.
      num_samples: stop after this many samples (rows along axis 0 of the batch); None = all.
      percentile: for ``method="percentile"``.
      num_bins: histogram bins of the histogram methods.
      scheme: "symmetric" (signed tensors: zero point 128) or "asymmetric" (one threshold per
        side, zero point 1 … 254); see :meth:`Observer.qparams`.
      signed: optional ``{tensor_name: bool}`` forcing the scheme of some tensors (e.g. from
        graph analysis); other tensors are signed when a negative value was observed.
      asymmetric: tensors that get the asymmetric scheme whatever ``scheme`` says (the quantize
        pass's lookup-table inputs and outputs: a table costs nothing per zero point).
      full_range: tensors whose threshold is their observed max whatever the method (what a
        max reduction reads: its output is the extremes a percentile or KL threshold clips).
      verbose: show a progress line on stderr (only when it is a terminal) and log notes.
      stream: where the progress line goes (default ``sys.stderr``).
      metadata: extra entries for the table's metadata.
    """

    def __init__(self, run_batch: Callable[[Any], Mapping[str, np.ndarray]],
                 method: str = "entropy", *, num_samples: int | None = None,
                 percentile: float = 99.99, num_bins: int = DEFAULT_NUM_BINS,
                 scheme: str = "symmetric", signed: Mapping[str, bool] | None = None,
                 asymmetric: Iterable[str] = (), full_range: Iterable[str] = (),
                 verbose: bool = True,
                 stream=None, metadata: Mapping[str, Any] | None = None):
        if not callable(run_batch):
            raise TypeError("run_batch must be callable: batch -> {tensor_name: array}")
        if method not in OBSERVERS:
            raise ValueError(f"unknown calibration method {method!r}; choose one of "
                             f"{sorted(OBSERVERS)}")
        if num_samples is not None:
            if isinstance(num_samples, bool) or int(num_samples) != num_samples \
                    or num_samples < 1:
                raise ValueError(f"num_samples must be a positive integer or None, "
                                 f"got {num_samples!r}")
            num_samples = int(num_samples)
        make_observer(method, "check", num_bins=num_bins, percentile=percentile)  # validates
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.run_batch = run_batch
        self.method = method
        self.num_samples = num_samples
        self.percentile = float(percentile)
        self.num_bins = int(num_bins)
        self.signed = dict(signed or {})
        self.asymmetric = frozenset(asymmetric)
        self.full_range = frozenset(full_range)
        self.verbose = bool(verbose)
        self.stream = stream
        self.metadata = dict(metadata or {})
        self.observers: dict[str, Observer] = {}
        self.batches_seen = 0
        self.samples_seen = 0
        self._sample_peaks: dict[str, list[np.ndarray]] = {}

    def _observer(self, name: str) -> Observer:
        obs = self.observers.get(name)
        if obs is None:
            obs = make_observer(self.method, name, num_bins=self.num_bins,
                                percentile=self.percentile)
            self.observers[name] = obs
        return obs

    def observe_batch(self, batch: Any) -> None:
        """Runs one batch through ``run_batch`` and records every returned tensor."""
        outputs = self.run_batch(batch)
        if not isinstance(outputs, Mapping):
            raise TypeError(f"run_batch must return a dict {{tensor_name: array}}, got "
                            f"{type(outputs).__name__}")
        for name, value in outputs.items():
            self._observer(name).observe(np.asarray(value))

    def calibrate(self, batches: Iterable[Any]) -> CalibrationTable:
        """Consumes ``batches`` once and returns the table (see the module docstring).

        Calling it again continues from the statistics gathered so far (``num_samples``
        counts the total).
        """
        stream = self.stream if self.stream is not None else sys.stderr
        is_tty = getattr(stream, "isatty", None)
        progress = _Progress(self.verbose and bool(is_tty and is_tty()), stream, self.method,
                             self.num_samples)
        start = time.monotonic()
        try:
            for batch in batches:
                n = batch_size_of(batch)
                if self.num_samples is not None:
                    remaining = self.num_samples - self.samples_seen
                    if n > remaining:
                        batch, n = take_rows(batch, remaining), remaining
                if n == 0:
                    continue
                self._record_sample_peaks(batch)
                self.observe_batch(batch)
                self.batches_seen += 1
                self.samples_seen += n
                progress.update(self.batches_seen, self.samples_seen, len(self.observers))
                if self.num_samples is not None and self.samples_seen >= self.num_samples:
                    break
            progress.update(self.batches_seen, self.samples_seen, len(self.observers),
                            force=True)
        finally:
            progress.close()
        if self.batches_seen == 0:
            raise ValueError("calibration data is empty: no batch was seen")
        self._warn_outlier_samples()
        table = self.table()
        if self.verbose:
            _log.info("calibrated %d tensors (%s) on %d samples in %d batches, %.1fs",
                      len(table), self.method, self.samples_seen, self.batches_seen,
                      time.monotonic() - start)
        return table

    def _record_sample_peaks(self, batch: Any) -> None:
        """Keeps each float input's per-sample max |x| (one number per sample)."""
        if not isinstance(batch, Mapping):
            return
        for name, value in batch.items():
            arr = np.asarray(value)
            if arr.dtype.kind != "f" or arr.ndim == 0 or arr.size == 0:
                continue
            peaks = np.abs(arr.reshape(arr.shape[0], -1)).max(axis=1).astype(np.float64)
            self._sample_peaks.setdefault(name, []).append(peaks)

    def _warn_outlier_samples(self) -> None:
        """One corrupt sample (a 1e6 among images in 0..1) sets the range of every observer's
        histogram, so no method recovers from it: say which sample it was."""
        for name, parts in self._sample_peaks.items():
            peaks = np.concatenate(parts)
            median = float(np.median(peaks)) if peaks.size >= 8 else 0.0
            if not median > 0:
                continue
            bad = np.flatnonzero(peaks > OUTLIER_FACTOR * median)
            if bad.size:
                _log.warning(
                    "calibration input %r: %d sample(s) (e.g. #%s, max |x| %.4g) exceed %d× the "
                    "median sample's max |x| (%.4g); one such sample stretches every tensor's "
                    "range and coarsens the INT8 model. Check the calibration data.",
                    name, bad.size, ", #".join(map(str, bad[:5])), peaks[bad[0]],
                    OUTLIER_FACTOR, median)

    def table(self) -> CalibrationTable:
        """The table of what was observed so far."""
        unknown = sorted(set(self.signed) - set(self.observers))
        if unknown:
            raise ValueError(f"'signed' names tensors that run_batch never returned: {unknown}")
        metadata = {"method": self.method, "num_batches": self.batches_seen,
                    "num_samples": self.samples_seen, "scheme": self.scheme}
        if self.method != "minmax":
            metadata["num_bins"] = self.num_bins
        if self.method == "percentile":
            metadata["percentile"] = self.percentile
        metadata.update(self.metadata)
        table = CalibrationTable(metadata=metadata)
        for name in sorted(self.observers):
            obs = self.observers[name]
            if not obs.has_data:
                if self.verbose:
                    _log.warning("tensor %r: every batch of it was empty; left out of the "
                                 "table", name)
                continue
            scheme = "asymmetric" if name in self.asymmetric else self.scheme
            qp, notes = obs.qparams_with_notes(self.signed.get(name), scheme,
                                               full_range=name in self.full_range)
            if self.verbose:
                for note in notes:
                    _log.warning("tensor %r: %s", name, note)
            table.add(name, TableEntry(qparams=qp, min=obs.min, max=obs.max,
                                       num_samples=obs.num_samples,
                                       num_elements=obs.num_elements, notes=tuple(notes)))
        return table


def calibrate(run_batch: Callable[[Any], Mapping[str, np.ndarray]], batches: Iterable[Any],
              method: str = "entropy", **kwargs) -> CalibrationTable:
    """``Calibrator(run_batch, method, **kwargs).calibrate(batches)``."""
    return Calibrator(run_batch, method, **kwargs).calibrate(batches)
