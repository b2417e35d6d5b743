"""The dry-run switch: while it is on, cube code builds only shapes, labels and dtypes.

A dry run (POST /explain, estimates, the size check before a synchronous request) evaluates a
process graph lazily and never computes. Most processes are cheap to build lazily, but some
build one dask task per block of their output (the lazy warp of resample_spatial): planning
a 1 cm grid over a whole collection would take hours and gigabytes. With the switch on such
code returns a placeholder array of the right shape and dtype in a single chunk instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import dask.array as da
import numpy as np

_DRY_RUN: ContextVar[bool] = ContextVar("terracube_dry_run", default=False)


class DryRunComputeRefused(RuntimeError):
    """Raised (by processing/explain.py's guard) when code tries to compute during a dry run.
    It ends the dry run: the evaluator lets it through unchanged, never as a logged 500 of
    the process that happened to compute (e.g. fit_class_random_forest, run_udf)."""


def is_dry_run() -> bool:
    """Whether the current evaluation is a dry run (values are never computed)."""
    return _DRY_RUN.get()


@contextmanager
def dry_run() -> Iterator[None]:
    """Switch the dry run on for the code run inside (this thread or task only)."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


def placeholder(shape: tuple[int, ...], dtype: np.dtype) -> da.Array:
    """A lazy array of `shape` and `dtype` in one chunk (one task); never to be computed."""
    out: da.Array = da.empty(shape, dtype=dtype, chunks=shape)
    return out
