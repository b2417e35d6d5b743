"""Running a process for a user: validation and synchronous results (POST /result).

This is the one place (with the batch-job runner) where graphs are computed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from terracube import errors, execution
from terracube.engine import graph as graphs
from terracube.engine.evaluate import Evaluator, SavedResult, Services
from terracube.engine.optimize import optimize
from terracube.engine.registry import ProcessRegistry
from terracube.results.writers import ResultFile, write_result

DEFAULT_RASTER_FORMAT = "GTiff"


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


def validate_process(process: dict, services: Services) -> list[errors.OpenEOError]:
    """Static validation: structure, processes, parameters (no data is read)."""
    try:
        graph = graphs.unwrap(process)
    except errors.OpenEOError as exc:
        return [exc]
    return Evaluator(services).validate(graph)


def compute_result(process: dict, services: Services,
                   work_dir: Path | None = None) -> ResultFile:
    """Evaluate a process and write its result; returns the file to send back."""
    executor = services.executor or execution.current()
    folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="terracube-result-"))
    try:
        # All computation (in the writer, or a process that must compute) uses the executor.
        with executor.active():
            saved = evaluate_outputs(process, services)[-1]
            files = write_result(saved.data, saved.format, saved.options, folder)
            export_files(saved, [f.path for f in files], services)
    except MemoryError as exc:
        raise errors.Internal("The computation ran out of memory; use a smaller extent or "
                              "a batch job.") from exc
    return files[0]


def evaluate_outputs(process: dict, services: Services) -> list[SavedResult]:
    """Validate, optimise and (lazily) evaluate a process: what it asks to write.

    Every save_result in the order they ran, or else the result value in a default format
    (GeoTIFF for a raster cube, JSON for anything else). Used by POST /result (the last
    output) and by batch jobs (all of them).
    """
    graph = graphs.unwrap(process)
    evaluator = Evaluator(services)
    problems = evaluator.validate(graph)
    if problems:
        raise problems[0]
    # Filters move into the load nodes, so only the needed windows, dates and bands are read.
    graph = optimize(graph, services.catalog)
    value = evaluator.run(graph)
    if services.saved:
        return list(services.saved)
    from terracube.datacube.cube import RasterCube

    # GeoTIFF needs x and y; anything else (numbers, arrays, other cubes) goes as JSON.
    is_raster = isinstance(value, RasterCube) and value.x_dim and value.y_dim
    return [SavedResult(value, DEFAULT_RASTER_FORMAT if is_raster else "JSON", {})]


def export_files(saved: SavedResult, paths: list[Path], services: Services) -> None:
    """Copy written result files into the user's workspace where export_workspace asked for
    it, through the workspace's uploads (quota and path rules apply)."""
    if not saved.exports:
        return
    from terracube.workspace.files import workspace_for

    workspace = workspace_for(services.settings, services.user.user_id)
    for folder, merge in saved.exports:
        prefix = "/".join(p for p in (folder, merge) if p)
        for path in paths:
            upload = workspace.begin_upload(f"{prefix}/{path.name}", path.stat().st_size)
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        upload.write(chunk)
            except BaseException:
                upload.abort()  # no partial file is left behind (e.g. quota exceeded)
                raise
            upload.commit()
