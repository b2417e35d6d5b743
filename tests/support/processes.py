"""The one helper for child processes of the tests: start a command (or `terracube serve`,
`terracube worker`, a test HTTP server), poll until it is ready, terminate, kill; and a folder
served over HTTP from a thread (`StaticHttpServer`).

Every process runs on a free loopback port where it listens, writes its output to a log file
(read with `log()` when something fails) and is stopped with `stop()`: SIGTERM, then SIGKILL
when it does not exit in time.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
from tests.support.paths import REPO, SHARED

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 60, interval: float = 0.1,
             what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# Test servers and workers may fetch from loopback (STAC servers of the tests, the server's
# own job results): allowed explicitly, as an administrator would (url_policy.py).
# The shared test data folder too: the tests' STAC documents point at its files.
LOOPBACK_FETCH = {"TERRACUBE_FETCH_ALLOWED_HOSTS": json.dumps(
    ["127.0.0.1/32", "::1/128", "localhost", str(SHARED / "data")])}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TERRACUBE_* setting of the test run, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    env.update(extra)
    return env


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not count)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ChildProcess:
    """A command run as a child process, its output in `log_path` (a temporary file, removed
    by stop(), when None).

    `ready_url`: started() polls it until it answers 200 (and fails early, with the log, if
    the process exits first or nothing answers within `timeout` seconds).
    """

    name = "process"

    def __init__(self, args: list[str], log_path: Path | None = None, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 ready_url: str | None = None, timeout: float = 120) -> None:
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="terracube-test-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd)
        if ready_url is not None:
            self.wait_ready(ready_url, timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, timeout: float = 120) -> None:
        """Poll `url` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")

    def wait(self, timeout: float = 120) -> int:
        """Wait for the process to exit; its exit code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.flush()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or `kill -9` would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
            if self._own_log:
                self.log_path.unlink(missing_ok=True)


PORT_ATTEMPTS = 3


class ServerProcess(ChildProcess):
    """A `terracube serve` child process on a free loopback port with the dev default user
    demo/demo; its log is server-<port>.log in the data folder.

    `env` is added to the test run's environment (to none of its TERRACUBE_* settings with
    `clean=True`); `host=None` leaves --host out (the server's default, loopback); `port`: a
    port chosen beforehand (free_port()) when its settings must name its own URL.
    """

    name = "terracube serve"

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *,
                 clean: bool = False, host: str | None = "127.0.0.1",
                 port: int | None = None) -> None:
        base = clean_env() if clean else dict(os.environ)
        # no spare UDF processes at start (~1.5 s of CPU per server): at the first UDF only
        full_env = {**base, "TERRACUBE_DEV_DEFAULT_USER": "true", **LOOPBACK_FETCH,
                    "TERRACUBE_UDF_SPARES_AT_START": "false",
                    **(env or {})}
        host_args = ["--host", host] if host else []
        # The free port may be taken by someone else (another test worker's connection, a
        # process of the machine) before the server binds it, seconds later: then again on
        # another port, a few times (not a port chosen by the caller).
        attempts = 1 if port else PORT_ATTEMPTS
        for attempt in range(attempts):
            self.port = port or free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.api = f"{self.url}/openeo/1.2/"
            try:
                super().__init__(
                    [sys.executable, "-m", "terracube.cli", "serve", *host_args,
                     "--port", str(self.port), "--data-dir", str(data_dir)],
                    data_dir / f"server-{self.port}.log", env=full_env, ready_url=self.api)
                return
            except RuntimeError:
                lost_port = "address already in use" in self.log().lower()
                self.stop()
                if not lost_port or attempt == attempts - 1:
                    raise

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout)


class WorkerProcess(ChildProcess):
    """A `terracube worker` child process on a data folder (TERRACUBE_* of the test run
    left out of its environment)."""

    name = "terracube worker"

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [sys.executable, "-m", "terracube.cli", "worker", "--data-dir", str(data_dir),
             *args], data_dir / f"worker-{time.monotonic_ns()}.log",
            env=clean_env(**{**LOOPBACK_FETCH, **(env or {})}))


class HttpServerProcess(ChildProcess):
    """A Python HTTP server script or module (e.g. a STAC API) on a free loopback port;
    ready when `ready_path` answers 200. `args` follow the script; `--port` is added."""

    name = "HTTP server"

    def __init__(self, program: list[str], log_path: Path | None = None, *,
                 ready_path: str = "/", timeout: float = 30) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, *program, "--port", str(self.port)], log_path,
                         cwd=REPO, ready_url=self.url + ready_path, timeout=timeout)

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)


class StaticHttpServer:
    """A folder served read-only over HTTP on a loopback port (in a thread of the test
    process; no child process needed). Also a context manager that stops it."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StaticHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def oidc_provider_module() -> Path | None:
    """The entry file of node-oidc-provider (npm, installed by the Makefile into
    .venv/node_modules), or None when it or node is missing."""
    import shutil

    module = Path(sys.prefix) / "node_modules" / "oidc-provider" / "lib" / "index.js"
    return module if module.exists() and shutil.which("node") else None


class OidcProviderProcess(ChildProcess):
    """A real OpenID Connect provider (node-oidc-provider configured by
    tests/support/oidc_provider.mjs) on a free loopback port; `issuer` is its URL.

    `clients`: [{"client_id", "client_secret"?, "grant_types", "opaque"?}]; access tokens are
    JWTs for `audience` (opaque for clients with "opaque": true) and live `ttl` seconds.
    """

    name = "oidc-provider"

    def __init__(self, clients: list[dict], *, audience: str, ttl: int = 300,
                 port: int | None = None) -> None:
        module = oidc_provider_module()
        if module is None:
            raise RuntimeError("node-oidc-provider is not installed (see the Makefile)")
        self.clients, self.audience, self.ttl = clients, audience, ttl
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OIDC_PROVIDER_MODULE": str(module), "OIDC_PORT": str(self.port),
               "OIDC_AUDIENCE": audience, "OIDC_ACCESS_TOKEN_TTL": str(ttl),
               "OIDC_CLIENTS": json.dumps(clients)}
        super().__init__(["node", str(Path(__file__).with_name("oidc_provider.mjs"))],
                         env=env, ready_url=f"{self.issuer}/.well-known/openid-configuration",
                         timeout=60)

    def restarted(self) -> OidcProviderProcess:
        """Stop it and start it again on the same port: same issuer, new signing key (and
        every token it issued is forgotten), as after a key rotation."""
        self.stop()
        return OidcProviderProcess(self.clients, audience=self.audience, ttl=self.ttl,
                                   port=self.port)

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
