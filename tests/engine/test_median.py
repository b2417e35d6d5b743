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


def _median_by_hand(values: np.ndarray) -> np.float32:
    valid = sorted(v for v in values if not np.isnan(v))
    if not valid:
        return np.float32(np.nan)
    k = len(valid)
    if k % 2:
        return valid[k // 2]
    low, high = valid[k // 2 - 1], valid[k // 2]
    return low if low == high else (low + high) / np.float32(2)


@pytest.mark.parametrize("n", [2, 3, 4, 9])
def test_extreme_values(n: int) -> None:
    """Values whose double overflows, infinities of both signs and no-data, in every
    combination of n values per pixel (the two-value median doubles the valid one). The
    middle value is itself, never the overflowing mean of it with itself (np.nanmedian gives
    inf for [3e38, NaN])."""
    special = np.array([3e38, -3e38, 2e38, 1.5, -0.0, np.inf, -np.inf, np.nan], np.float32)
    if n > 4:  # random combinations
        grid = np.random.default_rng(n).choice(special, size=(3000, n))
    else:
        grid = np.stack(np.meshgrid(*[special] * n, indexing="ij"), axis=-1).reshape(-1, n)
    with np.errstate(all="ignore"):
        expected = np.array([_median_by_hand(row) for row in grid], dtype=np.float32)
        got = _nan_median_last_axis(grid)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
