"""Building the Services a graph is evaluated with: registry, catalog, user, workspace, UDPs,
the executor and where job logs go. Built once per request or job, never changed after."""

from __future__ import annotations

from terracube.auth.users import User
from terracube.catalog.access import StacUrlReader, UploadedFileReader
from terracube.engine.evaluate import Services
from terracube.engine.ports import Collections, JobLog, JobResults, UdpLookup
from terracube.engine.registry import ProcessRegistry
from terracube.executor import Executor
from terracube.results.access import FormatTable
from terracube.settings import Settings
from terracube.udp.store import udp_lookup_for
from terracube.workspace.access import UserWorkspace
from terracube.workspace.files import workspace_folder


def build_services(settings: Settings | None, catalog: Collections | None,
                   registry: ProcessRegistry, user: User | None = None,
                   udp_lookup: UdpLookup | None = None, *, executor: Executor | None = None,
                   log: JobLog | None = None, job_results: JobResults | None = None) -> Services:
    """The services of one request or job: the engine's ports filled with the catalog's,
    the result formats' and the user's workspace adapters. `executor`: where it computes
    (None: the current one); `log`: (level, message, node_id) for the job's log;
    `job_results`: the results folder of one of the user's finished jobs, by job id."""
    workspace = None
    if user is not None and settings is not None:
        workspace = UserWorkspace(workspace_folder(settings, user.user_id),
                                  settings.storage_quota_bytes)
        if udp_lookup is None:
            udp_lookup = udp_lookup_for(settings, user.user_id, registry.__contains__)
    stac = StacUrlReader(settings.fetch_allowed() if settings is not None else ())
    return Services(registry=registry, catalog=catalog, stac=stac,
                    uploads=UploadedFileReader(), formats=FormatTable(), workspace=workspace,
                    job_results=job_results, udp_lookup=udp_lookup, user=user,
                    settings=settings, log=log, executor=executor)
