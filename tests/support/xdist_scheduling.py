"""How `pytest -n N` (pytest-xdist; `make test`) shares the tests among its worker processes.

Most of the suite's time is spent waiting for real server processes, so two workers on two
cores take about half the time. Work is handed out a test module at a time (as xdist's
`--dist loadfile`): module-scoped fixtures, such as a module's own server, start once. Two
exceptions:

* tests/notebooks is one unit: its notebooks run against one course server with the real
  sample packs, and a lesson can run an earlier one first (`after=`); split over workers,
  each would install the packs and run those lessons again.
* each test of tests/conformance/test_official_suite.py is a unit: each runs one module of the
  official suite against the worker's session server, and the longest two (wp5, wp6) take
  minutes each.
* the longest units go first (longest-processing-time-first), so that none of them starts
  last and leaves the other worker idle while it finishes.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

# Units that take minutes, longest first (relative costs measured with --durations; the
# rest follow, the modules with the most tests first).
_SUITE = "tests/conformance/test_official_suite.py"
LONGEST_FIRST = (
    "tests/notebooks",
    f"{_SUITE}::test_official_suite_module[wp5]",
    f"{_SUITE}::test_official_suite_module[wp6]",
    "tests/hub/test_hub.py",
    "tests/jobs/test_faults.py",
    "tests/auth/test_oidc_provider.py",
    f"{_SUITE}::test_official_suite_module[wp4]",
    f"{_SUITE}::test_official_suite_module[wp2]",
    f"{_SUITE}::test_official_suite_module[wp3]",
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
