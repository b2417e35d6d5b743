"""Issue 11, defect 10: the job metadata and headers the official client reads — `costs`,
`OpenEO-Costs` and `OpenEO-Identifier` on POST /result, GET /processing_parameters,
job options nested (as the client sends them) or flat, `log_level`, logs by level, and
Range downloads of result files."""

from __future__ import annotations

import pytest
import requests

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DATES = ["2022-06-01", "2022-06-10"]


def ndvi(con):
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DATES,
                             bands=["B04", "B08"])
    return s2.ndvi(nir="B08", red="B04")


@pytest.fixture(scope="module")
def finished_job(con):
    job = ndvi(con).create_job(out_format="netCDF", job_options={"log_level": "debug"})
    job.start_and_wait(max_poll_interval=0.2)
    return job


def test_costs_in_job_metadata(finished_job) -> None:
    assert finished_job.describe()["costs"] == 0


def test_sync_result_headers(con) -> None:
    graph = ndvi(con).save_result(format="netCDF").flat_graph()
    response = con.post("/result", json={"process": {"process_graph": graph}},
                        expected_status=200)
    assert response.headers["OpenEO-Costs"] == "0"
    assert response.headers["OpenEO-Identifier"]
    again = con.post("/result", json={"process": {"process_graph": graph}},
                     expected_status=200)
    assert again.headers["OpenEO-Identifier"] != response.headers["OpenEO-Identifier"]


def test_processing_parameters(con) -> None:
    assert "https://api.openeo.org/extensions/processing-parameters/0.1.0" in \
        con.get("/conformance").json()["conformsTo"]
    params = con.get("/processing_parameters", expected_status=200).json()
    for kind in ("create_job_parameters", "synchronous_parameters"):
        names = [p["name"] for p in params[kind]]
        assert "log_level" in names and len(names) == len(set(names))
        for p in params[kind]:
            assert p["description"] and "schema" in p and "default" in p
    (level,) = [p for p in params["create_job_parameters"] if p["name"] == "log_level"]
    assert level["default"] == "info"


def test_job_options_nested_and_flat_set_the_log_level(con) -> None:
    nested = ndvi(con).create_job(job_options={"log_level": "warning",
                                               "executor-memory": "4G"})
    flat = ndvi(con).create_job(additional={"log_level": "error"})
    assert nested.describe()["log_level"] == "warning"
    assert flat.describe()["log_level"] == "error"
    warnings = [e for e in nested.logs() if e["level"] == "warning"]
    assert any("executor-memory" in e["message"] for e in warnings)
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        ndvi(con).create_job(job_options={"log_level": "loud"})
    assert info.value.http_status_code == 400 and "log_level" in info.value.message


def test_log_level_is_honoured_and_logs_filter_by_level(con, finished_job) -> None:
    levels = {e["level"] for e in finished_job.logs()}
    assert "debug" in levels  # the job asked for debug
    assert {e["level"] for e in finished_job.logs(level="info")} <= {"info", "warning",
                                                                        "error"}
    quiet = ndvi(con).create_job(out_format="netCDF", job_options={"log_level": "warning"})
    quiet.start_and_wait(max_poll_interval=0.2)
    assert not [e for e in quiet.logs() if e["level"] in ("debug", "info")]


def test_result_downloads_in_ranges(finished_job) -> None:
    (asset,) = [a for a in finished_job.get_results().get_assets() if a.name.endswith(".nc")]
    whole = requests.get(asset.href, timeout=60)
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(asset.href, headers={"Range": "bytes=100-1099"}, timeout=60)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(whole.content)}"
    assert part.content == whole.content[100:1100]
