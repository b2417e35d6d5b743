"""Issue 16, "Explain before running": POST /explain (the dry run), the estimate built on it,
the server's limits in /processing_parameters and the refusal of a too big synchronous request
before it runs — through a real `terracube serve` and the official client.

The dry run must read no pixel: a server whose sample files are empty (0 bytes, so any read
fails; only the first date's files are whole, the catalog reads their headers) explains a
1 cm grid over the whole collection (283 TB) in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DATES = ["2022-06-01", "2022-06-10"]
MEAN_T = {"process_graph": {"m": {"process_id": "mean", "arguments": {
    "data": {"from_parameter": "data"}}, "result": True}}}


def huge_graph(resolution: float = 0.01) -> dict:
    """The whole collection resampled to `resolution` metres, averaged over time."""
    return {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": None, "temporal_extent": None,
            "bands": ["B04", "B08"]}},
        "rs": {"process_id": "resample_spatial", "arguments": {
            "data": {"from_node": "load"}, "resolution": resolution}},
        "red": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "rs"}, "dimension": "t", "reducer": MEAN_T}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "red"}, "format": "GTiff"}, "result": True}}


def raw_post(con, path: str, body: dict) -> requests.Response:
    """A POST whose error the test reads (the client would raise it)."""
    return requests.post(con.root_url.rstrip("/") + path, json=body, timeout=300,
                         headers={"Authorization": f"Bearer {con.auth.bearer}"})


def raw_get(con, path: str) -> requests.Response:
    return requests.get(con.root_url.rstrip("/") + path, timeout=300,
                        headers={"Authorization": f"Bearer {con.auth.bearer}"})


@pytest.fixture(scope="module")
def empty_files_server(sample_data_dir: Path, tmp_path_factory):
    """A server whose sample collection has its index, but empty image files after the first
    date (whose headers the catalog reads for the grid: metadata, no pixels)."""
    from tests.support.processes import ServerProcess

    data = tmp_path_factory.mktemp("no-pixels")
    source = sample_data_dir / "samples"
    for path in source.rglob("*"):
        if path.is_file():
            target = data / "samples" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".tif" and "sentinel2" in str(path) and "20220403" not in str(path):
                target.touch()  # exists (the sample is not regenerated), but holds no pixel
            else:
                shutil.copy(path, target)
    srv = ServerProcess(data)
    yield srv
    srv.stop()


def test_explain_reads_no_pixel_and_is_fast(empty_files_server) -> None:
    con = openeo.connect(empty_files_server.url).authenticate_basic("demo", "demo")
    started = time.monotonic()
    answer = con.post("/explain", json={"process": {"process_graph": huge_graph()}},
                      expected_status=200).json()
    took = time.monotonic() - started
    assert answer["valid"] and answer["errors"] == [], answer["errors"]
    assert took < 30, took  # generous for a loaded machine; about 0.5 s when idle
    nodes = {n["id"]: n for n in answer["nodes"]}
    load, rs, red = nodes["load"], nodes["rs"], nodes["red"]
    # The collection: 37 dates, 384 x 384 pixels of 10 m; two uint16 bands stored.
    assert load["shape"] == {"t": 37, "bands": 2, "y": 384, "x": 384}
    assert load["bytes_to_read"] == 37 * 2 * 384 * 384 * 2
    t = next(d for d in load["dimensions"] if d["name"] == "t")
    assert (t["count"], t["first"], t["last"]) == (37, "2022-04-03T10:20:00Z",
                                                   "2022-09-30T10:20:00Z")
    bands = next(d for d in load["dimensions"] if d["name"] == "bands")
    assert (bands["first"], bands["last"]) == ("B04", "B08")
    assert load["crs"] == 32632 and load["resolution"] == [10.0, 10.0]
    assert rs["shape"] == {"t": 37, "bands": 2, "y": 384_000, "x": 384_000}
    assert rs["dtype"] == load["dtype"]
    assert rs["bytes_to_hold"] == 37 * 2 * 384_000**2 * np.dtype(rs["dtype"]).itemsize
    assert pytest.approx(rs["resolution"], rel=1e-6) == [0.01, 0.01]
    assert "t" not in red["shape"]
    (out,) = answer["outputs"]
    assert out["node"] == "save" and out["format"] == "GTiff"
    assert out["bytes"] == 2 * 384_000**2 * np.dtype(red["dtype"]).itemsize
    # The same graph run for real fails: the files hold no pixels (so the dry run read none).
    small = huge_graph(resolution=20)
    small["load"]["arguments"]["spatial_extent"] = BOX
    r = raw_post(con, "/result", {"process": {"process_graph": small}})
    assert r.status_code >= 400


def test_explain_agrees_with_the_result(con, tmp_path) -> None:
    """The shape and dtype the dry run promises are those of the file /result writes."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DATES,
                               bands=["B04", "B08"]).ndvi(nir="B08", red="B04")
    cube = cube.reduce_dimension("t", reducer="max")
    graph = cube.save_result(format="GTiff").flat_graph()
    answer = con.post("/explain", json={"process": {"process_graph": graph}},
                      expected_status=200).json()
    (out,) = answer["outputs"]
    path = tmp_path / "ndvi.tif"
    path.write_bytes(con.post("/result", json={"process": {"process_graph": graph}},
                              expected_status=200).content)
    with rasterio.open(path) as ds:
        shape = (ds.height, ds.width)
        dtype = ds.dtypes[0]
    assert (out["shape"]["y"], out["shape"]["x"]) == shape
    saved = next(n for n in answer["nodes"] if n["process_id"] == "save_result")
    assert saved["dtype"] == dtype
    assert answer["bytes_to_read"] > 0 and answer["output_bytes"] >= shape[0] * shape[1]


