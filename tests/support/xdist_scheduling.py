"""How `pytest -n N` (pytest-xdist; `make test`) shares the tests among its worker processes.

Most of the suite's time is spent waiting for real server processes, so two workers on two
cores take about half the time. Work is handed out a test module at a time (as xdist's
`--dist loadfile`): module-scoped fixtures, such as a module's own server, start once. Two
exceptions:

* tests/notebooks is one unit: its notebooks run against one course server with the real
  sample packs, and a lesson can run an earlier one first (`after=`); split over workers,
  each would install the packs and run those lessons again.
* each test of tests/conformance/test_official_suite.py is a unit: each runs one module of the
  official suite (against a server of its own, one per worker), and the longest two (wp5,
  wp6) take a minute or two each.
* the longest units go first (longest-processing-time-first), so that none of them starts
  last and leaves the other worker idle while it finishes.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

# Units that take minutes, longest first (the rest follow, the modules with the most tests
# first). Measured one directory at a time in one process (--durations), seconds at a load of
# 6-13 on the 2-core development machine (2026-12-04; relative costs): user_collections 384
# (about 20 `terracube collections ...` processes), notebooks 318, batch_jobs 212+,
# jobs/test_worker 180, hub (a JupyterHub and labs; kept near the top, not measured this
# time), test_profiles 140 (its own server and the profiles script), api/test_hostile_input
# 126, api/test_files 120, wp6 94 and wp5 87 (+ ~40 for the suite's server when first on a
# worker), jobs/test_routes 117, test_faults 106, api/test_explain 105, test_fair_queue 100,
# filters_and_netcdf_folders 89, billing 80, udf_dependencies 75. wp4 (39 since its job's
# collection exists), wp2, wp3 and test_oidc_provider (48) no longer take minutes.
# tests/e2e again at 08:05-08:36 (load 9-13, 234 tests in 31 min): batch_jobs 328 (its two
# kill tests 147 and 124: server and worker starts, each worker importing the engine),
# user_collections 229 (the light `collections list|show|remove` no longer load the engine),
# billing 101, filters_and_netcdf_folders 93, udf_dependencies 78; every other e2e module
# under 75 (behind_proxy 67, job_chaining 65, udf_dimensions 64, cdse_processes 58).
# tests/api and tests/auth at 08:58-09:05 with the test process's accounts hashed cheaply
# (support/password_hashing.py): 252 tests in 7 min; test_hostile_input and test_files no
# longer take minutes (their seconds were argon2's); sync_time_limit 80, explain 71,
# oidc_provider 51, the rest under 35. tests/jobs at 09:07-09:13: 87 tests in 5 min 49 s;
# test_faults 100 (a database locked 8 s, a full disk), test_worker 73, test_fair_queue 55,
# job_time_limit 30, test_routes 19 (was 117: argon2 again).
_SUITE = "tests/conformance/test_official_suite.py"
LONGEST_FIRST = (
    "tests/e2e/test_batch_jobs.py",
    "tests/notebooks",
    "tests/hub/test_hub.py",
    "tests/e2e/test_user_collections.py",
    "tests/jobs/test_worker.py",
    "tests/conformance/test_profiles.py",
    f"{_SUITE}::test_official_suite_module[wp6]",
    f"{_SUITE}::test_official_suite_module[wp5]",
    "tests/jobs/test_faults.py",
    "tests/api/test_explain.py",
    "tests/jobs/test_fair_queue.py",
    "tests/e2e/test_filters_and_netcdf_folders.py",
    "tests/e2e/test_billing.py",
    "tests/e2e/test_udf_dependencies.py",
)

SHARED_UNITS = ("tests/notebooks",)
SPLIT_MODULES = (_SUITE,)


class ModuleScheduling(LoadScopeScheduling):
    """xdist's load-scope scheduling with a test module (a SHARED_UNITS folder, a test of
    SPLIT_MODULES) as unit."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if module in SPLIT_MODULES:
            return nodeid
        for folder in SHARED_UNITS:
            if module.startswith(folder + "/"):
                return folder
        return module

    def schedule(self) -> None:
        if self.collection is None and self.collection_is_completed and self.registered_collections:
            # LoadScopeScheduling.schedule() fills self.workqueue (an ordered dict) in its own
            # order; units already in it keep their place, so the longest are put first here.
            collection: Any = next(iter(self.registered_collections.values()))
            units = {self._split_scope(nodeid) for nodeid in collection}
            for unit in LONGEST_FIRST:
                if unit in units:
                    self.workqueue[unit] = {}
        super().schedule()
