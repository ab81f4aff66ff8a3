"""Small helpers shared by the end-to-end tests: batched inference and agreement metrics."""
from __future__ import annotations

import time

import numpy as np


def as_array(out) -> np.ndarray:
    """A model's single output (tensor, 1-element list/tuple or dict) → numpy."""
    if isinstance(out, dict):
        if len(out) != 1:
            raise ValueError(f"expected one output, got {sorted(out)}")
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError(f"expected one output, got {len(out)}")
        out = out[0]
    return np.asarray(out)


def run_batched(fn, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Calls `fn` (a Keras model or a tfq8 model) on `x` in batches; returns the stacked output."""
    outs = [as_array(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0)


def keras_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return run_batched(lambda b: model(b, training=False), x, batch_size)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def top1_agreement(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.mean(ref.argmax(1) == test.argmax(1)))


def top5_agreement(ref: np.ndarray, test: np.ndarray) -> float:
    """Fraction of samples whose FP32 (ref) top-1 class is among the INT8 (test) top-5."""
    top5 = np.argsort(-test, axis=1)[:, :5]
    return float(np.mean((top5 == ref.argmax(1)[:, None]).any(1)))


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def short_summary(model, max_lines: int = 25) -> str:
    """The head of a tfq8 model's summary() for assertion messages ('' when it has none)."""
    try:
        lines = model.summary().splitlines()
    except Exception as e:  # a summary bug must not hide the real assertion
        return f"(summary() failed: {e!r})"
    more = f"\n... {len(lines) - max_lines} more lines" if len(lines) > max_lines else ""
    return "\n".join(lines[:max_lines]) + more
