"""The built-in SENTINEL2_L2A collection through the catalog: metadata and lazy loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terracube import errors
from terracube.catalog import Catalog
from terracube.datacube.cube import is_lazy
from terracube.datacube.request import BBox, LoadRequest

UTM_BOX = BBox(679720, 5151080, 680680, 5151920, "EPSG:32632")


@pytest.fixture(scope="module")
def source(sample_data_dir: Path):
    return Catalog(sample_data_dir).get("SENTINEL2_L2A")


@pytest.fixture(scope="module")
def folder(sample_data_dir: Path) -> Path:
    return sample_data_dir / "samples" / "sentinel2_l2a"


def test_metadata_has_datacube_dimensions_and_bands(source) -> None:
    stac = source.stac()
    dims = stac["cube:dimensions"]
    assert dims["x"]["axis"] == "x" and dims["y"]["axis"] == "y"
    assert dims["x"]["reference_system"] == 32632 and dims["x"]["step"] == 10
    assert dims["t"]["extent"] == ["2022-04-03T10:20:00Z", "2022-09-30T10:20:00Z"]
    assert "B8A" in dims["bands"]["values"] and "SCL" in dims["bands"]["values"]
    assert "synthetic" in stac["description"].lower()
    west, south, east, north = stac["extent"]["spatial"]["bbox"][0]
    assert 11.0 < west < east < 12.0 and 46.0 < south < north < 47.0
    eo = {b["name"]: b for b in stac["summaries"]["eo:bands"]}
    assert eo["B04"]["common_name"] == "red" and eo["B08"]["common_name"] == "nir"


def test_load_is_lazy_and_equals_the_files(source, folder: Path) -> None:
    cube = source.load(LoadRequest(bbox=UTM_BOX, temporal_extent=("2022-06-01", "2022-06-03"),
                                   bands=("B04", "SCL")))
    assert is_lazy(cube)
    assert cube.data.dims == ("t", "bands", "y", "x")
    assert cube.data.sizes == {"t": 1, "bands": 2, "y": 84, "x": 96}
    assert cube.crs == 32632
    red = cube.data.sel(bands="B04").isel(t=0).values
    with rasterio.open(folder / "20220602" / "B04.tif") as ds:
        window = rasterio.windows.from_bounds(679720, 5151080, 680680, 5151920, ds.transform)
        expected = ds.read(1, window=window).astype("float32")
    np.testing.assert_array_equal(red, expected)
    assert float(cube.data.x[0]) == 679725.0 and float(cube.data.y[0]) == 5151915.0


def test_bbox_in_lon_lat_is_reprojected(source) -> None:
    cube = source.load(LoadRequest(bbox=BBox(11.33, 46.48, 11.335, 46.483, 4326),
                                   temporal_extent=("2022-06-01", "2022-06-03"),
                                   bands=("B08",)))
    xs, ys = cube.data.x.values, cube.data.y.values
    # Inside the collection's UTM extent, and a few hundred metres wide like the box.
    assert 678000 < xs.min() < xs.max() < 681840 and 300 < xs.max() - xs.min() < 600
    assert 5149680 < ys.min() < ys.max() < 5153520


def test_nodata_becomes_nan(source, folder: Path) -> None:
    index = json.loads((folder / "items.json").read_text())
    for item in index["items"]:  # the dates with an orbit-edge wedge of no-data
        with rasterio.open(folder / item["assets"]["B02"]) as ds:
            raw = ds.read(1)
        if (raw == 0).any():
            break
    else:
        pytest.fail("the sample has no date with no-data")
    day = item["datetime"][:10]
    end = str(np.datetime64(day) + np.timedelta64(1, "D"))
    cube = source.load(LoadRequest(temporal_extent=(day, end), bands=("B02",)))
    got = cube.data.isel(t=0, bands=0).values
    np.testing.assert_array_equal(np.isnan(got), raw == 0)


def test_property_filter_on_cloud_cover(source, folder: Path) -> None:
    index = json.loads((folder / "items.json").read_text())
    clear = sorted(i["datetime"][:10] for i in index["items"] if i["eo:cloud_cover"] <= 10)
    cube = source.load(
        LoadRequest(bands=("B04",), properties={"eo:cloud_cover": 10}),
        check_property=lambda name, cond, value: value is not None and value <= cond)
    got = [str(t)[:10] for t in cube.data.t.values]
    assert got == clear and 0 < len(got) < len(index["items"])


def test_extent_outside_the_collection_is_a_clear_error(source, folder: Path) -> None:
    with pytest.raises(errors.OpenEOError) as info:
        source.load(LoadRequest(bbox=BBox(500000, 5000000, 500100, 5000100, "EPSG:32632")))
    assert info.value.code == "ProcessParameterInvalid" and info.value.status == 400
    assert "does not intersect" in info.value.message
    # where it is, in the degrees users write extents in (corners transformed with pyproj)
    from pyproj import Transformer

    with rasterio.open(next(folder.rglob("*.tif"))) as ds:
        west, south, east, north = ds.bounds
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(
        [west, east, west, east], [south, south, north, north])
    said = re.search(r"west ([\d.]+), south ([\d.]+), east ([\d.]+), north ([\d.]+) in degrees",
                     info.value.message)
    assert said, info.value.message
    assert float(said[1]) <= min(lon) + 1e-3 and float(said[3]) >= max(lon) - 1e-3
    assert float(said[2]) <= min(lat) + 1e-3 and float(said[4]) >= max(lat) - 1e-3


def test_unknown_band_and_empty_time_are_errors(source) -> None:
    with pytest.raises(errors.OpenEOError, match="B99"):
        source.load(LoadRequest(bands=("B99",)))
    with pytest.raises(errors.OpenEOError, match="No data"):
        source.load(LoadRequest(temporal_extent=("2020-01-01", "2020-02-01")))


def test_unknown_collection_is_collection_not_found(sample_data_dir: Path) -> None:
    with pytest.raises(errors.OpenEOError) as info:
        Catalog(sample_data_dir).get("NOPE")
    assert info.value.code == "CollectionNotFound" and info.value.status == 404
