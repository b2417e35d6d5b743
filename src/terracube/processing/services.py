"""Building the Services a graph is evaluated with: registry, catalog, user, workspace, UDPs,
the executor and where job logs go. Built once per request or job, never changed after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from terracube.engine.evaluate import Services
from terracube.engine.registry import ProcessRegistry
from terracube.executor import Executor
from terracube.udp.store import udp_lookup_for
from terracube.workspace.files import workspace_folder


def build_services(settings: Any, catalog: Any, registry: ProcessRegistry, user: Any = None,
                   udp_lookup: Any = None, *, executor: Executor | None = None,
                   log: Callable[..., None] | None = None) -> Services:
    """The services of one request or job. `executor`: where it computes (None: the current
    one); `log`: (level, message, node_id) for the job's log."""
    workspace = None
    if user is not None and settings is not None:
        workspace = workspace_folder(settings, user.user_id)
        if udp_lookup is None:
            udp_lookup = udp_lookup_for(settings, user.user_id, registry.__contains__)
    return Services(registry=registry, catalog=catalog, user=user, settings=settings,
                    udp_lookup=udp_lookup, workspace=workspace, executor=executor, log=log)
