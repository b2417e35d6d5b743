"""Tests of the synthetic RADAR_RAINFALL_SYNTHETIC collection and its rain gauges: the
generated files, the catalog metadata, and a gauge correction through the HTTP API with the
official openeo client, checked against numpy sums of the COG files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from terracube.catalog import Catalog
from terracube.catalog.samples.rainfall_synthetic import (
    BAND,
    EVENT_END,
    EVENT_START,
    GAUGE_ABSOLUTE_NOISE_MM,
    GAUGE_RELATIVE_NOISE,
    NODATA,
    RADAR_RANGE,
    RADAR_SITE,
    RAINFALL_BOUNDS,
    RAINFALL_COLLECTION_ID,
    STEP_COUNT,
    ensure_rainfall_data,
    gauge_collection,
    rainfall_index,
    range_km,
    true_bias,
)
from terracube.datacube.request import LoadRequest

EVENT = [EVENT_START.strftime("%Y-%m-%dT%H:%M:%SZ"), EVENT_END.strftime("%Y-%m-%dT%H:%M:%SZ")]
TO_RD = Transformer.from_crs("EPSG:4326", "EPSG:28992", always_xy=True)


@pytest.fixture(scope="module")
def folder(sample_data_dir: Path) -> Path:
    return ensure_rainfall_data(sample_data_dir)


@pytest.fixture(scope="module")
def index(folder: Path) -> dict:
    return rainfall_index(folder)


@pytest.fixture(scope="module")
def gauges(folder: Path) -> dict:
    return gauge_collection(folder)


@pytest.fixture(scope="module")
def stack(folder: Path, index: dict) -> np.ndarray:
    """All 5-minute fields (t, y, x) as read with rasterio, nodata as NaN."""
    fields = []
    for item in index["items"]:
        with rasterio.open(folder / item["assets"][BAND]) as ds:
            fields.append(ds.read(1, masked=True).filled(np.nan))
    return np.stack(fields).astype(np.float64)


def gauge_pixels(folder: Path, index: dict, gauges: dict) -> list[tuple[int, int]]:
    with rasterio.open(folder / index["items"][0]["assets"][BAND]) as ds:
        return [ds.index(*TO_RD.transform(*f["geometry"]["coordinates"]))
                for f in gauges["features"]]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


# --- the generated files --------------------------------------------------------------------


def test_generation_is_deterministic(folder: Path, tmp_path: Path) -> None:
    again = ensure_rainfall_data(tmp_path)
    assert again == tmp_path / "samples" / "radar_rainfall"
    first, second = digests(folder), digests(again)
    assert len(first) == STEP_COUNT + 2  # the COGs, items.json and gauges.geojson
    assert first == second
    size = sum((again / name).stat().st_size for name in second)
    assert size < 6e6


def test_index_has_one_item_per_five_minutes(index: dict) -> None:
    assert index["collection"] == RAINFALL_COLLECTION_ID and index["synthetic"] is True
    assert index["crs"] == "EPSG:28992" and index["time_step"] == "PT5M"
    items = index["items"]
    assert len(items) == STEP_COUNT == 96
    starts = [dt.datetime.fromisoformat(i["datetime"]) for i in items]
    assert starts[0] == EVENT_START == dt.datetime(2023, 8, 26, 6, 0, tzinfo=dt.UTC)
    assert all(b - a == dt.timedelta(minutes=5) for a, b in zip(starts, starts[1:]))
    # The datetime marks the start of the interval.
    for item in items:
        assert item["start_datetime"] == item["datetime"]
        end = dt.datetime.fromisoformat(item["end_datetime"])
        assert end - dt.datetime.fromisoformat(item["datetime"]) == dt.timedelta(minutes=5)
    assert items[-1]["end_datetime"] == EVENT[1]


def test_cogs_are_mm_per_5_minutes_on_a_1_km_rd_grid(folder: Path, index: dict) -> None:
    with rasterio.open(folder / index["items"][0]["assets"][BAND]) as ds:
        assert ds.driver == "GTiff" and ds.profile["tiled"]
        assert ds.crs.to_epsg() == 28992
        assert (ds.width, ds.height, ds.count) == (200, 200, 1)
        assert ds.dtypes == ("float32",) and ds.nodata == NODATA
        assert ds.transform == rasterio.Affine(1000, 0, RAINFALL_BOUNDS[0], 0, -1000,
                                               RAINFALL_BOUNDS[3])
        assert ds.units == ("mm",) and ds.descriptions == (BAND,)
        assert "terracube" in ds.tags()["SYNTHETIC"]
        raw = ds.read(1)
    # Nodata exactly outside the radar range circle.
    np.testing.assert_array_equal(raw == NODATA, range_km() > RADAR_RANGE / 1000)


def test_the_rain_field_is_plausible(stack: np.ndarray) -> None:
    rate = stack * 12  # mm/h
    assert np.nanmin(stack) == 0.0
    assert 35 <= np.nanmax(rate) <= 50  # convective peaks
    assert 0.5 < np.nanmean(rate[rate > 0] > 1.0) < 0.95  # mostly moderate stratiform rain
    wet = np.nanmean(stack > 0, axis=(1, 2))
    assert wet[0] < 0.05 and wet.max() > 0.25  # the front arrives from outside the domain
    total = stack.sum(axis=0)
    assert 15 < np.nanmax(total) < 40 and 3 < np.nanmedian(total) < 10
    # The rain shield moves east: its centre of mass, hour by hour.
    _, cols = np.indices(stack.shape[1:])
    hourly = np.nansum(stack.reshape(8, 12, *stack.shape[1:]), axis=1)
    centre = [float((h * cols).sum() / h.sum()) for h in hourly[1:]]
    assert all(b > a for a, b in zip(centre, centre[1:]))
    assert 15 < (centre[-1] - centre[0]) / 6 < 40  # km/h


def test_gauges_carry_the_documented_bias(folder: Path, index: dict, gauges: dict,
                                          stack: np.ndarray) -> None:
    features = gauges["features"]
    assert gauges["type"] == "FeatureCollection" and gauges["synthetic"] is True
    assert 30 <= len(features) <= 60
    ids = [f["properties"]["station_id"] for f in features]
    assert len(set(ids)) == len(ids)
    total = stack.sum(axis=0)
    radar, observed, expected = [], [], []
    for f, (row, col) in zip(features, gauge_pixels(folder, index, gauges)):
        props = f["properties"]
        assert f["geometry"]["type"] == "Point"
        assert props["start_datetime"] == EVENT[0] and props["end_datetime"] == EVENT[1]
        x, y = TO_RD.transform(*f["geometry"]["coordinates"])
        distance = math.hypot(x - RADAR_SITE[0], y - RADAR_SITE[1]) / 1000
        assert distance < 95.1 and abs(distance - props["distance_to_radar_km"]) < 0.06
        radar.append(total[row, col])
        observed.append(props["total_mm"])
        expected.append(total[row, col] * true_bias(distance))
    radar, observed, expected = map(np.array, (radar, observed, expected))
    assert np.all(np.isfinite(radar)) and radar.min() > 0.5
    # Each gauge lies within its noise of radar x bias(range).
    tolerance = 4 * (GAUGE_RELATIVE_NOISE * expected + GAUGE_ABSOLUTE_NOISE_MM) + 0.05
    assert np.all(np.abs(observed - expected) < tolerance)
    bias = index["gauge_bias"]
    assert bias == gauges["bias"]
    assert bias["gauge_count"] == len(features)
    assert bias["mean_field_bias"] == pytest.approx(observed.sum() / radar.sum(), rel=1e-5)
    assert bias["mean_field_bias_without_noise"] == pytest.approx(
        expected.sum() / radar.sum(), rel=1e-5)
    assert 1.3 < bias["mean_field_bias"] < 1.5
    # The range dependence shows in the gauge/radar ratios (slope per 100 km).
    wet = radar > 2
    distance = np.array([f["properties"]["distance_to_radar_km"] for f in features])[wet]
    slope = np.polyfit(distance / 100, observed[wet] / radar[wet], 1)[0]
    assert 0.1 < slope < 0.3


# --- the collection in the catalog ----------------------------------------------------------


def test_collection_metadata(sample_data_dir: Path, index: dict) -> None:
    source = Catalog(sample_data_dir).get(RAINFALL_COLLECTION_ID)
    stac = source.stac()
    assert "SYNTHETIC" in stac["title"] and "SYNTHETIC" in stac["description"]
    for words in ("5 minutes", "mm", "START of its 5-minute interval", "gauges",
                  f"{index['gauge_bias']['mean_field_bias']:.4f}"):
        assert words in stac["description"]
    dims = stac["cube:dimensions"]
    assert dims["t"]["step"] == "PT5M"
    assert dims["t"]["extent"] == [EVENT[0], "2023-08-26T13:55:00Z"]
    assert stac["extent"]["temporal"]["interval"] == [EVENT]
    assert dims["x"]["reference_system"] == 28992 and dims["x"]["step"] == 1000
    assert dims["x"]["extent"] == [55000, 255000] and dims["y"]["extent"] == [363000, 563000]
    assert dims["bands"]["values"] == [BAND]
    west, south, east, north = stac["extent"]["spatial"]["bbox"][0]
    assert 3.8 < west < 4.0 and 51.2 < south < 51.3 and 6.8 < east < 6.9 and 53 < north < 53.1
    (band,) = stac["summaries"]["raster:bands"]
    assert band["unit"] == "mm" and band["nodata"] == NODATA and band["data_type"] == "float32"
    assert stac["assets"]["gauges"]["type"] == "application/geo+json"
    assert stac["terracube:synthetic"]["gauge_bias"] == index["gauge_bias"]


def test_load_equals_the_files(sample_data_dir: Path, stack: np.ndarray) -> None:
    source = Catalog(sample_data_dir).get(RAINFALL_COLLECTION_ID)
    cube = source.load(LoadRequest(temporal_extent=("2023-08-26T09:00Z", "2023-08-26T09:30Z")))
    assert cube.data.sizes == {"t": 6, "bands": 1, "y": 200, "x": 200}
    assert str(cube.data.t.values[0]).startswith("2023-08-26T09:00")
    np.testing.assert_array_equal(cube.data.isel(bands=0).values, stack[36:42])


# --- through the HTTP API with the openeo client --------------------------------------------


@pytest.mark.e2e
def test_gauges_asset_is_served(server, folder: Path) -> None:
    doc = httpx.get(f"{server.api}collections/{RAINFALL_COLLECTION_ID}").json()
    asset = doc["assets"]["gauges"]
    assert asset["href"] == f"{server.api}collections/{RAINFALL_COLLECTION_ID}/assets/gauges"
    response = httpx.get(asset["href"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    assert response.json() == gauge_collection(folder)
    missing = httpx.get(f"{server.api}collections/{RAINFALL_COLLECTION_ID}/assets/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    listed = httpx.get(f"{server.api}collections").json()["collections"]
    assert any(c["id"] == RAINFALL_COLLECTION_ID for c in listed)


@pytest.mark.e2e
def test_gauge_correction_with_the_openeo_client(server, folder: Path, index: dict,
                                                 stack: np.ndarray, tmp_path: Path) -> None:
    openeo = pytest.importorskip("openeo")
    con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    meta = con.describe_collection(RAINFALL_COLLECTION_ID)
    gauges = httpx.get(meta["assets"]["gauges"]["href"]).json()

    radar = con.load_collection(RAINFALL_COLLECTION_ID, temporal_extent=EVENT, bands=[BAND])
    event_total = radar.reduce_dimension(dimension="t", reducer="sum")
    out = tmp_path / "at_gauges.geojson"
    event_total.aggregate_spatial(geometries=gauges, reducer="mean").download(
        out, format="GeoJSON")
    features = json.loads(out.read_text())["features"]

    # (a) The event totals at the gauges are the numpy sums of the COG pixels.
    expected = stack.sum(axis=0)
    pixels = gauge_pixels(folder, index, gauges)
    got = np.array([f["properties"][BAND] for f in features])
    np.testing.assert_allclose(got, [expected[r, c] for r, c in pixels], rtol=1e-5)
    # (b) The gauge/radar ratio recovered from the data is the bias put in.
    observed = np.array([f["properties"]["total_mm"] for f in features])
    mean_field_bias = observed.sum() / got.sum()
    truth = index["gauge_bias"]
    assert mean_field_bias == pytest.approx(truth["mean_field_bias"], rel=1e-5)
    assert mean_field_bias == pytest.approx(truth["mean_field_bias_without_noise"], abs=0.03)

    # The correction: the radar times the bias matches the gauges on the whole (and the
    # same event total comes out of aggregate_temporal).
    corrected = (radar * mean_field_bias).aggregate_temporal(intervals=[EVENT], reducer="sum")
    out = tmp_path / "corrected.geojson"
    corrected.aggregate_spatial(geometries=gauges, reducer="mean").download(
        out, format="GeoJSON")
    props = [f["properties"] for f in json.loads(out.read_text())["features"]]
    values = np.array([next(v for k, v in p.items() if k.endswith(BAND)) for p in props])
    np.testing.assert_allclose(values, got * mean_field_bias, rtol=1e-5)
    assert values.sum() == pytest.approx(observed.sum(), rel=1e-5)
