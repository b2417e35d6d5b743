"""raster_to_vector on small cubes against scipy.ndimage.label: one polygon per four-connected
region of equal value, per date and band, of the region's area and value; no-data makes
none; dates and bands of the values; the errors it gives."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage
import xarray as xr

from terracube import errors
from terracube.datacube.cube import BANDS, OTHER, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.vector import GEOMETRY_DIM
from terracube.engine.processes.vector_rasters import raster_to_vector

RES = 10.0


def raster(values: np.ndarray, *, time: bool = True, bands: list[str] | None = None,
           extra: bool = False) -> RasterCube:
    """A cube of (t, bands, y, x) values (10 m pixels in EPSG:32632); without `time` or
    `bands` those dimensions are dropped (values of shape (y, x) or (bands, y, x))."""
    ny, nx = values.shape[-2:]
    xs = 680000 + RES / 2 + RES * np.arange(nx)
    ys = 5151500 - RES / 2 - RES * np.arange(ny)
    dims: list[Dimension] = []
    names: list[str] = []
    coords: dict = {"y": ys, "x": xs}
    if time:
        dims.append(Dimension("t", TEMPORAL))
        names.append("t")
        coords["t"] = np.array(["2022-06-02", "2022-06-07"][:values.shape[0]],
                               dtype="datetime64[ns]")
    if bands is not None:
        dims.append(Dimension("bands", BANDS))
        names.append("bands")
        coords["bands"] = bands
    if extra:
        dims.append(Dimension("q", OTHER))
        names.append("q")
    dims += [Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632)]
    data = xr.DataArray(da.from_array(values, chunks=2), dims=[*names, "y", "x"],
                        coords=coords)
    return RasterCube(data, tuple(dims))


def regions(plane: np.ndarray) -> list[tuple[float, int]]:
    """(value, pixel count) of every four-connected region of equal value, sorted."""
    out = []
    for value in np.unique(plane[np.isfinite(plane)]):
        labels, n = scipy.ndimage.label(plane == value)  # default structure: 4-connected
        out += [(float(value), int((labels == i).sum())) for i in range(1, n + 1)]
    return sorted(out)


def test_one_polygon_per_four_connected_region_per_date_and_band() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3, size=(2, 2, 6, 7)).astype(np.float64)
    values[0, 1, 2:4, 3:5] = np.nan  # no-data makes no polygon
    values[1, 0] = np.nan            # a whole date of one band
    values[0, 0, 0, :2] = [5.0, np.nan]
    values[0, 0, 1, :2] = [np.nan, 5.0]  # the same value touching at a corner: two polygons
    cube = raster_to_vector(raster(values, bands=["B04", "VV"]))

    assert [d.name for d in cube.dimensions] == [GEOMETRY_DIM, "t", "bands"]
    assert list(cube.values.coords["bands"].values) == ["B04", "VV"]
    table = np.asarray(cube.values.values)
    for ti, day in enumerate(("20220602", "20220607")):
        for bi, band in enumerate(("B04", "VV")):
            mine = [i for i, p in enumerate(cube.properties)
                    if p["id"].startswith(f"{day}_{band}_")]
            got = sorted((float(table[i, ti, bi]), round(cube.geometries[i].area / RES**2))
                         for i in mine)
            assert got == regions(values[ti, bi]), (day, band)
            # each polygon has its value at its own date and band only
            others = np.delete(table[mine].reshape(len(mine), 4), ti * 2 + bi, axis=1)
            assert np.isnan(others).all()
    assert not [p for p in cube.properties if p["id"].startswith("20220607_B04_")]
    assert regions(values[0, 0]).count((5.0, 1)) == 2


def test_without_time_or_band_names_and_close_float_values_apart() -> None:
    plane = np.array([[0.1, 0.1, 0.1 + 1e-12], [0.2, 0.2, 0.1 + 1e-12]])
    cube = raster_to_vector(raster(plane, time=False))
    assert [d.name for d in cube.dimensions] == [GEOMETRY_DIM, "bands"]
    assert list(cube.values.coords["bands"].values) == ["band0"]
    assert sorted(p["id"] for p in cube.properties) == ["band0_0", "band0_1", "band0_2"]
    got = sorted((float(v), round(g.area / RES**2)) for v, g in
                 zip(np.asarray(cube.values.values)[:, 0], cube.geometries, strict=True))
    assert got == [(0.1, 2), (0.1 + 1e-12, 2), (0.2, 2)]
    # the polygons lie on the pixel edges of the grid
    assert cube.geometries[0].bounds[0] % RES == 0 and cube.geometries[0].bounds[3] % RES == 0


def test_all_nodata_gives_an_empty_vector_cube() -> None:
    cube = raster_to_vector(raster(np.full((1, 1, 3, 3), np.nan), bands=["B04"]))
    assert len(cube) == 0 and cube.values.sizes[GEOMETRY_DIM] == 0


def test_errors_name_the_argument() -> None:
    with pytest.raises(errors.ProcessParameterInvalid, match="raster data cube"):
        raster_to_vector({"type": "Polygon"})
    with pytest.raises(errors.ProcessParameterInvalid, match="besides x and y"):
        raster_to_vector(raster(np.zeros((1, 1, 2, 2, 2)), bands=["B04"], extra=True))
