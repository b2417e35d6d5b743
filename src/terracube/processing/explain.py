"""The dry run of a process graph (POST /explain): what every node will hold, from metadata only.

The graph is validated, optimised and evaluated exactly as POST /result does it, but lazily
and with the dry-run switch on (datacube/dryrun.py): cubes get their dimensions, labels, grid
and dtype while no pixel is read, and a guard aborts anything that tries to compute. Every
node of the process graph is described as it comes out (dimensions with label count and
first/last label, CRS, resolution, shape, dtype, bytes it would hold); every load records what
it would read (stored bytes per sample, e.g. uint16, not the float32 view); every output its
(uncompressed) size. The same figures back the job estimate (processing/estimate.py) and the
size check of synchronous requests (processing/limits.py).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from dask.callbacks import Callback as DaskCallback

from terracube import errors
from terracube.datacube.cube import (
    SPATIAL,
    TEMPORAL,
    Dimension,
    RasterCube,
    datetime_labels_to_strings,
)
from terracube.datacube.dryrun import DryRunComputeRefused, dry_run
from terracube.datacube.vector import VectorCube
from terracube.engine import graph as graphs
from terracube.engine.evaluate import Evaluator, SavedResult, Services
from terracube.engine.optimize import optimize
from terracube.engine.processes.stac_io import stac_sources
from terracube.processing.run import DEFAULT_RASTER_FORMAT, validate_process

JSON_BYTES_PER_VALUE = 12  # a number written as JSON text, with its separator
SMALL_VALUE_BYTES = 1024  # a number, an array or a small document
# Processes whose duration the dry run cannot know: user code, model training, remote runs.
UNESTIMABLE_PROCESSES = frozenset({
    "run_udf", "run_udf_externally", "run_ogcapi", "run_ogcapi_externally",
    "fit_class_random_forest", "fit_regr_random_forest", "ml_fit_class_random_forest",
    "ml_fit_regr_random_forest", "fit_class_catboost", "ml_fit_class_catboost"})
MAX_ESTIMABLE_CALLBACK_DEPTH = 5  # callbacks nested deeper: the cost grows per level


class _NoCompute(DryRunComputeRefused):
    pass


class _ComputeGuard(DaskCallback):
    """Aborts any dask computation of the dry run. dask's callbacks are global to the
    process, so the guard aborts only computations started by the thread that runs the dry
    run: other threads (a map tile, a synchronous request) compute as usual meanwhile."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._thread = threading.get_ident()

    def _start(self, dsk: Any) -> None:
        if threading.get_ident() == self._thread:
            raise _NoCompute("the dry run tried to compute values")


@dataclass
class LoadRecord:
    """One read the graph asks for: the collection, the shape and the stored bytes."""

    collection: str
    shape: dict[str, int]
    bytes: int


@dataclass
class _RecordingCatalog:
    """The real catalog, but every load is recorded (the cubes stay lazy)."""

    catalog: Any
    loads: list[LoadRecord] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)

    def get(self, collection_id: str) -> Any:
        return _RecordingSource(self.catalog.get(collection_id), self)


