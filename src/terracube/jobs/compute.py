"""Computing one batch job in its job process: evaluate the graph, write every output, and
report progress and each written file (asset) to the worker as it happens."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from terracube.engine.evaluate import Services
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
            path: list | None = None, data: Any = None) -> None: ...


def run_job(process: dict, services: Services, out_dir: Path,
            reporter: JobReporter) -> list[dict]:
    """Evaluate `process` and write all its outputs into `out_dir`; returns the assets."""
    reporter.log("debug", "Evaluating the process graph.")
    outputs = evaluate_outputs(process, services)
    reporter.progress(EVALUATION_SHARE, force=True)
    count = len(outputs)
    assets: list[dict] = []

    def progress(index: int, fraction: float) -> None:
        reporter.progress(EVALUATION_SHARE + WRITING_SHARE * (index + fraction) / count)

    def written(output: WrittenOutput) -> None:
        # Reported at once: a job canceled later keeps the files written until then.
        for file in output.files:
            data = output.saved.data if file.data is None else file.data
            info = describe_asset(file.path, file.media_type, data)
            assets.append(info)
            reporter.send("asset", asset=info)

    write_outputs(outputs, out_dir, services, stem=JOB_STEM, progress=progress,
                  written=written)
    return assets
