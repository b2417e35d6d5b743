"""One stretch per result: neighbouring XYZ tiles of one batch job result (its `rel: xyz`
link) and of one XYZ service without `rescale` map pixel values to colours with the same
linear function, so a map of them shows no seams. The values are computed independently:
the result GeoTIFF downloaded and warped onto each tile's grid with rasterio."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

openeo = pytest.importorskip("openeo")

pytestmark = pytest.mark.e2e

BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
DATES = ["2022-06-01", "2022-07-01"]
TMS = morecantile.tms.get("WebMercatorQuad")
# Two neighbours at zoom 16, both inside the result (it spans x 34832..34835, y 23184..23186).
TILES = [morecantile.Tile(34833, 23185, 16), morecantile.Tile(34834, 23185, 16)]


def read_png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.MemoryFile(io.BytesIO(content)) as mem, mem.open() as ds:
            return ds.read()


def warped(path: Path, tile: morecantile.Tile, size: int = 256) -> np.ndarray:
    """Band 1 of the file warped (bilinear) onto the tile's Web Mercator grid; NaN outside."""
    b = TMS.xy_bounds(tile)
    transform = Affine((b.right - b.left) / size, 0, b.left, 0, -(b.top - b.bottom) / size,
                       b.top)
    out = np.full((size, size), np.nan, dtype="float64")
    with rasterio.open(path) as ds:
        rasterio.warp.reproject(rasterio.band(ds, 1), out, dst_transform=transform,
                                dst_crs="EPSG:3857", src_nodata=ds.nodata, dst_nodata=np.nan,
                                resampling=rasterio.warp.Resampling.bilinear)
    return out


def fit(values: np.ndarray, grey: np.ndarray) -> tuple[float, float]:
    """The linear function grey = a * value + b of the pixels stretched strictly inside 0..255
    (clipped ones say nothing about the function), by least squares."""
    inside = np.isfinite(values) & (grey > 0) & (grey < 255)
    assert inside.sum() > 5000, inside.sum()
    a, b = np.polyfit(values[inside], grey[inside].astype("float64"), 1)
    return float(a), float(b)


@pytest.fixture(scope="module")
def result(server, tmp_path_factory):
    """A finished batch job (NDVI maximum of June) on the shared server: its connection, its
    cube, its rel: xyz link and the downloaded result file."""
    con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=DATES,
                               bands=["B04", "B08"]).ndvi(nir="B08", red="B04").max_time()
    job = con.create_job(cube.save_result("GTiff"))
    job.start_and_wait(max_poll_interval=0.2)
    results = job.get_results()
    (xyz,) = [lk for lk in results.get_metadata()["links"] if lk["rel"] == "xyz"]
    folder = tmp_path_factory.mktemp("stretch")
    (path,) = [p for p in results.download_files(folder) if p.suffix == ".tif"]
    return con, cube, xyz["href"], path


def tiles_of(template: str, headers: dict | None = None) -> list[np.ndarray]:
    out = []
    for t in TILES:
        r = httpx.get(template.format(z=t.z, x=t.x, y=t.y), headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        out.append(read_png(r.content))
    return out


def test_neighbouring_result_tiles_share_the_files_stretch(result) -> None:
    _, _, href, path = result
    with rasterio.open(path) as ds:
        band = ds.read(1, masked=True).astype("float64").filled(np.nan)
    lo, hi = np.percentile(band[np.isfinite(band)], [2, 98])  # the whole file's 2-98 %
    values = [warped(path, t) for t in TILES]
    # Each tile's own 2-98 % differ: a per-tile stretch would map them differently.
    own = [np.percentile(v[np.isfinite(v)], [2, 98]) for v in values]
    assert abs(own[0][0] - own[1][0]) + abs(own[0][1] - own[1][1]) > 0.02 * (hi - lo), own
    for image, v in zip(tiles_of(href), values, strict=True):
        valid = np.isfinite(v)
        assert (image[3][valid] == 255).mean() > 0.99
        expected = np.round(np.clip((v - lo) / (hi - lo), 0, 1) * 255)
        diff = np.abs(image[0].astype("float64") - expected)[valid]
        assert (diff <= 1).mean() > 0.99, (diff <= 1).mean()  # bilinear edges may differ by 1
        assert np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2])


def service_fits(con, cube, path: Path) -> tuple[tuple[float, float], ...]:
    """The linear functions of the two tiles of an XYZ service of `cube` without `rescale`,
    after checking that they agree: over the result's 2-98 % range the two put every value
    within 1.5 grey levels of each other."""
    service = cube.tiled_viewing_service(type="XYZ", title="NDVI, default stretch")
    try:
        images = tiles_of(service.describe_service()["url"])
    finally:
        service.delete_service()
    values = [warped(path, t) for t in TILES]
    (a0, b0), (a1, b1) = fits = tuple(fit(v, image[0])
                                      for v, image in zip(values, images, strict=True))
    lo, hi = file_percentiles(path)
    probe = np.linspace(lo, hi, 50)
    assert np.abs((a0 * probe + b0) - (a1 * probe + b1)).max() < 1.5, fits
    return fits


def file_percentiles(path: Path) -> tuple[float, float]:
    with rasterio.open(path) as ds:
        band = ds.read(1, masked=True).astype("float64").filled(np.nan)
    lo, hi = np.percentile(band[np.isfinite(band)], [2, 98])
    return float(lo), float(hi)


def test_neighbouring_service_tiles_share_one_stretch(result) -> None:
    con, cube, _, path = result
    ((a, b), _) = service_fits(con, cube, path)
    # It is (close to) the 2-98 % stretch of the whole result: it comes from a coarse view of
    # the result (at most 256 pixels each way), not every pixel.
    lo, hi = file_percentiles(path)
    assert abs(-b / a - lo) < 0.05 * (hi - lo) and abs((255 - b) / a - hi) < 0.05 * (hi - lo)


def test_a_large_area_service_shares_one_stretch_from_the_overviews(result) -> None:
    """Loads over more than 50 km are evaluated per tile; the stretch then comes from the
    whole area evaluated at ~240 m pixels from the COG overviews (the data: the 3.8 km
    sample in it)."""
    con, _, _, path = result
    x, y = 680200, 5151500
    big = {"west": x - 30_000, "south": y - 30_000, "east": x + 30_000, "north": y + 30_000,
           "crs": "EPSG:32632"}
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=big, temporal_extent=DATES,
                               bands=["B04", "B08"]).ndvi(nir="B08", red="B04").max_time()
    service_fits(con, cube, path)
