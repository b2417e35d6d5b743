"""The official openEO test suite (../shared/conformance/run) against a real terracube server.

One pytest test per suite module, each a run of the suite with that module only. A module's
test fails when the suite reports a failure that is not listed below with the reason it cannot
pass.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess

from terracube.catalog.registry import add_collection

pytestmark = [pytest.mark.e2e, pytest.mark.conformance]

MODULES = ("wp2", "wp3", "wp4", "wp5", "wp6")

# Failures that no back-end serving the official definitions can avoid, or features this
# server deliberately does not offer. Keyed by module, then by the suite's test name.
KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "wp4": {
        "test_GET_credentials_oidc": "this server is started without OpenID Connect providers "
                                     "(TERRACUBE_OIDC_PROVIDERS); the API requires at least one "
                                     "provider in the list, so 404 is the honest answer. With "
                                     "providers it passes: tests/auth/test_oidc_provider.py.",
        "test_GET_processes": "openapi.yaml's process_json_schema is a oneOf whose branches "
                              "(Generic / process-graph / datacube) all match a plain schema "
                              "such as {'type': 'number'}: every official definition served "
                              "unchanged (what wp3 demands) fails this strict validation.",
        "test_PUT_process_graphs_process_id": "the suite PUTs to str(uuid4()), whose dashes "
                                              "the API forbids in process ids (^\\w+$); its "
                                              "own setup helper uses uuid4().hex, which passes",
    },
    "wp5": {
        **{f"test_process[{case}]": "the suite's HTTP runner sends every callback argument as "
                                     "null (Http.encode_process_graph is not implemented), so "
                                     "a process with a callback cannot get its child graph"
           for case in ("array_apply-example825-file825-L3-False",
                        "array_apply-example827-file827-L3-False",
                        "array_apply-example829-file829-L3-False",
                        "array_filter-example366-file366-L3-False",
                        "array_filter-example368-file368-L3-False")},
        **{f"test_process[{case}]": "upstream test bug: count's condition is a bare graph using "
                                     "a parameter 'element' (count passes 'x'); see ERRATA in "
                                     "tests/spec/test_process_cases.py"
           for case in ("count-example216-file216-L2-False",
                        "count-example217-file217-L3-False")},
        "test_process[array_append-example326-file326-L3-False]":
            "upstream test bug: expects [1] for appending 0 to [] (ERRATA array_append[0])",
        **{f"test_process[{case}]": "upstream test bug: expects a boolean for [null] with "
                                     "ignore_nodata=false, where the process's own example "
                                     "says null (ERRATA all[8], any[8])"
           for case in ("any-example520-file520-L2-False", "all-example654-file654-L2-False")},
    },
    "wp6": {
        "test_apply_dimension_quantiles_1":
            "quantiles over t written into the existing 2-label bands dimension: the spec only "
            "defines a target with one label; we keep all 2 x 3 values (labels 0-5) instead of "
            "dropping one band's quantiles to get the 3 labels the test expects (see the "
            "comment in engine/processes/cubes.py apply_dimension)",
    },
}


def _failures(xml_path: Path) -> dict[str, str]:
    failed = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                failed[case.get("name", "?")] = (node.get("message") or "")[:300]
    return failed


def run_suite(server: ServerProcess, shared_dir: Path, out: Path, module: str) -> Path:
    """Run one module of the suite against `server`; its report folder (`out`)."""
    runner = shared_dir / "conformance" / "run"
    if not runner.exists():
        pytest.skip(f"{runner} not found")
    cmd = ["bash", str(runner), server.api, "--user", "demo", "--password", "demo",
           module, "--s2-collection", "SENTINEL2_L2A", "--out", str(out), "--allow-fail",
           "--test-timeout", "300"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    (out / "console.txt").write_text(proc.stdout + proc.stderr)
    if not (out / "summary.json").exists():
        pytest.fail(f"the suite did not run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("\n" + (out / "summary.txt").read_text() if (out / "summary.txt").exists() else "")
    return out


def add_wp4_job_collection(data_dir: Path, folder: Path) -> None:
    """Register a stand-in for the collection WP4's batch jobs load (its only payload,
    payload_examples/post_jobs: CGLS_SSM_1KM, band B01, around Vienna, 2020): daily 1 km files
    as the real soil moisture product. Without it every WP4 job fails within a second, before
    the suite (polling once a second) sees it `running`; its cancel test then waits out its
    120 s for a running job and cancels nothing, and three other tests wait 10 s each."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": 60, "height": 40, "count": 1, "dtype": "uint8",
               "nodata": 255, "crs": "EPSG:4326",
               "transform": from_origin(16.1, 48.4, 0.01, 0.01)}
    day = dt.date(2020, 1, 1)
    while day.year == 2020:
        with rasterio.open(folder / f"{day:%Y%m%d}_B01.tif", "w", **profile) as dst:
            dst.write(rng.integers(0, 100, (40, 60), dtype="uint8"), 1)
        day += dt.timedelta(days=1)
    add_collection(data_dir, "CGLS_SSM_1KM", str(folder), pattern="{date:%Y%m%d}_{band}.tif",
                   title="Surface soil moisture (test stand-in for WP4's batch jobs)")


@pytest.fixture(scope="session")
def suite_server(sample_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server of its own for the suite: what other tests leave on the shared session server
    (e.g. demo's user-defined processes, listed by WP4's GET /process_graphs) is not part of
    what the suite checks. Session-scoped: one per xdist worker that runs a suite module."""
    data_dir = data_dir_with_samples(tmp_path_factory.mktemp("conformance-data"),
                                     sample_data_dir)
    add_wp4_job_collection(data_dir, tmp_path_factory.mktemp("cgls-ssm") / "files")
    srv = ServerProcess(data_dir)
    yield srv
    srv.stop()


# One run of the suite per module (not all five in one run): under pytest-xdist the long
# modules (wp5, wp6) run on different workers (tests/support/xdist_scheduling.py).
@pytest.mark.parametrize("module", MODULES)
def test_official_suite_module(suite_server: ServerProcess, shared_dir: Path, tmp_path: Path,
                               module: str) -> None:
    suite_report = run_suite(suite_server, shared_dir, tmp_path, module)
    summary = json.loads((suite_report / "summary.json").read_text())
    counts = summary["modules"][module]
    xml_path = suite_report / f"{module}.xml"
    assert xml_path.exists(), f"{module} produced no report: {counts}"
    failed = _failures(xml_path)
    known = KNOWN_FAILURES.get(module, {})
    unexpected = {name: msg for name, msg in failed.items() if name not in known}
    assert counts["passed"] > 0, f"{module}: nothing passed: {counts}"
    assert not unexpected, f"{module}: {counts}; unexpected failures:\n" + "\n".join(
        f"  {name}: {msg}" for name, msg in sorted(unexpected.items()))
