"""Issue 18, billing on a self-hosted server (processing/costs.py) and the logs of synchronous
requests (jobs/sync_logs.py), against real servers: the shared one (rate 0, the default) and
one of its own with a rate and weekly CPU allowances set through `terracube users budget`."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess, wait_for

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]


def _graph(*, inspect_level: str | None = None, fmt: str = "GTiff") -> dict:
    nodes: dict = {"load": {"process_id": "load_collection", "arguments": {
        "id": "SENTINEL2_L2A", "spatial_extent": SMALL, "temporal_extent": DAY,
        "bands": ["B08"]}}}
    data = {"from_node": "load"}
    if inspect_level:
        nodes["look"] = {"process_id": "inspect", "arguments": {
            "data": data, "message": "looked at the cube", "level": inspect_level}}
        data = {"from_node": "look"}
    nodes["save"] = {"process_id": "save_result", "arguments": {"data": data, "format": fmt},
                     "result": True}
    return {"process_graph": nodes}


def _session(srv, user: str = "demo", password: str = "demo") -> httpx.Client:
    token = httpx.get(f"{srv.api}credentials/basic", auth=(user, password),
                      timeout=60).json()["access_token"]
    client = httpx.Client(base_url=srv.api.rstrip("/"), timeout=300)
    client.headers["Authorization"] = f"Bearer basic//{token}"
    return client


@pytest.fixture(scope="module")
def api(server):
    with _session(server) as client:
        yield client


# --- the default: free -------------------------------------------------------------------------
def test_capabilities_offer_a_free_plan_in_credits(api):
    billing = api.get("/").json()["billing"]
    assert billing == {"currency": "credits", "default_plan": "free", "plans": [
        {"name": "free", "paid": False, "description": billing["plans"][0]["description"]}]}
    me = api.get("/me").json()
    assert me["default_plan"] == "free" and "budget" not in me  # no allowance: no limit


def test_plans_and_budgets_are_checked(api):
    r = api.post("/jobs", json={"process": _graph(), "plan": "FREE", "budget": 5})
    assert r.status_code == 201
    job = api.get(f"/jobs/{r.headers['OpenEO-Identifier']}").json()
    assert (job["plan"], job["budget"], job["costs"]) == ("free", 5, 0)
    for body, code in (({"plan": "gold"}, "BillingPlanInvalid"),
                       ({"budget": -1}, "BudgetInvalid"), ({"budget": "5"}, "BudgetInvalid")):
        for path in ("/jobs", "/result"):
            r = api.post(path, json={"process": _graph(), **body})
            assert r.status_code == 400 and r.json()["code"] == code, (path, r.text)


def test_a_job_without_a_plan_is_charged_with_the_default_and_costs_nothing(api):
    r = api.post("/jobs", json={"process": _graph()})
    job_id = r.headers["OpenEO-Identifier"]
    estimate = api.get(f"/jobs/{job_id}/estimate").json()
    # downloads are free: downloads_included is left out (the API's default: unlimited)
    assert estimate["costs"] == 0 and "downloads_included" not in estimate
    expires = datetime.fromisoformat(estimate["expires"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)
    assert api.post(f"/jobs/{job_id}/results").status_code == 202
    job = wait_for(lambda: (d := api.get(f"/jobs/{job_id}").json())["status"] in
                   ("finished", "error") and d, timeout=300, interval=0.2)
    assert job["status"] == "finished" and job["plan"] == "free" and job["costs"] == 0
    assert job["usage"]["cpu"]["value"] > 0
    assert api.get(f"/jobs/{job_id}/results").headers["OpenEO-Costs"] == "0"


# --- logs of synchronous requests --------------------------------------------------------------
def _monitor(response: httpx.Response) -> str:
    link = response.headers["Link"]
    assert link.startswith("<") and link.endswith('>; rel="monitor"'), link
    return link[1:link.index(">")]


def test_sync_logs_at_the_requested_level_behind_the_monitor_link(api, server):
    r = api.post("/result", json={"process": _graph(inspect_level="debug"),
                                  "log_level": "debug"})
    assert r.status_code == 200, r.text
    assert r.headers["OpenEO-Costs"] == "0"
    url = _monitor(r)
    assert r.headers["OpenEO-Identifier"] in url
    logs = api.get(url).json()
    assert logs["level"] == "debug" and logs["links"] == []
    messages = {e["message"].split(":")[0]: e for e in logs["logs"]}
    assert messages["[User] looked at the cube"]["path"] == [{"node_id": "look",
                                                              "process_id": "inspect"}]
    assert messages["[User] looked at the cube"]["level"] == "debug"
    assert "Evaluating the process graph." in messages
    (done,) = [e for e in logs["logs"] if e["message"].startswith("Done in")]
    assert done["level"] == "info" and done["usage"]["cpu"]["unit"] == "cpu-seconds"

    # log_level warning: the debug inspect entry and the info summary are not kept
    r = api.post("/result", json={"process": _graph(inspect_level="debug"),
                                  "job_options": {"log_level": "warning"}})
    logs = api.get(_monitor(r)).json()
    assert logs["level"] == "warning" and logs["logs"] == []
    # a warning from inspect is
    r = api.post("/result", json={"process": _graph(inspect_level="warning"),
                                  "log_level": "warning"})
    assert [e["message"].split(":")[0] for e in api.get(_monitor(r)).json()["logs"]] == [
        "[User] looked at the cube"]
    # the logs are the requesting user's only
    assert httpx.get(url, timeout=60).status_code == 401
    assert api.get(url.rsplit("/", 1)[0] + "/r-0000").status_code == 404


# --- a server with a rate and allowances ------------------------------------------------------
@pytest.fixture(scope="module")
def paid(tmp_path_factory, sample_data_dir: Path):
    data_dir = data_dir_with_samples(tmp_path_factory.mktemp("billing") / "data",
                                     sample_data_dir)
    srv = ServerProcess(data_dir, {"TERRACUBE_BILLING_RATE": "2",
                                   "TERRACUBE_BILLING_CURRENCY": "EUR"})
    yield srv, data_dir
    srv.stop()


def _cli(data_dir: Path, *args: str, stdin: str = "") -> str:
    run = subprocess.run([sys.executable, "-m", "terracube.cli", "users", *args,
                          "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=120, input=stdin)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_rate_makes_the_plan_metered_and_budgets_bite(paid):
    srv, _ = paid
    with _session(srv) as api:
        billing = api.get("/").json()["billing"]
        assert billing["currency"] == "EUR" and billing["default_plan"] == "metered"
        assert billing["plans"][0]["paid"] is True
        # an estimate of a few seconds at 2 EUR per CPU-second: more than a budget of 1
        r = api.post("/result", json={"process": _graph(), "budget": 1})
        assert r.status_code == 402 and r.json()["code"] == "PaymentRequired", r.text
        job_id = api.post("/jobs", json={"process": _graph(), "budget": 1}).headers[
            "OpenEO-Identifier"]
        estimate = api.get(f"/jobs/{job_id}/estimate").json()
        assert estimate["costs"] > 1
        r = api.post(f"/jobs/{job_id}/results")
        assert r.status_code == 402 and r.json()["code"] == "PaymentRequired", r.text
        assert api.get(f"/jobs/{job_id}").json()["status"] == "created"
        # without a budget it runs, and costs twice its CPU-seconds
        r = api.post("/result", json={"process": _graph()})
        assert r.status_code == 200
        cpu = api.get(_monitor(r)).json()["logs"][-1]["usage"]["cpu"]["value"]
        assert float(r.headers["OpenEO-Costs"]) == pytest.approx(2 * cpu, abs=1e-5)


def test_an_allowance_refuses_and_stops_work(paid):
    srv, data_dir = paid
    _cli(data_dir, "add", "carol", stdin="carol-secret\n")
    assert "carol: unlimited" in _cli(data_dir, "budget")
    assert "carol: 0.001 CPU-s/week" in _cli(data_dir, "budget", "carol", "--cpu-seconds",
                                             "0.001")
    with _session(srv, "carol", "carol-secret") as api:
        compute = api.get("/me").json()["terracube:compute"]
        assert compute == {"cpu_seconds_per_week": 0.001, "used_cpu_seconds": 0,
                           "remaining_cpu_seconds": 0.001}
        # the job runs past the allowance: stopped, PaymentRequired in its log
        job_id = api.post("/jobs", json={"process": _graph()}).headers["OpenEO-Identifier"]
        assert api.post(f"/jobs/{job_id}/results").status_code == 202
        job = wait_for(lambda: (d := api.get(f"/jobs/{job_id}").json())["status"] in
                       ("finished", "error") and d, timeout=300, interval=0.2)
        assert job["status"] == "error" and job["costs"] > 0
        (stop,) = [e for e in api.get(f"/jobs/{job_id}/logs").json()["logs"]
                   if e.get("code") == "PaymentRequired"]
        assert "Stopped after" in stop["message"]
        me = api.get("/me").json()
        assert me["terracube:compute"]["remaining_cpu_seconds"] == 0 and me["budget"] == 0
        # now used up: nothing starts
        for r in (api.post("/result", json={"process": _graph()}),
                  api.post(f"/jobs/{job_id}/results")):
            assert r.status_code == 402 and r.json()["code"] == "PaymentRequired"
            assert "allowance" in r.json()["message"]
        # the administrator lifts it
        assert "carol: unlimited" in _cli(data_dir, "budget", "carol", "--unlimited")
        assert api.post("/result", json={"process": _graph()}).status_code == 200
