"""run_udf (Python UDFs after the openeo.udf conventions) and inspect, on small dask cubes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube, is_lazy
from terracube.engine.evaluate import Evaluator, Services

T = np.array(["2020-06-01", "2020-06-03", "2020-06-06"], dtype="datetime64[ns]")
BANDS_ = ["B04", "B08"]
Y = np.array([50.0, 40.0, 30.0, 20.0])
X = np.array([1.0, 2.0, 3.0, 4.0, 5.0])

SCALE_UDF = """
from openeo.udf import XarrayDataCube

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    return XarrayDataCube(array * context.get("factor", 1) + 1)
"""

DATAARRAY_UDF = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube * 2
"""

REDUCE_UDF = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube.max(dim="t")
"""

TIMESERIES_UDF = """
import pandas as pd

def apply_timeseries(series: pd.Series, context: dict) -> pd.Series:
    return series - series.mean()
"""


def values() -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 100, size=(len(T), len(BANDS_), len(Y), len(X)))


def make_cube() -> RasterCube:
    data = xr.DataArray(values(), dims=["t", "bands", "y", "x"],
                        coords={"t": T, "bands": BANDS_, "y": Y, "x": X}).chunk(
        {"t": 1, "bands": 1, "y": 2, "x": 3})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 4326), Dimension("x", SPATIAL, "x", 4326))
    return RasterCube(data, dims)


def run(registry, graph: dict, services_log=None, **params):
    services = Services(registry=registry, log=services_log)
    return Evaluator(services).run(graph, params)


def udf_node(udf: str, data=None, runtime: str = "Python", **extra) -> dict:
    return {"process_id": "run_udf", "arguments": {
        "data": data if data is not None else {"from_parameter": "cube"},
        "udf": udf, "runtime": runtime, **extra}, "result": True}


def test_udf_scales_a_cube_lazily(registry) -> None:
    graph = {"u": udf_node(SCALE_UDF, context={"factor": 3})}
    out = run(registry, graph, cube=make_cube())
    assert isinstance(out, RasterCube)
    assert is_lazy(out)
    assert out.data.dims == ("t", "bands", "y", "x")
    # one block per spatial chunk, every other dimension whole
    assert out.data.chunks[0] == (3,) and out.data.chunks[1] == (2,)
    np.testing.assert_allclose(out.data.values, values() * 3 + 1)
    np.testing.assert_array_equal(out.data.coords["t"].values, T)


def test_udf_with_dataarray_annotations_and_lowercase_runtime(registry) -> None:
    graph = {"u": udf_node(DATAARRAY_UDF, runtime="python", version="3")}
    out = run(registry, graph, cube=make_cube())
    np.testing.assert_allclose(out.data.values, values() * 2)


def test_udf_inside_apply(registry) -> None:
    graph = {"a": {"process_id": "apply", "arguments": {
        "data": {"from_parameter": "cube"},
        "process": {"process_graph": {"u": udf_node(DATAARRAY_UDF, data={"from_parameter": "x"})}},
    }, "result": True}}
    out = run(registry, graph, cube=make_cube())
    assert is_lazy(out)
    np.testing.assert_allclose(out.data.values, values() * 2)


def test_udf_as_reducer_gets_the_whole_array(registry) -> None:
    graph = {"r": {"process_id": "reduce_dimension", "arguments": {
        "data": {"from_parameter": "cube"}, "dimension": "t",
        "reducer": {"process_graph": {"u": udf_node(REDUCE_UDF, data={"from_parameter": "data"})}},
    }, "result": True}}
    out = run(registry, graph, cube=make_cube())
    assert out.data.dims == ("bands", "y", "x")
    np.testing.assert_allclose(out.data.values, values().max(axis=0))


def test_apply_timeseries(registry) -> None:
    graph = {"u": udf_node(TIMESERIES_UDF)}
    out = run(registry, graph, cube=make_cube())
    v = values()
    np.testing.assert_allclose(out.data.values, v - v.mean(axis=0, keepdims=True))


def test_syntax_error_names_the_node(registry) -> None:
    graph = {"myudf": udf_node("def apply_datacube(cube, context):\n    return cube +\n")}
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        run(registry, graph, cube=make_cube())
    assert info.value.node_id == "myudf"
    assert "node 'myudf'" in info.value.message
    assert "not valid Python" in str(info.value)


def test_unknown_runtime(registry) -> None:
    graph = {"u": udf_node(SCALE_UDF, runtime="R")}
    with pytest.raises(errors.OpenEOError) as info:
        run(registry, graph, cube=make_cube())
    assert info.value.code == "InvalidRuntime"


def test_unknown_version(registry) -> None:
    graph = {"u": udf_node(SCALE_UDF, version="2.7")}
    with pytest.raises(errors.OpenEOError) as info:
        run(registry, graph, cube=make_cube())
    assert info.value.code == "InvalidVersion"


@pytest.mark.parametrize("udf", ["https://example.com/udf.py", "udfs/my_udf.py"])
def test_urls_and_paths_are_refused(registry, udf: str) -> None:
    with pytest.raises(errors.ProcessParameterInvalid, match="URL or a file path"):
        run(registry, {"u": udf_node(udf)}, cube=make_cube())


def test_code_without_entry_point(registry) -> None:
    with pytest.raises(errors.ProcessParameterInvalid, match="no entry point"):
        run(registry, {"u": udf_node("x = 1\ny = 2\n")}, cube=make_cube())


def test_udf_failing_at_compute_time(registry) -> None:
    code = "import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context: dict)" \
           " -> xarray.DataArray:\n    raise RuntimeError('boom')\n"
    out = run(registry, {"u": udf_node(code)}, cube=make_cube())
    with pytest.raises(errors.ProcessParameterInvalid, match="boom"):
        out.data.compute()


def test_udf_on_a_list(registry) -> None:
    out = run(registry, {"u": udf_node(DATAARRAY_UDF, data=[1, 2, None])})
    assert out[:2] == [2.0, 4.0] and np.isnan(out[2])


# --- inspect ---------------------------------------------------------------------------------
def test_inspect_returns_data_and_logs_a_summary(registry) -> None:
    records = []
    cube = make_cube()
    graph = {"i": {"process_id": "inspect", "arguments": {
        "data": {"from_parameter": "cube"}, "message": "before", "code": "dbg",
        "level": "warning"}, "result": True}}
    out = run(registry, graph, services_log=lambda *a, **kw: records.append((*a, kw)),
              cube=cube)
    assert out is cube
    assert is_lazy(out)
    (level, message, node, extra), = records
    assert (level, node) == ("warning", "i")
    assert "[dbg] before" in message and "t (temporal, 3)" in message
    # the job log also gets the code and, for a lazy cube, its summary as data (issue 11, 13)
    assert extra["code"] == "dbg" and "t (temporal, 3)" in extra["data"]


def test_inspect_without_job_log_uses_the_python_logger(registry, caplog) -> None:
    graph = {"i": {"process_id": "inspect", "arguments": {"data": [1, 2, 3]}, "result": True}}
    with caplog.at_level(logging.INFO, logger="terracube.engine.processes.udf"):
        assert run(registry, graph) == [1, 2, 3]
    assert "[User]" in caplog.text and "[1, 2, 3]" in caplog.text


def test_inspect_rejects_unknown_level(registry) -> None:
    graph = {"i": {"process_id": "inspect", "arguments": {"data": 1, "level": "loud"},
                   "result": True}}
    with pytest.raises(errors.ProcessParameterInvalid):
        run(registry, graph)


def test_udf_runtimes_describe_python() -> None:
    from terracube.engine.processes.udf import udf_runtimes

    runtimes = udf_runtimes()
    python = runtimes["Python"]
    assert python["type"] == "language"
    assert python["default"] in python["versions"]
    libraries = python["versions"][python["default"]]["libraries"]
    assert {"numpy", "xarray", "openeo"} <= set(libraries)
    assert all(isinstance(lib["version"], str) for lib in libraries.values())


def test_generic_udf_data_function(registry) -> None:
    code = """
