"""A Jupyter server extension for the labs: new kernels get the freshest terracube token.

The hub's spawner writes a renewed token into $TERRACUBE_TOKEN_FILE while the lab runs; this
extension copies it into the lab's environment every minute, and kernels inherit the lab's
environment when they start. So a kernel started (or restarted) at any time finds a valid
TERRACUBE_TOKEN, and a long-running kernel can re-read the file.
"""

from __future__ import annotations

import os
from typing import Any

from tornado.ioloop import PeriodicCallback

REFRESH_MS = 60_000


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "terracube.hub.lab"}]


def refresh_token_env() -> bool:
    """Put the token of $TERRACUBE_TOKEN_FILE into os.environ; True if it changed."""
    path = os.environ.get("TERRACUBE_TOKEN_FILE")
    if not path:
        return False
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError:
        return False
    if token and token != os.environ.get("TERRACUBE_TOKEN"):
        os.environ["TERRACUBE_TOKEN"] = token
        return True
    return False


def _load_jupyter_server_extension(serverapp: Any) -> None:
    refresh_token_env()
    callback = PeriodicCallback(refresh_token_env, REFRESH_MS)
    callback.start()
    serverapp.log.info("terracube: the kernels' TERRACUBE_TOKEN follows %s",
                       os.environ.get("TERRACUBE_TOKEN_FILE"))
