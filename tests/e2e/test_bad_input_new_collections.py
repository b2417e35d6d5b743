"""What a student gets wrong with the built-in collections (SENTINEL1_GRD with sar_backscatter,
COPERNICUS_30, ESA_WORLDCOVER_10M_*), their extents, masks and process graphs: each mistake is
an openEO error with its code, HTTP status and a message naming the node, the argument and
what to fix, through the real HTTP API and the official client against a real server; and no
request of this module leaves a traceback in the server's log (a 500 nobody asserted on).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import openeo
import pytest
from tests.jobs.job_graphs import slow_graph
from tests.support.processes import wait_for

from terracube.db import open_database
from terracube.jobs.store import JobStore
from terracube.settings import Settings

BOX = {"west": 11.32, "south": 46.48, "east": 11.36, "north": 46.50}
S1_DATES = ["2022-06-01", "2022-07-01"]


def load(collection: str = "SENTINEL1_GRD", bands: list | None = None,
         temporal_extent: Any = S1_DATES, **more: Any) -> dict:
    return {"process_id": "load_collection", "arguments": {
        "id": collection, "spatial_extent": BOX, "temporal_extent": temporal_extent,
        "bands": ["VV"] if bands is None else bands, **more}}


def save(node: str = "load") -> dict:
    return {"process_id": "save_result", "result": True,
            "arguments": {"data": {"from_node": node}, "format": "GTiff"}}


def sar(**arguments: Any) -> dict:
    return {"load": load(), "sar": {"process_id": "sar_backscatter", "arguments": {
        "data": {"from_node": "load"}, **arguments}}, "save": save("sar")}


def apply_absolute(process_graph: dict) -> dict:
    return {"load": load(), "apply": {"process_id": "apply", "arguments": {
        "data": {"from_node": "load"}, "process": {"process_graph": process_graph}}},
        "save": save("apply")}


def absolute_of(ref: dict, result: bool = False) -> dict:
    return {"process_id": "absolute", "arguments": {"x": ref}, **({"result": True}
                                                                   if result else {})}


# name: (process graph, HTTP status, code, words the message must hold)
CASES: dict[str, tuple[dict, int, str, list[str]]] = {
    # bands that the new collections do not have
    "band B04 of SENTINEL1_GRD": (
        {"load": load(bands=["B04"]), "save": save()}, 400, "ProcessParameterInvalid",
        ["node 'load'", "argument 'bands'", "no band(s) B04", "VV"]),
    "band DEM of WorldCover": (
        {"load": load("ESA_WORLDCOVER_10M_2021_V2", ["DEM"], None), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'bands'", "no band(s) DEM", "MAP"]),
    "a band given as a number (was a 500)": (
        {"load": load(bands=[1]), "save": save()}, 400, "ProcessParameterInvalid",
        ["argument 'bands'", "band names (strings)", "[1]"]),
    # sar_backscatter arguments
    "unknown coefficient": (
        sar(coefficient="gamma42"), 400, "ProcessParameterInvalid",
        ["node 'sar'", "argument 'coefficient'", "'gamma42'", "sigma0-ellipsoid"]),
    "elevation model that does not exist": (
        sar(elevation_model="NOPE_DEM"), 400, "DigitalElevationModelInvalid",
        ["node 'sar'", "argument 'elevation_model'", "'NOPE_DEM'", "COPERNICUS_30"]),
    "land cover as elevation model": (
        sar(elevation_model="ESA_WORLDCOVER_10M_2021_V2"), 400, "DigitalElevationModelInvalid",
        ["argument 'elevation_model'", "ESA_WORLDCOVER_10M_2021_V2"]),
    "options with an unknown key": (
        sar(options={"foo": 1}), 400, "ProcessParameterInvalid",
        ["argument 'options'", "foo"]),
    "noise_removal as a string": (
        sar(noise_removal="no"), 400, "ProcessParameterInvalid",
        ["argument 'noise_removal'", "true or false"]),
    "sar_backscatter of Sentinel-2": (
        {"load": load("SENTINEL2_L2A", ["B04"]), "sar": {"process_id": "sar_backscatter",
         "arguments": {"data": {"from_node": "load"}}}, "save": save("sar")}, 400,
        "ProcessParameterInvalid", ["argument 'data'", "SENTINEL1_GRD"]),
    # extents outside a collection
    "another continent": (
        {"load": load(spatial_extent={"west": -100, "south": 40, "east": -99.9,
                                      "north": 40.1}), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'spatial_extent'", "does not intersect",
                                    "SENTINEL1_GRD"]),
    "another year": (
        {"load": load(temporal_extent=["2019-01-01", "2019-02-01"]), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'temporal_extent'", "2019-01-01",
                                    "it has data from 2022-04-02 to 2022-09-29"]),
    "WorldCover of another year": (
        {"load": load("ESA_WORLDCOVER_10M_2020_V1", ["MAP"], ["2023-01-01", "2023-06-01"]),
         "save": save()}, 400, "ProcessParameterInvalid",
        ["argument 'temporal_extent'", "it has data from 2020-01-01"]),
    "a temporal extent of one instant": (
        {"load": load(temporal_extent=["2022-06-01T10:00:00Z", "2022-06-01T10:00:00Z"]),
         "save": save()}, 400, "TemporalExtentEmpty",
        ["argument 'temporal_extent'", "must be before the end", "excluded"]),
    "a reversed temporal extent": (
        {"load": load(temporal_extent=["2022-07-01", "2022-06-01"]), "save": save()}, 400,
        "TemporalExtentEmpty", ["argument 'temporal_extent'", "must be before"]),
    "years as numbers": (
        {"load": load(temporal_extent=[2022, 2023]), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'temporal_extent'", "2022 is not a date",
                                    "'2022-06-01'"]),
    "an impossible date": (
        {"load": load(temporal_extent=["2022-13-45", "2022-07-01"]), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'temporal_extent'", "'2022-13-45' is not a date"]),
    "a reversed bounding box": (
        {"load": load(spatial_extent={"west": 11.36, "south": 46.50, "east": 11.32,
                                      "north": 46.48}), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'spatial_extent'", "west (11.36) must be < east"]),
    "a CRS code that does not exist": (
        {"load": load(spatial_extent={**BOX, "crs": 999999}), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'spatial_extent'", "Unknown CRS 999999"]),
    "UTM coordinates without their crs": (
        {"load": load(spatial_extent={"west": 678000, "south": 5150000, "east": 681000,
                                      "north": 5153000}), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'spatial_extent'", "between -90 and 90",
                                    "EPSG code"]),
    # properties filters
    "properties as a list": (
        {"load": load(properties=["sat:orbit_state"]), "save": save()}, 400,
        "ProcessParameterInvalid", ["argument 'properties'", "must be an object"]),
    "a property compared with a value of the wrong type": (
        {"load": load(properties={"sat:orbit_state": {"process_graph": {"eq": {
            "process_id": "eq", "arguments": {"x": {"from_parameter": "value"}, "y": 3},
            "result": True}}}}), "save": save()}, 400, "ProcessParameterInvalid",
        ["argument 'properties'", "sat:orbit_state: 'ascending', 'descending'"]),
    "a property the items do not have": (
        {"load": load(properties={"nope": {"process_graph": {"eq": {
            "process_id": "eq", "arguments": {"x": {"from_parameter": "value"}, "y": 3},
            "result": True}}}}), "save": save()}, 400, "ProcessParameterInvalid",
        ["argument 'properties'", "no property 'nope'", "sat:orbit_state"]),
    # filters that leave nothing, saved as GeoTIFF (were 500s)
    "filter_temporal to another year": (
        {"load": load(), "filter": {"process_id": "filter_temporal", "arguments": {
            "data": {"from_node": "load"}, "extent": ["2019-01-01", "2019-02-01"]}},
         "save": save("filter")}, 400, "ProcessParameterInvalid",
        ["node 'save'", "argument 'data'", "empty", "'t'", "filter_temporal"]),
    "filter_bbox elsewhere": (
        {"load": load(), "filter": {"process_id": "filter_bbox", "arguments": {
            "data": {"from_node": "load"},
            "extent": {"west": 0, "south": 0, "east": 1, "north": 1}}},
         "save": save("filter")}, 400, "ProcessParameterInvalid",
        ["node 'save'", "empty", "'x'"]),
    "filter_bands of a band SENTINEL1_GRD lacks": (
        {"load": load(), "filter": {"process_id": "filter_bands", "arguments": {
            "data": {"from_node": "load"}, "bands": ["B04"]}},
         "save": save("filter")}, 400, "ProcessParameterInvalid",
        ["node 'save'", "empty", "'bands'"]),
    # fit_curve along a dimension whose labels are no x values
    "fit_curve along the bands": (
        {"load": load(), "fit": {"process_id": "fit_curve", "arguments": {
            "data": {"from_node": "load"}, "parameters": [1, 1], "dimension": "bands",
            "function": {"process_graph": {"m": {"process_id": "multiply", "arguments": {
                "x": {"from_parameter": "x"}, "y": 2}, "result": True}}}}},
         "save": save("fit")}, 400, "ProcessParameterInvalid",
        ["node 'fit'", "argument 'dimension'", "(VV)", "numbers or dates"]),
    # resampling onto a cube without x/y
    "resample_cube_spatial onto a cube without x and y": (
        {"load": load(), "xless": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": "x", "reducer": {"process_graph": {
                "m": {"process_id": "mean", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
         "resample": {"process_id": "resample_cube_spatial", "arguments": {
             "data": {"from_node": "load"}, "target": {"from_node": "xless"}}},
         "save": save("resample")}, 400, "DimensionNotAvailable",
        ["node 'resample'", "argument 'target'", "x and y"]),
    # malformed process graphs
    "a cycle": (
        {"a": absolute_of({"from_node": "b"}), "b": absolute_of({"from_node": "a"}, True)},
        400, "ProcessGraphInvalid", ["cycle", "a -> b -> a"]),
    "from_node to a node that is not there": (
        {"load": load(), "save": save("nope")}, 400, "ProcessGraphInvalid",
        ["node 'save'", "argument 'data'", "'nope'"]),
    "no result node": (
        {"load": load(), "save": {**save(), "result": False}}, 400, "ProcessGraphInvalid",
        ['"result": true', "found 0"]),
    "two result nodes": (
        {"load": {**load(), "result": True}, "save": save()}, 400, "ProcessGraphInvalid",
        ["found 2"]),
    "a cycle in a callback": (
        apply_absolute({"x": absolute_of({"from_node": "y"}),
                        "y": absolute_of({"from_node": "x"}, True)}), 400,
        "ProcessGraphInvalid", ["argument 'process'", "cycle"]),
    "a callback parameter that does not exist": (
        apply_absolute({"x": absolute_of({"from_parameter": "nope"}, True)}), 400,
        "ProcessParameterRequired", ["'nope'"]),
    "arguments as a list": (
        {"load": {"process_id": "load_collection", "arguments": []}, "save": save()}, 400,
        "ProcessGraphInvalid", ["node 'load'", "'arguments' must be an object"]),
    # load_stac of results that are not there
    "load_stac of a job that does not exist": (
        {"load": {"process_id": "load_stac", "arguments": {
            "url": "{api}jobs/j-doesnotexist/results"}}, "save": save()}, 404, "JobNotFound",
        ["node 'load'", "argument 'url'", "j-doesnotexist"]),
}


@pytest.fixture(scope="module")
def headers(server) -> dict[str, str]:
    token = httpx.get(server.api + "credentials/basic", auth=("demo", "demo")).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


@pytest.fixture(scope="module")
def log_start(server) -> int:
    """Where this module's requests begin in the server's log."""
    return len(server.log())


def _with_api(value: Any, api: str) -> Any:
    if isinstance(value, str):
        return value.replace("{api}", api)
    if isinstance(value, dict):
        return {k: _with_api(v, api) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_api(v, api) for v in value]
    return value


def post_result(server, headers: dict, graph: dict) -> httpx.Response:
    return httpx.post(server.api + "result", headers=headers, timeout=120,
                      json={"process": {"process_graph": _with_api(graph, server.api)}})


def assert_error(response: httpx.Response, status: int, code: str, words: list[str]) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], (word, body["message"])


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_is_a_clear_openeo_error(server, headers, log_start, name: str) -> None:
    graph, status, code, words = CASES[name]
    assert_error(post_result(server, headers, graph), status, code, words)


def test_load_stac_of_a_job_that_has_not_run(server, headers, log_start) -> None:
    created = httpx.post(server.api + "jobs", headers=headers, json={
        "process": {"process_graph": {"load": load(), "save": save()}}})
    job_id = created.headers["OpenEO-Identifier"]
    graph = {"load": {"process_id": "load_stac", "arguments": {
        "url": f"{server.api}jobs/{job_id}/results"}}, "save": save()}
    assert_error(post_result(server, headers, graph), 400, "JobNotFinished",
                 ["argument 'url'", "status 'created'", "once it has finished"])


def test_max_cloud_cover_of_radar_says_to_leave_it_out(con) -> None:
    cube = con.load_collection("SENTINEL1_GRD", spatial_extent=BOX, temporal_extent=S1_DATES,
                               bands=["VV"], max_cloud_cover=20)
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        cube.download(format="GTiff")
    error = refused.value
    assert (error.http_status_code, error.code) == (400, "ProcessParameterInvalid")
    for word in ("argument 'properties'", "'eo:cloud_cover'", "max_cloud_cover", "leave it out"):
        assert word in error.message


def test_a_property_value_instead_of_a_condition(con) -> None:
    """The client makes a process call of a string condition: the error says how to write
    the condition."""
    cube = con.load_collection("SENTINEL1_GRD", spatial_extent=BOX, temporal_extent=S1_DATES,
                               bands=["VV"], properties={"sat:orbit_state": "ascending"})
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        cube.download(format="GTiff")
    error = refused.value
    assert (error.http_status_code, error.code) == (400, "ProcessUnsupported")
    assert "argument 'properties'" in error.message and "lambda v: v ==" in error.message


def test_a_synchronous_request_too_large_is_refused_naming_the_limit(con) -> None:
    """The whole collection at 1 m: refused before anything is read, with the limit's name
    and the way out (a batch job)."""
    cube = con.load_collection("SENTINEL2_L2A").resample_spatial(1)
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        cube.download(format="GTiff")
    error = refused.value
    assert (error.http_status_code, error.code) == (400, "ProcessGraphComplexity")
    for word in ("node 'resamplespatial1'", "GB", "TERRACUBE_SYNC_MAX_BYTES", "batch job"):
        assert word in error.message


def test_the_clients_sar_backscatter_with_a_missing_dem(con) -> None:
    cube = con.load_collection("SENTINEL1_GRD", spatial_extent=BOX, temporal_extent=S1_DATES,
                               bands=["VV", "VH"])
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        cube.sar_backscatter(coefficient="gamma0-terrain", elevation_model="COPERNICUS_10") \
            .download(format="GTiff")
    error = refused.value
    assert (error.http_status_code, error.code) == (400, "DigitalElevationModelInvalid")
    assert "'COPERNICUS_10'" in error.message and "sarbackscatter1" in error.message


def test_the_clients_mask_of_another_year_masks_nothing_and_the_log_says_why(con) -> None:
    """A land cover mask loaded for its year and used on a Sentinel-2 time series without
    reducing its time dimension masks nothing, as on CDSE (which joins the dates, so the
    program runs there); the job's log says why and what to do."""
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=S1_DATES,
                             bands=["B04"])
    land = con.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=BOX)
    job = s2.mask(land.band("MAP") != 40).execute_batch(max_poll_interval=0.2)
    warnings = [e["message"] for e in job.logs(level="warning")]
    assert any("no date of the data" in m and "reduce_dimension" in m for m in warnings), warnings
    # Reduced, as the warning says, the same mask masks without a warning.
    reduced = land.reduce_dimension("t", "first").band("MAP") != 40
    job = s2.mask(reduced).execute_batch(max_poll_interval=0.2)
    assert not [e for e in job.logs(level="warning") if "masks nothing" in e["message"]]


