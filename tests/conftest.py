"""Fixtures shared by all tests: the reference material, the process registry, the generated
sample data and real terracube server processes (helpers in tests/support/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.paths import SHARED
from tests.support.processes import ServerProcess

from terracube.engine.registry import ProcessRegistry, build_registry


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
    GET /collections, which can outlast a client's timeout on a busy machine)."""
    from terracube.catalog.samples.rainfall_synthetic import ensure_rainfall_data
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data

    env_dir = os.environ.get("TERRACUBE_TEST_DATA_DIR")
    data_dir = Path(env_dir) if env_dir else tmp_path_factory.mktemp("terracube-data")
    ensure_sample_data(data_dir)
    ensure_rainfall_data(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def server(sample_data_dir: Path):
    srv = ServerProcess(sample_data_dir)
    yield srv
    srv.stop()


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
