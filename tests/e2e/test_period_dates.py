"""aggregate_temporal_period results as CDSE programs read them (decision 0013): netCDF `t` as
the periods' first days (datetime64) with the openEO labels kept in `t_label`, vector JSON/CSV
keyed by those date-times, GeoTIFF files and STAC assets of a batch job named and dated by
them, and such a job's netCDF read back by load_result; through the official client against a
real server, values checked with numpy on the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


def windows(sample_data_dir: Path, start: str, end: str, starts: list[str]) -> list[np.ndarray]:
    """Per window [starts[i], starts[i+1]) (the last up to `end`): the per-pixel mean of B04."""
    series = sample_series(sample_data_dir, "B04", BOX, start, end)
    bounds = [*starts, end]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        stack = np.stack([v for d, v in series.items() if lo <= d < hi])
        with np.errstate(all="ignore"):
            out.append(np.nanmean(stack, axis=0))
    return out


@pytest.mark.parametrize(("period", "start", "end", "starts", "labels"), [
    ("month", "2022-05-01", "2022-08-01", ["2022-05-01", "2022-06-01", "2022-07-01"],
     ["2022-05", "2022-06", "2022-07"]),
    ("dekad", "2022-06-01", "2022-07-01", ["2022-06-01", "2022-06-11", "2022-06-21"],
     ["2022-16", "2022-17", "2022-18"]),
], ids=["month", "dekad"])
def test_netcdf_time_is_the_periods_first_days(con, sample_data_dir: Path, tmp_path: Path,
                                               period, start, end, starts, labels) -> None:
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=[start, end],
                               bands=["B04"])
    cube = cube.aggregate_temporal_period(period=period, reducer="mean")
    cube.download(tmp_path / "periods.nc", format="netCDF")

    ds = xr.load_dataset(tmp_path / "periods.nc")
    assert ds.t.dtype.kind == "M"
    assert list(ds.t.values) == list(np.array(starts, dtype="datetime64[ns]"))
    assert [str(v) for v in ds.t_label.values] == labels  # the openEO labels, kept
    expected = windows(sample_data_dir, start, end, starts)
    for i, when in enumerate(starts):
        got = ds.B04.sel(t=when).transpose("y", "x").to_numpy()
        np.testing.assert_allclose(got, expected[i], rtol=1e-6, equal_nan=True)
    # what CDSE programs do with the time axis
    assert list(ds.t.dt.day.values) == [int(s[8:]) for s in starts]
    assert list(pd.to_datetime(ds.t.values).strftime("%Y-%m-%d")) == starts


def test_aggregate_spatial_json_and_csv_keyed_by_period_starts(con, sample_data_dir: Path,
                                                               tmp_path: Path) -> None:
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [(BOX["west"], BOX["north"]), (BOX["west"], BOX["south"]),
               (BOX["east"], BOX["south"]), (BOX["east"], BOX["north"])]
    ring = [list(to_ll.transform(x, y)) for x, y in corners]
    aoi = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    starts = ["2022-05-01", "2022-06-01", "2022-07-01"]
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                               temporal_extent=["2022-05-01", "2022-08-01"], bands=["B04"])
    means = cube.aggregate_temporal_period(period="month", reducer="mean") \
        .aggregate_spatial(geometries=aoi, reducer="mean")
    means.download(tmp_path / "ts.json", format="JSON")
    means.download(tmp_path / "ts.csv", format="CSV")

    expected = [float(np.nanmean(w)) for w in windows(sample_data_dir, "2022-05-01",
                                                      "2022-08-01", starts)]
    keys = [f"{s}T00:00:00Z" for s in starts]  # CDSE's '%Y-%m-%dT%H:%M:%SZ'
    doc = json.loads((tmp_path / "ts.json").read_text())
    assert list(doc) == keys
    assert [doc[k][0][0] for k in keys] == pytest.approx(expected, rel=1e-5)
    table = pd.read_csv(tmp_path / "ts.csv")
    assert list(table.columns) == ["date", "feature_index", "B04"]
    assert list(table.date) == keys
    assert list(table.B04) == pytest.approx(expected, rel=1e-5)
    # the openeo client's reader of CDSE time series takes it as dates
    from openeo.rest.conversions import timeseries_json_to_pandas
    series = timeseries_json_to_pandas(doc)
    assert list(pd.to_datetime(series.index).strftime("%Y-%m-%d")) == starts


def test_batch_job_files_and_stac_dated_by_period_starts(con, sample_data_dir: Path,
                                                         tmp_path: Path) -> None:
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                               temporal_extent=["2022-06-01", "2022-08-01"], bands=["B04"])
    monthly = cube.aggregate_temporal_period(period="month", reducer="mean")
    tif_job = monthly.save_result(format="GTiff").execute_batch()
    nc_job = monthly.save_result(format="netCDF").execute_batch()

    assets = tif_job.get_results().get_metadata()["assets"]
    names = sorted(assets)
    assert names == ["openEO_2022-06-01Z.tif", "openEO_2022-07-01Z.tif"]
    assert [assets[n].get("datetime") for n in names] == ["2022-06-01T00:00:00Z",
                                                          "2022-07-01T00:00:00Z"]
    collection = nc_job.get_results().get_metadata()
    (interval,) = collection["extent"]["temporal"]["interval"]
    assert interval == ["2022-06-01T00:00:00Z", "2022-07-01T00:00:00Z"]
    (nc_asset,) = collection["assets"].values()
    assert (nc_asset["start_datetime"], nc_asset["end_datetime"]) == tuple(interval)

    # our own netCDF read back: the periods are dates there, and a later graph uses them
    back = con.load_result(nc_job.job_id).filter_temporal("2022-07-01", "2022-07-02")
    back.download(tmp_path / "back.nc", format="netCDF")
    ds = xr.load_dataset(tmp_path / "back.nc")
    assert list(ds.t.values) == [np.datetime64("2022-07-01", "ns")]
    (july,) = windows(sample_data_dir, "2022-07-01", "2022-08-01", ["2022-07-01"])
    np.testing.assert_allclose(ds.B04.isel(t=0).transpose("y", "x").to_numpy(), july,
                               rtol=1e-6, equal_nan=True)
