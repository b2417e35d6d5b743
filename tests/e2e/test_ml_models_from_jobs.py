"""Issue 11, defect 8: a model trained in a batch job is a result of that job (STAC ml-model
extension), and `connection.load_ml_model(job.job_id)` or the job's results URL loads it — as
CDSE users write it. The predictions are checked against the job's own estimator file,
downloaded and applied locally with scikit-learn to the composite read back from the server."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr

openeo = pytest.importorskip("openeo")
joblib = pytest.importorskip("joblib")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
DATES = ["2022-06-01", "2022-06-10"]
BANDS = ["B02", "B04", "B08"]
# Centres (lon, lat) of 50 m training squares per class (docs/user-guide/machine-learning.md)
CENTRES = {
    1: [(11.33367, 46.48160), (11.33105, 46.49948), (11.33175, 46.49460)],
    2: [(11.35994, 46.50464), (11.36760, 46.50394), (11.35961, 46.50888)],
    3: [(11.32906, 46.48944), (11.32229, 46.48354), (11.32237, 46.49155)],
    4: [(11.34380, 46.48679), (11.34047, 46.49118), (11.33805, 46.47728)],
}


def square(lon: float, lat: float, half: float = 25.0) -> dict:
    dy = half / 111_320
    dx = dy / math.cos(math.radians(lat))
    ring = [[lon - dx, lat - dy], [lon + dx, lat - dy], [lon + dx, lat + dy],
            [lon - dx, lat + dy], [lon - dx, lat - dy]]
    return {"type": "Polygon", "coordinates": [ring]}


TRAINING = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"target": cls}, "geometry": square(lon, lat)}
    for cls, centres in CENTRES.items() for lon, lat in centres]}


def composite(con, box: dict | None = None):
    cube = con.load_collection("SENTINEL2_L2A", temporal_extent=DATES, bands=BANDS,
                               spatial_extent=box)
    return cube.reduce_dimension(dimension="t", reducer="median")


@pytest.fixture(scope="module")
def training_job(con):
    samples = composite(con).aggregate_spatial(geometries=TRAINING, reducer="mean")
    model = samples.fit_class_random_forest(target=TRAINING, num_trees=10, seed=7)
    job = model.create_job(title="train")
    job.start_and_wait(max_poll_interval=0.2)
    return job


def test_training_job_publishes_the_model(training_job, tmp_path: Path) -> None:
    results = training_job.get_results()
    metadata = results.get_metadata()
    assert "https://stac-extensions.github.io/ml-model/v1.0.0/schema.json" in \
        metadata["stac_extensions"]
    summaries = metadata["summaries"]  # the results Collection summarises the model
    assert summaries["ml-model:prediction_type"] == ["classification"]
    assert summaries["ml-model:architecture"] == ["random-forest"]
    assets = metadata["assets"]
    (checkpoint,) = [name for name, a in assets.items()
                     if "ml-model:checkpoint" in a.get("roles", [])]
    assert checkpoint.endswith(".joblib")
    # The model's own Item (an `item` link, signed) carries its properties.
    (href,) = [link["href"] for link in metadata["links"]
               if link["rel"] == "item" and link.get("title") == checkpoint]
    item = requests.get(href, timeout=60).json()
    assert item["properties"]["ml-model:prediction_type"] == "classification"
    assert item["properties"]["ml-model:architecture"] == "random-forest"
    assert list(item["assets"]) == [checkpoint]
    assert not any(name.endswith("openEO.json") for name in assets)  # not just `true`
    path = tmp_path / checkpoint
    results.get_asset(checkpoint).download(path)
    forest = joblib.load(path)
    assert forest.n_estimators == 10 and sorted(forest.classes_.tolist()) == [1, 2, 3, 4]


def local_prediction(con, training_job, tmp_path: Path) -> np.ndarray:
    """The class of every pixel of BOX by the job's estimator, applied here with sklearn."""
    results = training_job.get_results()
    (checkpoint,) = [name for name, a in results.get_metadata()["assets"].items()
                     if "ml-model:checkpoint" in a.get("roles", [])]
    forest = joblib.load(io.BytesIO(results.get_asset(checkpoint).load_bytes()))
    composite(con, BOX).download(tmp_path / "composite.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "composite.nc") as ds:
        stack = np.stack([ds[b].values.astype("float64") for b in BANDS], axis=-1)
    rows = stack.reshape(-1, len(BANDS))
    out = np.full(rows.shape[0], np.nan)
    ok = np.isfinite(rows).all(axis=1)
    out[ok] = forest.predict(rows[ok].astype(np.float32))
    return out.reshape(stack.shape[:2])


def server_prediction(con, model, tmp_path: Path, name: str) -> np.ndarray:
    landcover = composite(con, BOX).predict_random_forest(model=model, dimension="bands")
    landcover.download(tmp_path / name, format="netCDF")
    with xr.open_dataset(tmp_path / name) as ds:
        (var,) = [v for v in ds.data_vars if v not in ("crs", "spatial_ref")]
        return ds[var].values.squeeze()


def test_load_ml_model_by_job_id(con, training_job, tmp_path: Path) -> None:
    expected = local_prediction(con, training_job, tmp_path)
    got = server_prediction(con, con.load_ml_model(training_job.job_id), tmp_path, "a.nc")
    assert np.isfinite(expected).mean() > 0.9
    np.testing.assert_array_equal(got, expected)


def test_load_ml_model_by_results_url(con, training_job, tmp_path: Path) -> None:
    links = training_job.get_results().get_metadata()["links"]
    (url,) = [link["href"] for link in links if link["rel"] == "canonical"]
    expected = local_prediction(con, training_job, tmp_path)
    got = server_prediction(con, con.load_ml_model(url), tmp_path, "b.nc")
    np.testing.assert_array_equal(got, expected)


def test_a_model_in_a_batch_prediction_job(con, training_job, tmp_path: Path) -> None:
    landcover = composite(con, BOX).predict_random_forest(
        model=con.load_ml_model(training_job.job_id), dimension="bands")
    job = landcover.create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    (path,) = [p for p in job.get_results().download_files(tmp_path / "job")
               if p.suffix == ".nc"]
    with xr.open_dataset(path) as ds:
        (var,) = [v for v in ds.data_vars if v not in ("crs", "spatial_ref")]
        got = ds[var].values.squeeze()
    np.testing.assert_array_equal(got, local_prediction(con, training_job, tmp_path))


def test_a_missing_model_says_where_models_come_from(con) -> None:
    cube = composite(con, BOX).predict_random_forest(
        model=con.load_ml_model("j-doesnotexist"), dimension="bands")
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        cube.download(format="netCDF")
    message = info.value.message
    assert info.value.code == "FileNotFound"
    assert "save_ml_model" in message and "batch job" in message and "URL" in message
