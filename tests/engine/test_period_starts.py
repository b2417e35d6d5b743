"""aggregate_temporal_period records each label's period start (decision 0013): every period's
start lies in it and the instant before in the previous one, per pandas' calendar; the labels
stay; files show the starts unless the labels were renamed."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracube.datacube.cube import Dimension, RasterCube
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import temporal
from terracube.results.writers import write_result

PERIODS = ["hour", "day", "week", "dekad", "month", "season", "tropical-season", "year",
           "decade", "decade-ad"]
MEAN = {"process_graph": {"m": {"process_id": "mean", "arguments": {"data": {
    "from_parameter": "data"}}, "result": True}}}


@pytest.mark.parametrize("period", PERIODS)
def test_each_start_begins_its_period(period: str) -> None:
    times = pd.date_range("1999-11-20", "2001-03-03", freq="13h")
    for ordinal in np.unique(temporal._period_ordinals(times, period)):
        start = pd.Timestamp(temporal._period_start(int(ordinal), period))
        before = start - pd.Timedelta("1s")
        assert temporal._period_ordinals(pd.DatetimeIndex([start]), period)[0] == ordinal
        assert temporal._period_ordinals(pd.DatetimeIndex([before]), period)[0] == ordinal - 1


def test_known_starts() -> None:
    starts = {("dekad", "2022-06-21"): "2022-06-21", ("season", "2022-01-15"): "2021-12-01",
              ("tropical-season", "2022-02-01"): "2021-11-01", ("week", "2022-06-05"):
              "2022-05-30", ("decade-ad", "2010-06-01"): "2001-01-01"}
    for (period, day), first in starts.items():
        (ordinal,) = temporal._period_ordinals(pd.DatetimeIndex([day]), period)
        assert str(temporal._period_start(int(ordinal), period))[:10] == first


def cube() -> RasterCube:
    times = pd.DatetimeIndex(["2022-05-03", "2022-05-20", "2022-07-09"])
    values = np.arange(3 * 2 * 2, dtype="float32").reshape(3, 2, 2)
    data = xr.DataArray(da.from_array(values), dims=("t", "y", "x"),
                        coords={"t": times.to_numpy(), "y": [5_080_005.0, 5_079_995.0],
                                "x": [465_005.0, 465_015.0]})
    return RasterCube(data, (Dimension("t", "temporal"), Dimension("y", "spatial", "y", 32633),
                             Dimension("x", "spatial", "x", 32633)))


def test_labels_stay_and_files_show_starts(registry, tmp_path) -> None:
    graph = {"a": {"process_id": "aggregate_temporal_period", "arguments": {
        "data": {"from_parameter": "cube"}, "period": "month", "reducer": MEAN}},
        "r": {"process_id": "rename_labels", "arguments": {
            "data": {"from_node": "a"}, "dimension": "t", "target": ["may", "june", "july"],
            "source": ["2022-05", "2022-06", "2022-07"]}, "result": True}}
    evaluator = Evaluator(Services(registry=registry))
    monthly = evaluator.run({"a": {**graph["a"], "result": True}}, {"cube": cube()})
    assert list(monthly.data.t.values) == ["2022-05", "2022-06", "2022-07"]
    (nc,) = write_result(monthly, "netCDF", {}, tmp_path / "a")
    ds = xr.load_dataset(nc.path)
    assert list(ds.t.values) == list(np.array(["2022-05-01", "2022-06-01", "2022-07-01"],
                                              dtype="datetime64[ns]"))
    assert list(ds.t_label.values) == ["2022-05", "2022-06", "2022-07"]
    np.testing.assert_allclose(ds["var"].isel(t=0), np.arange(8).reshape(2, 2, 2).mean(0))
    assert np.isnan(ds["var"].isel(t=1)).all()  # June: no data, label and date all the same

    renamed = evaluator.run(graph, {"cube": cube()})
    (nc,) = write_result(renamed, "netCDF", {}, tmp_path / "b")
    ds = xr.load_dataset(nc.path)
    assert list(ds.t.values) == ["may", "june", "july"] and "t_label" not in ds
