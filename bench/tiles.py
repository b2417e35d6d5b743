#!/usr/bin/env python
"""Tile latency of an XYZ map service: the README's NDVI composite, 256² tiles, three zooms.

    .venv/bin/python bench/tiles.py                  # zooms 12 14 16, 15 rounds
    .venv/bin/python bench/tiles.py --zooms 13 15 --rounds 30
    .venv/bin/python bench/tiles.py --whole --zooms 11 12   # no spatial_extent: per tile

A fresh `terracube serve` (its own data folder with the generated sample data) gets an XYZ
service of the README composite (cloud-masked NDVI median of June 2022, rescale 0..1, colour
map). For the tile over the field at each zoom it measures, over HTTP:
- first: the very first tile the server renders (imports, catalog, dask start-up included);
- cold: the first request of that tile (rendered, not in the tile cache);
- render p50: the same tile rendered again and again (the cache bypassed by an unused query
  parameter, which is part of the cache key) — a warm server rendering a tile;
- cached p50: the same URL again (served from the tile cache).
Results: bench/results/tiles/summary.md and summary.json. Not a timed unit test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import morecantile
import pyproj

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "tiles"
BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
USER, PASSWORD = "bench", "bench-tiles"


def composite(extent: dict | None = BBOX) -> dict:
    """The README example: cloud-masked NDVI, median over June 2022 (extent None: the whole
    collection, which makes each tile evaluate its own area and, at low zooms, read the
    overviews)."""
    def eq(value: int) -> dict:
        return {"process_id": "eq", "arguments": {"x": {"from_node": "scl"}, "y": value}}

    def or_(a: str, b: str) -> dict:
        return {"process_id": "or", "arguments": {"x": {"from_node": a}, "y": {"from_node": b}}}

    # As the client's s2.band("SCL") == 3 | ...: one reducer over the bands.
    cloud = {"process_graph": {
        "scl": {"process_id": "array_element", "arguments": {
            "data": {"from_parameter": "data"}, "label": "SCL"}},
        "e3": eq(3), "e8": eq(8), "e9": eq(9), "e10": eq(10),
        "o1": or_("e3", "e8"), "o2": or_("o1", "e9"), "o3": {**or_("o2", "e10"), "result": True}}}
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": extent,
            "temporal_extent": ["2022-06-01", "2022-07-01"], "bands": ["B04", "B08", "SCL"]}},
        "cloud": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": "bands", "reducer": cloud}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"},
                                                     "nir": "B08", "red": "B04"}},
        "masked": {"process_id": "mask", "arguments": {"data": {"from_node": "ndvi"},
                                                       "mask": {"from_node": "cloud"}}},
        "median": {"process_id": "reduce_dimension", "result": True, "arguments": {
            "data": {"from_node": "masked"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "median", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(data_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from terracube.auth.users import UserStore
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data
    from terracube.db import open_database
    from terracube.settings import Settings

    ensure_sample_data(data_dir)
    db = open_database(Settings(data_dir=data_dir).database_url)
    UserStore(db).add(USER, PASSWORD)
    db.dispose()


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    env["TERRACUBE_WORKERS"] = "0"
    log = open(data_dir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "terracube.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    api = f"http://127.0.0.1:{port}/openeo/1.2"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: see {data_dir / 'server.log'}")
        try:
            if httpx.get(f"{api}/", timeout=2).status_code == 200:
                return proc, api
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not start")


def timed_get(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    r = client.get(url)
    elapsed = time.perf_counter() - start
    if r.status_code != 200 or r.headers.get("content-type") != "image/png":
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zooms", type=int, nargs="+", default=[12, 14, 16])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--whole", action="store_true",
                        help="the composite of the whole collection (no spatial_extent)")
    args = parser.parse_args()
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(680200,
                                                                                  5151500)
    tms = morecantile.tms.get("WebMercatorQuad")
    with tempfile.TemporaryDirectory(prefix="terracube-bench-tiles-") as tmp:
        data_dir = Path(tmp)
        prepare(data_dir)
        proc, api = start_server(data_dir)
        try:
            client = httpx.Client(timeout=300)
            token = client.get(f"{api}/credentials/basic", auth=(USER, PASSWORD)).json()
            headers = {"Authorization": f"Bearer basic//{token['access_token']}"}
            r = client.post(f"{api}/services", headers=headers, json={
                "type": "XYZ", "process": composite(None if args.whole else BBOX),
                "configuration": {"rescale": [0, 1], "colormap": "ndvi"}})
            r.raise_for_status()
            template = client.get(f"{api}/services/{r.headers['OpenEO-Identifier']}",
                                  headers=headers).json()["url"]
            rows = []
            for i, z in enumerate(args.zooms):
                t = tms.tile(lon, lat, z)
                url = template.format(z=z, x=t.x, y=t.y)
                cold = timed_get(client, url)
                cached = [timed_get(client, url) for _ in range(args.rounds)]
                render = [timed_get(client, f"{url}?round={k}") for k in range(args.rounds)]
                rows.append({"zoom": z, "tile": f"{z}/{t.x}/{t.y}", "first_of_server": i == 0,
                             "cold_s": cold, "render_p50_s": statistics.median(render),
                             "render_max_s": max(render),
                             "cached_p50_s": statistics.median(cached)})
                print(json.dumps(rows[-1]))
        finally:
            proc.terminate()
            proc.wait(30)
    out = OUT / "whole" if args.whole else OUT
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "rounds": args.rounds, "rows": rows}
    (out / "summary.json").write_text(json.dumps(meta, indent=2) + "\n")
    what = "the whole collection, per tile" if args.whole else "over HTTP"
    lines = [f"# XYZ tiles of the README NDVI composite (256², {what})", "",
             f"{meta['date']} · {meta['machine']} · {args.rounds} rounds per figure", "",
             "| zoom | tile | cold (first render) | render p50 (warm, uncached) | render max "
             "| cached p50 |", "|---|---|---|---|---|---|"]
    for row in rows:
        note = " (first tile of the server)" if row["first_of_server"] else ""
        lines.append(f"| {row['zoom']} | {row['tile']} | {row['cold_s'] * 1000:.0f} ms{note} "
                     f"| {row['render_p50_s'] * 1000:.0f} ms | {row['render_max_s'] * 1000:.0f} ms"
                     f" | {row['cached_p50_s'] * 1000:.1f} ms |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
