"""aggregate_spatial with a reducer returning several statistics (CDSE's multi-statistics):
one value per band and statistic, named {band}_{statistic}; checked with numpy."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine.processes.arrays import array_create
from terracube.engine.processes.reducers import max_, mean, quantiles
from terracube.engine.processes.zonal import aggregate_spatial

VALUES = np.random.default_rng(3).uniform(0, 100, size=(2, 2, 6, 6))
FIELD = {"type": "Polygon", "coordinates": [[[0, 40], [30, 40], [30, 100], [0, 100], [0, 40]]]}
OUTSIDE = {"type": "Polygon", "coordinates": [[[500, 500], [600, 500], [600, 600], [500, 500]]]}


class Statistics:
    """A reducer as the evaluator hands it over: its graph and a callable."""

    graph = {
        "m": {"process_id": "mean", "arguments": {"data": {"from_parameter": "data"}}},
        "x": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}}},
        "q": {"process_id": "quantiles", "arguments": {"data": {"from_parameter": "data"},
                                                       "probabilities": [0.25, 0.75]}},
        "a": {"process_id": "array_create", "result": True, "arguments": {
            "data": [{"from_node": "m"}, {"from_node": "x"}, {"from_node": "q"}]}},
    }
    single_process = None

    def __call__(self, data, context=None):
        return array_create([mean(data), max_(data), quantiles(data, [0.25, 0.75])])


def cube(with_bands: bool) -> RasterCube:
    data = xr.DataArray(da.from_array(VALUES, chunks=3), dims=["t", "bands", "y", "x"],
                        coords={"t": np.array(["2020-01-01", "2020-01-02"],
                                              dtype="datetime64[ns]"),
                                "bands": ["B1", "B2"], "y": 95.0 - 10 * np.arange(6),
                                "x": 5.0 + 10 * np.arange(6)})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632))
    if with_bands:
        return RasterCube(data, dims)
    return RasterCube(data.isel(bands=0, drop=True), (dims[0], dims[2], dims[3]))


def geometries() -> dict:
    return {"type": "FeatureCollection", "crs": {"type": "name",
                                                 "properties": {"name": "EPSG:32632"}},
            "features": [{"type": "Feature", "geometry": g, "properties": {}}
                         for g in (FIELD, OUTSIDE)]}


def expected(band: int, t: int) -> list[float]:
    pixels = VALUES[t, band, :, :3].ravel()  # the 18 pixel centres inside FIELD
    return [pixels.mean(), pixels.max(), np.quantile(pixels, 0.25), np.quantile(pixels, 0.75)]


@pytest.mark.parametrize("target_dimension", [None, "result"])
def test_statistics_become_bands(target_dimension) -> None:
    out = aggregate_spatial(cube(True), geometries(), Statistics(),
                            target_dimension=target_dimension)
    names = [str(b) for b in out.values.coords["bands"].values]
    assert names == [f"{b}_{s}" for b in ("B1", "B2") for s in ("mean", "max", "p25", "p75")]
    values = out.values.values if target_dimension is None else \
        out.values.sel({target_dimension: "value"}).values
    for t in range(2):
        np.testing.assert_allclose(values[0, t], expected(0, t) + expected(1, t), rtol=1e-6)
    assert np.isnan(values[1]).all()  # the geometry outside the cube
    if target_dimension:
        np.testing.assert_array_equal(out.values.sel({target_dimension: "total_count"})
                                      .values[0], 18)


def test_a_cube_without_bands_gets_the_statistics_as_bands() -> None:
    out = aggregate_spatial(cube(False), geometries(), Statistics())
    assert [str(b) for b in out.values.coords["bands"].values] == ["mean", "max", "p25", "p75"]
    np.testing.assert_allclose(out.values.values[0, 1], expected(0, 1), rtol=1e-6)
