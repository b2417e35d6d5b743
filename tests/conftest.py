"""Fixtures shared by all tests: the reference material and a real terracube server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from terracube.engine.registry import ProcessRegistry, build_registry

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TERRACUBE_SHARED", REPO.parent / "shared"))


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
    """One data directory with the generated sample collection for the whole session."""
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data

    env_dir = os.environ.get("TERRACUBE_TEST_DATA_DIR")
    data_dir = Path(env_dir) if env_dir else tmp_path_factory.mktemp("terracube-data")
    ensure_sample_data(data_dir)
    return data_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A `terracube serve` child process on a free loopback port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/openeo/1.2/"
        self.log_path = data_dir / f"server-{self.port}.log"
        full_env = {**os.environ, "TERRACUBE_DEV_DEFAULT_USER": "true", **(env or {})}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "terracube.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(data_dir)],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.api, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def data_dir_with_samples(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path,
                          name: str) -> Path:
    """A data directory of its own (collections, jobs, users) that shares the generated
    sample collections of the session."""
    folder = tmp_path_factory.mktemp(name)
    (folder / "samples").symlink_to(sample_data_dir / "samples", target_is_directory=True)
    return folder


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
