"""Lesson 2: percentiles, correlation and zonal means, from the JP2 files and the polygons."""

from __future__ import annotations

import numpy as np
from tests.notebooks.s2_files import band, inside, polygons_utm

BOX = (333000, 5816000, 339000, 5820000)


def test_lesson_2_numbers(run_notebook, course_server):
    kept = run_notebook("02_descriptive_statistics").results
    samples = course_server.samples
    red, _ = band(samples, "B04", BOX)
    nir, _ = band(samples, "B08", BOX)
    assert kept["shape"] == [6, 400, 600]
    p5, median, p95 = np.percentile(nir, [5, 50, 95])
    assert np.allclose([kept["nir_p5"], kept["nir_median"], kept["nir_p95"]], [p5, median, p95],
                       atol=1e-6)
    assert np.isclose(kept["corr_red_nir"], np.corrcoef(red.ravel(), nir.ravel())[0, 1],
                      atol=1e-6)

    # zonal means over the whole scene: pixel centres inside each polygon
    red_all, transform = band(samples, "B04")
    nir_all, _ = band(samples, "B08")
    ndvi = (nir_all - red_all) / (nir_all + red_all)
    polygons = polygons_utm(samples)
    assert len(kept["zonal_ndvi"]) == len(polygons) == 30
    per_class: dict[int, list[float]] = {1: [], 2: []}
    for geometry, pid, cid in polygons:
        mask = inside(geometry, transform, red_all.shape)
        if not mask.any():  # polygon 18 lies on the scene's edge: no pixel, a missing value
            assert kept["zonal_ndvi"][str(pid)] is None or np.isnan(kept["zonal_ndvi"][str(pid)])
            continue
        assert np.isclose(kept["zonal_ndvi"][str(pid)], ndvi[mask].mean(), atol=1e-6)
        assert np.isclose(kept["zonal_red"][str(pid)], red_all[mask].mean(), atol=1e-6)
        per_class[cid].append(ndvi[mask].mean())
    assert np.isclose(kept["class_mean_ndvi"]["water"], np.mean(per_class[1]), atol=1e-6)
    assert np.isclose(kept["class_mean_ndvi"]["vegetation"], np.mean(per_class[2]), atol=1e-6)
