"""Demo SST: the Niño-3.4 box series, climatology and index, recomputed from the OSTIA file."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

NAME = "demo_sst"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


def matches_a_box_mean(got: list[float], cube: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                       atol: float) -> bool:
    """Whether `got` is the Niño-3.4 box mean (per time step) of cube (t, lat, lon).

    Pixel centres lie on the box's west, east and south edges (up to float32 rounding), so
    whether they count is a tie the server may break either way; one reading must match.
    """
    for west, east, south in itertools.product([-170.01, -169.99], [-120.01, -119.99],
                                               [-5.01, -4.99]):
        rows = (lat >= south) & (lat <= 5)
        cols = (lon >= west) & (lon <= east)
        if np.allclose(got, cube[:, rows][:, :, cols].mean(axis=(1, 2)), atol=atol):
            return True
    return False


def test_nino34_series_climatology_and_index(run, course_server) -> None:
    nc = next((course_server.samples / "iris-sample-data").rglob("ostia_monthly.nc"))
    with xr.open_dataset(nc) as ds:
        sst = ds["surface_temperature"].load()
    kept = run.results
    lon = (sst["longitude"].to_numpy() + 180) % 360 - 180  # served from -180 to 180
    lat = sst["latitude"].to_numpy()
    values = sst.to_numpy().astype("float64")
    assert len(kept["box_sst"]) == 54
    assert kept["months"][0] == "2006-04" and kept["months"][-1] == "2010-09"
    assert matches_a_box_mean(kept["box_sst"], values, lon, lat, atol=1e-4)

    months = np.array([int(m[5:]) for m in kept["months"]])
    years = np.array([int(m[:4]) for m in kept["months"]])
    reference = (years >= 2007) & (years <= 2009)
    normal = np.stack([values[reference & (months == m)].mean(axis=0) for m in range(1, 13)])
    anomalies = values - normal[months - 1]
    assert matches_a_box_mean(kept["index"], anomalies, lon, lat, atol=1e-4)
    # the events of the period: El Niño 2006/07 and 2009/10, La Niña 2007/08
    by_month = dict(zip(kept["months"], kept["index"]))
    assert by_month["2006-12"] > 0.5 and by_month["2009-12"] > 1.0
    assert by_month["2007-12"] < -1.0
    assert 299 < kept["mean_map_mean"] < 302
