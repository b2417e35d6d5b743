"""Computing one batch job in its job process: evaluate the graph, write every output, and
report progress and each written file (asset) to the worker as it happens.

What each step used goes into the job's log as the openEO API suggests for per-step metrics
(a log entry's `usage`, same schema as the job's): one entry for evaluating the graph and one
per output, on its save_result node (`path`), with its wall time, CPU time of the job
process, bytes read (the process's I/O counter) and bytes written. Outputs are computed one
after the other, so these figures are each output's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from terracube.engine.evaluate import Services
from terracube.jobs.logs import node_path
from terracube.jobs.results_stac import describe_asset
from terracube.processing.outputs import JOB_STEM, WrittenOutput, write_outputs
from terracube.processing.run import evaluate_outputs

# Shares of the progress bar: the lazy evaluation, then writing the outputs.
EVALUATION_SHARE = 2.0
WRITING_SHARE = 96.0


class JobReporter(Protocol):
    """Where a job reports to (jobs/runner.py's pipe to the worker)."""

    def send(self, kind: str, **fields: Any) -> None: ...

    def progress(self, percent: float, force: bool = False) -> None: ...

    def log(self, level: str, message: str, *, code: str | None = None,
            path: list | None = None, data: Any = None,
            usage: dict[str, Any] | None = None) -> None: ...


def run_job(process: dict, services: Services, out_dir: Path,
            reporter: JobReporter) -> list[dict]:
    """Evaluate `process` and write all its outputs into `out_dir`; returns the assets."""
    reporter.log("debug", "Evaluating the process graph.")
    step = _Step()
    outputs = evaluate_outputs(process, services)
    reporter.progress(EVALUATION_SHARE, force=True)
    count = len(outputs)
    reporter.log("info", f"Evaluated the process graph in {step.seconds():.1f} s: "
                         f"{count} output(s) to write.", usage=step.usage())
    graph = process.get("process_graph") if isinstance(process, dict) else None
    assets: list[dict] = []

    def progress(index: int, fraction: float) -> None:
        reporter.progress(EVALUATION_SHARE + WRITING_SHARE * (index + fraction) / count)

    def written(output: WrittenOutput) -> None:
        nonlocal step
        # Reported at once: a job canceled later keeps the files written until then.
        size = 0
        for file in output.files:
            data = output.saved.data if file.data is None else file.data
            info = describe_asset(file.path, file.media_type, data)
            size += int(info.get("size") or _size(file.path))
            assets.append(info)
            reporter.send("asset", asset=info)
        node_id = output.node_id
        process_id = graph[node_id].get("process_id") if isinstance(graph, dict) and \
            isinstance(graph.get(node_id), dict) else None
        reporter.log("info", f"Output {output.index + 1} of {count} ({output.saved.format}): "
                             f"{len(output.files)} file(s), {size / 1e6:.2f} MB written in "
                             f"{step.seconds():.1f} s.",
                     path=node_path(node_id, process_id),
                     usage=step.usage(bytes_written=size))
        step = _Step()

    write_outputs(outputs, out_dir, services, stem=JOB_STEM, progress=progress,
                  written=written)
    return assets


class _Step:
    """Wall time, CPU time and bytes read of the job process since the step began."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu = time.process_time()
        self.read = read_bytes()

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def usage(self, bytes_written: int | None = None) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "duration": {"value": round(self.seconds(), 3), "unit": "seconds"},
            "cpu": {"value": round(time.process_time() - self.cpu, 3), "unit": "cpu-seconds"}}
        read = read_bytes()
        if read is not None and self.read is not None:
            usage["bytes_read"] = {"value": read - self.read, "unit": "b"}
        if bytes_written is not None:
            usage["bytes_written"] = {"value": bytes_written, "unit": "b"}
        return usage


def read_bytes(pid: int | str = "self") -> int | None:
    """Bytes a process (default: this one) has read so far (Linux /proc; None elsewhere).
    The worker samples its job processes with it too."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
