"""Writing what a process asks to write: every save_result output, for POST /result and jobs.

`write_outputs` is the one write loop: each output (a `SavedResult`, with the id of its
save_result node) becomes files named after that node, its computation reports progress
through the executor, and files asked for by export_workspace are copied into the user's
workspace. `compute_result` is the synchronous path around it: it writes into a result folder
(processing/scratch.py: in RAM while the results fit its budget, else on disk), and sends one
file, or a tar of all files when there are several (the API's recommendation for POST /result,
see docs/user-guide/formats.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terracube import errors, executor
from terracube.datacube.vector import VectorCube
from terracube.engine.evaluate import SavedResult, Services
from terracube.engine.mlmodel import MODEL_FORMAT
from terracube.processing.explain import memory_advice
from terracube.processing.models import write_model_output
from terracube.processing.run import evaluate_outputs
from terracube.processing.scratch import ResultFolder, ResultScratch
from terracube.results.formats import check_options
from terracube.results.writers import ResultFile, write_result
from terracube.workspace.files import workspace_for

log = logging.getLogger(__name__)

JOB_STEM = "openEO"  # openEO.tif, openEO_<node id>.nc: the names CDSE gives job assets
SYNC_STEM = "result"
TAR_MEDIA_TYPE = "application/x-tar"

OutputProgress = Callable[[int, float], None]
"""Called with (index of the output, finished fraction of writing it)."""


@dataclass(frozen=True)
class WrittenOutput:
    """One output written: what the save_result node asked for, and the files it became."""

    index: int
    saved: SavedResult
    files: list[ResultFile]

    @property
    def node_id(self) -> str | None:
        return self.saved.node_id


def output_stems(outputs: list[SavedResult], stem: str) -> list[str]:
    """Distinct file stems: `stem` for a single output, `<stem>_<node id>` for several (the
    output's position instead where it has no node id or shares one, e.g. two calls of a
    user-defined process that saves). An output's `filename_prefix` option replaces `stem`
    (CDSE); the node id is added only where two outputs would have the same prefix."""
    prefixes = [str(o.options.get("filename_prefix") or _default_stem(o, stem))
                for o in outputs]
    ids = [o.node_id for o in outputs]
    out = []
    for i, (prefix, node_id) in enumerate(zip(prefixes, ids)):
        if prefixes.count(prefix) == 1:
            out.append(prefix)
        elif node_id and ids.count(node_id) == 1:
            out.append(f"{prefix}_{node_id}")
        else:
            out.append(f"{prefix}_{i + 1}")
    return out


def _default_stem(output: SavedResult, stem: str) -> str:
    """`stem`, except for the JSON or CSV of a vector cube (aggregate_spatial) in a job:
    "timeseries", the name CDSE gives it (timeseries.json), which course code opens by name
    (the Cubes & Clouds MOOC's snow cover notebook)."""
    if (stem == JOB_STEM and isinstance(output.data, VectorCube)
            and output.format in ("JSON", "CSV")):
        return "timeseries"
    return stem


def write_outputs(outputs: list[SavedResult], folder: Path, services: Services, *,
                  stem: str = JOB_STEM, progress: OutputProgress | None = None,
                  written: Callable[[WrittenOutput], None] | None = None,
                  per_date: bool = True) -> list[WrittenOutput]:
    """Write every output into `folder` (computing it with the current executor).

    `written` is called after each output (e.g. a job reports its assets at once, so a
    canceled job keeps what was written). An error names the output's save_result node.
    `per_date`: a GTiff of a cube with time is a file per date (batch jobs, as CDSE).
    """
    for output in outputs:  # every output's options before anything is computed
        if output.format == MODEL_FORMAT:
            continue  # save_ml_model's options were checked by the process
        try:
            check_options(output.format, output.options)
        except errors.OpenEOError as exc:
            raise exc.at(output.node_id) from None
    done: list[WrittenOutput] = []
    count = len(outputs)
    for index, (output, name) in enumerate(zip(outputs, output_stems(outputs, stem))):
        node_id = output.node_id
        if services.log is not None:
            services.log("debug", f"Writing output {index + 1} of {count} as {output.format}.",
                         node_id)
        try:
            with _progress_of(progress, index):
                files = write_model_output(output, folder, services) \
                    if output.format == MODEL_FORMAT else \
                    write_result(output.data, output.format, output.options, folder,
                                 stem=name, per_date=per_date)
        except errors.OpenEOError as exc:
            raise exc.at(node_id) from None
        except MemoryError:
            raise  # the callers (sync request, job process) say which node and what helps
        except Exception as exc:
            if _disk_full(exc, folder):  # the server's storage, not a bug: say so (issue 16)
                log.error("writing output %d (node %s): the disk is full", index + 1, node_id)
                raise errors.StorageFailure(
                    "Writing the result failed: the server's storage for results is full (No "
                    "space left on device). Nothing of this result is kept; start the job "
                    "again later, or tell the administrator.", node_id=node_id) from exc
            # A bug of ours, not the user's: logged, and an error id the user can quote.
            error = errors.Internal("", node_id=node_id)
            error.args = (f"Computing and writing the result failed in the back-end; please "
                          f"report it with the error id {error.id}.",)
            log.error("writing output %d (node %s) failed [%s]", index + 1, node_id,
                      error.id, exc_info=exc)
            raise error from exc
        export_files(output, [f.path for f in files], services)
        result = WrittenOutput(index, output, files)
        done.append(result)
        if written is not None:
            written(result)
        if progress is not None:
            progress(index, 1.0)
    return done


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether `exc` (or what caused it) is a full disk or quota: an OSError saying so, or
    a write error (GDAL's drivers lose the errno: "TIFFAppendToStrip: Write error") while the
    folder's file system has (next to) no space left."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        if "write error" in text.lower() and free is not None and free < 64 * 1024**2:
            return True
        seen = seen.__cause__ or seen.__context__
    return free is not None and free < 1024**2


@contextlib.contextmanager
def _progress_of(progress: OutputProgress | None, index: int) -> Iterator[None]:
    if progress is None:
        yield
        return
    with executor.progress_to(lambda fraction: progress(index, fraction)):
        yield


def export_files(saved: SavedResult, paths: list[Path], services: Services) -> None:
    """Copy written result files into the user's workspace where export_workspace asked for
    it, through the workspace's uploads (quota and path rules apply)."""
    if not saved.exports:
        return
    if services.user is None or services.settings is None:
        # export_workspace refuses to run without a user's workspace, so this is our bug
        raise errors.Internal("Results to export, but no user workspace to export them to.")
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


# --- POST /result ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncResult:
    """The file to send for POST /result, in a result folder deleted by `remove()`."""

    path: Path
    media_type: str
    filename: str
    result_folder: ResultFolder

    @property
    def folder(self) -> Path:
        return self.result_folder.path

    def remove(self) -> None:
        """After the response: the files go, and the memory the computation freed."""
        self.result_folder.release()
        executor.release_free_memory()


def compute_result(process: dict[str, Any], services: Services,
                   scratch: ResultScratch | None = None,
                   expected_bytes: int | None = None) -> SyncResult:
    """Evaluate a process and write all its outputs; the file to send back (a tar of them
    all when there are several files). The caller removes it with `SyncResult.remove()`.

    The files go to a folder of `scratch` (in RAM when `expected_bytes`, the dry run's size
    of the results, fits its budget; processing/scratch.py), or of the temporary folder."""
    scratch = scratch or ResultScratch(None, 0, Path(tempfile.gettempdir()))
    running = services.executor or executor.current()
    folder = scratch.folder(expected_bytes)
    try:
        # All computation (in the writers, or a process that must compute) uses the executor.
        with running.active():
            outputs = evaluate_outputs(process, services)
            try:
                # One file per output, as CDSE answers a synchronous request (no per-date
                # files).
                written = write_outputs(outputs, folder.path, services, stem=SYNC_STEM,
                                        per_date=False)
            except errors.StorageFailure:
                if not folder.in_ram:
                    raise
                # The RAM folder filled up (other results, or the size was underestimated):
                # the same outputs once more, on the disk.
                log.warning("a synchronous result did not fit in %s; writing it to disk",
                            folder.path.parent)
                folder.release()
                folder = scratch.disk_folder()
                written = write_outputs(outputs, folder.path, services, stem=SYNC_STEM,
                                        per_date=False)
        files = [file for output in written for file in output.files]
        if len(files) == 1:
            (file,) = files
            return SyncResult(file.path, file.media_type, file.filename, folder)
        tar = folder.path / f"{SYNC_STEM}.tar"
        with tarfile.open(tar, "w") as archive:
            for file in files:
                archive.add(file.path, arcname=file.filename)
        return SyncResult(tar, TAR_MEDIA_TYPE, tar.name, folder)
    except MemoryError as exc:
        folder.release()
        advice = memory_advice(process, services)
        raise errors.Internal(
            "The computation ran out of memory." + advice + " A batch job (POST /jobs) runs "
            "with the job workers' memory (setting TERRACUBE_MEMORY_LIMIT, listed as "
            "memory-limit at GET /processing_parameters).") from exc
    except BaseException:
        folder.release()
        raise