def test_explain_lists_errors_like_validation(con) -> None:
    graph = huge_graph()
    graph["rs"]["arguments"]["resolutoin"] = 1
    answer = con.post("/explain", json={"process": {"process_graph": graph}},
                      expected_status=200).json()
    assert not answer["valid"]
    assert [e["code"] for e in answer["errors"]] == ["ProcessParameterUnsupported"]
    graph = huge_graph()
    graph["load"]["arguments"]["id"] = "NO_SUCH_COLLECTION"
    answer = con.post("/explain", json={"process": {"process_graph": graph}},
                      expected_status=200).json()
    assert [e["code"] for e in answer["errors"]] == ["CollectionNotFound"]
    assert "node 'load'" in answer["errors"][0]["message"]


def test_too_big_sync_request_is_refused_before_it_runs(con) -> None:
    started = time.monotonic()
    r = raw_post(con, "/result", {"process": {"process_graph": huge_graph()}})
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["code"] == "ProcessGraphComplexity"
    assert "node 'rs'" in error["message"] and "batch job" in error["message"]
    assert "resample_spatial would hold" in error["message"]
    assert time.monotonic() - started < 60
    # A request may lower its own limit: a small request refused under 1 kB.
    small = huge_graph(resolution=20)
    small["load"]["arguments"]["spatial_extent"] = BOX
    r = raw_post(con, "/result", {"process": {"process_graph": small},
                                  "job_options": {"max-bytes": 1000}})
    assert r.status_code == 400 and r.json()["code"] == "ProcessGraphComplexity", r.text


def test_limits_are_listed(con) -> None:
    params = con.get("/processing_parameters", expected_status=200).json()
    sync = {p["name"]: p for p in params["synchronous_parameters"]}
    assert sync["max-bytes"]["default"] == 2 * 1024**3
    assert sync["max-bytes"]["schema"]["maximum"] == 2 * 1024**3
    for name in ("max-bytes", "max-pixels", "max-seconds"):
        assert sync[name]["description"]
    job = {p["name"] for p in params["create_job_parameters"]}
    assert {"memory-limit", "max-request-body-bytes", "storage-quota-bytes"} <= job


def test_estimate_has_real_figures_and_admits_udfs(con) -> None:
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DATES,
                               bands=["B04", "B08"])
    job = cube.save_result(format="GTiff").create_job()
    estimate = con.get(f"/jobs/{job.job_id}/estimate", expected_status=200).json()
    # 2 dates x 2 bands x 30 x 30 pixels of uint16 in the box.
    assert estimate["terracube:bytes_to_read"] == 2 * 2 * 30 * 30 * 2
    assert estimate["duration"].startswith("PT")
    assert estimate["size"] > 0
    udf = cube.apply(openeo.UDF("def apply_datacube(cube, context):\n    return cube\n",
                                runtime="Python"))
    udf_job = udf.save_result(format="GTiff").create_job()
    r = raw_get(con, f"/jobs/{udf_job.job_id}/estimate")
    assert r.status_code == 500 and r.json()["code"] == "EstimateComplexity", r.text
    assert "run_udf" in r.json()["message"]


def test_cli_explain(sample_data_dir: Path, tmp_path) -> None:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"process": {"process_graph": huge_graph()}}))
    done = subprocess.run([sys.executable, "-m", "terracube.cli", "explain", "--data-dir",
                           str(sample_data_dir), str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rs (resample_spatial)" in done.stdout
    assert "384000 labels" in done.stdout
