"""Temporal processes on real time series (Sentinel-2 NDVI, OSTIA SST) and small synthetic cubes.

Expected values are computed independently with numpy/pandas; results must stay dask-backed.
"""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from tests.support.paths import SHARED

from terracube.datacube.cube import Dimension, RasterCube, is_lazy
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import temporal
from terracube.errors import OpenEOError

DATA = SHARED / "data"
NDVI_DIR = DATA / "eolearn_s2_slovenia" / "v2024_68dates"
SST_FILE = DATA / "iris_ostia_sst" / "ostia_monthly.nc"

MEAN = {"process_graph": {"m": {"process_id": "mean", "arguments": {"data": {
    "from_parameter": "data"}}, "result": True}}}
COUNT = {"process_graph": {"c": {"process_id": "count", "arguments": {"data": {
    "from_parameter": "data"}}, "result": True}}}


def run(registry, process_id: str, **arguments):
    graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
    return Evaluator(Services(registry=registry)).run(graph)


def xyt_cube(values: np.ndarray, times, tname: str = "t", chunks=None) -> RasterCube:
    """A (t, y, x) cube in EPSG:32633 with 10 m pixels."""
    nt, ny, nx = values.shape
    data = xr.DataArray(
        da.from_array(values, chunks=chunks or (1, ny, nx)), dims=(tname, "y", "x"),
        coords={tname: pd.DatetimeIndex(times).to_numpy(),
                "y": 5_080_000.0 - 5 - 10 * np.arange(ny), "x": 465_000.0 + 5 + 10 * np.arange(nx)})
    dims = (Dimension(tname, "temporal"), Dimension("y", "spatial", "y", 32633),
            Dimension("x", "spatial", "x", 32633))
    return RasterCube(data, dims)


@pytest.fixture(scope="module")
def ndvi() -> RasterCube:
    if not NDVI_DIR.is_dir():
        pytest.skip(f"sample data not found at {NDVI_DIR}")
    values = np.load(NDVI_DIR / "data" / "NDVI.npy")[..., 0]
    valid = np.load(NDVI_DIR / "mask" / "IS_VALID.npy")[..., 0]
    values = np.where(valid, values, np.nan).astype(np.float64)
    times = json.loads((NDVI_DIR / "timestamps.json").read_text())
    return xyt_cube(values, times, chunks=(8, 50, 50))


@pytest.fixture(scope="module")
def sst() -> RasterCube:
    if not SST_FILE.is_file():
        pytest.skip(f"sample data not found at {SST_FILE}")
    ds = xr.open_dataset(SST_FILE)
    arr = ds["surface_temperature"].astype(np.float64)
    data = xr.DataArray(da.from_array(arr.values, chunks=(12, 18, 216)),
                        dims=("time", "y", "x"),
                        coords={"time": arr["time"].values,
                                "y": arr["latitude"].values.astype(float),
                                "x": arr["longitude"].values.astype(float)})
    dims = (Dimension("time", "temporal"), Dimension("y", "spatial", "y", 4326),
            Dimension("x", "spatial", "x", 4326))
    return RasterCube(data, dims)


# --- aggregate_temporal_period ----------------------------------------------------------------
def test_monthly_mean_of_real_ndvi_matches_pandas(registry, ndvi):
    out = run(registry, "aggregate_temporal_period", data=ndvi, period="month", reducer=MEAN)
    assert is_lazy(out)
    assert out.data.dims == ("t", "y", "x")
    times = pd.DatetimeIndex(ndvi.data.t.values)
    months = pd.period_range(times.min(), times.max(), freq="M")
    assert list(out.data.t.values) == [f"{p.year:04d}-{p.month:02d}" for p in months]
    raw = ndvi.data.values
    key = times.to_period("M")
    for i, month in enumerate(months):
        sel = np.flatnonzero(key == month)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmean(raw[sel], axis=0) if len(sel) else np.full(raw.shape[1:],
                                                                             np.nan)
        np.testing.assert_allclose(out.data.isel(t=i).values, expected, equal_nan=True)


def test_reducer_is_called_once_per_period_with_whole_group(ndvi):
    calls = []

    def reducer(data, context=None):
        calls.append(data)
        return data.data.max(data.dim)

    out = temporal.aggregate_temporal_period(ndvi, "year", reducer)
    assert list(out.data.t.values) == ["2015", "2016", "2017"]
    assert len(calls) == 3
    assert all(c.dim == "t" and c.labeled and is_lazy(RasterCube(
        c.data, ndvi.dimensions)) for c in calls)
    assert [c.size for c in calls] == [
        int((pd.DatetimeIndex(ndvi.data.t.values).year == y).sum()) for y in (2015, 2016, 2017)]


