"""Issue 11, defect 12: date processes on temporal labels inside callbacks, and the proposals
CDSE notebooks call (date_replace_component, vector_to_raster), through the official client
against a real server; expected values from Python's datetime, numpy and shapely."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from openeo.processes import absolute, array_apply, date_difference, date_shift, process
from pyproj import Transformer
from shapely.geometry import Point, Polygon
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
PERIOD = ["2022-06-01", "2022-07-10"]


def sample_items(sample_data_dir: Path) -> tuple[Path, list[dict]]:
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    items = json.loads((folder / "items.json").read_text())["items"]
    return folder, [i for i in items if PERIOD[0] <= i["datetime"][:10] < PERIOD[1]]


def download(cube, path: Path) -> xr.Dataset:
    cube.download(path, format="netCDF")
    with xr.open_dataset(path) as ds:
        return ds.drop_vars(["crs", "spatial_ref"], errors="ignore").load()


def test_date_processes_on_the_labels_of_array_apply(con, sample_data_dir: Path,
                                                     tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=PERIOD,
                             bands=["B04"])

    def days_from_mid_month(data):
        # CDSE's compositing notebooks: how far each observation lies from the 15th
        return array_apply(data, process=lambda x, index, label: absolute(date_difference(
            process("date_replace_component", date=label, value=15, component="day"), label,
            unit="day")))

    def days_since_start(data):
        return array_apply(data, process=lambda x, index, label: date_difference(
            date_shift(PERIOD[0], value=-1, unit="day"), label, unit="day"))

    near = download(s2.apply_dimension(dimension="t", process=days_from_mid_month),
                    tmp_path / "near.nc")
    since = download(s2.apply_dimension(dimension="t", process=days_since_start),
                     tmp_path / "since.nc")
    _, items = sample_items(sample_data_dir)
    dates = [dt.datetime.fromisoformat(i["datetime"].replace("Z", "+00:00")) for i in items]
    assert [str(t)[:10] for t in near.t.values] == [d.date().isoformat() for d in dates]
    mid = [abs((d - d.replace(day=15)).total_seconds()) / 86400 for d in dates]
    start = dt.datetime(2022, 5, 31, tzinfo=dt.UTC)
    days = [(d - start).total_seconds() / 86400 for d in dates]
    for i in range(len(dates)):
        np.testing.assert_allclose(near["B04"].values[i], mid[i])
        np.testing.assert_allclose(np.abs(since["B04"].values[i]), days[i])


def test_date_replace_component_in_a_process_graph(con) -> None:
    assert con.execute(process("date_replace_component", date="2022-06-07T10:20:00Z",
                               value=15, component="day")) == "2022-06-15T10:20:00Z"
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        con.execute(process("date_replace_component", date="2023-01-31", value=2,
                            component="month"))
    assert info.value.http_status_code == 400
    spec = con.describe_process("date_replace_component")
    assert [p["name"] for p in spec["parameters"]] == ["date", "value", "component"]


def test_vector_to_raster_burns_zonal_means(con, sample_data_dir: Path,
                                            tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-01", "2022-06-10"], bands=["B04"])
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    squares = [[(679800, 5151200), (680100, 5151200), (680100, 5151500), (679800, 5151500)],
               [(680200, 5151600), (680500, 5151600), (680500, 5151850), (680200, 5151850)]]
    fields = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": k}, "geometry": {
            "type": "Polygon", "coordinates": [[list(to_ll.transform(x, y))
                                                for x, y in sq + sq[:1]]]}}
        for k, sq in enumerate(squares)]}
    means = s2.aggregate_spatial(fields, reducer="mean")
    burnt = download(means.vector_to_raster(s2), tmp_path / "burnt.nc")

    folder, _ = sample_items(sample_data_dir)
    items = [i for i in json.loads((folder / "items.json").read_text())["items"]
             if "2022-06-01" <= i["datetime"][:10] < "2022-06-10"]
    xs = BOX["west"] + 5 + 10 * np.arange(96)
    ys = BOX["north"] - 5 - 10 * np.arange(84)
    np.testing.assert_allclose(burnt.x.values, xs)
    np.testing.assert_allclose(burnt.y.values, ys)
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    inside = []
    for feature in fields["features"]:
        poly = Polygon([to_utm.transform(*p) for p in feature["geometry"]["coordinates"][0]])
        inside.append(np.array([[poly.contains(Point(x, y)) for x in xs] for y in ys]))
    assert burnt["B04"].shape == (len(items), 84, 96)
    for t, item in enumerate(items):
        b04 = sample_band(sample_data_dir, item["datetime"], "B04", BOX).astype("float64")
        b04[b04 == 0] = np.nan
        expected = np.full(b04.shape, np.nan)
        for mask in inside:
            expected[mask] = np.nanmean(b04[mask])
        np.testing.assert_allclose(burnt["B04"].values[t], expected, rtol=1e-6)