def test_a_job_killed_mid_way_ends_in_error_with_a_log_entry(server, con,
                                                             sample_data_dir) -> None:
    """The job process killed (as the OOM killer does) while it computes: the job ends
    `error` with an error log entry that says so, its results answer 424 with that entry,
    and the job is not lost: changed and started again, it finishes."""
    def record():
        db = open_database(Settings(data_dir=sample_data_dir).database_url)
        try:
            return JobStore(db).get(job.job_id)
        finally:
            db.dispose()

    job = con.create_job(slow_graph(0.5))
    job.start()
    running = wait_for(lambda: (r := record()).status == "running" and r.pid
                       and r.progress > 2 and r, 120, interval=0.2, what="the job to compute")
    os.kill(running.pid, signal.SIGKILL)
    wait_for(lambda: job.status() == "error", 30, interval=0.2, what="the job to fail")
    last = job.logs()[-1]
    assert last["level"] == "error" and "killed by SIGKILL" in last["message"]
    results = httpx.get(f"{server.api}jobs/{job.job_id}/results",
                        headers={"Authorization": f"Bearer {con.auth.bearer}"})
    assert results.status_code == 424 and "killed" in results.json()["message"]
    assert job.job_id in [j["id"] for j in con.list_jobs()]
    small = {"load": load(), "save": save()}
    httpx.patch(f"{server.api}jobs/{job.job_id}", json={"process": {"process_graph": small}},
                headers={"Authorization": f"Bearer {con.auth.bearer}"}).raise_for_status()
    job.start_and_wait()
    assert job.status() == "finished" and job.get_results().get_assets()


