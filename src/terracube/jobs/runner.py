"""The job process: its pipe to the worker, its executor, and dying with its parent.

The job process is forked by a worker (jobs/worker.py) for each run and never touches the
database: it reports to the worker through a pipe, one JSON object per line —
`progress` (percent, from dask task completion), `log` entries, each written result file
(`asset`), and finally `done` or `error`. The worker records them, and stops the run for real
by killing the process (cancel, delete, shutdown). What the job computes is jobs/compute.py.
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

from terracube import errors, executor
from terracube.jobs.compute import run_job
from terracube.jobs.logs import error_entry, node_path
from terracube.processing.explain import memory_advice

log = logging.getLogger(__name__)


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
            path: list | None = None, data: Any = None,
            usage: dict[str, Any] | None = None) -> None:
        self.send("log", level=level, message=message, code=code, path=path, data=data,
                  usage=usage)

    def close(self) -> None:
        with self._lock:
            self._file.close()


# --- the job process ----------------------------------------------------------------------------
def job_process_main(*, process: dict, services_factory: Any, out_dir: Path, write_fd: int,
                     parent_pid: int) -> int:
    """Body of the forked job process; returns its exit status (0: done, 1: failed)."""
    _die_with_parent(parent_pid)
    reporter = Reporter(write_fd)
    graph = process.get("process_graph") if isinstance(process, dict) else None
    code = 1
    services = None
    try:
        services = services_factory(log=lambda level, message, node_id=None, **extra: (
            reporter.log(level, message, path=node_path(node_id, _process_id(graph, node_id)),
                         **extra)))
        out_dir.mkdir(parents=True, exist_ok=True)
        with _executor(services.settings):
            run_job(process, services, out_dir, reporter)
        reporter.send("done")
        code = 0
    except errors.OpenEOError as exc:
        reporter.send("error", entry=error_entry(exc, graph))
    except MemoryError:
        advice = memory_advice(process, services) if services is not None else ""
        reporter.send("error", entry={
            "level": "error", "code": "Internal",
            "message": "The job ran out of memory." + (advice or " Use a smaller extent, "
                                                       "fewer dates or fewer bands.")
                       + " An administrator can give the workers more memory (setting "
                         "TERRACUBE_MEMORY_LIMIT)."})
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