def test_daily_series_stacks_equal_months_and_matches_pandas(registry):
    times = pd.date_range("2020-01-01", "2020-12-31", freq="D")
    rng = np.random.default_rng(7)
    values = rng.normal(size=(len(times), 3, 2))
    values[rng.random(values.shape) < 0.2] = np.nan
    cube = xyt_cube(values, times, chunks=(50, 3, 2))
    out = run(registry, "aggregate_temporal_period", data=cube, period="month", reducer=MEAN)
    assert is_lazy(out)
    frame = pd.DataFrame(values.reshape(len(times), -1), index=times)
    expected = frame.groupby(times.month).mean().to_numpy().reshape(12, 3, 2)
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-12)
    counted = run(registry, "aggregate_temporal_period", data=cube, period="month",
                  reducer=COUNT)
    np.testing.assert_array_equal(counted.data.values,
                                  frame.groupby(times.month).count().to_numpy().reshape(12, 3, 2))


def test_reducers_that_use_labels_see_the_labels_of_their_group(registry):
    times = pd.date_range("2020-01-01", "2020-03-31", freq="D")
    cube = xyt_cube(np.ones((len(times), 1, 1)), times)
    labels_count = {"process_graph": {
        "l": {"process_id": "array_labels", "arguments": {"data": {"from_parameter": "data"}}},
        "c": {"process_id": "count", "arguments": {"data": {"from_node": "l"},
                                                   "condition": True}, "result": True}}}
    out = run(registry, "aggregate_temporal_period", data=cube, period="month",
              reducer=labels_count)
    np.testing.assert_array_equal(out.data.values[:, 0, 0], [31, 29, 31])


@pytest.mark.parametrize(("period", "times", "labels"), [
    ("hour", ["2020-06-01T00:10:00", "2020-06-01T02:59:59"],
     ["2020-06-01-00", "2020-06-01-01", "2020-06-01-02"]),
    ("day", ["2020-12-30", "2021-01-01T12:00:00"], ["2020-365", "2020-366", "2021-001"]),
    ("week", ["2020-12-27", "2021-01-04"], ["2020-52", "2020-53", "2021-01"]),
    ("dekad", ["2024-01-28", "2024-02-29"], ["2024-03", "2024-04", "2024-05", "2024-06"]),
    ("month", ["2023-11-15", "2024-01-02"], ["2023-11", "2023-12", "2024-01"]),
    ("season", ["2023-11-30", "2024-02-29", "2024-03-01"], ["2023-son", "2023-djf",
                                                           "2024-mam"]),
    ("tropical-season", ["2023-10-31", "2024-04-30", "2024-05-01"],
     ["2023-mjjaso", "2023-ndjfma", "2024-mjjaso"]),
    ("year", ["2019-12-31T23:59:59", "2021-01-01"], ["2019", "2020", "2021"]),
    ("decade", ["2019-06-01", "2020-01-01", "2030-01-01"], ["2010", "2020", "2030"]),
    ("decade-ad", ["2020-12-31", "2021-01-01"], ["2011", "2021"]),
])
def test_period_labels_are_complete_and_as_specified(registry, period, times, labels):
    values = np.arange(len(times) * 4, dtype=float).reshape(len(times), 2, 2)
    cube = xyt_cube(values, times)
    out = run(registry, "aggregate_temporal_period", data=cube, period=period, reducer=MEAN)
    assert list(out.data.t.values) == labels
    assert is_lazy(out)
    result = out.data.values
    # every input date falls into exactly one labelled period
    assert np.isfinite(result).all(axis=(1, 2)).sum() == len(
        {lab for lab, v in zip(labels, result) if np.isfinite(v).all()})


def test_empty_periods_give_what_the_reducer_gives_for_no_values(registry):
    cube = xyt_cube(np.ones((2, 2, 3)), ["2020-01-05", "2020-03-05"])
    counted = run(registry, "aggregate_temporal_period", data=cube, period="month",
                  reducer=COUNT)
    np.testing.assert_array_equal(counted.data.values[:, 0, 0], [1, 0, 1])
    averaged = run(registry, "aggregate_temporal_period", data=cube, period="month",
                   reducer=MEAN)
    assert np.isnan(averaged.data.values[1]).all()


def test_dimension_name_is_kept(registry):
    cube = xyt_cube(np.ones((2, 2, 2)), ["2020-01-05", "2020-03-05"], tname="time")
    out = run(registry, "aggregate_temporal_period", data=cube, period="month", reducer=MEAN,
              dimension="time")
    assert out.data.dims == ("time", "y", "x")
    assert out.dim("time").type == "temporal"


