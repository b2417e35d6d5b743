"""Issue 11, defects 3 and 4: results in the layouts CDSE writes, read the way CDSE users read
them with the official client — GTiff of a cube with time as one file per date in a batch job
(each asset described truthfully), aggregate_spatial as the JSON that
`timeseries_json_to_pandas` reads and as CSV for `pd.read_csv`, netCDF per feature — values
checked with numpy on the sample files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from shapely.geometry import Point, Polygon
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
from openeo.rest.conversions import timeseries_json_to_pandas  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-10"]  # two dates: 2022-06-02 and 2022-06-07
DATES = ["2022-06-02T10:20:00Z", "2022-06-07T10:20:00Z"]
TO_LL = Transformer.from_crs(32632, 4326, always_xy=True)


def sample(sample_data_dir: Path, date: str, band: str) -> np.ndarray:
    """One band of one date of the sample collection in BOX, as stored (raw integers)."""
    return sample_band(sample_data_dir, date, band, BOX)


def field(x0: float, y0: float, size: float, name: str) -> dict:
    corners = [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size), (x0, y0)]
    return {"type": "Feature", "properties": {"name": name},
            "geometry": {"type": "Polygon",
                         "coordinates": [[list(TO_LL.transform(x, y)) for x, y in corners]]}}


FIELDS = {"type": "FeatureCollection",
          "features": [field(679800, 5151200, 400, "north-field"),
                       field(680300, 5151500, 200, "small-field")]}


def field_means(sample_data_dir: Path, date: str, band: str) -> list[float]:
    """The mean over the pixels whose centre is inside each field (no-data 0 left out)."""
    values = sample(sample_data_dir, date, band).astype("float64")
    values[values == 0] = np.nan
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    ys = BOX["north"] - 5 - 10 * np.arange(values.shape[0])
    xs = BOX["west"] + 5 + 10 * np.arange(values.shape[1])
    out = []
    for feature in FIELDS["features"]:
        polygon = Polygon([to_utm.transform(*p) for p in feature["geometry"]["coordinates"][0]])
        inside = np.array([[polygon.contains(Point(x, y)) for x in xs] for y in ys])
        out.append(float(np.nanmean(values[inside])))
    return out


# --- defect 3: GTiff with a time dimension ----------------------------------------------------
def test_batch_gtiff_is_one_file_per_date_with_truthful_assets(con, sample_data_dir: Path,
                                                               tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    job = s2.create_job(out_format="GTiff")
    job.start_and_wait(max_poll_interval=0.2)
    results = job.get_results()
    paths = results.download_files(tmp_path)
    tifs = sorted(p.name for p in paths if p.suffix == ".tif")
    assert tifs == ["openEO_2022-06-02Z.tif", "openEO_2022-06-07Z.tif"]
    assets = results.get_metadata()["assets"]
    for name, date in zip(tifs, DATES):
        asset = assets[name]
        with rasterio.open(tmp_path / name) as ds:
            assert ds.count == 2 and list(ds.descriptions) == ["B04", "B08"]
            for i, band in enumerate(["B04", "B08"], start=1):
                np.testing.assert_array_equal(ds.read(i), sample(sample_data_dir, date, band))
            assert ds.tags()["TIFFTAG_DATETIME"] == date[:19].replace("-", ":").replace("T", " ")
            assert asset["proj:shape"] == [ds.height, ds.width]
            assert asset["proj:epsg"] == ds.crs.to_epsg() == 32632
            assert asset["proj:bbox"] == pytest.approx(list(ds.bounds))
        assert asset["datetime"] == date
        assert [b["name"] for b in asset["eo:bands"]] == ["B04", "B08"]
        assert asset["file:size"] == (tmp_path / name).stat().st_size


def test_sync_gtiff_of_one_date_has_bands_as_bands(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-07", "2022-06-08"], bands=["B04", "B08"])
    s2.download(tmp_path / "one.tif")
    with rasterio.open(tmp_path / "one.tif") as ds:
        assert list(ds.descriptions) == ["B04", "B08"]
        np.testing.assert_array_equal(ds.read(2), sample(sample_data_dir, DATES[1], "B08"))


def test_sync_gtiff_of_several_dates_is_one_file(con, sample_data_dir: Path,
                                                 tmp_path: Path) -> None:
    # One file answers a synchronous request (docs/user-guide/formats.md): every date and
    # band a GeoTIFF band named "<date>_<band>", nothing dropped.
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04"])
    s2.download(tmp_path / "all.tif")
    with rasterio.open(tmp_path / "all.tif") as ds:
        assert list(ds.descriptions) == [f"{d}_B04" for d in DATES]
        np.testing.assert_array_equal(ds.read(2), sample(sample_data_dir, DATES[1], "B04"))


# --- defect 4: vector results -------------------------------------------------------------------
def test_aggregate_spatial_json_reads_with_timeseries_json_to_pandas(
        con, sample_data_dir: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    timeseries = s2.aggregate_spatial(geometries=FIELDS, reducer="mean").execute()
    assert sorted(timeseries) == DATES
    frame = timeseries_json_to_pandas(timeseries)  # index: date; columns: (polygon, band)
    for date in DATES:
        for b, band in enumerate(["B04", "B08"]):
            expected = field_means(sample_data_dir, date, band)
            for polygon in (0, 1):
                assert frame.loc[date, (polygon, b)] == pytest.approx(expected[polygon],
                                                                      rel=1e-5)


def test_aggregate_spatial_without_time_is_a_list_per_geometry(con,
                                                               sample_data_dir: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-07", "2022-06-08"], bands=["B08"])
    values = s2.reduce_dimension(dimension="t", reducer="first") \
        .aggregate_spatial(geometries=FIELDS, reducer="mean").execute()
    expected = field_means(sample_data_dir, DATES[1], "B08")
    assert values == [[pytest.approx(expected[0], rel=1e-5)],
                      [pytest.approx(expected[1], rel=1e-5)]]


def test_aggregate_spatial_csv_has_cdse_columns(con, sample_data_dir: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    csv = s2.aggregate_spatial(geometries=FIELDS, reducer="mean") \
        .save_result(format="CSV").download()
    table = pd.read_csv(io.BytesIO(csv))
    assert list(table.columns) == ["date", "feature_index", "B04", "B08"]
    assert len(table) == 4
    for date in DATES:
        rows = table[table.date == date].set_index("feature_index")
        for band in ("B04", "B08"):
            np.testing.assert_allclose(rows[band].loc[[0, 1]].values,
                                       field_means(sample_data_dir, date, band), rtol=1e-5)


def test_csv_of_an_unnamed_band(con, sample_data_dir: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B08"])
    no_bands = s2.reduce_dimension(dimension="bands", reducer="first")
    csv = no_bands.aggregate_spatial(geometries=FIELDS, reducer="mean") \
        .save_result(format="CSV").download()
    table = pd.read_csv(io.BytesIO(csv))
    assert list(table.columns) == ["date", "feature_index", "band_unnamed"]
    first = table[table.date == DATES[0]].sort_values("feature_index").band_unnamed.values
    np.testing.assert_allclose(first, field_means(sample_data_dir, DATES[0], "B08"), rtol=1e-5)


def test_geojson_stays_a_format_of_its_own(con, sample_data_dir: Path, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B08"])
    s2.aggregate_spatial(geometries=FIELDS, reducer="mean").download(tmp_path / "f.geojson",
                                                                     format="GeoJSON")
    doc = json.loads((tmp_path / "f.geojson").read_text())
    assert [f["properties"]["name"] for f in doc["features"]] == ["north-field", "small-field"]
    expected = field_means(sample_data_dir, DATES[0], "B08")[0]
    assert doc["features"][0]["properties"][f"{DATES[0]}_B08"] == pytest.approx(expected,
                                                                                rel=1e-5)


def test_netcdf_sample_by_feature_writes_a_file_per_feature(con, sample_data_dir: Path,
                                                            tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    means = s2.aggregate_spatial(geometries=FIELDS, reducer="mean")
    job = means.create_job(out_format="netCDF", sample_by_feature=True,
                           feature_id_property="name")
    job.start_and_wait(max_poll_interval=0.2)
    paths = job.get_results().download_files(tmp_path)
    names = sorted(p.name for p in paths if p.suffix == ".nc")
    assert names == ["openEO_north-field.nc", "openEO_small-field.nc"]
    with xr.open_dataset(tmp_path / "openEO_small-field.nc") as ds:
        assert ds.sizes["geometry"] == 1
        for i, date in enumerate(DATES):
            expected = field_means(sample_data_dir, date, "B08")[1]
            assert float(ds["B08"].values[0, i]) == pytest.approx(expected, rel=1e-5)
