"""`terracube hub` refuses unsafe settings before starting anything; `users admin` sets roles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.hub.conftest import add_users, terracube_cli
from tests.support.processes import clean_env

from terracube.auth.admins import admin_ids
from terracube.db import open_database


def test_hub_refuses_the_dev_user_on_a_public_host(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "hub", "--host", "0.0.0.0", "--port", "9",
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120,
        env=clean_env(TERRACUBE_DEV_DEFAULT_USER="true"))
    assert run.returncode in (1, 2), run.stderr  # 1 if the hub's packages are missing
    if run.returncode == 2:
        assert "refusing to serve on 0.0.0.0" in run.stderr
    assert not (tmp_path / "hub").exists()


def test_users_admin_grants_and_revokes(tmp_path: Path) -> None:
    add_users(tmp_path, {"teacher": "chalk", "student": "pencil"})
    db = open_database(f"sqlite:///{tmp_path / 'terracube.db'}")
    assert "is now an admin" in terracube_cli(tmp_path, "users", "admin", "teacher").stdout
    assert admin_ids(db) == {"teacher"}
    terracube_cli(tmp_path, "users", "admin", "teacher", "--revoke")
    assert admin_ids(db) == set()
    terracube_cli(tmp_path, "users", "admin", "student")
    terracube_cli(tmp_path, "users", "remove", "student")
    assert admin_ids(db) == set()  # the role goes with the account
    run = subprocess.run([sys.executable, "-m", "terracube.cli", "users", "admin", "nobody",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert run.returncode == 1 and "no user 'nobody'" in run.stderr