class _RecordingSource:
    def __init__(self, source: Any, recorder: _RecordingCatalog) -> None:
        self._source = source
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def load(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        cube = self._source.load(request, *args, **kwargs)
        if isinstance(cube, RasterCube):
            self._recorder.loads.append(LoadRecord(getattr(self._source, "id", "?"),
                                                   sizes(cube.data), stored_bytes(cube)))
        return cube


class _NodeRecorder:
    """Describes the nodes of the top-level graph as the evaluator runs them."""

    def __init__(self, graph: dict[str, Any], catalog: _RecordingCatalog) -> None:
        self.graph = graph
        self.catalog = catalog
        self.nodes: dict[str, dict[str, Any]] = {}
        self.running: str | None = None
        self._loads_before: dict[str, int] = {}

    def started(self, graph: dict[str, Any], node_id: str) -> None:
        if graph is self.graph:
            self.running = node_id
            self._loads_before[node_id] = len(self.catalog.loads)

    def finished(self, graph: dict[str, Any], node_id: str, value: Any) -> None:
        if graph is not self.graph:
            return
        entry = {"id": node_id, "process_id": graph[node_id]["process_id"],
                 **describe_value(value)}
        loads = self.catalog.loads[self._loads_before.get(node_id, 0):]
        if loads:
            entry["bytes_to_read"] = sum(ld.bytes for ld in loads)
            entry["pixels_to_read"] = sum(math.prod(ld.shape.values()) for ld in loads)
        elif entry["process_id"].startswith("load_") and "bytes_to_hold" in entry:
            # A load outside the catalog (load_stac, load_url): its values as they are held.
            entry["bytes_to_read"] = entry["bytes_to_hold"]
            entry["pixels_to_read"] = math.prod(entry.get("shape", {}).values())
        self.nodes[node_id] = entry
        self.running = None


def sizes(data: xr.DataArray) -> dict[str, int]:
    """Dimension name -> length (our cubes name their dimensions with strings)."""
    return {str(name): int(n) for name, n in data.sizes.items()}


def stored_bytes(cube: RasterCube) -> int:
    """Bytes of the stored samples behind a loaded cube (e.g. uint16, not the float32 view)."""
    shape = sizes(cube.data)
    band_dim = cube.first_dim_of_type("bands")
    meta = cube.attrs.get("band_metadata") or {}
    if band_dim is not None and band_dim.name in cube.data.coords:
        per_sample = 0
        for band in cube.data.coords[band_dim.name].values:
            dtype = getattr(meta.get(str(band)), "data_type", None) or cube.data.dtype
            per_sample += np.dtype(dtype).itemsize
        others = math.prod(n for d, n in shape.items() if d != band_dim.name)
        return int(others * per_sample)
    return int(math.prod(shape.values()) * cube.data.dtype.itemsize)


def _label(value: Any) -> Any:
    """A dimension label as JSON (dates as RFC 3339 strings)."""
    if isinstance(value, np.datetime64):
        return datetime_labels_to_strings(np.array([value]))[0]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _describe_dimension(data: xr.DataArray, dim: Dimension) -> dict[str, Any]:
    out: dict[str, Any] = {"name": dim.name, "type": dim.type,
                           "count": int(data.sizes[dim.name])}
    if dim.axis:
        out["axis"] = dim.axis
    if dim.reference_system is not None:
        out["reference_system"] = dim.reference_system
    if dim.name in data.coords and out["count"]:
        coord = data.coords[dim.name]
        out["first"] = _label(coord.values[0])
        out["last"] = _label(coord.values[-1])
        if dim.type == SPATIAL and out["count"] > 1:
            out["step"] = float(f"{abs(float(coord.values[1] - coord.values[0])):.9g}")
    return out


def describe_value(value: Any) -> dict[str, Any]:
    """What a node's value is, from its metadata: kind, dimensions, shape, dtype, bytes."""
    if isinstance(value, SavedResult):
        return {**describe_value(value.data), "output_format": value.format}
    if isinstance(value, RasterCube):
        data = value.data
        out: dict[str, Any] = {
            "kind": "raster-cube",
            "dimensions": [_describe_dimension(data, d) for d in value.dimensions],
            "shape": sizes(data), "dtype": str(data.dtype),
            "bytes_to_hold": int(math.prod(data.shape) * data.dtype.itemsize)}
        if value.crs is not None:
            out["crs"] = value.crs
        steps = [d.get("step") for d in out["dimensions"] if d["type"] == SPATIAL]
        if len(steps) == 2 and None not in steps:
            out["resolution"] = steps
        temporal = [d for d in out["dimensions"] if d["type"] == TEMPORAL]
        if temporal:
            out["temporal_labels"] = temporal[0]["count"]
        return out
    if isinstance(value, VectorCube):
        out = {"kind": "vector-cube", "geometries": len(value.geometries), "crs": value.crs}
        if value.values is not None:
            out.update({"dimensions": [_describe_dimension(value.values, d)
                                       for d in value.dimensions],
                        "shape": sizes(value.values), "dtype": str(value.values.dtype),
                        "bytes_to_hold": int(value.values.size * value.values.dtype.itemsize)})
        return out
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "null" if value is None else type(value).__name__.replace(
            "str", "string").replace("bool", "boolean").replace("float", "number").replace(
            "int", "number")}
    if isinstance(value, (list, tuple)):
        return {"kind": "array", "count": len(value)}
    if isinstance(value, dict):
        return {"kind": "object"}
    return {"kind": type(value).__name__}


