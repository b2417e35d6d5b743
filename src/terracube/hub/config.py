"""The JupyterHub configuration of the course hub, built from the TERRACUBE_* settings.

`terracube hub` runs `jupyterhub -f terracube/hub/jupyterhub_config.py`, which calls
`configure(c)`. One public port (TERRACUBE_HOST:TERRACUBE_PORT) is served by JupyterHub's
configurable-http-proxy: `/hub/` and `/user/<name>/` go to JupyterHub and the labs,
`/openeo/` and `/.well-known/` to the terracube API — a process the hub starts and watches
(a JupyterHub "managed service") on a free loopback port, or an API that already runs
(TERRACUBE_HUB_API_URL). jupyterhub-idle-culler runs as a second managed service.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from terracube.hub.settings import HubSettings, find_proxy

# Paths the proxy sends to the API; everything else belongs to JupyterHub.
API_ROUTES = ("/openeo/", "/.well-known/")


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_environment(settings: HubSettings) -> dict[str, str]:
    """The TERRACUBE_* settings for the API process the hub starts (absolute paths)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("TERRACUBE_")}
    env.update({"TERRACUBE_DATA_DIR": str(settings.data_dir),
                "TERRACUBE_DATABASE_URL": settings.database_url,
                "TERRACUBE_PUBLIC_URL": settings.public_base()})
    for key in ("HOME", "TMPDIR", "GDAL_DATA", "PROJ_DATA", "PROJ_LIB"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def configure(c: Any, settings: HubSettings | None = None) -> HubSettings:
    """Fill the JupyterHub config object `c`; returns the settings it used."""
    settings = settings or HubSettings()
    hub_dir = settings.hub_dir
    hub_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(hub_dir, 0o700)

    # --- where JupyterHub listens and keeps its state -------------------------------------
    c.JupyterHub.bind_url = f"http://{_url_host(settings.host)}:{settings.port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{free_loopback_port()}"
    c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(hub_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(hub_dir / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True  # labs stop with the hub; their files stay
    c.JupyterHub.template_vars = {
        "announcement_login": "Sign in with your terracube account.",
    }

    # --- the proxy: one port for the hub, the labs and the API ----------------------------
    proxy = find_proxy(settings)
    if proxy is None:
        raise SystemExit("configurable-http-proxy not found: run `make hub` (installs it with "
                         "npm into .venv/node_modules) or set TERRACUBE_HUB_PROXY_COMMAND")
    c.ConfigurableHTTPProxy.command = [proxy]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{free_loopback_port()}"
    c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")
    c.ConfigurableHTTPProxy.debug = False

    services: list[dict[str, Any]] = []
    api_url = settings.hub_api_url
    if not api_url:
        port = free_loopback_port()
        api_url = f"http://127.0.0.1:{port}"
        services.append({
            "name": "terracube-api",
            "display": False,
            "command": [sys.executable, "-m", "terracube.cli", "serve", "--host", "127.0.0.1",
                        "--port", str(port)],
            "environment": api_environment(settings),
        })
    c.Proxy.extra_routes = {route: api_url.rstrip("/") for route in API_ROUTES}

    # --- who signs in, and what they get --------------------------------------------------
    c.JupyterHub.authenticator_class = "terracube.hub.authenticator.TerracubeAuthenticator"
    c.JupyterHub.spawner_class = "terracube.hub.spawner.TerracubeSpawner"
    c.Spawner.start_timeout = settings.hub_start_timeout_seconds
    c.Spawner.poll_interval = settings.hub_poll_seconds
    c.Spawner.http_timeout = settings.hub_start_timeout_seconds
    # Labs and the hub's services get SIGINT, then SIGTERM, then SIGKILL; JupyterHub waits
    # 10 + 5 s by default, which makes stopping the hub (and culling) needlessly slow.
    c.LocalProcessSpawner.interrupt_timeout = 4
    c.LocalProcessSpawner.term_timeout = 4
    if settings.hub_memory_limit:
        c.Spawner.mem_limit = settings.hub_memory_limit
    if settings.hub_cpu_limit:
        c.Spawner.cpu_limit = settings.hub_cpu_limit

    # --- idle labs are stopped (the users and their files stay) ---------------------------
    if settings.hub_idle_timeout_seconds > 0:
        services.append({
            "name": "idle-culler",
            "display": False,
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={settings.hub_idle_timeout_seconds}",
                        f"--cull-every={settings.cull_every_seconds()}"],
        })
        c.JupyterHub.load_roles = [{
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }]
        # The culler decides from the hub's last-activity record: keep it current.
        c.JupyterHub.last_activity_interval = min(300, max(
            1, settings.hub_idle_timeout_seconds // 4))
    c.JupyterHub.services = services
    return settings


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
