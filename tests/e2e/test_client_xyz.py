"""The README's NDVI composite as an XYZ map service, through the official openeo client
against a real server: tiles at three zooms, one compared pixel by pixel with an independent
rendering (numpy composite of the sample COGs, rasterio.warp onto the same Web Mercator tile,
the same stretch)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from tests.support.data import cloud_free_ndvi_median

openeo = pytest.importorskip("openeo")

BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
DATES = ["2022-06-01", "2022-06-16"]
TMS = morecantile.tms.get("WebMercatorQuad")


def centre_tile(z: int) -> morecantile.Tile:
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(680200,
                                                                                  5151500)
    return TMS.tile(lon, lat, z)


def independent_tile(composite: np.ndarray, tile: morecantile.Tile, size: int = 256
                     ) -> np.ndarray:
    """The composite warped (bilinear) onto the tile's grid and stretched 0..1 -> 0..255,
    NaN where there is no data."""
    b = TMS.xy_bounds(tile)
    dst_transform = Affine((b.right - b.left) / size, 0, b.left, 0, -(b.top - b.bottom) / size,
                           b.top)
    out = np.full((size, size), np.nan, dtype="float32")
    rasterio.warp.reproject(
        composite.astype("float32"), out, src_transform=Affine(10, 0, 679720, 0, -10, 5151920),
        src_crs="EPSG:32632", src_nodata=np.nan, dst_transform=dst_transform,
        dst_crs="EPSG:3857", dst_nodata=np.nan, resampling=rasterio.warp.Resampling.bilinear)
    return np.where(np.isfinite(out), np.round(np.clip(out, 0, 1) * 255), np.nan)


def read_png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.MemoryFile(io.BytesIO(content)) as mem, mem.open() as ds:
            assert ds.driver == "PNG"
            return ds.read()


@pytest.mark.e2e
def test_ndvi_composite_as_xyz_service(server, sample_data_dir: Path) -> None:
    con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    assert "XYZ" in con.list_service_types()  # what cube.preview() checks first
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=DATES,
                             bands=["B04", "B08", "SCL"])
    scl = s2.band("SCL")
    cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    composite = s2.ndvi(nir="B08", red="B04").mask(cloud).reduce_dimension(
        dimension="t", reducer="median")

    service = composite.tiled_viewing_service(
        type="XYZ", title="NDVI", configuration={"rescale": [0, 1], "resampling": "bilinear"})
    meta = service.describe_service()
    assert meta["type"] == "XYZ" and meta["enabled"] is True
    # The template cube.preview() hands to ipyleaflet.TileLayer (no Authorization header).
    template = meta["url"]
    assert template.endswith("/{z}/{x}/{y}.png")

    tiles = {}
    for z in (12, 14, 15):
        t = centre_tile(z)
        r = httpx.get(template.format(z=z, x=t.x, y=t.y), timeout=120)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        tiles[z] = read_png(r.content)
        assert tiles[z].shape == (4, 256, 256)
        assert (tiles[z][3] == 255).any(), f"zoom {z} shows nothing"
    # At zoom 12 the 960 m box is a few tile pixels wide; at 15 it fills much of the tile.
    assert (tiles[12][3] == 255).sum() < (tiles[15][3] == 255).sum()

    expected = independent_tile(cloud_free_ndvi_median(sample_data_dir, BBOX, *DATES),
                                centre_tile(15))
    got = tiles[15]
    ours, theirs = got[3] == 255, np.isfinite(expected)
    # Footprints agree but for a rim of resampling at the box's and the clouds' edges.
    assert (ours != theirs).sum() <= 0.03 * theirs.sum(), ((ours != theirs).sum(), theirs.sum())
    both = ours & theirs
    grey = got[0][both].astype(float)
    np.testing.assert_array_equal(got[0][both], got[1][both])  # grey: r == g == b
    diff = np.abs(grey - expected[both])
    assert np.median(diff) <= 1, np.median(diff)
    assert (diff <= 3).mean() > 0.97, (diff <= 3).mean()

    service.delete_service()
    assert service.service_id not in [s["id"] for s in con.list_services()]


@pytest.mark.e2e
def test_finished_job_results_link_a_map_of_each_geotiff(server, sample_data_dir: Path) -> None:
    con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=DATES,
                               bands=["B04", "B08"]).ndvi(nir="B08", red="B04").max_time()
    job = con.create_job(cube.save_result("GTiff"))
    job.start_and_wait(max_poll_interval=0.2)
    results = job.get_results().get_metadata()
    (xyz,) = [lk for lk in results["links"] if lk["rel"] == "xyz"]
    assert xyz["type"] == "image/png" and "{z}/{x}/{y}.png?expires=" in xyz["href"]
    t = centre_tile(15)
    r = httpx.get(xyz["href"].format(z=t.z, x=t.x, y=t.y), timeout=60)  # signed: no login
    assert r.status_code == 200, r.text
    image = read_png(r.content)
    assert (image[3] == 255).mean() > 0.1
    forged = xyz["href"].replace("signature=", "signature=0").format(z=t.z, x=t.x, y=t.y)
    assert httpx.get(forged, timeout=60).status_code == 403
