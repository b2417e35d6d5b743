"""Building the Services a graph is evaluated with (registry, catalog, user, workspace, UDPs)."""

from __future__ import annotations

from typing import Any

from terracube.engine.evaluate import Services
from terracube.engine.registry import ProcessRegistry


def build_services(settings: Any, catalog: Any, registry: ProcessRegistry, user: Any = None,
                   udp_lookup: Any = None) -> Services:
    workspace = None
    if user is not None and settings is not None:
        from terracube.udp.store import udp_lookup_for
        from terracube.workspace.files import workspace_folder

        workspace = workspace_folder(settings, user.user_id)
        if udp_lookup is None:
            udp_lookup = udp_lookup_for(settings, user.user_id, registry.__contains__)
    return Services(registry=registry, catalog=catalog, user=user, settings=settings,
                    udp_lookup=udp_lookup, workspace=workspace)
