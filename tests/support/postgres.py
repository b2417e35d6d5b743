"""A throw-away PostgreSQL server for the tests that need one (Debian's postgresql package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port


def postgres_bin() -> Path | None:
    """The folder of initdb/pg_ctl, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists():
            return folder
    return None


def postgres_missing() -> str | None:
    """Why no PostgreSQL server can be started here, or None if one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests need the psycopg driver (pip install 'psycopg[binary]')"
    if postgres_bin() is None:
        return ("PostgreSQL tests need Debian's postgresql package (initdb, pg_ctl): "
                "apt-get install postgresql")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "PostgreSQL cannot run as root and there is no 'postgres' user"
    return None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on loopback in a temporary folder; yields its SQLAlchemy URL."""
    problem = postgres_missing()
    if problem:
        raise RuntimeError(problem)
    bindir = postgres_bin()
    assert bindir is not None
    # Not under pytest's temporary folder: that one is private to root, which PostgreSQL
    # (running as the user postgres) could not enter.
    folder = Path(tempfile.mkdtemp(prefix="terracube-postgres-"))
    data = folder / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "terracube",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    log = folder / "postgres.log"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                    "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -k {folder}",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://terracube@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
