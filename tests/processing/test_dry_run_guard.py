"""The dry run's guard against computing (processing/explain.py) stops the dry run's own
thread only: dask callbacks are global to the process, and a map tile rendered while another
request's dry run (an estimate, the size check of /result) was under way failed with a 500
(found by the profiles checker, requirement 616)."""

from __future__ import annotations

import threading

import dask.array as da
import pytest

from terracube.processing.explain import _ComputeGuard, _NoCompute


def test_a_dry_run_stops_only_its_own_computations() -> None:
    other: dict[str, float] = {}

    def compute_elsewhere() -> None:
        other["sum"] = float(da.ones(10, chunks=5).sum().compute(scheduler="threads"))

    with _ComputeGuard():
        thread = threading.Thread(target=compute_elsewhere)
        thread.start()
        thread.join()
        with pytest.raises(_NoCompute):
            da.ones(10, chunks=5).sum().compute(scheduler="threads")
    assert other == {"sum": 10.0}
