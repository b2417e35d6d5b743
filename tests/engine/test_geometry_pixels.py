"""geometry_pixels remembers its answers per geometry and grid (the dry run of a synchronous
request and its run rasterise the same geometries): the answers must stay those of a fresh
rasterisation, for every grid, and must not be changeable by a caller."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio.features
import shapely
from affine import Affine

from terracube.datacube.grid import Grid
from terracube.engine.processes.rasterise import geometry_pixels


def _grid(x0: float, y0: float, res: float = 10.0, size: int = 64) -> Grid:
    return Grid(pyproj.CRS.from_epsg(32631), Affine(res, 0, x0, 0, -res, y0), size, size, 32631)


def _expected(geom: shapely.Geometry, grid: Grid) -> np.ndarray:
    """Pixel-centre rule over the whole grid, by rasterio directly."""
    return rasterio.features.geometry_mask([geom], (grid.height, grid.width), grid.transform,
                                           all_touched=False, invert=True)


def _full(found: tuple[slice, slice, np.ndarray] | None, grid: Grid) -> np.ndarray:
    out = np.zeros((grid.height, grid.width), dtype=bool)
    if found is not None:
        rows, cols, mask = found
        out[rows, cols] = mask
    return out


TRIANGLE = shapely.Polygon([(600055, 5699945), (600400, 5699800), (600120, 5699450)])


def test_repeated_calls_give_a_fresh_rasterisation_and_read_only_masks() -> None:
    grid = _grid(600000, 5700000)
    first = geometry_pixels(TRIANGLE, grid)
    again = geometry_pixels(shapely.from_wkb(shapely.to_wkb(TRIANGLE)), grid)  # equal copy
    assert first is not None and again is not None
    np.testing.assert_array_equal(_full(first, grid), _expected(TRIANGLE, grid))
    np.testing.assert_array_equal(_full(again, grid), _expected(TRIANGLE, grid))
    assert 0 < int(first[2].sum()) < first[2].size
    with pytest.raises(ValueError):
        again[2][0, 0] = not again[2][0, 0]


@pytest.mark.parametrize("shift", [(10.0, 0.0), (0.0, -30.0), (5.0, 5.0)])
def test_another_grid_gets_its_own_pixels(shift: tuple[float, float]) -> None:
    base = _grid(600000, 5700000)
    geometry_pixels(TRIANGLE, base)
    moved = _grid(600000 + shift[0], 5700000 + shift[1])
    np.testing.assert_array_equal(_full(geometry_pixels(TRIANGLE, moved), moved),
                                  _expected(TRIANGLE, moved))
    coarse = _grid(600000, 5700000, res=20.0)
    np.testing.assert_array_equal(_full(geometry_pixels(TRIANGLE, coarse), coarse),
                                  _expected(TRIANGLE, coarse))


def test_outside_and_moved_geometries() -> None:
    grid = _grid(600000, 5700000)
    far = shapely.affinity.translate(TRIANGLE, 10_000, 0)
    assert geometry_pixels(far, grid) is None
    assert geometry_pixels(far, grid) is None
    near = shapely.affinity.translate(TRIANGLE, 20, 0)  # other coordinates: other answer
    np.testing.assert_array_equal(_full(geometry_pixels(near, grid), grid),
                                  _expected(near, grid))
    assert not np.array_equal(_expected(near, grid), _expected(TRIANGLE, grid))
