"""`terracube hub`: check the installation, then become JupyterHub with the course hub config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `terracube hub` with the CLI's subcommands."""
    hub = commands.add_parser(
        "hub", parents=[data_dir],
        help="run the course hub: JupyterLab for every terracube user, with the API on the "
             "same port",
        description="Run JupyterHub on HOST:PORT: users sign in with their terracube account "
                    "and get a JupyterLab with samples/ (the training package) and mystorage/ "
                    "(their workspace). /openeo/ on the same port is the terracube API, "
                    "started by the hub unless --api-url names one that runs already. "
                    "Settings: the TERRACUBE_* variables of `terracube serve` and "
                    "TERRACUBE_HUB_* (docs/administration/hub.md).")
    hub.add_argument("--host", help="interface to bind (default: $TERRACUBE_HOST or 127.0.0.1)")
    hub.add_argument("--port", type=int, help="TCP port (default: $TERRACUBE_PORT or 8000)")
    hub.add_argument("--api-url", help="use this running terracube API instead of starting one "
                                       "(default: $TERRACUBE_HUB_API_URL)")
    hub.add_argument("--idle-timeout", type=int, metavar="SECONDS",
                     help="stop labs idle this long (default: $TERRACUBE_HUB_IDLE_TIMEOUT_"
                          "SECONDS or 3600; 0: never)")
    hub.set_defaults(handler=hub_command)


def hub_command(args: argparse.Namespace) -> int:
    # Imported here: the CLI imports this module for every command, which must start fast.
    from terracube.auth.users import UserStore, check_safe_to_serve
    from terracube.db import open_database
    from terracube.hub.settings import HubSettings, find_proxy
    from terracube.settings import UnsafeToServe

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("data_dir", args.data_dir), ("hub_api_url", args.api_url),
                                   ("hub_idle_timeout_seconds", args.idle_timeout))
                 if v is not None}
    settings = HubSettings(**overrides)
    try:
        import jupyterhub  # noqa: F401
        import jupyterhub_idle_culler  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        print(f"terracube: the hub needs the 'hub' extras ({exc.name} is missing): run "
              "`make hub` or `pip install -e .[hub]`", file=sys.stderr)
        return 1
    if find_proxy(settings) is None:
        print("terracube: configurable-http-proxy not found: run `make hub` (it installs it "
              "with npm into .venv/node_modules) or set TERRACUBE_HUB_PROXY_COMMAND",
              file=sys.stderr)
        return 1
    # The API behind the hub binds to loopback, but is reachable wherever the hub is.
    try:
        check_safe_to_serve(settings, UserStore(open_database(settings.database_url)))
    except UnsafeToServe as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.update({"TERRACUBE_HOST": settings.host, "TERRACUBE_PORT": str(settings.port),
                "TERRACUBE_DATA_DIR": str(settings.data_dir),
                "TERRACUBE_DATABASE_URL": settings.database_url})
    if settings.hub_api_url:
        env["TERRACUBE_HUB_API_URL"] = settings.hub_api_url
    env["TERRACUBE_HUB_IDLE_TIMEOUT_SECONDS"] = str(settings.hub_idle_timeout_seconds)
    settings.hub_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The hub's working folder is its state folder: nothing is written where it was started.
    os.chdir(settings.hub_dir)
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)]
    os.execve(sys.executable, argv, env)
    return 0  # not reached
