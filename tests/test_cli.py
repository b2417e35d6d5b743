"""The terracube command: users add / list / passwd / remove, and serve (incl. its refusals);
the commands that only read or write records start without the engine and the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess

from terracube.auth.users import UserStore
from terracube.db import open_database
from terracube.settings import Settings


def run(*args: str, data_dir: Path, stdin: str = "", env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    return subprocess.run(
        [sys.executable, "-m", "terracube.cli", *args, "--data-dir", str(data_dir)],
        input=stdin, capture_output=True, text=True, env={**clean, **(env or {})},
        timeout=timeout)


def store(data_dir: Path) -> UserStore:
    return UserStore(open_database(Settings(data_dir=data_dir).database_url))


def test_users_lifecycle(tmp_path):
    data = tmp_path / "data"
    r = run("users", "add", "alice", data_dir=data, stdin="wonderland\n")
    assert r.returncode == 0, r.stderr
    assert run("users", "add", "bob", data_dir=data, stdin="builder\n").returncode == 0
    assert (data / "terracube.db").exists()

    r = run("users", "list", data_dir=data)
    assert r.returncode == 0
    assert r.stdout.split() == ["alice", "bob"]
    assert store(data).has_password("alice", "wonderland")

    r = run("users", "passwd", "alice", data_dir=data, stdin="looking-glass\n")
    assert r.returncode == 0, r.stderr
    assert store(data).has_password("alice", "looking-glass")
    assert not store(data).has_password("alice", "wonderland")

    r = run("users", "remove", "bob", data_dir=data)
    assert r.returncode == 0, r.stderr
    assert run("users", "list", data_dir=data).stdout.split() == ["alice"]


def test_users_errors(tmp_path):
    data = tmp_path / "data"
    assert run("users", "add", "alice", data_dir=data, stdin="pw\n").returncode == 0
    r = run("users", "add", "alice", data_dir=data, stdin="pw\n")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run("users", "add", "bad name", data_dir=data, stdin="pw\n")
    assert r.returncode == 1 and "invalid user name" in r.stderr
    r = run("users", "add", "carol", data_dir=data, stdin="")
    assert r.returncode == 1 and "empty" in r.stderr
    r = run("users", "remove", "nobody", data_dir=data)
    assert r.returncode == 1 and "nobody" in r.stderr
    r = run("users", "passwd", "nobody", data_dir=data, stdin="x\n")
    assert r.returncode == 1 and "nobody" in r.stderr


def test_data_dir_from_environment(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    r = subprocess.run([sys.executable, "-m", "terracube.cli", "users", "add", "alice"],
                       input="pw\n", capture_output=True, text=True, timeout=60,
                       env={**clean, "TERRACUBE_DATA_DIR": str(tmp_path / "env-data")})
    assert r.returncode == 0, r.stderr
    assert store(tmp_path / "env-data").exists("alice")


def test_usage_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "terracube.cli"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    r = run("users", "frobnicate", data_dir=tmp_path)
    assert r.returncode == 2


def test_serve_refuses_default_password_on_public_host(tmp_path):
    data = tmp_path / "data"
    assert run("users", "add", "demo", data_dir=data, stdin="demo\n").returncode == 0
    r = run("serve", "--host", "0.0.0.0", "--port", "1", data_dir=data, timeout=60)
    assert r.returncode == 2
    assert "refusing" in r.stderr and "demo" in r.stderr


def test_serve_refuses_dev_default_user_on_public_host(tmp_path):
    r = run("serve", "--host", "0.0.0.0", "--port", "1", data_dir=tmp_path / "data",
            env={"TERRACUBE_DEV_DEFAULT_USER": "true"}, timeout=60)
    assert r.returncode == 2
    assert "refusing" in r.stderr
    assert store(tmp_path / "data").list() == []


@pytest.mark.e2e
def test_serve_on_loopback(tmp_path, sample_data_dir):
    # Without --host and without the test run's TERRACUBE_* settings: the defaults.
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    srv = ServerProcess(data, {"TERRACUBE_DEV_DEFAULT_USER": "1"}, clean=True, host=None)
    try:
        base, port = srv.url, srv.port
        r = httpx.get(f"{base}/.well-known/openeo", timeout=10)
        assert r.json()["versions"][0]["url"] == f"{base}/openeo/1.2/"
        token = httpx.get(f"{base}/openeo/1.2/credentials/basic", auth=("demo", "demo"),
                          timeout=10).json()["access_token"]
        me = httpx.get(f"{base}/openeo/1.2/me", timeout=10,
                       headers={"Authorization": f"Bearer basic//{token}"}).json()
        assert me["user_id"] == "demo"
    finally:
        srv.stop()
    text = srv.log()
    assert f"terracube serving openEO API 1.2 at http://127.0.0.1:{port}/openeo/1.2/" in text
    assert "dev default user demo/demo created — do not expose" in text


# What a command that only reads or writes records may import: ~20 CLI processes start in the
# tests (and every administrator's command), and the engine, xarray and pandas took 2-6 s of
# them on a busy machine.
HEAVY = ("xarray", "pandas", "dask", "rasterio", "odc.stac", "terracube.engine.registry",
         "terracube.catalog.catalog", "fastapi")
LIGHT_COMMANDS = (["--help"], ["users", "list"], ["collections", "list"], ["jobs", "list"],
                  ["workspaces", "list"])


def test_light_commands_import_no_engine_or_catalog(tmp_path):
    # one process runs them in turn (each after the previous one's imports): the first that
    # loads a heavy module is named
    probe = ("import sys, contextlib, io\n"
             "from terracube.cli import main\n"
             f"for command in {LIGHT_COMMANDS!r}:\n"
             f"    args = command if command == ['--help'] else [*command, '--data-dir', "
             f"{str(tmp_path)!r}]\n"
             "    with contextlib.redirect_stdout(io.StringIO()):\n"
             "        try:\n"
             "            main(args)\n"
             "        except SystemExit:\n"
             "            pass\n"
             f"    print(command, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{c} []" for c in LIGHT_COMMANDS], r.stdout
