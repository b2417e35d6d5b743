"""Evaluation of process graphs: argument resolution, callbacks, user-defined processes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from terracube import errors
from terracube.datacube.dryrun import DryRunComputeRefused
from terracube.engine import graph as graphs
from terracube.engine.ports import (
    Account,
    Collections,
    FileFormats,
    JobLog,
    JobResults,
    StacReader,
    UdpLookup,
    UploadedFileReader,
    WorkspaceAccess,
)
from terracube.engine.registry import ProcessRegistry
from terracube.engine.unsupported import unsupported_message
from terracube.executor import Executor
from terracube.settings import Settings

log = logging.getLogger(__name__)

# Exceptions that say an argument value cannot be computed with (a number outside a math
# domain, a string that is no date): rendered as 400 ProcessParameterInvalid. Anything else that
# escapes a process (TypeError, KeyError, AttributeError, ...) is a bug of ours, not the user's
# fault: it is logged with its traceback and becomes a 500 Internal with an error id to quote.
_ARGUMENT_ERRORS = (ValueError, ZeroDivisionError, OverflowError)

MAX_UDP_DEPTH = 16


def _internal_error(pid: str, nid: str, exc: Exception) -> errors.OpenEOError:
    """A logged 500 Internal for an unexpected exception inside a process."""
    error = errors.Internal("")
    error.args = (f"Process '{pid}' failed because of an error in the back-end, not in your "
                  f"process graph; please report it with the error id {error.id}.",)
    error.at(nid)
    log.error("process %s (node %s) failed [%s]", pid, nid, error.id, exc_info=exc)
    return error


@dataclass
class SavedResult:
    """What a save_result node asked to write: the data, the format and its options.

    It is also the value save_result returns (the STAC resource it will become), so that
    export_workspace can ask for the written files to be copied into the user's workspace.
    """

    data: Any
    format: str
    options: dict[str, Any]
    exports: list[tuple[str, str | None]] = field(default_factory=list)  # (workspace, merge)
    node_id: str | None = None  # the save_result node (names the output's files, its errors)


@dataclass(frozen=True)
class Services:
    """What processes may use beyond their arguments; built once per request or job
    (processing/services.py), never changed afterwards: derive a changed copy with
    `dataclasses.replace`. Everything outside the engine comes in through the ports of
    engine/ports.py; a port left None is a capability this evaluation does not have."""

    registry: ProcessRegistry
    catalog: Collections | None = None  # load_collection, the optimizer's band lookup
    stac: StacReader | None = None  # load_stac
    uploads: UploadedFileReader | None = None  # load_uploaded_files
    formats: FileFormats | None = None  # save_result, load_uploaded_files
    workspace: WorkspaceAccess | None = None  # the user's files (/files); None: no user
    job_results: JobResults | None = None  # load_ml_model by batch job id
    udp_lookup: UdpLookup | None = None
    user: Account | None = None
    settings: Settings | None = None
    # What save_result nodes asked to write, in the order they ran (filled by evaluation).
    saved: list[SavedResult] = field(default_factory=list)
    log: JobLog | None = None  # (level, message, node_id) for job logs
    executor: Executor | None = None  # None: the current one (executor.current())


@dataclass
class ProcessContext:
    """Handed to process functions that take a `ctx` parameter."""

    services: Services
    evaluator: Evaluator
    node_id: str
    parameters: dict[str, Any]

    def warn(self, message: str) -> None:
        if self.services.log:
            self.services.log("warning", message, self.node_id)
        log.warning("[%s] %s", self.node_id, message)


class Callback:
    """A child process graph passed as an argument (e.g. a reducer); call it with named parameters.

    Callbacks are called once with whole (dask-backed) arrays, never per pixel.
    """

    def __init__(self, graph: dict[str, Any], evaluator: Evaluator, scope: dict[str, Any],
                 node_id: str, argument: str) -> None:
        self.graph = graph
        self.evaluator = evaluator
        self.scope = scope
        self.node_id = node_id
        self.argument = argument

    def __call__(self, **params: Any) -> Any:
        try:
            # Child graphs were checked with the graph they belong to.
            return self.evaluator.run(self.graph, {**self.scope, **params}, validated=True)
        except errors.OpenEOError as exc:
            exc.at(self.node_id, self.argument)
            raise

    @property
    def single_process(self) -> str | None:
        """The process id if the graph is one node applied to the callback's first parameter."""
        if len(self.graph) != 1:
            return None
        (node,) = self.graph.values()
        pid: str = node["process_id"]
        return pid

    def single_process_arguments(self) -> dict[str, Any]:
        (node,) = self.graph.values()
        arguments: dict[str, Any] = node.get("arguments", {})
        return arguments


