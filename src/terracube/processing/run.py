"""Validating a process once and evaluating it (lazily): what it asks to write."""

from __future__ import annotations

from typing import Any

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.engine import graph as graphs
from terracube.engine.argument_types import type_problems
from terracube.engine.evaluate import Evaluator, SavedResult, Services
from terracube.engine.optimize import optimize
from terracube.engine.processes.stac_io import stac_sources
from terracube.udp.definition import declared_parameters, metadata_problems

DEFAULT_RASTER_FORMAT = "GTiff"


def check_structure(process: dict[str, Any]) -> dict[str, Any]:
    """The process graph of `process` (a request body, a process or a bare graph), its
    structure checked: nodes, references, one result node, no cycles, child graphs too.
    Raises the openEO error of the first problem."""
    graph = graphs.unwrap(process)
    graphs.validate_structure(graph)
    return graph


def validate_process(process: dict[str, Any], services: Services) -> list[errors.OpenEOError]:
    """Static validation (no data is read): structure, processes, parameter names, and the
    JSON types of literal arguments and the parameter references (engine/argument_types.py)."""
    try:
        graph = graphs.unwrap(process)
    except errors.OpenEOError as exc:
        return [exc]
    problems = Evaluator(services).validate(graph)
    if problems and any(p.code in ("ProcessGraphInvalid", "ProcessGraphMissing")
                        for p in problems):
        return problems  # no sound graph to look into
    if isinstance(process.get("process"), dict):
        process = process["process"]
    problems += metadata_problems(process)  # id, parameter and return schemas
    scope = declared_parameters(process)

    def udp_parameters(pid: str, namespace: Any) -> list[dict[str, Any]] | None:
        udp = services.udp_lookup(pid, namespace) if services.udp_lookup else None
        params = udp.get("parameters") if udp else None
        return params if isinstance(params, list) else None

    return problems + type_problems(graph, services.registry.__contains__, udp_parameters,
                                    scope)


def evaluate_outputs(process: dict[str, Any], services: Services) -> list[SavedResult]:
    """Validate (once), optimise and (lazily) evaluate a process: what it asks to write.

    Every save_result in the order they ran — all end nodes of the graph run, not only the
    result node — or else the result value in a default format (GeoTIFF for a raster cube,
    JSON for anything else). Used by POST /result, batch jobs and the estimate alike.
    """
    graph = graphs.unwrap(process)
    evaluator = Evaluator(services)
    problems = evaluator.validate(graph)
    if problems:
        raise problems[0]
    # Filters move into the load nodes, so only the needed windows, dates and bands are read.
    graph = optimize(graph, services.catalog, stac=stac_sources(services))
    value = evaluator.run(graph, validated=True, all_end_nodes=True)
    if services.saved:
        return list(services.saved)
    # GeoTIFF needs x and y; anything else (numbers, arrays, other cubes) goes as JSON.
    is_raster = isinstance(value, RasterCube) and value.x_dim and value.y_dim
    return [SavedResult(value, DEFAULT_RASTER_FORMAT if is_raster else "JSON", {})]


def evaluate_result(process: dict[str, Any], services: Services,
                    parameters: dict[str, Any] | None = None) -> Any:
    """Validate, optimise and (lazily) evaluate a process: the value of its result node, with
    the process parameters bound to `parameters` (used by the map services, which render the
    value tile by tile)."""
    graph = graphs.unwrap(process)
    evaluator = Evaluator(services)
    problems = evaluator.validate(graph)
    if problems:
        raise problems[0]
    graph = optimize(graph, services.catalog, stac=stac_sources(services))
    return evaluator.run(graph, parameters, validated=True)
