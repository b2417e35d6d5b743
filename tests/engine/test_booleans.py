"""Boolean cube values (decision 0003): comparisons on cube data, mask, and how results are saved.

Float cube data can hold no-data (NaN), so comparisons on it give float 1.0 / 0.0 with NaN where
an operand is no-data; data that cannot hold no-data gives bool arrays. `mask` treats 1.0 (and
any non-zero number) as true and NaN as not masking. Bool cubes are saved as uint8 0/1.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from test_cubes import EPSG, X, Y, callback, is_lazy, make_cube, p, run, values

from terracube.datacube.cube import SPATIAL, Dimension, RasterCube
from terracube.engine.evaluate import Services
from terracube.engine.registry import ProcessRegistry
from terracube.results.writers import write_result


@pytest.fixture(scope="module")
def services(registry: ProcessRegistry) -> Services:
    return Services(registry=registry)


def spatial(v: np.ndarray, nodata=None) -> RasterCube:
    data = xr.DataArray(v, dims=["y", "x"], coords={"y": Y, "x": X}).chunk({"y": 2})
    return RasterCube(data, (Dimension("y", SPATIAL, "y", EPSG),
                             Dimension("x", SPATIAL, "x", EPSG)), nodata=nodata)


def grid() -> np.ndarray:
    v = np.arange(15, dtype=float).reshape(3, 5)
    v[0, 0] = np.nan
    return v


def test_comparison_on_float_cube_data_keeps_nodata(services):
    out = run(services, "apply", data=spatial(grid()), process=callback("gt", x=p("x"), y=6))
    assert is_lazy(out)
    assert out.data.dtype.kind == "f"
    got = out.data.values
    assert np.isnan(got[0, 0])
    np.testing.assert_array_equal(got.ravel()[1:], (grid().ravel()[1:] > 6).astype(float))


def test_comparison_on_data_without_nodata_gives_booleans(services):
    ints = np.arange(15, dtype=np.int16).reshape(3, 5)
    out = run(services, "apply", data=spatial(ints), process=callback("gt", x=p("x"), y=6))
    assert out.data.dtype == bool
    np.testing.assert_array_equal(out.data.values, ints > 6)
    # Integer data with a no-data value is float inside processes (NaN = no-data).
    out = run(services, "apply", data=spatial(ints, nodata=0),
              process=callback("gt", x=p("x"), y=6))
    assert out.data.dtype.kind == "f" and np.isnan(out.data.values[0, 0])


def test_mask_with_a_comparison_result_masks_true_not_nodata(services):
    condition = run(services, "apply", data=spatial(grid()), process=callback("gt", x=p("x"),
                                                                               y=6))
    out = run(services, "mask", data=make_cube(), mask=condition)
    expected = values()
    expected[:, :, grid() > 6] = np.nan  # 1.0 masks; NaN (row 0, column 0) does not
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)
    assert not np.isnan(out.data.values[0, 0, 0, 0])


def test_reduce_dimension_with_any_gives_booleans(services):
    reducer = {"process_graph": {
        "gt": {"process_id": "array_apply", "arguments": {
            "data": p("data"), "process": callback("gt", x=p("x"), y=900)}},
        "any": {"process_id": "any", "arguments": {"data": {"from_node": "gt"}}, "result": True},
    }}
    out = run(services, "reduce_dimension", data=make_cube(), dimension="t", reducer=reducer)
    assert is_lazy(out)
    assert out.data.dtype == bool
    np.testing.assert_array_equal(out.data.values, np.nan_to_num(values()).max(axis=0) > 900)


def test_boolean_cube_is_saved_as_uint8_with_nodata_255(services, tmp_path):
    flags = np.arange(15).reshape(3, 5) % 2 == 0
    cube = spatial(flags, nodata=0)  # a no-data value left over from integer input
    path = write_result(cube, "GTiff", {}, tmp_path)[0].path
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8"
        assert src.nodata == 255
        np.testing.assert_array_equal(src.read(1), flags.astype(np.uint8))
    path = write_result(cube, "netCDF", {}, tmp_path / "nc")[0].path
    with xr.open_dataset(path) as ds:
        var = ds["var"]
        assert var.dtype == np.uint8
        assert var.attrs["flag_meanings"] == "false true"
        np.testing.assert_array_equal(var.values, flags.astype(np.uint8))


def test_float_logical_cube_is_saved_as_float_with_nan(services, tmp_path):
    out = run(services, "apply", data=spatial(grid()), process=callback("gt", x=p("x"), y=6))
    path = write_result(out, "GTiff", {}, tmp_path)[0].path
    with rasterio.open(path) as src:
        assert src.dtypes[0].startswith("float")
        assert np.isnan(src.nodata)
        band = src.read(1)
    assert np.isnan(band[0, 0])
    np.testing.assert_array_equal(band.ravel()[1:], (grid().ravel()[1:] > 6).astype(float))
