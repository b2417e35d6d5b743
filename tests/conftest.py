"""Fixtures shared by all tests: the reference material, the process registry, the generated
sample data and real terracube server processes (helpers in tests/support/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from tests.support import client_polling, password_hashing
from tests.support.data import data_dir_with_samples
from tests.support.paths import SHARED
from tests.support.processes import ServerProcess

from terracube.engine.registry import ProcessRegistry, build_registry


def pytest_configure(config: pytest.Config) -> None:
    # batch jobs polled every 0.2 s instead of after 5 s, 6 s... (tests/support/client_polling.py)
    client_polling.install()
    # accounts made in this process hashed at argon2's smallest cost (password_hashing.py)
    password_hashing.install()


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist`: no such hook, nothing to schedule
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any | None:
    """`pytest -n N`: a test module is a unit of work, the notebooks one unit, the longest
    units first (tests/support/xdist_scheduling.py)."""
    if config.getoption("dist") != "load":  # another --dist was asked for: xdist's own
        return None
    from tests.support.xdist_scheduling import ModuleScheduling

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "openeo-api").is_dir():
        pytest.skip(f"reference material not found at {SHARED} (set TERRACUBE_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def registry() -> ProcessRegistry:
    """All predefined processes. The registry is immutable, so one serves the whole session;
    a test that needs extra processes derives its own: `registry.with_processes({id: func})`."""
    return build_registry()


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory with the generated sample collections for the whole session (both
    generated here, once: a server would otherwise generate the rainfall sample on its first
    GET /collections, which can outlast a client's timeout on a busy machine).

    With pytest-xdist (`make test` runs `-n 2`), the workers share one generation (in the
    run's common temporary folder, or TERRACUBE_TEST_DATA_DIR, under a file lock: the first
    worker generates, the others wait for it), and each worker gets a data directory of its
    own (its servers' databases, jobs and logs) whose samples/ links to the shared one. So
    does a run with TERRACUBE_TEST_DATA_DIR: what tests write (users, jobs) stays in the run's
    folder, and the next run, or one beside it, starts from the samples alone."""
    env_dir = os.environ.get("TERRACUBE_TEST_DATA_DIR")
    if env_dir is None and os.environ.get("PYTEST_XDIST_WORKER") is None:
        data_dir = tmp_path_factory.mktemp("terracube-data")
        _generate_samples(data_dir)
        return data_dir
    shared = (Path(env_dir) if env_dir
              else tmp_path_factory.getbasetemp().parent / "terracube-samples")
    shared.mkdir(parents=True, exist_ok=True)
    with FileLock(str(shared / ".generating.lock")):
        _generate_samples(shared)
    return data_dir_with_samples(tmp_path_factory.mktemp("terracube-data"), shared)


def _generate_samples(data_dir: Path) -> None:
    from terracube.catalog.samples.dem_landcover_synthetic import ensure_dem_landcover_data
    from terracube.catalog.samples.rainfall_synthetic import ensure_rainfall_data
    from terracube.catalog.samples.sentinel1_synthetic import ensure_sentinel1_data
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data

    ensure_sample_data(data_dir)
    ensure_rainfall_data(data_dir)
    ensure_dem_landcover_data(data_dir)
    ensure_sentinel1_data(data_dir)


@pytest.fixture(scope="session")
def server(sample_data_dir: Path):
    srv = ServerProcess(sample_data_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def con(server: ServerProcess):
    """The official `openeo` client logged in as demo on `server`: the session server, or the
    module's own where a test module defines a `server` fixture."""
    import openeo

    return openeo.connect(server.url).authenticate_basic("demo", "demo")


@pytest.fixture
def start_server():
    """Starts servers of its own for a test (e.g. to kill them); stops them afterwards."""
    started: list[ServerProcess] = []

    def start(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
        srv = ServerProcess(data_dir, env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


# --- two users of a TestClient app ------------------------------------------------------------
# A test module that uses these defines a `client` fixture whose app has the users
# alice/wonderland and bob/builder.
def basic_login(client, name: str, password: str) -> dict[str, str]:
    """The Authorization header of an openEO basic login through the API."""
    token = client.get("/openeo/1.2/credentials/basic", auth=(name, password)).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


@pytest.fixture
def alice(client) -> dict[str, str]:
    return basic_login(client, "alice", "wonderland")


@pytest.fixture
def bob(client) -> dict[str, str]:
    return basic_login(client, "bob", "builder")
