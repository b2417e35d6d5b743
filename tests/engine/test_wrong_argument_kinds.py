"""Processes without official test cases: a wrong kind of value in an argument is no 500.

tests/spec/test_wrong_arguments.py varies the official test cases; the processes that have none
(our own, and a few official ones) are called here with a small lazy cube for every argument
annotated as a raster cube and, one argument at a time, a value of some other kind. Any result
or 4xx openEO error is fine; a 500 `Internal` means process code let a TypeError or the like
escape for bad input.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry, build_registry
from terracube.errors import OpenEOError

SHARED = Path(os.environ.get("TERRACUBE_SHARED") or Path(__file__).resolve().parents[3] / "shared")
CASES_DIR = SHARED / "openeo-processes" / "tests"

# These reach data, files or the workspace through Services; their argument checks are tested
# with those services in their own test modules.
NEEDS_SERVICES = {"load_collection", "load_stac", "load_url", "load_uploaded_files",
                  "save_result", "export_workspace", "save_ml_model", "load_ml_model",
                  "run_udf", "inspect"}


def _cube() -> RasterCube:
    values = np.random.default_rng(0).random((2, 2, 4, 5)).astype("float32")
    data = xr.DataArray(values, dims=["t", "bands", "y", "x"], coords={
        "t": np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]"),
        "bands": ["B04", "B08"], "y": 50.0 - np.arange(4) * 0.01,
        "x": 5.0 + np.arange(5) * 0.01}).chunk(2)
    return RasterCube(data, (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
                             Dimension("y", SPATIAL, "y", 4326),
                             Dimension("x", SPATIAL, "x", 4326)))


CUBE = {"from_parameter": "cube"}
WRONG_VALUES: list[Any] = [
    None, True, 1, -1, 2.5, "x", "2020-01-01", [], [1, "a"], [[1, 2]], {}, {"a": 1}, CUBE,
    {"process_graph": {"n": {"process_id": "add", "arguments": {"x": 1, "y": 1},
                             "result": True}}}]


def _without_cases(registry: ProcessRegistry) -> list[str]:
    covered = {path.stem for path in CASES_DIR.glob("*.json5")}
    return [pid for pid in registry.ids() if pid not in covered and pid not in NEEDS_SERVICES]


@pytest.mark.parametrize("process_id", _without_cases(build_registry()))
def test_wrong_argument_kinds_are_user_errors(process_id: str, registry: ProcessRegistry,
                                              caplog) -> None:
    impl = registry.get(process_id)
    base = {name: CUBE for name, keyword in impl.params.items()
            if "RasterCube" in impl.kinds.get(keyword, ())}
    cube = _cube()
    internal = []
    for name in impl.params:
        for wrong in WRONG_VALUES:
            arguments = {**base, name: wrong}
            graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
            try:
                with caplog.at_level(logging.CRITICAL, logger="terracube.engine.evaluate"):
                    result = Evaluator(Services(registry=registry)).run(graph, {"cube": cube})
                if isinstance(result, RasterCube):
                    result.data.compute()
            except OpenEOError as exc:
                if exc.status >= 500:
                    cause = exc.__cause__
                    internal.append(f"{name}={wrong!r}: {type(cause).__name__}: {cause}")
    assert not internal, f"{process_id}: internal errors for user input:\n" + "\n".join(internal)