def output_bytes(data: Any, fmt: str) -> int:
    """The (uncompressed) size of an output: an upper limit of the file written."""
    if isinstance(data, RasterCube):
        n = math.prod(data.data.shape)
        if fmt.upper() == "JSON":
            return n * JSON_BYTES_PER_VALUE
        return n * max(1, data.data.dtype.itemsize)
    if isinstance(data, VectorCube) and data.values is not None:
        return int(data.values.size * JSON_BYTES_PER_VALUE + SMALL_VALUE_BYTES)
    return SMALL_VALUE_BYTES


def unestimable_reasons(graph: dict[str, Any], services: Services) -> list[str]:
    """Why the duration of `graph` cannot be estimated (empty if it can): user code, model
    training, or callbacks nested deeper than MAX_ESTIMABLE_CALLBACK_DEPTH (user-defined
    processes are looked into)."""
    reasons: list[str] = []
    seen: set[str] = set()

    def walk(g: dict[str, Any], depth: int, where: str) -> None:
        if depth > MAX_ESTIMABLE_CALLBACK_DEPTH:
            reasons.append(f"callbacks are nested {depth} deep at {where}; each level can "
                           "multiply the work")
            return
        for nid, node in g.items():
            pid = node.get("process_id")
            if pid in UNESTIMABLE_PROCESSES:
                reasons.append(f"node '{nid}' runs {pid}, whose duration depends on "
                               "what it does")
            elif (isinstance(pid, str) and pid not in services.registry and pid not in seen
                  and services.udp_lookup is not None):
                seen.add(pid)
                udp = services.udp_lookup(pid, node.get("namespace"))
                if udp and isinstance(udp.get("process_graph"), dict):
                    walk(udp["process_graph"], depth, f"{where}{nid} ({pid}) > ")
            for arg in (node.get("arguments") or {}).values():
                for child in graphs.iter_child_graphs(arg):
                    walk(child, depth + 1, f"{where}{nid} > ")

    walk(graph, 0, "")
    return reasons


@dataclass
class Explanation:
    """The dry run's findings; `to_json()` is the body of POST /explain."""

    nodes: list[dict[str, Any]]
    loads: list[LoadRecord]
    outputs: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    unestimable: list[str]
    tasks: int = 0
    error: errors.OpenEOError | None = None  # the first error, if the dry run failed

    @property
    def bytes_to_read(self) -> int:
        return sum(n.get("bytes_to_read", 0) for n in self.nodes)

    @property
    def pixels_to_read(self) -> int:
        return sum(n.get("pixels_to_read", 0) for n in self.nodes)

    @property
    def bytes_to_hold(self) -> int:
        """What all nodes hold together (an upper limit of the data processed)."""
        return sum(n.get("bytes_to_hold", 0) for n in self.nodes)

    @property
    def output_bytes(self) -> int:
        return sum(o["bytes"] for o in self.outputs)

    def largest_node(self) -> dict[str, Any] | None:
        held = [n for n in self.nodes if n.get("bytes_to_hold")]
        return max(held, key=lambda n: n["bytes_to_hold"]) if held else None

    def to_json(self) -> dict[str, Any]:
        largest = self.largest_node()
        return {
            "valid": self.error is None,
            "nodes": self.nodes,
            "loads": [dataclasses.asdict(ld) for ld in self.loads],
            "outputs": self.outputs,
            "bytes_to_read": self.bytes_to_read,
            "pixels_to_read": self.pixels_to_read,
            "output_bytes": self.output_bytes,
            "largest_node": None if largest is None else {
                "id": largest["id"], "bytes_to_hold": largest["bytes_to_hold"]},
            "estimable": not self.unestimable,
            "not_estimable_because": self.unestimable,
            "errors": self.problems,
        }


