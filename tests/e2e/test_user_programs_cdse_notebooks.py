"""The CDSE notebook samples (eu-cdse/notebook-samples, openeo/) not covered by
test_user_programs_cdse.py: basics, and the programs of NO2Covid, load_ESA_WorldCover and
Sentinel_3 with the collection, bands and extent adapted to the Sentinel-2 sample (their
Sentinel-5P and Sentinel-3 collections are not shipped); run through the official client
against the shared server, values checked with numpy. Radar_ARD runs on the Sentinel-1 sample
in test_user_programs_sentinel1.py, load_ESA_WorldCover also on the WorldCover sample as
written in test_user_programs_dem_landcover.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


def box_in_lonlat() -> list[list[float]]:
    """BOX's corners in longitude/latitude, as a closed ring: a polygon whose pixels (centres
    inside) are exactly BOX's (300 m edges bend by far less than a millimetre in UTM)."""
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [(BOX["west"], BOX["north"]), (BOX["west"], BOX["south"]),
               (BOX["east"], BOX["south"]), (BOX["east"], BOX["north"])]
    ring = [list(to_ll.transform(x, y)) for x, y in corners]
    return [*ring, ring[0]]


@pytest.fixture(scope="module")
def connection(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def test_basics(connection) -> None:
    """basics.ipynb: collections and processes discovered as the notebook does."""
    assert "SENTINEL2_L2A" in connection.list_collection_ids()
    described = connection.describe_collection("SENTINEL2_L2A")
    assert described["id"] == "SENTINEL2_L2A" and "cube:dimensions" in described
    assert "add" in [p["id"] for p in connection.list_processes()]
    assert connection.describe_process("add")["id"] == "add"


def test_no2_covid_daily_means_of_a_polygon(connection, sample_data_dir: Path,
                                            tmp_path: Path) -> None:
    """NO2Covid.ipynb (SENTINEL_5P_L2 / NO2 -> SENTINEL2_L2A / B04): daily means with
    aggregate_temporal_period("day"), then aggregate_spatial over a lon/lat polygon, as a batch
    job to netCDF read with xarray and smoothed with `rolling(t=...)`."""
    aoi = {"type": "Polygon", "coordinates": [box_in_lonlat()]}
    lons, lats = zip(*aoi["coordinates"][0], strict=True)
    s5covid = connection.load_collection(
        "SENTINEL2_L2A", temporal_extent=["2022-06-01", "2022-06-10"],
        spatial_extent={"west": min(lons), "south": min(lats), "east": max(lons),
                        "north": max(lats)},
        bands=["B04"])
    s5covid = s5covid.aggregate_temporal_period(reducer="mean", period="day")
    s5covid = s5covid.aggregate_spatial(reducer="mean", geometries=aoi)
    s5covid.execute_batch(title="NO2 during Covid", outputfile=tmp_path / "during_covid.nc")

    series = sample_series(sample_data_dir, "B04", BOX, "2022-06-01", "2022-06-10")
    days = {d: float(np.nanmean(v)) for d, v in series.items()}
    duringdata = xr.load_dataset(tmp_path / "during_covid.nc")
    # t holds the days as dates, as on CDSE (decision 0013); t_label the spec's YYYY-DDD labels
    labels = [str(t)[:10] for t in duringdata.t.values]
    assert labels[0] == min(days) and labels[-1] == max(days)
    assert len(labels) == (dt.date.fromisoformat(max(days))
                           - dt.date.fromisoformat(min(days))).days + 1
    assert [str(v) for v in duringdata.t_label.values] == [
        f"{d[:4]}-{dt.date.fromisoformat(d).timetuple().tm_yday:03d}" for d in labels]
    values = duringdata.B04.to_numpy().flatten()
    for label, value in zip(labels, values, strict=True):
        if label in days:
            assert value == pytest.approx(days[label], rel=1e-6)
        else:
            assert np.isnan(value)
    smooth = duringdata.rolling(t=2).mean()
    assert smooth.B04.to_numpy().shape == duringdata.B04.to_numpy().shape


def test_worldcover_udf_batch_job_on_a_feature_collection(connection, sample_data_dir: Path,
                                                          tmp_path: Path) -> None:
    """load_ESA_WorldCover.ipynb (ESA_WORLDCOVER_10M_2021_V2 / MAP -> SENTINEL2_L2A / B04):
    spatial_extent a GeoJSON FeatureCollection (the notebook's aoi file), a UDF rescaling
    `cube.values`, execute_batch with CDSE's job_options, the netCDF read as the notebook does
    (`ds[["MAP"]].to_array(dim="bands").squeeze()`, x/y as float64 grids), the pixels
    outside the polygon no-data."""
    aoi = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [box_in_lonlat()]}}]}
    cube = connection.load_collection("SENTINEL2_L2A", temporal_extent=["2022-07-02",
                                                                         "2022-07-03"],
                                      spatial_extent=aoi, bands=["B04"])
    udf = openeo.UDF("""
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    cube.values = 0.8 * cube.values
    return cube
""")
    rescaled_cube = cube.apply(process=udf)
    job_options = {"executor-memory": "2G", "executor-memoryOverhead": "3G",
                   "python-memory": "3G"}
    rescaled_cube.execute_batch(title="ESA_WORLDCOVER_10M_2021_V2",
                                outputfile=tmp_path / "ESAWorldCover.nc",
                                job_options=job_options)
    ds = xr.open_dataset(tmp_path / "ESAWorldCover.nc")
    data = ds[["B04"]].to_array(dim="bands").squeeze()
    arr = data.values
    lon, lat = np.meshgrid(data.x.values.astype(np.float64), data.y.values.astype(np.float64))
    # The polygons' bounding box is read; the pixels whose centres lie outside the polygon
    # (here: outside BOX) are no-data (load_collection's definition; once not masked).
    inside = ((lon > BOX["west"]) & (lon < BOX["east"])
              & (lat > BOX["south"]) & (lat < BOX["north"]))
    assert arr.shape == lon.shape and inside.sum() == 30 * 30 and (~inside).any()
    assert np.isnan(arr[~inside]).all()
    (stored,) = sample_series(sample_data_dir, "B04", BOX, "2022-07-02", "2022-07-03").values()
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    np.testing.assert_allclose(arr[np.ix_(rows, cols)], 0.8 * stored, rtol=1e-5,
                               equal_nan=True)


def test_sentinel3_download_as_a_bands_array(connection, sample_data_dir: Path,
                                             tmp_path: Path) -> None:
    """Sentinel_3.ipynb (SENTINEL3_OLCI_L1B -> SENTINEL2_L2A, same band names): one day of
    three bands to netCDF, read as a (bands, t, y, x) array with `to_array(dim="bands")`."""
    sentinel3 = connection.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                           temporal_extent=["2022-07-02", "2022-07-02"],
                                           bands=["B08", "B06", "B04"])
    sentinel3.download(tmp_path / "sentinel3.nc")
    ds = xr.load_dataset(tmp_path / "sentinel3.nc")
    data = ds[["B08", "B06", "B04"]].to_array(dim="bands")
    assert list(data.bands.values) == ["B08", "B06", "B04"]
    first = data[{"t": 0}]
    for name in ("B08", "B04"):
        (stored,) = sample_series(sample_data_dir, name, BOX, "2022-07-02",
                                  "2022-07-03").values()
        np.testing.assert_allclose(first.sel(bands=name).values, stored, equal_nan=True)
    assert np.isfinite(first.sel(bands="B06").values).any()
