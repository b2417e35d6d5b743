"""Push-down reads only what a graph needs: bytes actually read from a large COG are counted.

The COG (4096 x 4096 uint16, 256 x 256 tiles, uncompressed: 32 MiB) is served by a small HTTP
server on loopback that honours Range requests and counts the bytes it sends; GDAL reads it
with /vsicurl/ as it would read a COG from object storage. Every run uses its own URL, so GDAL's
in-process cache of downloaded ranges cannot hide reads.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from terracube.catalog.stac_items import BandInfo, StacItemsSource
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.optimize import optimize
from terracube.engine.registry import build_registry

SIZE = 4096
X0, Y0, RES = 500000.0, 5200000.0, 10.0
CRS = "EPSG:32633"
# 100 x 80 pixels well inside one 256 x 256 tile (rows/cols 1100..1200 / 2100..2180).
SMALL = {"west": X0 + 2100 * RES, "east": X0 + 2180 * RES,
         "north": Y0 - 1100 * RES, "south": Y0 - 1200 * RES, "crs": CRS}


class CountingServer:
    """Serves one file over HTTP with Range support and counts the body bytes sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.bytes_sent = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(server.size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:
                ranges = self.headers.get("Range")
                if not ranges:
                    start, end = 0, server.size - 1
                    self.send_response(200)
                else:
                    spec = ranges.split("=", 1)[1]
                    assert "," not in spec, "multi-range requests are not served"
                    first, _, last = spec.partition("-")
                    start = int(first)
                    end = min(int(last) if last else server.size - 1, server.size - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{server.size}")
                length = end - start + 1
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                with open(server.path, "rb") as f:
                    f.seek(start)
                    body = f.read(length)
                self.wfile.write(body)
                with server.lock:
                    server.bytes_sent += len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def big_cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("big-cog")
    plain, cog = folder / "plain.tif", folder / "big.tif"
    rows = np.arange(SIZE, dtype=np.uint32)[:, None]
    cols = np.arange(SIZE, dtype=np.uint32)[None, :]
    values = ((rows * 7 + cols * 3) % 60000 + 1).astype(np.uint16)
    with rasterio.open(plain, "w", driver="GTiff", width=SIZE, height=SIZE, count=1,
                       dtype="uint16", crs=CRS, transform=from_origin(X0, Y0, RES, RES),
                       nodata=0, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(values, 1)
    rasterio.shutil.copy(plain, cog, driver="COG", compress="NONE", blocksize=256,
                         overviews="NONE")
    plain.unlink()
    return cog


@pytest.fixture(scope="module")
def server(big_cog: Path):
    srv = CountingServer(big_cog)
    yield srv
    srv.stop()


class OneCollection:
    """A catalog with one collection (the test's own, not the sample)."""

    def __init__(self, source: StacItemsSource) -> None:
        self.source = source

    def get(self, collection_id: str) -> StacItemsSource:
        assert collection_id == self.source.id
        return self.source


def collection(href: str) -> OneCollection:
    from pyproj import Transformer

    tr = Transformer.from_crs(CRS, 4326, always_xy=True)
    w, s, e, n = tr.transform_bounds(X0, Y0 - SIZE * RES, X0 + SIZE * RES, Y0)
    item = pystac.Item(
        id="big", bbox=[w, s, e, n], datetime=dt.datetime(2023, 5, 1, tzinfo=dt.UTC),
        properties={},
        geometry={"type": "Polygon",
                  "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
    item.add_asset("B01", pystac.Asset(
        href=href, media_type=pystac.MediaType.COG, roles=["data"],
        extra_fields={"proj:shape": [SIZE, SIZE],
                      "proj:transform": list(from_origin(X0, Y0, RES, RES))[:6],
                      "proj:epsg": 32633}))
    source = StacItemsSource("BIG", [item], [BandInfo("B01", nodata=0, resolution=RES)],
                             crs=CRS, description="one large COG")
    return OneCollection(source)


def read(server: CountingServer, graph: dict, run: str) -> tuple[int, np.ndarray]:
    """Bytes the server sent while the graph's result was computed, and the values."""
    catalog = collection(f"{server.url}/{run}/big.tif")
    services = Services(registry=build_registry(), catalog=catalog)
    with server.lock:
        before = server.bytes_sent
    cube = Evaluator(services).run(graph)
    values = cube.data.values
    with server.lock:
        return server.bytes_sent - before, values


def graph(extent: dict | None) -> dict:
    g = {"load": {"process_id": "load_collection", "arguments": {"id": "BIG"}}}
    last = "load"
    if extent is not None:
        g["crop"] = {"process_id": "filter_bbox",
                     "arguments": {"data": {"from_node": "load"}, "extent": extent}}
        last = "crop"
    g[last]["result"] = True
    return g


def test_small_bbox_reads_only_the_tiles_it_covers(server: CountingServer,
                                                   big_cog: Path) -> None:
    small = graph(SMALL)
    optimized = optimize(copy.deepcopy(small))
    assert optimized["load"]["arguments"]["spatial_extent"] == SMALL

    full_bytes, full = read(server, graph(None), "full")
    plain_bytes, plain = read(server, small, "plain")
    fast_bytes, fast = read(server, optimized, "optimized")

    print(f"bytes read: full {full_bytes}, filter only {plain_bytes}, pushed down {fast_bytes}")
    assert full.shape == (1, 1, SIZE, SIZE)
    assert full_bytes >= big_cog.stat().st_size * 0.95  # every tile was read once
    assert fast.shape == (1, 1, 100, 80)
    np.testing.assert_array_equal(fast, plain)
    np.testing.assert_array_equal(fast[0, 0], full[0, 0, 1100:1200, 2100:2180])
    # one 128 KiB tile plus the header, against 32 MiB: far below a hundredth
    assert fast_bytes < full_bytes / 100
    # without push-down dask still limits the read to the loader's chunks, but those are
    # much larger than the box
    assert fast_bytes * 4 < plain_bytes


# --- a coarser resample_spatial reads the overviews -------------------------------------------
@pytest.fixture(scope="module")
def cog_with_overviews(tmp_path_factory: pytest.TempPathFactory, big_cog: Path) -> Path:
    path = tmp_path_factory.mktemp("cog-overviews") / "big.tif"
    rasterio.shutil.copy(big_cog, path, driver="COG", compress="NONE", blocksize=256,
                         overview_resampling="average")
    return path


def resampled(resolution: float, method: str) -> dict:
    return {"load": {"process_id": "load_collection", "arguments": {"id": "BIG"}},
            "coarse": {"process_id": "resample_spatial", "arguments": {
                "data": {"from_node": "load"}, "resolution": resolution, "method": method},
                "result": True}}


def test_a_coarser_resample_spatial_reads_the_overviews(cog_with_overviews: Path) -> None:
    from rasterio.enums import Resampling

    server = CountingServer(cog_with_overviews)
    try:
        coarse_bytes, coarse = read(server, resampled(8 * RES, "average"), "coarse")
        full_bytes, _ = read(server, graph(None), "full")
        # a statistic of the pixels (here the maximum) must see every full-resolution pixel
        max_bytes, highest = read(server, resampled(8 * RES, "max"), "max")
    finally:
        server.stop()
    print(f"bytes read: full resolution {full_bytes}, 8x coarser {coarse_bytes}")
    assert coarse.shape == (1, 1, SIZE // 8, SIZE // 8)
    # the 8x overview (512² uint16 = 512 KiB) and headers, against 32 MiB
    assert coarse_bytes < full_bytes / 20
    assert max_bytes >= full_bytes * 0.95
    with rasterio.open(cog_with_overviews) as ds:
        assert ds.overviews(1) == [2, 4, 8, 16]
        overview = ds.read(1, out_shape=(SIZE // 8, SIZE // 8), resampling=Resampling.average)
        full = ds.read(1)
    np.testing.assert_array_equal(coarse[0, 0], overview)  # the overview's own pixels
    blocks = full.reshape(SIZE // 8, 8, SIZE // 8, 8)
    # overviews are averages of averages stored as uint16: within a few DN of the exact mean
    assert np.abs(coarse[0, 0] - blocks.mean(axis=(1, 3))).max() <= 4
    np.testing.assert_array_equal(highest[0, 0], blocks.max(axis=(1, 3)))
