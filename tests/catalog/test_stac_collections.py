"""STAC sources (catalog/stac.py): a static collection on disk and over HTTP, and a real STAC
API server (../shared/bench/stac_api_server.py) on loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from tests.support.processes import StaticHttpServer
from tests.support.real_data import (
    BELGIUM_STAC,
    StacApiProcess,
    need,
    write_belgium_catalog,
)

from terracube.catalog.metadata import CollectionInputError
from terracube.catalog.stac import (
    StacApiSource,
    StacSource,
    source_from_href,
    source_from_record,
    source_to_record,
)
from terracube.catalog.stac_documents import describe_stac
from terracube.catalog.stac_items import NoDataForRequest
from terracube.datacube.request import BBox, LoadRequest

# 8 x 6 pixels of the 10 m UTM 31N grid of the Belgian crops (origin 644550, 5676350).
BOX = BBox(644600.0, 5676240.0, 644680.0, 5676300.0, 32631)


def expected_window(tif: Path, band_index: int) -> np.ndarray:
    with rasterio.open(tif) as ds:
        window = rasterio.windows.from_bounds(BOX.west, BOX.south, BOX.east, BOX.north,
                                              ds.transform)
        return ds.read(band_index, window=window).astype("float32")


@pytest.fixture(scope="module")
def stac_api(tmp_path_factory: pytest.TempPathFactory):
    api = StacApiProcess(write_belgium_catalog(tmp_path_factory.mktemp("stac")))
    yield api
    api.stop()


def test_static_collection_with_multiband_assets_named_per_file() -> None:
    src = source_from_href("BELGIUM", str(need(BELGIUM_STAC) / "collection.json"))
    assert isinstance(src, StacSource) and not isinstance(src, StacApiSource)
    assert list(src.bands) == ["B04", "B03", "B02"]
    assert src.crs == "EPSG:32631"
    assert all(list(it.assets) == ["data"] for it in src.items)
    doc = src.stac()
    # Derived from the items, not the catalog's placeholder extents.
    assert doc["extent"]["temporal"]["interval"] == [["2023-06-01T00:00:00Z",
                                                      "2023-06-06T00:00:00Z"]]
    assert doc["extent"]["spatial"]["bbox"][0][0] == pytest.approx(5.0697, abs=1e-3)
    assert doc["license"] == "other"
    cube = src.load(LoadRequest(bbox=BOX, bands=("B02", "B04")))
    assert cube.data.sizes == {"t": 3, "bands": 2, "y": 6, "x": 8}
    tif = BELGIUM_STAC / "sub-folder" / "openEO_2023-06-04Z.tif"
    np.testing.assert_array_equal(cube.data.sel(bands="B02").values[1], expected_window(tif, 3))
    np.testing.assert_array_equal(cube.data.sel(bands="B04").values[1], expected_window(tif, 1))
    np.testing.assert_allclose(cube.data.x.values, 644605 + 10 * np.arange(8))
    # the record keeps what was derived
    again = source_from_record("BELGIUM", source_to_record(src))
    assert again.stac() == doc


def test_static_collection_over_http_with_property_filter() -> None:
    server = StaticHttpServer(need(BELGIUM_STAC).parent)
    try:
        url = f"{server.url}/{BELGIUM_STAC.name}/collection.json"
        src = source_from_href("load_stac", url)
        assert src.items[0].assets["data"].href.startswith("http://127.0.0.1")
        custom = "https://github.com/cloudinsar/s1-workflows/issues/70"

        def check(name, cond, value):
            return value == cond

        cube = src.load(LoadRequest(bbox=BOX, bands=("B03",),
                                    properties={"testing_custom_property": custom}),
                        check_property=check)
        assert [str(t)[:10] for t in cube.data.t.values] == ["2023-06-01"]
        np.testing.assert_array_equal(cube.data.values[0, 0],
                                      expected_window(BELGIUM_STAC / "openEO_2023-06-01Z.tif", 2))
    finally:
        server.stop()


def test_stac_api_collection_searches_at_load_time(stac_api: StacApiProcess) -> None:
    url = f"{stac_api.url}/collections/belgium-rgb"
    assert describe_stac(url)["kind"] == "api"
    src = source_from_href("BELGIUM_API", url)
    assert isinstance(src, StacApiSource)
    q = src.queryables()
    assert q["properties"]["eo:cloud_cover"] == {"title": "eo:cloud_cover", "type": "number",
                                                "minimum": 5.0, "maximum": 60.0}

    def check(name, cond, value):
        return value < cond

    cube = src.load(LoadRequest(bbox=BOX.to_crs(4326), temporal_extent=("2023-06-02", None),
                                bands=("blue",),  # a common name
                                properties={"eo:cloud_cover": 50}), check_property=check)
    assert [str(t)[:10] for t in cube.data.t.values] == ["2023-06-06"]
    assert list(cube.data.bands.values) == ["B02"]
    tif = BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif"
    native = cube.data.sel(x=slice(BOX.west, BOX.east), y=slice(BOX.north, BOX.south))
    np.testing.assert_array_equal(native.values[0, 0], expected_window(tif, 3))
    with pytest.raises(NoDataForRequest):
        src.load(LoadRequest(temporal_extent=("2024-01-01", None)))
    rec = source_to_record(src)
    assert rec["api_url"].rstrip("/") == stac_api.url
    assert source_from_record("BELGIUM_API", rec).stac() == src.stac()


def test_api_landing_page_and_broken_urls_are_refused(stac_api: StacApiProcess) -> None:
    with pytest.raises(CollectionInputError, match="landing page of a STAC API"):
        describe_stac(stac_api.url + "/")
    with pytest.raises(CollectionInputError, match="cannot read a STAC document"):
        describe_stac(stac_api.url + "/collections/nope")


def test_duplicate_band_assets_and_thumbnails_are_left_out() -> None:
    """Earth Search style: each band as COG and as JPEG2000, plus a thumbnail."""
    import pystac

    from terracube.catalog.stac_documents import normalise_items

    tif = str(need(BELGIUM_STAC) / "openEO_2023-06-01Z.tif")
    proj = {"proj:epsg": 32631, "proj:shape": [58, 73],
            "proj:transform": [10.0, 0.0, 644550.0, 0.0, -10.0, 5676350.0]}
    bands = [{"name": "red"}, {"name": "green"}, {"name": "blue"}]
    item = pystac.Item.from_dict({
        "type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None,
        "properties": {"datetime": "2023-06-01T00:00:00Z"}, "links": [],
        "assets": {
            "rgb-jp2": {"href": tif, "type": "image/jp2", "roles": ["data"], "eo:bands": bands,
                        **proj},
            "rgb": {"href": tif, "type": "image/tiff; application=geotiff",
                    "roles": ["data"], "eo:bands": bands, **proj},
            "thumbnail": {"href": tif, "type": "image/png", "roles": ["thumbnail"]},
        }})
    items, infos, crs = normalise_items([item], "test")
    assert list(items[0].assets) == ["data"]
    assert items[0].assets["data"].extra_fields["eo:bands"][0]["name"] == "red"
    assert [b.name for b in infos] == ["red", "green", "blue"]
    assert [b.common_name for b in infos] == ["red", "green", "blue"]
    assert crs == "EPSG:32631"
