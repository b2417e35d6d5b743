"""Demo radar rainfall: event totals, radar at the gauges, mean-field bias and the range
correction, recomputed from the 96 GeoTIFFs of the synthetic radar and its gauge file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

NAME = "demo_radar_rainfall"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


@pytest.fixture(scope="module")
def radar(course_server):
    """The 96 five-minute accumulations (mm, NaN beyond the range), the grid, the folder."""
    folder = course_server.samples / "radar_rainfall"
    files = sorted(folder.glob("*_precipitation.tif"))
    assert len(files) == 96
    steps = []
    for path in files:
        with rasterio.open(path) as src:
            data = src.read(1).astype("float64")
            data[data == src.nodata] = np.nan
            steps.append(data)
            transform = src.transform
    return np.stack(steps), transform, folder


def test_totals_pairs_and_mean_field_bias(run, radar) -> None:
    steps, transform, folder = radar
    kept = run.results
    total = steps.sum(axis=0)  # NaN stays NaN beyond the range
    assert kept["max_total"] == pytest.approx(np.nanmax(total), abs=1e-3)
    np.testing.assert_allclose(kept["area_mean"], np.nanmean(steps, axis=(1, 2)) * 12,
                               atol=1e-4)
    pairs = kept["pairs"]
    assert len(pairs) == 48
    gauge = np.array([p["gauge"] for p in pairs])
    at_gauge = np.array([p["radar"] for p in pairs])
    mfb = gauge.sum() / at_gauge.sum()
    assert kept["mfb"] == pytest.approx(mfb, rel=1e-9)
    assert kept["mfb"] == pytest.approx(1.4157, abs=1e-4)  # docs/user-guide/sample-data.md
    # the radar value of every gauge is the event total of the pixel that contains it
    gauges = json.loads((folder / "gauges.geojson").read_text())["features"]
    to_rd = Transformer.from_crs(4326, 28992, always_xy=True)
    by_id = {p["station_id"]: p for p in pairs}
    for feature in gauges:
        x, y = to_rd.transform(*feature["geometry"]["coordinates"])
        col, row = ~transform * (x, y)
        station = by_id[feature["properties"]["station_id"]]
        assert station["radar"] == pytest.approx(total[int(row), int(col)], abs=1e-3)
        assert station["gauge"] == feature["properties"]["total_mm"]


def test_range_dependent_correction(run, radar) -> None:
    kept = run.results
    pairs = kept["pairs"]
    gauge = np.array([p["gauge"] for p in pairs])
    at_gauge = np.array([p["radar"] for p in pairs])
    range_km = np.array([p["range_km"] for p in pairs])
    weights = np.sqrt(at_gauge)
    design = np.column_stack([np.ones_like(range_km), range_km]) * weights[:, None]
    (a, b), *_ = np.linalg.lstsq(design, gauge / at_gauge * weights, rcond=None)
    assert kept["a"] == pytest.approx(a, rel=1e-9) and kept["b_per_km"] == pytest.approx(b)
    # the generator's truth: 1.30 + 0.20 per 100 km (with 5 % noise on 48 gauges)
    assert abs(a - 1.30) < 0.05 and abs(b * 100 - 0.20) < 0.1
    # corrected radar at the gauges = radar x factor(range of the gauge's pixel centre)
    _, transform, folder = radar
    gauges = {f["properties"]["station_id"]: f["geometry"]["coordinates"] for f in
              json.loads((folder / "gauges.geojson").read_text())["features"]}
    to_rd = Transformer.from_crs(4326, 28992, always_xy=True)
    for pair, corrected in zip(pairs, kept["radar_range"]):
        col, row = ~transform * to_rd.transform(*gauges[pair["station_id"]])
        x, y = transform * (int(col) + 0.5, int(row) + 0.5)
        centre_km = np.hypot(x - 155000, y - 463000) / 1000
        assert corrected == pytest.approx(pair["radar"] * (a + b * centre_km), rel=1e-4)
    rmse = kept["rmse"]
    assert rmse["radar × factor(range)"] < rmse["radar × MFB"] < rmse["radar"]