from openeo.udf import UdfData, XarrayDataCube

def transform(data: UdfData):
    cube = data.get_datacube_list()[0].get_array()
    data.set_datacube_list([XarrayDataCube(cube - 1)])
"""
    out = run(registry, {"u": udf_node(code)}, cube=make_cube())
    np.testing.assert_allclose(out.data.values, values() - 1)


DECLARING = """# /// script
# dependencies = [
#     "numpy>=1.20",
#     "xarray",
# ]
# ///
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube + 1
"""


def test_declared_dependencies_the_runtime_has(registry) -> None:
    out = run(registry, {"u": udf_node(DECLARING)}, cube=make_cube())
    np.testing.assert_allclose(out.data.values, values() + 1)


@pytest.mark.parametrize("requirement, says", [
    ("surely-no-such-package-xyz", "surely-no-such-package-xyz (not installed)"),
    ("numpy<1.0", "numpy<1.0 (the runtime has numpy "),
    ("not a requirement!", "not a valid requirement")])
def test_declared_dependencies_the_runtime_lacks_fail_before_running(
        registry, requirement: str, says: str) -> None:
    code = DECLARING.replace('"xarray"', f'"{requirement}"')
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        run(registry, {"u": udf_node(code)}, cube=make_cube())
    assert says in info.value.message and info.value.node_id == "u"