# --- aggregate_temporal -----------------------------------------------------------------------
def _official_asset_in_january() -> RasterCube:
    """assets/xyt-more-timestamps.json5 with the January dates its aggregate_temporal cases
    were written for (the asset now holds June dates)."""
    values = np.array([
        [[17.5, 53.75, -27.1, -64.25], [-18.0, 8.45, -3.11, -20.5], [50.4, 49.24, 25.16, -81.6]],
        [[-63.65, 9.0, -68.52, -8.0], [1.05, -63.8, 73.05, 51.05],
         [47.86, -21.30, np.nan, 46.15]],
        [[-13.40, 36.07, 43.88, 74.72], [79.92, 74.10, 98.28, -23.62],
         [-70.40, -30.03, 1.26, 5.28]],
        [[71.79, np.nan, 97.01, -76.48], [-21.55, np.nan, -60.00, 56.84],
         [-11.94, -54.23, np.nan, 73.26]],
        [[-12.23, 61.46, 2.38, -84.76], [28.36, 48.45, -65.85, 65.90],
         [29.50, -45.82, 78.05, 58.27]]])
    return xyt_cube(values, ["2020-01-01", "2020-01-03", "2020-01-05", "2020-01-07",
                             "2020-01-09"])


def test_aggregate_temporal_official_numbers(registry):
    cube = _official_asset_in_january()
    out = run(registry, "aggregate_temporal", data=cube, reducer=MEAN, intervals=[
        ["2020-01-01T00:00:00Z", "2020-01-07T00:00:00Z"],
        ["2020-01-07T00:00:00Z", "2020-01-14T00:00:00Z"],
        ["2020-01-14T00:00:00Z", "2020-01-21T00:00:00Z"]])
    assert is_lazy(out)
    assert out.data.t.dtype.kind == "M"
    np.testing.assert_array_equal(out.data.t.values, np.array(
        ["2020-01-01", "2020-01-07", "2020-01-14"], dtype="datetime64[ns]"))
    np.testing.assert_allclose(out.data.values[0], [
        [-19.85, 32.94, -17.25, 0.82], [20.99, 6.25, 56.07, 2.31],
        [9.29, -0.70, 13.21, -10.06]], atol=0.01)
    np.testing.assert_allclose(out.data.values[1], [
        [29.78, 61.46, 49.70, -80.62], [3.40, 48.45, -62.93, 61.37],
        [8.78, -50.03, 78.05, 65.77]], atol=0.01)
    assert np.isnan(out.data.values[2]).all()


def test_aggregate_temporal_open_intervals_and_labels(registry):
    cube = _official_asset_in_january()
    out = run(registry, "aggregate_temporal", data=cube, reducer=MEAN,
              intervals=[[None, "2020-01-04"], ["2020-01-04", None]], labels=["before", "after"])
    assert list(out.data.t.values) == ["before", "after"]
    np.testing.assert_allclose(out.data.values[0, 0], [-23.075, 31.375, -47.81, -36.125])
    np.testing.assert_allclose(out.data.values[1, 2], [-17.613, -43.36, 39.655, 45.603],
                               atol=1e-3)


def test_aggregate_temporal_times_of_day_wrap_midnight(registry):
    values = np.arange(4, dtype=float).reshape(4, 1, 1) * np.ones((4, 2, 2))
    cube = xyt_cube(values, ["2020-01-01T05:00", "2020-01-01T07:00", "2020-01-01T19:00",
                             "2020-01-02T01:00"])
    out = run(registry, "aggregate_temporal", data=cube, reducer=MEAN,
              intervals=[["06:00:00", "18:00:00"], ["18:00:00", "06:00:00"]])
    assert list(out.data.t.values) == ["06:00:00", "18:00:00"]
    np.testing.assert_allclose(out.data.values[:, 0, 0], [1.0, (0 + 2 + 3) / 3])


