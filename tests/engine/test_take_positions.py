"""Selecting positions along a dimension without copying dask blocks (take_positions)."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from terracube.engine.processes._reducing import take_positions


def _cube() -> xr.DataArray:
    values = np.arange(7 * 2 * 3 * 4, dtype="float32").reshape(7, 2, 3, 4)
    values[2, 1, 0, 0] = np.nan
    data = dsa.from_array(values, chunks=(1, 2, 3, 2))
    return xr.DataArray(data, dims=("t", "bands", "y", "x"), name="cube", attrs={"a": 1},
                        coords={"t": np.arange(7) * 10, "bands": ["B1", "B2"],
                                "y": [3.0, 2.0, 1.0], "x": [0.5, 1.5, 2.5, 3.5],
                                "day": ("t", list("abcdefg"))})


@pytest.mark.parametrize("positions", [[0, 1, 2, 3, 4, 5, 6], [2, 3], [5], [0, 1, 4, 5, 6],
                                       [6, 5, 0], [3, 3, 4], [-1, 0], [1, 3, 5]])
def test_same_as_isel(positions: list[int]) -> None:
    cube = _cube()
    got = take_positions(cube, "t", positions)
    expected = cube.isel(t=positions)
    xr.testing.assert_identical(got, expected)
    assert isinstance(got.data, dsa.Array)
    assert got.chunks == expected.chunks or got.sizes == expected.sizes


def test_consecutive_runs_refer_to_the_blocks_without_copies() -> None:
    cube = _cube()
    got = take_positions(cube, "t", [0, 1, 4, 5, 6])
    # every block of the result is a block of the source (a view), no take/shuffle layer
    layers = set(got.data.dask.layers) - set(cube.data.dask.layers)
    assert not any("shuffle" in name or "take" in name for name in layers), layers
    for block in np.ndindex(got.data.numblocks):
        value = got.data.blocks[block].compute(scheduler="sync")
        assert value.shape[0] == 1


def test_numpy_backed_and_out_of_range_as_isel() -> None:
    cube = _cube().compute()
    xr.testing.assert_identical(take_positions(cube, "t", [1, 2]), cube.isel(t=[1, 2]))
    with pytest.raises(IndexError):
        take_positions(_cube(), "t", [7])
