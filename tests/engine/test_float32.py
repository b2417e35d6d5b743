"""float32 cubes stay float32 through the processes of the standard workloads (no float64
upcast doubles memory and time): three-valued logic, mask, apply_kernel, median."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine.processes.cubes import mask
from terracube.engine.processes.logic import and_, not_, or_
from terracube.engine.processes.neighbourhood import apply_kernel


def cube(values: np.ndarray) -> RasterCube:
    data = xr.DataArray(dsa.from_array(values, chunks=(1, 1, 16, 16)),
                        dims=["t", "bands", "y", "x"],
                        coords={"t": np.array(["2022-06-01", "2022-06-06"], "datetime64[ns]"),
                                "bands": ["B04", "B08"], "y": 100.0 - 10 * np.arange(32),
                                "x": 10 * np.arange(32) + 5.0})
    return RasterCube(data, (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
                             Dimension("y", SPATIAL, "y", 32632),
                             Dimension("x", SPATIAL, "x", 32632)))


def values() -> np.ndarray:
    rng = np.random.default_rng(3)
    v = rng.uniform(0, 10, (2, 2, 32, 32)).astype("float32")
    v[0, 0, :4, :4] = np.nan
    return v


def test_three_valued_logic_on_float32_gives_float32_with_the_same_values() -> None:
    a = xr.DataArray(np.array([1, 0, np.nan, 1], dtype="float32"))
    b = xr.DataArray(np.array([0, 0, 1, np.nan], dtype="float32"))
    for op, expected in ((or_, [1, 0, 1, 1]), (and_, [0, 0, np.nan, np.nan])):
        out = op(a, b)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.values, np.array(expected, dtype="float32"))
    assert not_(a).dtype == np.float32
    assert or_(a.astype("float64"), b).dtype == np.float64


def test_mask_keeps_float32() -> None:
    data = cube(values())
    flags = cube(values() > 5)
    out = mask(data, flags)
    assert out.data.dtype == np.float32
    expected = np.where(values() > 5, np.nan, values())
    np.testing.assert_array_equal(out.data.values, expected)


def test_apply_kernel_keeps_float32_and_matches_float64() -> None:
    data = cube(values())
    out = apply_kernel(data, kernel=[[1, 1, 1]] * 3, factor=1 / 9)
    assert out.data.dtype == np.float32
    v = np.nan_to_num(values().astype("float64"), nan=0.0)
    import scipy.ndimage

    ref = scipy.ndimage.correlate(v, np.ones((1, 1, 3, 3)), mode="constant") / 9
    np.testing.assert_allclose(out.data.values, ref, rtol=1e-6, atol=1e-6)