class NodeObserver(Protocol):
    """Told about every node the evaluator runs (the dry run of processing/explain.py): its
    arguments are resolved when `started` is called, `value` is what the node returned."""

    def started(self, graph: dict[str, Any], node_id: str) -> None: ...

    def finished(self, graph: dict[str, Any], node_id: str, value: Any) -> None: ...


class Evaluator:
    """Runs process graphs with the predefined processes of a registry and the user's UDPs."""

    def __init__(self, services: Services, udp_depth: int = 0,
                 observer: NodeObserver | None = None) -> None:
        self.services = services
        self.udp_depth = udp_depth
        # Sees the nodes of graphs this evaluator runs (callbacks too), not those inside UDPs.
        self.observer = observer

    # --- public ---------------------------------------------------------------------------
    def validate(self, graph: dict[str, Any]) -> list[errors.OpenEOError]:
        """Static checks: structure, known processes, required and unknown parameters."""
        problems: list[errors.OpenEOError] = []
        try:
            graphs.validate_structure(graph)
        except errors.OpenEOError as exc:
            return [exc]
        self._validate_nodes(graph, problems)
        return problems

    def run(self, graph: dict[str, Any], parameters: dict[str, Any] | None = None, *,
            validated: bool = False, all_end_nodes: bool = False) -> Any:
        """Evaluate `graph` and return the value of its result node.

        `validated`: its structure was checked already (by `validate`, or with the graph it is
        a callback of), so it is not walked again. `all_end_nodes` (a top-level process): the
        other end nodes run too, in graph order — "multiple end nodes are possible" (API 1.2,
        process graphs), e.g. every save_result of the client's MultiResult.
        """
        root = graphs.result_node(graph) if validated else graphs.validate_structure(graph)
        cache: dict[str, Any] = {}
        params = parameters or {}
        if all_end_nodes:
            for nid in graphs.end_nodes(graph):
                self._node(graph, nid, params, cache)  # the result node too, in its turn
        return self._node(graph, root, params, cache)  # from the cache if it ran already

    # --- internals --------------------------------------------------------------------------
    def _validate_nodes(self, graph: dict[str, Any], problems: list[errors.OpenEOError]) -> None:
        registry = self.services.registry
        for nid, node in graph.items():
            pid = node["process_id"]
            args = node.get("arguments", {})
            if pid in registry:
                impl = registry.get(pid)
                missing = sorted(impl.required - set(args))
                for name in missing:
                    problems.append(errors.ProcessParameterRequired(
                        f"Process '{pid}' needs the argument '{name}'.", node_id=nid,
                        argument=name))
                if not impl.takes_extra:
                    for name in sorted(set(args) - set(impl.params)):
                        problems.append(errors.ProcessParameterUnsupported(
                            f"Process '{pid}' has no parameter '{name}'.", node_id=nid,
                            argument=name))
            elif (udp := self._lookup_udp(pid, node.get("namespace"))) is None:
                problems.append(errors.ProcessUnsupported(unsupported_message(pid),
                                                          node_id=nid))
            else:
                problems.extend(self._validate_udp_call(pid, udp, args, nid))
            for arg_name, arg in args.items():
                for child in graphs.iter_child_graphs(arg):
                    for p in self.validate(child):
                        if arg_name == "properties" and p.code == "ProcessUnsupported":
                            # the client turns properties={"sat:orbit_state": "ascending"}
                            # into a call of a process named ascending
                            p.args = (f"{p.args[0]} A condition in properties is a process "
                                      "such as eq or lte of the property's value; with the "
                                      "Python client: properties={'sat:orbit_state': "
                                      "lambda v: v == 'ascending'}.",)
                        problems.append(p.at(nid, arg_name))

    def _validate_udp_call(self, pid: str, udp: dict[str, Any], args: dict[str, Any],
                           nid: str) -> list[errors.OpenEOError]:
        declared = {p["name"]: p for p in udp.get("parameters") or []}
        found: list[errors.OpenEOError] = []
        for name, spec in declared.items():
            if name not in args and "default" not in spec and not spec.get("optional"):
                found.append(errors.ProcessParameterRequired(
                    f"User-defined process '{pid}' needs the argument '{name}'.",
                    node_id=nid, argument=name))
        if declared:
            for name in sorted(set(args) - set(declared)):
                found.append(errors.ProcessParameterUnsupported(
                    f"User-defined process '{pid}' has no parameter '{name}'; it has "
                    f"{', '.join(declared)}.", node_id=nid, argument=name))
        return found

    def _lookup_udp(self, pid: str, namespace: str | None) -> dict[str, Any] | None:
        lookup = self.services.udp_lookup
        return lookup(pid, namespace) if lookup else None

    def _node(self, graph: dict[str, Any], nid: str, params: dict[str, Any],
              cache: dict[str, Any]) -> Any:
        if nid in cache:
            return cache[nid]
        node = graph[nid]
        args = {}
        for name, raw in node.get("arguments", {}).items():
            args[name] = self._resolve(raw, graph, params, cache, nid, name)
        if self.observer is not None:
            self.observer.started(graph, nid)
        value = self._call(node["process_id"], node.get("namespace"), args, nid, params)
        if self.observer is not None:
            self.observer.finished(graph, nid, value)
        cache[nid] = value
        return value

    def _resolve(self, raw: Any, graph: dict[str, Any], params: dict[str, Any],
                 cache: dict[str, Any], nid: str, arg_name: str) -> Any:
        if isinstance(raw, dict):
            if len(raw) == 1 and "from_node" in raw:
                return self._node(graph, raw["from_node"], params, cache)
            if len(raw) == 1 and "from_argument" in raw:
                # Not in the API: some official test cases use it for nodes and parameters.
                ref = raw["from_argument"]
                if ref in graph:
                    return self._node(graph, ref, params, cache)
                raw = {"from_parameter": ref}
            if len(raw) == 1 and "from_parameter" in raw:
                pname = raw["from_parameter"]
                if pname not in params:
                    raise errors.ProcessParameterRequired(
                        f"The parameter '{pname}' is used but no value was given for it.",
                        node_id=nid, argument=arg_name)
                return params[pname]
            if "process_graph" in raw and isinstance(raw["process_graph"], dict):
                return Callback(raw["process_graph"], self, params, nid, arg_name)
            return {k: self._resolve(v, graph, params, cache, nid, arg_name)
                    for k, v in raw.items()}
        if isinstance(raw, list):
            return [self._resolve(v, graph, params, cache, nid, arg_name) for v in raw]
        return raw

    def _call(self, pid: str, namespace: str | None, args: dict[str, Any], nid: str,
              params: dict[str, Any]) -> Any:
        registry = self.services.registry
        if pid in registry and namespace in (None, "backend", "core"):
            impl = registry.get(pid)
            kwargs = {}
            for name, value in args.items():
                if name not in impl.params:
                    if impl.takes_extra:
                        kwargs[name] = value
                        continue
                    raise errors.ProcessParameterUnsupported(
                        f"Process '{pid}' has no parameter '{name}'.", node_id=nid, argument=name)
                kwargs[impl.params[name]] = value
            for name in impl.required - set(args):
                raise errors.ProcessParameterRequired(
                    f"Process '{pid}' needs the argument '{name}'.", node_id=nid, argument=name)
            if impl.wants_ctx:
                kwargs["ctx"] = ProcessContext(self.services, self, nid, params)
            try:
                impl.check_arguments(kwargs)
                return impl.func(**kwargs)
            except errors.OpenEOError as exc:
                exc.at(nid)
                raise
            except DryRunComputeRefused:
                raise  # the dry run ends here; explain says which node computed
            except _ARGUMENT_ERRORS as exc:
                log.debug("process %s failed", pid, exc_info=True)
                raise errors.ProcessParameterInvalid(
                    f"Process '{pid}' failed: {type(exc).__name__}: {exc}", node_id=nid) from exc
            except Exception as exc:
                raise _internal_error(pid, nid, exc) from exc
        udp = self._lookup_udp(pid, namespace)
        if udp is None:
            raise errors.ProcessUnsupported(unsupported_message(pid), node_id=nid)
        return self._call_udp(pid, udp, args, nid)

    def _call_udp(self, pid: str, udp: dict[str, Any], args: dict[str, Any], nid: str) -> Any:
        if self.udp_depth >= MAX_UDP_DEPTH:
            raise errors.ProcessGraphComplexity(
                f"User-defined process '{pid}' calls itself (recursion is not supported).",
                node_id=nid)
        declared = {p["name"]: p for p in udp.get("parameters") or []}
        bound: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in args:
                bound[name] = args[name]
            elif "default" in spec:
                bound[name] = spec["default"]
            elif not spec.get("optional"):
                raise errors.ProcessParameterRequired(
                    f"User-defined process '{pid}' needs the argument '{name}'.",
                    node_id=nid, argument=name)
        for name in set(args) - set(declared):
            bound[name] = args[name]
        child = Evaluator(self.services, self.udp_depth + 1)
        try:
            return child.run(udp["process_graph"], bound)
        except errors.OpenEOError as exc:
            exc.at(nid)
            raise
