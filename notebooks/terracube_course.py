"""Connect a course notebook to terracube (or any openEO back-end) from environment variables.

    TERRACUBE_URL       the server (default http://127.0.0.1:8000)
    TERRACUBE_TOKEN_FILE  a file holding the current access token (the course hub renews it
                          there while a lab runs, so long-lived kernels stay signed in)
    TERRACUBE_TOKEN     an access token as /credentials/basic issues it, used as a bearer token
    TERRACUBE_USER      user name, if there is no token (default demo)
    TERRACUBE_PASSWORD  password, if there is no token (default demo)
    TERRACUBE_COURSE_OUT  a folder: `keep()` writes the notebook's key numbers there as JSON
                          (the notebook tests compare them with their own computation)
    TERRACUBE_COURSE_WORK the folder `work_dir()` gives for downloads (default ./work)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openeo
from openeo.rest.auth.auth import BearerAuth

DEFAULT_URL = "http://127.0.0.1:8000"


def connect(url: str | None = None) -> openeo.Connection:
    """An authenticated connection to the course server (see the module docstring)."""
    con = openeo.connect(url or os.environ.get("TERRACUBE_URL", DEFAULT_URL))
    token = _token_from_file() or os.environ.get("TERRACUBE_TOKEN")
    if token:
        # openEO basic-auth tokens travel as "Bearer basic//<token>" (API 1.x).
        con.auth = BearerAuth(bearer=f"basic//{token}")
    else:
        con.authenticate_basic(os.environ.get("TERRACUBE_USER", "demo"),
                               os.environ.get("TERRACUBE_PASSWORD", "demo"))
    return con


def _token_from_file() -> str | None:
    path = os.environ.get("TERRACUBE_TOKEN_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:  # not written yet: fall back to TERRACUBE_TOKEN
        return None


def work_dir() -> Path:
    """The folder for the files a notebook downloads (created if needed)."""
    folder = Path(os.environ.get("TERRACUBE_COURSE_WORK", "work"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def keep(lesson: str, **values: Any) -> None:
    """Record a few results of a lesson in $TERRACUBE_COURSE_OUT/<lesson>.json (if set)."""
    folder = os.environ.get("TERRACUBE_COURSE_OUT")
    if not folder:
        return
    path = Path(folder) / f"{lesson}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    known.update(values)
    path.write_text(json.dumps(known, indent=1, default=_plain))


def _plain(value: Any) -> Any:
    # numpy scalars and arrays (and anything else with .tolist()/.item()) as plain JSON values
    for attr in ("tolist", "item"):
        if hasattr(value, attr):
            return getattr(value, attr)()
    return str(value)
