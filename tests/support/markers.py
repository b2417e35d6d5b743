"""Skip markers for optional services and data: a test that needs one is skipped with the
reason (what to install or set), never passed silently."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from tests.support.paths import SHARED
from tests.support.postgres import postgres_missing
from tests.support.processes import oidc_provider_module as _oidc_provider_module

from terracube.engine.udf_sandbox import sandbox_problem


def needs_module(name: str, why: str = "") -> pytest.MarkDecorator:
    """Skip unless the Python module `name` can be imported."""
    missing = importlib.util.find_spec(name) is None
    return pytest.mark.skipif(missing, reason=f"needs the Python package {name}"
                              + (f" ({why})" if why else ""))


_NO_POSTGRES = postgres_missing()
needs_postgres = pytest.mark.skipif(_NO_POSTGRES is not None, reason=_NO_POSTGRES or "")
"""A PostgreSQL server can be started (psycopg, initdb/pg_ctl, a 'postgres' user as root)."""

_NO_SANDBOX = sandbox_problem()
needs_sandbox = pytest.mark.skipif(_NO_SANDBOX is not None,
                                   reason=f"no UDF sandbox here: {_NO_SANDBOX}")
"""The UDF sandbox (bubblewrap with user namespaces) works on this machine."""

needs_shared = pytest.mark.skipif(not (SHARED / "openeo-api").is_dir(),
                                  reason=f"reference material not found at {SHARED} "
                                         "(set TERRACUBE_SHARED)")
"""The reference material of ../shared (openEO API, processes, data)."""

needs_linux_proc = pytest.mark.skipif(not Path("/proc/self/status").exists() or
                                      not sys.platform.startswith("linux"),
                                      reason="needs Linux /proc")
"""Linux's /proc (memory figures of processes)."""

needs_oidc_provider = pytest.mark.skipif(
    _oidc_provider_module() is None,
    reason="node-oidc-provider (npm) or node is not installed: see the Makefile's "
           ".installed-test")
"""A real OpenID Connect provider can be started (tests/support/processes.OidcProviderProcess)."""
