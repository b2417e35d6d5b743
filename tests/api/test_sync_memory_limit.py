"""Issue 16, honest limits: a synchronous request computes under a memory budget
(TERRACUBE_SYNC_MAX_MEMORY, or the request's lower `max-memory` option) — the task results its
computation holds are measured as each task finishes; over the budget the request is stopped
with a clear openEO error and the server goes on. Through a real `terracube serve`."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
import requests
from tests.api.test_sync_time_limit import MEAN, SLOW, averaged, idle, login, started

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BUDGET = 20_000_000  # bytes: far less than the 1.5 m resampled collection's blocks hold
SMALL = averaged(None, {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500,
                        "crs": 32632})


@pytest.fixture(scope="module")
def server(sample_data_dir: Path):
    # The time limit is far away: memory is what stops the requests here.
    srv = started(sample_data_dir, 120, TERRACUBE_SYNC_MAX_MEMORY=str(BUDGET))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def headers(server) -> dict[str, str]:
    return login(server)


def test_memory_budget_is_listed(server) -> None:
    listed = {p["name"]: p for p in requests.get(server.api + "processing_parameters",
                                                 timeout=30).json()["synchronous_parameters"]}
    assert listed["max-memory"]["default"] == BUDGET
    assert listed["max-memory"]["schema"]["maximum"] == BUDGET
    assert "TERRACUBE_SYNC_MAX_MEMORY" in listed["max-memory"]["description"]


def test_request_over_the_memory_budget_is_stopped(server, headers) -> None:
    rss_before = psutil.Process(server.pid).memory_info().rss
    r = requests.post(server.api + "result", json=SLOW, headers=headers, timeout=120)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["code"] == "ProcessGraphComplexity"
    message = error["message"]
    assert "more than the 20 MB a synchronous request may" in message, message
    assert "TERRACUBE_SYNC_MAX_MEMORY" in message and "batch job" in message
    # (Without the budget it computes its result: 200.) Nothing keeps running after it.
    assert idle(server.pid, within=6)
    grown = psutil.Process(server.pid).memory_info().rss - rss_before
    assert grown < 500e6, grown
    # The server goes on: a small request under the same budget gets its result.
    r = requests.post(server.api + "result", json=SMALL, headers=headers, timeout=60)
    assert r.status_code == 200, r.text


def test_request_may_lower_its_memory_budget(server, headers) -> None:
    assert requests.post(server.api + "result", json=SMALL, headers=headers,
                         timeout=60).status_code == 200
    r = requests.post(server.api + "result", json={**SMALL, "max-memory": 1000},
                      headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    assert "more than the 0 MB a synchronous request may" in r.json()["message"]


def test_trim_cube_computing_eagerly_is_stopped_too(server, headers) -> None:
    """trim_cube computes which labels hold data while the graph is evaluated (before any
    writer runs): that computation is stopped by the request's limits too (memory here, or
    the 2 s time limit); it ran to its end before (~60 s), and only then was the request
    answered."""
    graph = {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": None, "temporal_extent": None,
            "bands": ["B04"]}},
        "rs": {"process_id": "resample_spatial", "arguments": {
            "data": {"from_node": "load"}, "resolution": 0.5}},
        "trim": {"process_id": "trim_cube", "arguments": {"data": {"from_node": "rs"}}},
        "m": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "trim"}, "dimension": "t", "reducer": MEAN}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "m"}, "format": "GTiff"}, "result": True}}
    body = {"process": {"process_graph": graph}, "max-seconds": 2}
    # Building the (large) lazy graph takes a while on a loaded machine: the dry run, which
    # computes nothing, measures it; the request builds it twice (dry run, then the run).
    begun = time.monotonic()
    requests.post(server.api + "explain", headers=headers, json=body, timeout=170)
    building = time.monotonic() - begun
    begun = time.monotonic()
    r = requests.post(server.api + "result", headers=headers, timeout=170, json=body)
    took = time.monotonic() - begun
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "stopped after 2 s" in message or "more than the 20 MB" in message, message
    # Unstopped, trim_cube's computation takes ~60 s here (resampled to 0.5 m).
    print(f"trim_cube request stopped after {took:.1f} s (graph building {building:.1f} s)")
    assert took < 2 * building + 15, (took, building)
    assert idle(server.pid, within=6)
