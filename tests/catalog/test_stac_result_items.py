"""STAC items as openEO batch jobs publish their results, read by catalog/stac.py (load_stac):
one item whose assets are files of different dates (the GeoPySpark driver), and one GeoTIFF
whose bands are "<datetime>_<band>" (terracube's GTiff result of a cube with time).

Both are made from the real Belgian Sentinel-2 crops; values are compared with rasterio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from tests.support.real_data import BELGIUM_STAC, need

from terracube.catalog.stac import source_from_href
from terracube.catalog.stac_documents import unrolled_bands
from terracube.catalog.stac_items import NoDataForRequest
from terracube.datacube.request import BBox, LoadRequest

TIFS = {"2023-06-01T00:00:00Z": BELGIUM_STAC / "openEO_2023-06-01Z.tif",
        "2023-06-04T00:00:00Z": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-04Z.tif",
        "2023-06-06T00:00:00Z": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif"}
BANDS = ["B04", "B03", "B02"]
# 8 x 6 pixels of the 10 m UTM 31N grid of the crops.
BOX = BBox(644600.0, 5676240.0, 644680.0, 5676300.0, 32631)


def read(tif: Path, band: int) -> np.ndarray:
    with rasterio.open(tif) as ds:
        w = rasterio.windows.from_bounds(BOX.west, BOX.south, BOX.east, BOX.north, ds.transform)
        return ds.read(band, window=w).astype("float32")


def results_item(assets: dict, start: str, end: str) -> dict:
    """A batch job's results item: a date range, bands named per asset, no raster:bands."""
    with rasterio.open(TIFS[start]) as ds:
        b = rasterio.warp.transform_bounds(ds.crs, 4326, *ds.bounds)
    return {"type": "Feature", "stac_version": "1.0.0", "id": "j-results",
            "bbox": list(b), "geometry": {"type": "Polygon", "coordinates": [[
                [b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]]},
            "properties": {"datetime": None, "start_datetime": start, "end_datetime": end},
            "links": [], "assets": assets}


def test_one_item_with_a_file_per_date(tmp_path: Path) -> None:
    need(BELGIUM_STAC)
    assets = {f"openEO_{t[:10]}Z.tif": {
        "href": str(tif), "type": "image/tiff; application=geotiff", "roles": ["data"],
        "datetime": t, "eo:bands": [{"name": b} for b in BANDS]} for t, tif in TIFS.items()}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(results_item(assets, min(TIFS), max(TIFS))))
    src = source_from_href("load_stac", str(path))
    assert [str(it.datetime)[:10] for it in src.items] == [t[:10] for t in sorted(TIFS)]
    cube = src.load(LoadRequest(bbox=BOX, bands=("B02",),
                                temporal_extent=("2023-06-02", None)))
    assert [str(t)[:10] for t in cube.data.t.values] == ["2023-06-04", "2023-06-06"]
    for i, t in enumerate(["2023-06-04T00:00:00Z", "2023-06-06T00:00:00Z"]):
        np.testing.assert_array_equal(cube.data.values[i, 0], read(TIFS[t], 3))


@pytest.fixture
def unrolled_tif(tmp_path: Path) -> Path:
    """The three dates x three bands in one GeoTIFF, bands named "<datetime>_<band>"."""
    need(BELGIUM_STAC)
    path = tmp_path / "openEO.tif"
    with rasterio.open(TIFS["2023-06-01T00:00:00Z"]) as first:
        profile = {**first.profile, "count": 9}
    with rasterio.open(path, "w", **profile) as dst:
        i = 1
        for t, tif in TIFS.items():
            with rasterio.open(tif) as src:
                for j, band in enumerate(BANDS, start=1):
                    dst.write(src.read(j), i)
                    dst.set_band_description(i, f"{t}_{band}")
                    i += 1
    return path


def test_one_file_with_dates_as_bands(unrolled_tif: Path) -> None:
    assets = {"openEO.tif": {"href": str(unrolled_tif), "roles": ["data"],
                             "type": "image/tiff; application=geotiff",
                             "eo:bands": [{"name": b} for b in BANDS]}}
    path = unrolled_tif.parent / "item.json"
    path.write_text(json.dumps(results_item(assets, min(TIFS), max(TIFS))))
    src = source_from_href("load_stac", str(path))
    cube = src.load(LoadRequest(bbox=BOX, bands=("B02", "B04"),
                                temporal_extent=("2023-06-02", "2023-06-07")))
    assert dict(cube.data.sizes) == {"t": 2, "bands": 2, "y": 6, "x": 8}
    assert [str(t)[:10] for t in cube.data.t.values] == ["2023-06-04", "2023-06-06"]
    assert list(cube.data.bands.values) == ["B02", "B04"]
    assert [d.name for d in cube.dimensions] == ["t", "bands", "y", "x"]
    assert list(cube.attrs["band_metadata"]) == ["B02", "B04"]
    for i, t in enumerate(["2023-06-04T00:00:00Z", "2023-06-06T00:00:00Z"]):
        np.testing.assert_array_equal(cube.data.values[i, 0], read(TIFS[t], 3))
        np.testing.assert_array_equal(cube.data.values[i, 1], read(TIFS[t], 1))
    everything = src.load(LoadRequest())
    assert dict(everything.data.sizes)["t"] == 3 and list(everything.data.bands) == BANDS
    with pytest.raises(NoDataForRequest, match="2023-06-01T00:00:00Z to 2023-06-06"):
        src.load(LoadRequest(temporal_extent=("2024-01-01", None)))
    with pytest.raises(Exception, match="no band.*B08; available: B04, B03, B02"):
        src.load(LoadRequest(bands=("B08",)))


def test_what_counts_as_dates_as_bands() -> None:
    assert unrolled_bands(["2022-06-02T10:20:00Z_B04", "2022-06-02T10:20:00Z_B08",
                           "2022-06-07T10:20:00Z_B04", "2022-06-07T10:20:00Z_B08"]) == {
        "2022-06-02T10:20:00Z_B04": ("2022-06-02T10:20:00Z", "B04"),
        "2022-06-02T10:20:00Z_B08": ("2022-06-02T10:20:00Z", "B08"),
        "2022-06-07T10:20:00Z_B04": ("2022-06-07T10:20:00Z", "B04"),
        "2022-06-07T10:20:00Z_B08": ("2022-06-07T10:20:00Z", "B08")}
    assert unrolled_bands(["2022-06-02_B04", "2022-06-07_B04"]) is not None
    assert unrolled_bands(["B04", "B08"]) is None
    assert unrolled_bands(["2022-06-02T10:20:00Z_B04"]) is None  # one band: nothing to fold
    assert unrolled_bands(["2022-06-02_B04", "2022-06-02_B08", "2022-06-07_B04"]) is None
    assert unrolled_bands(["2022-06-02_B04", None]) is None