def explain_process(process: dict[str, Any], services: Services) -> Explanation:
    """Dry-run `process` (a request body, a process or a bare graph) without reading pixels.

    Validation errors and errors of the dry run (an unknown collection, a dimension that does
    not exist...) are reported in `errors` with what was learnt up to them; OpenEOErrors of
    the request itself (no process graph) are raised."""
    graph = graphs.unwrap(process)
    recorder_catalog = _RecordingCatalog(services.catalog)
    # No log: the dry run evaluates the graph too, and its inspect/UDF entries would appear
    # in the job's or request's log beside those of the real run.
    services = dataclasses.replace(services, catalog=recorder_catalog, saved=[], log=None)
    problems = validate_process(process, services)
    if problems:
        return Explanation([], [], [], [p.to_json() for p in problems], [], error=problems[0])
    unestimable = unestimable_reasons(graph, services)
    optimized = optimize(graph, recorder_catalog, stac=stac_sources(services))
    recorder = _NodeRecorder(optimized, recorder_catalog)
    evaluator = Evaluator(services, observer=recorder)
    error: errors.OpenEOError | None = None
    value: Any = None
    try:
        with dry_run(), _ComputeGuard():
            value = evaluator.run(optimized, validated=True, all_end_nodes=True)
    except errors.OpenEOError as exc:
        error = exc.at(recorder.running)
    except _NoCompute:
        error = errors.ProcessGraphComplexity(
            "This process computes values while the graph is being built, so a dry run can "
            "only describe the nodes before it.", node_id=recorder.running)
    nodes = [_with_merged(nid, optimized, recorder.nodes) for nid in graph]
    nodes += [entry for nid, entry in recorder.nodes.items() if nid not in graph]
    saved: list[SavedResult] = list(services.saved)
    if not saved and error is None:
        is_raster = isinstance(value, RasterCube) and value.x_dim and value.y_dim
        saved = [SavedResult(value, DEFAULT_RASTER_FORMAT if is_raster else "JSON", {},
                             node_id=graphs.result_node(graph))]
    outputs = []
    tasks = 0
    for out in saved:
        entry: dict[str, Any] = {"node": out.node_id, "format": out.format,
                                 "bytes": output_bytes(out.data, out.format)}
        if isinstance(out.data, RasterCube):
            entry["shape"] = sizes(out.data.data)
            tasks += _tasks(out.data)
        outputs.append(entry)
    return Explanation(nodes, list(recorder_catalog.loads), outputs,
                       [] if error is None else [error.to_json()], unestimable, tasks, error)


def _with_merged(nid: str, optimized: dict[str, Any],
                 seen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if nid in seen:
        return seen[nid]
    return {"id": nid, "process_id": optimized.get(nid, {}).get("process_id"),
            "kind": "not run", "note": "the dry run stopped before this node, or nothing "
                                       "uses its value"}


def _tasks(cube: RasterCube) -> int:
    """Dask tasks behind a cube (0 when unknown); the placeholders of the dry run count 1."""
    graph = getattr(cube.data.data, "dask", None)
    try:
        return len(graph) if graph is not None else 0
    except Exception:  # a graph that cannot count its layers without building them
        return 0


def memory_advice(process: dict[str, Any], services: Services) -> str:
    """What to tell a user whose computation ran out of memory: the node that holds the most
    data by the dry run (the computation itself is fused across nodes, so this is the one to
    make smaller), and what would help. Empty when even the dry run fails."""
    try:
        largest = explain_process(process, services).largest_node()
    except Exception:  # advice only: never hide the out-of-memory error behind another
        return ""
    if largest is None:
        return ""
    return (f" The node holding the most data is '{largest['id']}' ({largest['process_id']}, "
            f"about {largest['bytes_to_hold'] / 1e6:,.0f} MB uncompressed by POST /explain): "
            "give it a smaller extent, fewer dates or bands, or a coarser resolution.")
