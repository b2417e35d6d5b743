"""Running one batch job inside its job process: evaluate the graph, write every output.

The job process is forked by a worker (jobs/worker.py) for each run and never touches the
database: it reports to the worker through a pipe, one JSON object per line —
`progress` (percent, from dask task completion), `log` entries, each written result file
(`asset`), and finally `done` or `error`. The worker records them, and stops the run for real
by killing the process (cancel, delete, shutdown).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from dask.callbacks import Callback

from terracube import errors, executor
from terracube.engine.evaluate import Services
from terracube.jobs.logs import error_entry, node_path
from terracube.jobs.results_stac import describe_asset
from terracube.results.writers import write_result

log = logging.getLogger(__name__)

# Share of the progress bar for the lazy evaluation before the outputs are written.
_EVALUATION_SHARE = 2.0
_WRITING_SHARE = 96.0


class Reporter:
    """Messages from the job process to its worker (JSON lines on a pipe); thread-safe."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()
        self._progress = 0.0
        self._sent_at = 0.0

    def send(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")

    def progress(self, percent: float, force: bool = False) -> None:
        """Report progress; it only ever grows, and is sent at most ~4 times per second."""
        if percent <= self._progress:
            return
        self._progress = percent
        now = time.monotonic()
        if force or now - self._sent_at >= 0.25:
            self._sent_at = now
            self.send("progress", value=round(percent, 2))

    def log(self, level: str, message: str, *, code: str | None = None,
            path: list | None = None, data: Any = None) -> None:
        self.send("log", level=level, message=message, code=code, path=path, data=data)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class DaskProgress(Callback):
    """Counts finished dask tasks of each computation (local schedulers: threads, sync)."""

    def __init__(self, on_fraction: Any) -> None:
        super().__init__()
        self.on_fraction = on_fraction
        self.total = 0
        self.done = 0

    def _start_state(self, dsk: Any, state: dict) -> None:
        self.total = len(state.get("ready", ())) + len(state.get("waiting", ()))
        self.done = 0

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        self.done += 1
        if self.total:
            self.on_fraction(min(1.0, self.done / self.total))


def save_result_nodes(graph: dict) -> list[str]:
    """Ids of the top-level save_result nodes in the order the evaluator runs them.

    The evaluator resolves arguments depth-first from the result node, in argument order,
    and calls a process after its arguments (post-order); this mirrors that walk.
    """
    order: list[str] = []
    seen: set[str] = set()

    def refs(value: Any) -> list[str]:
        if isinstance(value, dict):
            if len(value) == 1 and "from_node" in value:
                return [value["from_node"]]
            if "process_graph" in value:
                return []
            return [r for v in value.values() for r in refs(v)]
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    def visit(node_id: str) -> None:
        if node_id in seen or node_id not in graph:
            return
        seen.add(node_id)
        for arg in (graph[node_id].get("arguments") or {}).values():
            for ref in refs(arg):
                visit(ref)
        if graph[node_id].get("process_id") == "save_result":
            order.append(node_id)

    roots = [nid for nid, node in graph.items() if isinstance(node, dict) and node.get("result")]
    for root in roots[:1]:
        visit(root)
    return order


def run_job(process: dict, services: Services, out_dir: Path, reporter: Reporter) -> list[dict]:
    """Evaluate `process` and write all its outputs into `out_dir`; returns the assets."""
    from terracube.processing.outputs import export_files
    from terracube.processing.run import evaluate_outputs

    graph = process.get("process_graph") or {}
    reporter.log("debug", "Evaluating the process graph.")
    outputs = evaluate_outputs(process, services)
    reporter.progress(_EVALUATION_SHARE, force=True)
    nodes = save_result_nodes(graph)
    if len(nodes) != len(outputs):
        nodes = [None] * len(outputs)  # e.g. save_result inside a user-defined process
    assets: list[dict] = []
    count = len(outputs)
    for index, (output, node_id) in enumerate(zip(outputs, nodes)):
        stem = "openEO" if count == 1 else f"openEO_{node_id or index + 1}"

        def on_fraction(fraction: float, index: int = index) -> None:
            reporter.progress(_EVALUATION_SHARE + _WRITING_SHARE * (index + fraction) / count)

        reporter.log("debug", f"Writing output {index + 1} of {count} as {output.format}.",
                     path=node_path(node_id, "save_result"))
        try:
            # The executor reports the computations it runs (also on a dask cluster); the
            # local callback also sees any other computation on local threads.
            with executor.progress_to(on_fraction), DaskProgress(on_fraction):
                files = write_result(output.data, output.format, output.options, out_dir,
                                     stem=stem)
        except errors.OpenEOError as exc:
            raise exc.at(node_id) from None
        except MemoryError:
            raise errors.Internal(
                "The computation ran out of memory while writing the result; use a smaller "
                "extent, fewer dates or fewer bands.", node_id=node_id) from None
        except Exception as exc:
            log.exception("writing output %s failed", index + 1)
            raise errors.Internal(
                f"Computing and writing the result failed: {type(exc).__name__}: {exc}",
                node_id=node_id) from exc
        export_files(output, [f.path for f in files], services)
        for file in files:
            info = describe_asset(file.path, file.media_type, output.data)
            assets.append(info)
            reporter.send("asset", asset=info)
        on_fraction(1.0)
    return assets


# --- the job process ----------------------------------------------------------------------------
def job_process_main(*, process: dict, services_factory: Any, out_dir: Path, write_fd: int,
                     parent_pid: int) -> int:
    """Body of the forked job process; returns its exit status (0: done, 1: failed)."""
    _die_with_parent(parent_pid)
    reporter = Reporter(write_fd)
    graph = process.get("process_graph") if isinstance(process, dict) else None
    code = 1
    try:
        services = services_factory()
        services.log = lambda level, message, node_id=None: reporter.log(
            level, message, path=node_path(node_id, _process_id(graph, node_id)))
        out_dir.mkdir(parents=True, exist_ok=True)
        with _executor(services.settings):
            run_job(process, services, out_dir, reporter)
        reporter.send("done")
        code = 0
    except errors.OpenEOError as exc:
        reporter.send("error", entry=error_entry(exc, graph))
    except MemoryError:
        reporter.send("error", entry={
            "level": "error", "code": "Internal",
            "message": "The job ran out of memory; use a smaller extent, fewer dates or "
                       "fewer bands."})
    except BaseException as exc:  # report everything: a job must never fail silently
        traceback.print_exc()
        reporter.send("error", entry={
            "level": "error", "code": "Internal",
            "message": f"The job failed unexpectedly: {type(exc).__name__}: {exc}"})
    finally:
        try:
            reporter.close()
        except OSError:
            pass
    return code


def _executor(settings: Any) -> Any:
    """Where the job computes: the executor of the settings (local threads, or the dask
    cluster of TERRACUBE_DASK_SCHEDULER), made current for the writers."""
    return executor.Executor.from_settings(settings).active()


def _process_id(graph: Any, node_id: str | None) -> str | None:
    if isinstance(graph, dict) and node_id in graph and isinstance(graph[node_id], dict):
        return graph[node_id].get("process_id")
    return None


def _die_with_parent(parent_pid: int) -> None:
    """End this process when the worker that forked it dies (e.g. SIGKILL).

    Otherwise an orphaned computation could go on while the job is re-queued and run again.
    Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG); elsewhere a thread polls getppid().
    """
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
