"""Writing what a process asks to write: result files, and their copies into the workspace."""

from __future__ import annotations

import tempfile
from pathlib import Path

from terracube import errors, executor
from terracube.engine.evaluate import SavedResult, Services
from terracube.processing.run import evaluate_outputs
from terracube.results.writers import ResultFile, write_result


def compute_result(process: dict, services: Services,
                   work_dir: Path | None = None) -> ResultFile:
    """Evaluate a process and write its result; returns the file to send back."""
    running = services.executor or executor.current()
    folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="terracube-result-"))
    try:
        # All computation (in the writer, or a process that must compute) uses the executor.
        with running.active():
            saved = evaluate_outputs(process, services)[-1]
            files = write_result(saved.data, saved.format, saved.options, folder)
            export_files(saved, [f.path for f in files], services)
    except MemoryError as exc:
        raise errors.Internal("The computation ran out of memory; use a smaller extent or "
                              "a batch job.") from exc
    return files[0]


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