@pytest.mark.parametrize(("arguments", "code"), [
    ({"intervals": [["2020-01-02", "2020-01-01"]]}, "TemporalExtentEmpty"),
    ({"intervals": [["2020-01-01", "2020-01-02"], ["2020-01-01", "2020-01-03"]]},
     "DistinctDimensionLabelsRequired"),
    ({"intervals": [["2020-01-01", "2020-01-02"]], "labels": ["a", "b"]},
     "ProcessParameterInvalid"),
    ({"intervals": [["2020-01-01", "2020-01-02"]], "dimension": "time"},
     "DimensionNotAvailable"),
    ({"intervals": [["2020-01-01", "2020-01-02"]], "dimension": "x"}, "DimensionNotAvailable"),
])
def test_aggregate_temporal_errors(registry, arguments, code):
    cube = xyt_cube(np.ones((2, 2, 2)), ["2020-01-01", "2020-01-05"])
    with pytest.raises(OpenEOError) as info:
        run(registry, "aggregate_temporal", data=cube, reducer=MEAN, **arguments)
    assert info.value.code == code
    assert info.value.status == 400


def test_too_many_temporal_dimensions(registry):
    data = xr.DataArray(da.zeros((2, 2, 1, 1)), dims=("t1", "t2", "y", "x"), coords={
        "t1": pd.to_datetime(["2020-01-01", "2021-01-01"]).to_numpy(),
        "t2": pd.to_datetime(["2020-01-01", "2021-01-01"]).to_numpy(), "y": [0.5], "x": [0.5]})
    cube = RasterCube(data, (Dimension("t1", "temporal"), Dimension("t2", "temporal"),
                             Dimension("y", "spatial", "y", 3857),
                             Dimension("x", "spatial", "x", 3857)))
    with pytest.raises(OpenEOError) as info:
        run(registry, "aggregate_temporal_period", data=cube, period="year", reducer=MEAN)
    assert info.value.code == "TooManyDimensions"
    out = run(registry, "aggregate_temporal_period", data=cube, period="year", reducer=MEAN,
              dimension="t2")
    assert list(out.data.t2.values) == ["2020", "2021"]


# --- climatological_normal and anomaly --------------------------------------------------------
def test_monthly_normals_of_real_sst(registry, sst):
    out = run(registry, "climatological_normal", data=sst, period="month",
              climatology_period=[2007, 2009])
    assert is_lazy(out)
    assert list(out.data.time.values) == [f"{m:02d}" for m in range(1, 13)]
    raw = sst.data.values
    times = pd.DatetimeIndex(sst.data.time.values)
    for m in (1, 7, 12):
        sel = np.flatnonzero((times.month == m) & (times.year >= 2007) & (times.year <= 2009))
        assert len(sel) == 3
        np.testing.assert_allclose(out.data.sel(time=f"{m:02d}").values,
                                   raw[sel].mean(axis=0), rtol=1e-12)


def test_seasonal_normals_use_the_december_before_the_period(registry, sst):
    out = run(registry, "climatological_normal", data=sst, period="season",
              climatology_period=[2007, 2009])
    assert list(out.data.time.values) == ["djf", "mam", "jja", "son"]
    times = pd.DatetimeIndex(sst.data.time.values)
    winter = ((times.month == 12) & (times.year >= 2006) & (times.year <= 2008)) | (
        times.month.isin([1, 2]) & (times.year >= 2007) & (times.year <= 2009))
    assert winter.sum() == 9  # Dec 2006 is used, Dec 2009 is not
    np.testing.assert_allclose(out.data.sel(time="djf").values,
                               sst.data.values[np.flatnonzero(winter)].mean(axis=0))


def test_anomaly_of_monthly_sst_against_its_normals(registry, sst):
    normals = run(registry, "climatological_normal", data=sst, period="month",
                  climatology_period=[2007, 2009])
    monthly = run(registry, "aggregate_temporal_period", data=sst, period="month",
                  reducer=MEAN)
    out = run(registry, "anomaly", data=monthly, normals=normals, period="month")
    assert is_lazy(out)
    assert list(out.data.time.values) == list(monthly.data.time.values)
    got = out.data.values
    months = [int(label[5:]) for label in monthly.data.time.values]
    expected = monthly.data.values - normals.data.values[np.array(months) - 1]
    np.testing.assert_allclose(got, expected, equal_nan=True)
    # the anomalies of the climatology years average to zero per month
    years = np.array([int(label[:4]) for label in monthly.data.time.values])
    july = np.flatnonzero((np.array(months) == 7) & (years >= 2007) & (years <= 2009))
    assert np.nanmax(np.abs(got[july].mean(axis=0))) < 1e-9


def test_anomaly_with_dates_and_a_single_period(registry, sst):
    normal = run(registry, "climatological_normal", data=sst, period="climatology-period",
                 climatology_period=[2007, 2009])
    assert list(normal.data.time.values) == ["climatology-period"]
    out = run(registry, "anomaly", data=sst, normals=normal, period="climatology-period")
    np.testing.assert_allclose(out.data.values, sst.data.values - normal.data.values,
                               rtol=1e-12)


