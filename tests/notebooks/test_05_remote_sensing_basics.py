"""Lesson 5: indices of the window and the class spectra, from the JP2 files and the polygons."""

from __future__ import annotations

import httpx
import numpy as np
from tests.notebooks.s2_files import band, inside, polygons_utm

BOX = (333000, 5816000, 339000, 5820000)
STACK = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


def test_lesson_5_numbers(run_notebook, course_server):
    kept = run_notebook("05_remote_sensing_basics").results
    samples = course_server.samples
    green, red, nir, swir2 = (band(samples, b, BOX)[0] for b in ("B03", "B04", "B08", "B12"))
    assert kept["shape"] == list(red.shape) == [400, 600]
    assert np.isclose(kept["ndvi_mean"], np.nanmean((nir - red) / (nir + red)), rtol=1e-5)
    ndwi = (green - nir) / (green + nir)
    assert np.isclose(kept["ndwi_water_fraction"], (ndwi > 0).mean(), atol=2e-5)
    assert np.isclose(kept["nbr_mean"], np.nanmean((nir - swir2) / (nir + swir2)), rtol=1e-5)
    assert np.isclose(kept["b12_p98"], np.percentile(swir2, 98), atol=1e-6)

    # class spectra: the mean over the polygons of each polygon's mean (whole scene, 10 m grid)
    polygons = polygons_utm(samples)
    for name in STACK:
        values, transform = band(samples, name)
        per_class: dict[str, list[float]] = {"water": [], "vegetation": []}
        for geometry, _, cid in polygons:
            mask = inside(geometry, transform, values.shape)
            if mask.any():
                per_class["water" if cid == 1 else "vegetation"].append(values[mask].mean())
        for cls, means in per_class.items():
            assert np.isclose(kept["class_means"][cls][name], np.mean(means), rtol=1e-6), (
                cls, name)

    # my storage: the NDVI map is in the workspace
    token = httpx.get(f"{course_server.server.api}credentials/basic",
                      auth=(course_server.user, course_server.password)).json()["access_token"]
    files = httpx.get(f"{course_server.server.api}files",
                      headers={"Authorization": f"Bearer basic//{token}"}).json()["files"]
    assert "course/05_ndvi.tif" in {f["path"] for f in files}
