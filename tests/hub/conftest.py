"""The course hub as real processes: `terracube hub` on a free loopback port (JupyterHub, its
proxy, the API, the idle culler, the labs) and a browser-like client that signs in through the
login form and talks to its lab over the Jupyter server's REST and kernel (websocket) APIs."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.data import data_dir_with_samples
from tests.support.paths import REPO
from tests.support.processes import ChildProcess, clean_env, free_port

from terracube.auth.users import UserStore
from terracube.db import open_database


def hub_missing() -> str | None:
    """Why the hub cannot run here, or None."""
    for module in ("jupyterhub", "jupyterlab", "jupyterhub_idle_culler", "websockets"):
        if importlib.util.find_spec(module) is None:
            return f"needs the Python package {module} (pip install -e .[hub,test])"
    from terracube.hub.settings import HubSettings, find_proxy

    if find_proxy(HubSettings(_env_file=None)) is None:
        return ("needs configurable-http-proxy from npm (make test installs it into "
                ".venv/node_modules when npm is there)")
    return None


_MISSING = hub_missing()
needs_hub = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def add_users(data_dir: Path, users: dict[str, str]) -> None:
    store = UserStore(open_database(f"sqlite:///{data_dir / 'terracube.db'}"))
    for name, password in users.items():
        store.add(name, password)


def terracube_cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run a `terracube` command on the data folder (as an administrator would)."""
    return subprocess.run([sys.executable, "-m", "terracube.cli", *args, "--data-dir",
                           str(data_dir)], input=stdin, capture_output=True, text=True,
                          env=clean_env(), timeout=120, check=True)


