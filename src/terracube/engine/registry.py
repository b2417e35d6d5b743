"""The process registry: openEO process id -> plain function, from an explicit module list."""

from __future__ import annotations

import importlib
import inspect
import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.datacube.values import json_kind
from terracube.datacube.vector import VectorCube

# The modules whose decorated functions make up the predefined processes, in order.
PROCESS_MODULES = (
    "terracube.engine.processes.math",
    "terracube.engine.processes.logic",
    "terracube.engine.processes.comparison",
    "terracube.engine.processes.arrays",
    "terracube.engine.processes.array_callbacks",
    "terracube.engine.processes.array_order",
    "terracube.engine.processes.texts",
    "terracube.engine.processes.dates",
    "terracube.engine.processes.cubes",
    "terracube.engine.processes.reducers",
    "terracube.engine.processes.io",
    "terracube.engine.processes.cube_filters",
    "terracube.engine.processes.cube_dimensions",
    "terracube.engine.processes.temporal",
    "terracube.engine.processes.resample",
    "terracube.engine.processes.neighbourhood",
    "terracube.engine.processes.rasterise",
    "terracube.engine.processes.zonal",
    "terracube.engine.processes.ml",
    "terracube.engine.processes.stac_io",
    "terracube.engine.processes.workspace_io",
    "terracube.engine.processes.vectors",
    "terracube.engine.processes.udf",
    "terracube.engine.processes.curves",
    "terracube.engine.processes.hydrology",
    "terracube.engine.processes.masks_cdse",
    "terracube.engine.processes.terrain",
    "terracube.engine.processes.date_components",
    "terracube.engine.processes.vector_rasters",
    "terracube.engine.processes.polygons_cdse",
    "terracube.engine.processes.sar",
    "terracube.engine.processes.data_types",
)


def process(process_id: str | None = None) -> Callable[[Callable], Callable]:
    """Mark a function as the implementation of an openEO process.

    The function's keyword parameters are named as in the spec; a spec name that is a
    Python keyword gets a trailing underscore. A parameter named `ctx` receives the
    ProcessContext and is not an openEO parameter.
    """

    def mark(func: Callable) -> Callable:
        ids = getattr(func, "_openeo_ids", ())
        func._openeo_ids = (*ids, process_id or func.__name__.rstrip("_"))  # type: ignore[attr-defined]
        return func

    return mark


# Annotations of process parameters that the registry checks before a call: a process graph
# can put any JSON value anywhere, and process code may rely on its annotated cube/callback
# types; a wrong kind of value is the user's error (ProcessParameterInvalid), not a crash.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "RasterCube": (lambda v: isinstance(v, RasterCube), "a raster data cube"),
    "VectorCube": (lambda v: isinstance(v, VectorCube), "a vector data cube"),
    # JSON values are never callable; a child process graph becomes a callable Callback.
    "Callback": (callable, 'a process ({"process_graph": {...}})'),
    "None": (lambda v: v is None, "null"),
}


def kind_of(value: Any) -> str:
    """What a value is, in openEO terms (for error messages)."""
    if isinstance(value, RasterCube):
        return "a raster data cube"
    if isinstance(value, VectorCube):
        return "a vector data cube"
    return json_kind(value)


@dataclass(frozen=True)
class ProcessImpl:
    """A registered process: its function and the openEO parameter names it accepts."""

    id: str
    func: Callable[..., Any]
    params: dict[str, str]  # openEO name -> Python keyword
    required: frozenset[str]  # openEO names without a default
    wants_ctx: bool
    takes_extra: bool  # accepts **kwargs
    kinds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # keyword -> _KINDS keys

    def check_arguments(self, kwargs: Mapping[str, Any]) -> None:
        """Raise ProcessParameterInvalid for an argument that is not of its annotated kind."""
        for keyword_, kinds in self.kinds.items():
            if keyword_ not in kwargs or any(_KINDS[k][0](kwargs[keyword_]) for k in kinds):
                continue
            name = keyword_[:-1] if keyword_.endswith("_") and keyword.iskeyword(
                keyword_[:-1]) else keyword_
            expected = " or ".join(_KINDS[k][1] for k in kinds)
            raise errors.ProcessParameterInvalid(
                f"'{name}' of {self.id} must be {expected}, got {kind_of(kwargs[keyword_])}.",
                argument=name)


