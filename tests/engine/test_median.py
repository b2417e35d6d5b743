"""The fast no-data-skipping median of cube reductions gives exactly np.nanmedian's values."""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from terracube.datacube.values import ArrayValue
from terracube.engine.processes.reducers import _nan_median_last_axis, median


@pytest.mark.parametrize("n", range(1, 14))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equals_numpy_nanmedian(n: int, dtype: str) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(size=(30, 20, n)).astype(dtype)
    a[rng.random(a.shape) < 0.4] = np.nan
    a[0, 0, :] = np.nan  # all no-data: NaN
    a[1, 1, :] = 5.0  # ties
    a[2, 2, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(a, axis=-1)
    got = _nan_median_last_axis(a)
    assert got.dtype == expected.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_median_over_a_chunked_cube_dimension_is_lazy_and_exact() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 40, 30)).astype("float32")
    values[rng.random(values.shape) < 0.3] = np.nan
    cube = xr.DataArray(dsa.from_array(values, chunks=(1, 20, 15)), dims=["t", "y", "x"])
    result = median(ArrayValue(cube, "t", labeled=True))
    assert isinstance(result.data, dsa.Array) and result.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(result.values, np.nanmedian(values, axis=0))