# --- resample_cube_temporal -------------------------------------------------------------------
def test_resample_cube_temporal_nearest_and_ties_earlier(registry):
    values = np.array([1.0, 2.0, 3.0])[:, None, None] * np.ones((3, 2, 2))
    data = xyt_cube(values, ["2020-01-01", "2020-01-05", "2020-01-09"])
    target = xyt_cube(np.zeros((3, 2, 2)), ["2020-01-03", "2020-01-08", "2020-02-01"])
    out = run(registry, "resample_cube_temporal", data=data, target=target)
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.t.values, target.data.t.values)
    np.testing.assert_array_equal(out.data.values[:, 0, 0], [1.0, 3.0, 3.0])


def test_resample_cube_temporal_valid_within(registry):
    values = np.array([[1.0, 1.0], [np.nan, 2.0], [3.0, np.nan]])[:, :, None]
    data = xyt_cube(values, ["2020-01-01", "2020-01-05", "2020-01-07"])
    target = xyt_cube(np.zeros((2, 2, 1)), ["2020-01-05", "2020-03-01"])
    out = run(registry, "resample_cube_temporal", data=data, target=target, valid_within=3)
    got = out.data.values[:, :, 0]
    # pixel 0: 01-05 is no-data, the nearest valid within 3 days is 01-07 (2 days)
    np.testing.assert_array_equal(got[0], [3.0, 2.0])
    assert np.isnan(got[1]).all()


def test_resample_cube_temporal_dimension_errors(registry):
    data = xyt_cube(np.zeros((1, 1, 1)), ["2020-01-01"])
    other = xyt_cube(np.zeros((1, 1, 1)), ["2020-01-01"], tname="time")
    with pytest.raises(OpenEOError) as info:
        run(registry, "resample_cube_temporal", data=data, target=other)
    assert info.value.code == "DimensionMismatch"
    with pytest.raises(OpenEOError) as info:
        run(registry, "resample_cube_temporal", data=data, target=other, dimension="time")
    assert info.value.code == "DimensionNotAvailable"


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # land pixels
def test_normals_of_monthly_composites_and_their_anomalies(registry, sst):
    # the standard chain: monthly composites (labels YYYY-MM) -> climatological_normal ->
    # anomaly; the normals were refused ("labels are not dates")
    monthly = run(registry, "aggregate_temporal_period", data=sst, period="month",
                  reducer=MEAN)
    normals = run(registry, "climatological_normal", data=monthly, period="month",
                  climatology_period=[2007, 2009])
    assert list(normals.data.time.values) == [f"{m:02d}" for m in range(1, 13)]
    labels = list(monthly.data.time.values)
    years = np.array([int(label[:4]) for label in labels])
    months = np.array([int(label[5:]) for label in labels])
    composites = monthly.data.values
    for m in (1, 7, 12):
        sel = np.flatnonzero((months == m) & (years >= 2007) & (years <= 2009))
        assert len(sel) == 3
        np.testing.assert_allclose(normals.data.sel(time=f"{m:02d}").values,
                                   np.nanmean(composites[sel], axis=0), rtol=1e-12)
    out = run(registry, "anomaly", data=monthly, normals=normals, period="month")
    np.testing.assert_allclose(out.data.values,
                               composites - normals.data.values[months - 1], equal_nan=True)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # land pixels
def test_seasonal_normals_of_season_composites(registry, sst):
    # a winter label carries the year of its December and counts for the year it ends in
    seasons = run(registry, "aggregate_temporal_period", data=sst, period="season",
                  reducer=MEAN)
    normals = run(registry, "climatological_normal", data=seasons, period="season",
                  climatology_period=[2007, 2009])
    assert list(normals.data.time.values) == ["djf", "mam", "jja", "son"]
    labels = list(seasons.data.time.values)
    winters = [labels.index(f"{y}-djf") for y in (2006, 2007, 2008)]
    np.testing.assert_allclose(normals.data.sel(time="djf").values,
                               np.nanmean(seasons.data.values[winters], axis=0), rtol=1e-12)
    summers = [labels.index(f"{y}-jja") for y in (2007, 2008, 2009)]
    np.testing.assert_allclose(normals.data.sel(time="jja").values,
                               np.nanmean(seasons.data.values[summers], axis=0), rtol=1e-12)
    out = run(registry, "anomaly", data=seasons, normals=normals, period="season")
    i = labels.index("2008-djf")
    np.testing.assert_allclose(out.data.values[i], seasons.data.values[i]
                               - normals.data.sel(time="djf").values, equal_nan=True)
