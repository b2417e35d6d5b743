"""Issue 11, defect 9: leniencies real graphs rely on, through the official client against a
real server, values checked with numpy on the sample files:
array_create of numbers and arrays is flattened as on CDSE, aggregate_spatial with a reducer
returning several statistics gives one value per band and statistic, and errors of reducers
never name our internal dimensions."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from openeo.processes import array_create, max, mean, quantiles, sd
from pyproj import Transformer
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-10"]  # two dates


def stack(sample_data_dir: Path, band: str) -> np.ndarray:
    """The band over the dates of JUNE in BOX, no-data as NaN: (t, y, x)."""
    return np.stack(list(sample_series(sample_data_dir, band, BOX, *JUNE).values()))


def test_array_create_flattens_numbers_and_arrays(con, sample_data_dir: Path,
                                                  tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04"])

    def statistics(x):
        return array_create([mean(x), quantiles(x, probabilities=[0.25, 0.75]), sd(x),
                             quantiles(x, probabilities=[0.5]), 7])

    cube = s2.apply_dimension(dimension="t", target_dimension="bands", process=statistics)
    cube = cube.rename_labels("bands", target=["mean", "q25", "q75", "sd", "median", "seven"])
    cube.download(tmp_path / "stats.nc", format="netCDF")
    b04 = stack(sample_data_dir, "B04")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = {"mean": np.nanmean(b04, 0), "q25": np.nanquantile(b04, 0.25, axis=0),
                    "q75": np.nanquantile(b04, 0.75, axis=0), "sd": np.nanstd(b04, 0, ddof=1),
                    "median": np.nanmedian(b04, 0), "seven": np.full(b04.shape[1:], 7.0)}
    with xr.open_dataset(tmp_path / "stats.nc") as ds:
        for name, values in expected.items():
            np.testing.assert_allclose(ds[name].values, values, rtol=1e-5, err_msg=name)


def test_aggregate_spatial_with_several_statistics(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    # a field of 40 x 40 pixels, in lon/lat as users draw them
    corners = [(679800, 5151200), (680200, 5151200), (680200, 5151600), (679800, 5151600)]
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    ring = [list(to_ll.transform(x, y)) for x, y in corners + corners[:1]]
    field = {"type": "Polygon", "coordinates": [ring]}
    cube = s2.aggregate_spatial(field, reducer=lambda x: array_create(
        [mean(x), max(x), quantiles(x, probabilities=[0.25, 0.75])]))
    cube.download(tmp_path / "stats.geojson", format="GeoJSON")
    props = json.loads((tmp_path / "stats.geojson").read_text())["features"][0]["properties"]

    # the pixels whose centre is inside the (reprojected) polygon
    from shapely.geometry import Point, Polygon
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    polygon = Polygon([to_utm.transform(*p) for p in ring])
    ys = BOX["north"] - 5 - 10 * np.arange(84)
    xs = BOX["west"] + 5 + 10 * np.arange(96)
    inside = np.array([[polygon.contains(Point(x, y)) for x in xs] for y in ys])
    dates = sorted({k[:20] for k in props})
    assert len(dates) == 2
    for band in ("B04", "B08"):
        values = stack(sample_data_dir, band)
        for i, date in enumerate(dates):
            pixels = values[i][inside]
            pixels = pixels[~np.isnan(pixels)]
            expected = {"mean": pixels.mean(), "max": pixels.max(),
                        "p25": np.quantile(pixels, 0.25), "p75": np.quantile(pixels, 0.75)}
            for stat, value in expected.items():
                assert props[f"{date}_{band}_{stat}"] == pytest.approx(value, rel=1e-5), stat


def test_reducer_errors_do_not_name_internal_dimensions(con) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04"])
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        s2.reduce_dimension(dimension="t", reducer=lambda x: array_create(
            [mean(x), max(x)])).download(format="netCDF")
    assert info.value.http_status_code == 400
    assert "__" not in info.value.message
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        s2.reduce_dimension(dimension="t", reducer=lambda x: quantiles(
            x, probabilities=[0.25, 0.75])).download(format="netCDF")
    assert info.value.http_status_code == 400
    assert "__" not in info.value.message
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        s2.apply(lambda x: array_create([x, x])).download(format="netCDF")
    assert info.value.http_status_code == 400
    assert "__" not in info.value.message


def test_a_one_element_array_is_a_single_value(con, sample_data_dir: Path,
                                               tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04"])
    cube = s2.aggregate_temporal_period("month", reducer=lambda x: array_create(
        [quantiles(x, probabilities=[0.5])]))
    cube.download(tmp_path / "median.nc", format="netCDF")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack(sample_data_dir, "B04"), axis=0)
    with xr.open_dataset(tmp_path / "median.nc") as ds:
        np.testing.assert_allclose(ds["B04"].values[0], expected, rtol=1e-6)
