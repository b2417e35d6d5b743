"""The openEO API profiles checklist (../shared/conformance/profiles.py) against a test server
of its own: the requirements fixed so far must keep passing (issue 18). The script's exit code
is not asserted: requirements owned by other issues still fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.data import data_dir_with_samples
from tests.support.paths import SHARED
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.conformance]

PROFILES = SHARED / "conformance" / "profiles.py"

# Requirement ids that pass and must not regress: pagination with
# limit and next links, and all items without limit (processes 204, collections 305/306,
# process graphs 402/403, files 502/503, jobs 712/713, job logs 803), every STAC extension
# used in a collection listed (325). 203 (processes paged) cannot pass as the script checks it:
# it follows at most 50 pages of limit=2, i.e. 100 of our 165 processes
# (tests/e2e/test_pagination_billing_stac.py pages them all). CORS exposes exactly what it
# must (3); billing (35, 732, 762, 821, 825, 902: currency 'credits', a free plan, costs
# from CPU time; `budget` shown as null when unset on jobs and services, 753 and 653; 824 wants
# `downloads_included` present, but its value for unlimited, null, fails the official suite's
# wp4 schema check, so it is left out, which the API defines as unlimited: decision 0012);
# sync requests: log_level and their logs behind Link rel=monitor (903, 908),
# several outputs as a tar (909). /validation reports invalid ids, parameters, return schemas
# and graphs (494-497); estimates answer EstimateComplexity for a UDF (826); job results are a
# STAC Collection with item links (867); an XYZ service renders a graph that ends in
# save_result, also while another request's dry run is under way (616), and a service over a
# batch job's results through load_result (617).
MUST_PASS = {3, 35, 204, 305, 306, 325, 402, 403, 494, 495, 496, 497, 502, 503, 616, 617, 653,
             712, 713, 732, 753, 762, 803, 821, 825, 826, 867, 902, 903, 908, 909}
LINE = re.compile(r"^(PASS|FAIL|SKIP) (\d+) (\S+) (.*)$")


@pytest.fixture(scope="module")
def server(sample_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server of its own: the script pages through demo's jobs (712: at most 50 pages of
    limit=1), which on the session server grow with every batch job other tests run as demo
    (57 failed it on a reused data folder)."""
    srv = ServerProcess(data_dir_with_samples(tmp_path_factory.mktemp("profiles-data"),
                                              sample_data_dir))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def report(server) -> dict[int, tuple[str, str]]:
    if not PROFILES.is_file():
        pytest.skip(f"profiles.py not found at {PROFILES}")
    run = subprocess.run([sys.executable, str(PROFILES), server.url], capture_output=True,
                         text=True, timeout=900)
    results = {}
    for line in run.stdout.splitlines():
        m = LINE.match(line)
        if m:
            results[int(m.group(2))] = (m.group(1), m.group(4))
    assert results, f"no requirement lines from profiles.py:\n{run.stdout}\n{run.stderr}"
    print(next((x for x in run.stdout.splitlines() if x.startswith("profiles:")), ""))
    return results


def test_fixed_requirements_keep_passing(report) -> None:
    failing = {i: report.get(i, ("MISSING", ""))
               for i in sorted(MUST_PASS) if report.get(i, ("",))[0] != "PASS"}
    assert not failing, "\n".join(f"{i}: {s} {d}" for i, (s, d) in failing.items())
