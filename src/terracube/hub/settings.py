"""Settings of the course hub: the server's TERRACUBE_* settings plus the TERRACUBE_HUB_* ones."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pydantic import Field

from terracube.settings import Settings

# The repository's training package: src/terracube/hub/settings.py -> <repo>/notebooks.
REPO_NOTEBOOKS = Path(__file__).resolve().parents[3] / "notebooks"
PROXY_PROGRAM = "configurable-http-proxy"


class HubSettings(Settings):
    """The server settings (data_dir, database_url, host, port, quota, token lifetime ...) and
    what only the hub needs. `terracube hub` serves on `host:port` (the API behind it)."""

    hub_api_url: str | None = Field(
        None, description="URL of a terracube API that is already running (e.g. "
                          "http://127.0.0.1:8000); default: the hub starts one on a free "
                          "loopback port and routes /openeo/ to it.")
    hub_idle_timeout_seconds: int = Field(
        3600, ge=0, description="A lab without activity for this long is stopped by "
                                "jupyterhub-idle-culler (its files are kept); 0: never.")
    hub_cull_every_seconds: int = Field(
        0, ge=0, description="How often the idle culler looks; 0: a quarter of the timeout "
                             "(at least 1 s, at most 5 min).")
    hub_proxy_command: str | None = Field(
        None, description="The configurable-http-proxy program; default: the one `make hub` "
                          "installed into .venv/node_modules, else the one on PATH.")
    hub_samples_dir: Path | None = Field(
        None, description="The training package copied to every lab's samples/ at each "
                          "start; default: the repository's notebooks/ folder.")
    hub_token_renew_seconds: float | None = Field(
        None, gt=0, description="How often a running lab gets a fresh terracube token; "
                                "default: a quarter of TERRACUBE_TOKEN_TTL_SECONDS.")
    hub_poll_seconds: int = Field(
        30, ge=1, description="How often the hub checks each running lab: that its process "
                              "lives and that its terracube account still exists (the lab "
                              "of a removed user is stopped at the next check).")
    hub_start_timeout_seconds: int = Field(
        120, ge=10, description="How long a lab may take to start before the spawn fails.")
    hub_memory_limit: str | None = Field(
        None, description="Memory limit per lab, e.g. '2G': enforced by container spawners "
                          "(DockerSpawner, KubeSpawner), only advertised (MEM_LIMIT) by the "
                          "local spawner.")
    hub_cpu_limit: float | None = Field(
        None, gt=0, description="CPU limit per lab (cores); like hub_memory_limit.")

    @property
    def hub_dir(self) -> Path:
        """The hub's own state: its database, cookie secret, the users' homes."""
        return self.data_dir / "hub"

    @property
    def homes_dir(self) -> Path:
        return self.hub_dir / "home"

    def samples_source(self) -> Path:
        return (self.hub_samples_dir or REPO_NOTEBOOKS).expanduser().resolve()

    def token_renew_seconds(self) -> float:
        if self.hub_token_renew_seconds:
            return self.hub_token_renew_seconds
        return max(10.0, self.token_ttl_seconds / 4)

    def cull_every_seconds(self) -> int:
        if self.hub_cull_every_seconds:
            return self.hub_cull_every_seconds
        return min(300, max(1, self.hub_idle_timeout_seconds // 4))

    def public_base(self) -> str:
        """The URL labs (and users) reach the hub and the API at."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


def find_proxy(settings: HubSettings) -> str | None:
    """The configurable-http-proxy executable, or None if it is not installed."""
    if settings.hub_proxy_command:
        return shutil.which(settings.hub_proxy_command)
    local = Path(sys.prefix) / "node_modules" / ".bin" / PROXY_PROGRAM
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(PROXY_PROGRAM)