class HubProcess(ChildProcess):
    """`terracube hub` on a free loopback port; ready when the hub and the API behind it
    answer on that port. Stopping it also ends every process it left behind."""

    name = "terracube hub"

    def __init__(self, data_dir: Path, samples: Path, *, api: bool = True,
                 **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        if not api:  # a test that needs no API: point the hub at a port where nothing runs
            settings["TERRACUBE_HUB_API_URL"] = f"http://127.0.0.1:{free_port()}"
        env = clean_env(TERRACUBE_HUB_SAMPLES_DIR=str(samples), TERRACUBE_WORKERS="0",
                        **settings)
        super().__init__(
            [sys.executable, "-m", "terracube.cli", "hub", "--host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(data_dir)],
            data_dir / f"hub-{self.port}.log", env=env, ready_url=f"{self.url}/hub/api/",
            timeout=180)
        if api:
            self.wait_ready(f"{self.url}/openeo/1.2/", timeout=180)

    def events(self, last: int = 80) -> str:
        """The end of the log without the request lines (for failure messages)."""
        lines = [line for line in self.log().splitlines()
                 if " log:192]" not in line and "[ConfigProxy]" not in line]
        return "\n".join(lines[-last:])

    def stop(self, timeout: float = 60) -> None:
        import psutil

        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        super().stop(timeout)
        for proc in family:  # labs, kernels, the API, the proxy: none may outlive the test
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass


class HubUser:
    """A person with a browser: signs in through the hub's form, opens and uses the lab."""

    def __init__(self, hub: HubProcess, name: str) -> None:
        self.hub = hub
        self.name = name
        self.http = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)
        self.lab = f"/user/{name}"

    def close(self) -> None:
        self.http.close()

    def _cookie(self, name: str, path: str) -> str | None:
        for cookie in self.http.cookies.jar:
            if cookie.name == name and cookie.path == path:
                return cookie.value
        return None

    def sign_in(self, password: str) -> httpx.Response:
        """GET the login form (the _xsrf cookie), POST it back with the credentials."""
        self.http.get("/hub/login")
        xsrf = self._cookie("_xsrf", "/hub/")
        assert xsrf, "the login form set no _xsrf cookie"
        return self.http.post("/hub/login", data={"username": self.name, "password": password,
                                                  "_xsrf": xsrf})

    @property
    def signed_in(self) -> bool:
        return self._cookie("jupyterhub-hub-login", "/hub/") is not None

    def hub_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-XSRFToken": self._cookie("_xsrf", "/hub/") or ""}
        return self.http.request(method, f"/hub/api{path}", headers=headers, **kwargs)

    def open_lab(self, timeout: float = 180) -> None:
        """Open the lab as the browser does (spawning it if needed) until its API answers."""
        deadline = time.monotonic() + timeout
        # The spawn page starts a stopped lab (the Hub's "Start My Server" does the same).
        self.http.get(f"/hub/spawn/{self.name}")
        while time.monotonic() < deadline:
            page = self.http.get(f"{self.lab}/lab")
            if page.status_code == 200 and page.url.path.startswith(f"{self.lab}/lab"):
                status = self.http.get(f"{self.lab}/api/status")
                if status.status_code == 200:
                    return
            if "/hub/login" in page.url.path:
                raise AssertionError(f"{self.name} is not signed in")
            time.sleep(1)
        raise AssertionError(f"the lab of {self.name} did not start within {timeout} s:\n"
                             + self.hub.events())

    def server_running(self) -> bool:
        user = self.hub_api("GET", f"/users/{self.name}").json()
        server = user.get("servers", {}).get("")
        return bool(server and server.get("ready"))

    def stop_lab(self, timeout: float = 60) -> None:
        r = self.hub_api("DELETE", f"/users/{self.name}/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while self.hub_api("GET", f"/users/{self.name}").json().get("servers"):
            assert time.monotonic() < deadline, "the lab did not stop"
            time.sleep(0.5)

    # --- the lab's Jupyter server API -----------------------------------------------------
    def lab_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-XSRFToken": self._cookie("_xsrf", f"{self.lab}/") or ""}
        return self.http.request(method, f"{self.lab}/api{path}", headers=headers, **kwargs)

    def put_file(self, path: str, data: bytes, chunk: int | None = None) -> httpx.Response:
        model: dict[str, Any] = {"type": "file", "format": "base64",
                                 "content": base64.b64encode(data).decode()}
        if chunk is not None:
            model["chunk"] = chunk
        return self.lab_api("PUT", f"/contents/{path}", json=model)

    def start_kernel(self) -> str:
        r = self.lab_api("POST", "/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def execute(self, kernel_id: str, code: str, timeout: float = 300) -> str:
        """Run `code` in the kernel over its websocket; its printed output (error: raise)."""
        from websockets.sync.client import connect

        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar
                            if c.path in ("/", f"{self.lab}/"))
        url = f"ws://127.0.0.1:{self.hub.port}{self.lab}/api/kernels/{kernel_id}/channels"
        msg_id = uuid.uuid4().hex
        request = {
            "header": {"msg_id": msg_id, "username": self.name, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }
        out: list[str] = []
        deadline = time.monotonic() + timeout
        with connect(url, additional_headers={"Cookie": cookies},
                     origin=f"http://127.0.0.1:{self.hub.port}", open_timeout=60,
                     max_size=None) as ws:
            ws.send(json.dumps(request))
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"the kernel did not finish within {timeout} s: {out}"
                msg = json.loads(ws.recv(timeout=left))
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    raise AssertionError("kernel error:\n" + "\n".join(
                        msg["content"]["traceback"]))
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    return "".join(out)


@pytest.fixture(scope="module")
def course_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the repository's training package (notebooks/), so that the notebooks
    being written meanwhile cannot change under a test."""
    folder = tmp_path_factory.mktemp("course") / "notebooks"
    shutil.copytree(REPO / "notebooks", folder,
                    ignore=shutil.ignore_patterns("output", ".ipynb_checkpoints", "__pycache__"))
    return folder


@pytest.fixture(scope="module")
def hub_data_dir(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    return data_dir_with_samples(tmp_path_factory.mktemp("hub-data"), sample_data_dir)


def tree_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