def _kinds(annotation: Any) -> tuple[str, ...] | None:
    """The _KINDS an annotation allows, or None if it allows anything else too."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    names = tuple(part.strip().rsplit(".", 1)[-1] for part in text.split("|"))
    return names if names and all(n in _KINDS for n in names) else None


def _describe(process_id: str, func: Callable) -> ProcessImpl:
    params: dict[str, str] = {}
    required: set[str] = set()
    kinds: dict[str, tuple[str, ...]] = {}
    wants_ctx = False
    takes_extra = False
    for p in inspect.signature(func).parameters.values():
        if p.name == "ctx":
            wants_ctx = True
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            takes_extra = True
            continue
        name = p.name[:-1] if p.name.endswith("_") and keyword.iskeyword(p.name[:-1]) else p.name
        params[name] = p.name
        if p.default is inspect.Parameter.empty:
            required.add(name)
        if p.annotation is not inspect.Parameter.empty and (found := _kinds(p.annotation)):
            kinds[p.name] = found
    return ProcessImpl(process_id, func, params, frozenset(required), wants_ctx, takes_extra,
                       MappingProxyType(kinds))


def _module_functions(module: ModuleType) -> dict[str, Callable]:
    """The process functions a module defines (decorated with @process), by process id."""
    found: dict[str, Callable] = {}
    for obj in vars(module).values():
        # A function imported from another process module is registered there, not here.
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        for pid in getattr(obj, "_openeo_ids", ()):
            if pid in found:
                raise ValueError(f"process {pid!r} defined twice in {module.__name__}")
            found[pid] = obj
    return found


class ProcessRegistry:
    """Predefined processes by id; immutable once built.

    Build it with `build_registry()` (the explicit PROCESS_MODULES list) or from a mapping of
    process id -> function; `with_processes` derives a new registry with more processes.
    """

    def __init__(self, functions: Mapping[str, Callable] | None = None) -> None:
        impls = {pid: _describe(pid, func) for pid, func in (functions or {}).items()}
        self._impls: Mapping[str, ProcessImpl] = MappingProxyType(impls)

    def with_processes(self, functions: Mapping[str, Callable]) -> ProcessRegistry:
        """A new registry holding these processes as well; an id already present is an error."""
        clash = sorted(set(functions) & set(self._impls))
        if clash:
            raise ValueError(f"process(es) {', '.join(clash)} registered twice")
        return ProcessRegistry({**self.functions(), **functions})

    def functions(self) -> dict[str, Callable]:
        """Process id -> function (a copy)."""
        return {pid: impl.func for pid, impl in self._impls.items()}

    def __contains__(self, process_id: object) -> bool:
        return process_id in self._impls

    def __len__(self) -> int:
        return len(self._impls)

    def get(self, process_id: str) -> ProcessImpl:
        try:
            return self._impls[process_id]
        except KeyError:
            raise errors.ProcessUnsupported(
                f"Process '{process_id}' is not available. GET /processes lists the supported ones."
            ) from None

    def ids(self) -> list[str]:
        return sorted(self._impls)


def build_registry(modules: Sequence[str] = PROCESS_MODULES) -> ProcessRegistry:
    """The registry of the processes defined in `modules`.

    Every module must import: a module that fails to (a missing dependency, a typo in the
    list) would otherwise silently take its processes off /processes.
    """
    functions: dict[str, Callable] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"process module {name} failed to import: {exc}") from exc
        for pid, func in _module_functions(module).items():
            if pid in functions:
                raise ValueError(f"process {pid!r} registered twice (again in {name})")
            functions[pid] = func
    return ProcessRegistry(functions)