UDF_MEAN = """import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube.mean(dim="t")
"""


def test_a_dry_run_that_would_compute_is_no_logged_500(server, headers) -> None:
    """A UDF reducer computes its first block while the graph is built: the dry run (POST
    /explain, and the size check before a synchronous request) stops there with
    ProcessGraphComplexity, not a 500 Internal of run_udf with a traceback in the log."""
    graph = {"load": load("SENTINEL2_L2A", ["B04"]), "reduce": {
        "process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": "t", "reducer": {"process_graph": {
                "udf": {"process_id": "run_udf", "result": True, "arguments": {
                    "data": {"from_parameter": "data"}, "udf": UDF_MEAN,
                    "runtime": "Python"}}}}}}, "save": save("reduce")}
    explained = httpx.post(server.api + "explain", headers=headers, timeout=120,
                           json={"process": {"process_graph": graph}}).json()
    assert [e["code"] for e in explained["errors"]] == ["ProcessGraphComplexity"]
    assert "node 'reduce'" in explained["errors"][0]["message"]
    assert post_result(server, headers, graph).status_code == 200


def test_no_request_left_a_traceback_in_the_server_log(server, log_start) -> None:
    """Runs last in this module (pytest keeps the order of the file): none of the requests
    above was a 500 logged with a traceback."""
    tail = server.log()[log_start:]
    assert "Traceback" not in tail, tail[tail.index("Traceback") - 2000:][:6000]
