"""The jobs' side of the engine's JobResults port (engine/ports.py): one user's finished batch
jobs as inputs of new graphs — their results folder (load_ml_model) and their raster results
as a collection (load_result). One lookup for both, scoped to the user: another user's job is
not found, whatever its id.
"""

from __future__ import annotations

from pathlib import Path

from terracube import errors
from terracube.catalog.access import result_files_source
from terracube.catalog.base import CollectionSource
from terracube.catalog.metadata import CollectionInputError
from terracube.jobs.files import JobFolders
from terracube.jobs.results_stac import item_files, results_item, stac_asset
from terracube.jobs.store import FINISHED, Job, JobStore

# The media types of the files load_result reads (results/formats.py: GTiff, netCDF, Zarr).
_CUBE_TYPES = ("image/tiff", "application/x-netcdf", "application/netcdf", "application/zip")


class UserJobResults:
    """engine.ports.JobResults for the user `user_id`."""

    def __init__(self, store: JobStore, folders: JobFolders, user_id: str) -> None:
        self.store = store
        self.folders = folders
        self.user_id = user_id

    def _finished(self, job_id: str) -> tuple[Job, Path]:
        job = self.store.get(job_id, self.user_id)  # JobNotFound, also for another user's job
        if job.status != FINISHED or not job.results_run:
            raise errors.JobNotFinished(
                f"The batch job '{job_id}' has status '{job.status}': its results can be used "
                f"once it has finished (GET /jobs/{job_id} shows its status).")
        folder = self.folders.run_dir(job_id, job.results_run)
        if not folder.is_dir():
            raise errors.JobNotFound(f"The results of the batch job '{job_id}' are no longer "
                                     "kept; run the job again.")
        return job, folder

    def folder(self, job_id: str) -> Path:
        return self._finished(job_id)[1]

    def collection(self, job_id: str) -> CollectionSource:
        job, folder = self._finished(job_id)
        files = item_files(job)
        cubes = [info for info in files
                 if str(info.get("type", "")).lower().startswith(_CUBE_TYPES)]
        if not cubes:
            names = ", ".join(str(info.get("name")) for info in files) or "none"
            raise errors.ProcessParameterInvalid(
                f"The batch job '{job_id}' saved no raster data cube (its files: {names}); "
                "load_result reads results saved as GTiff, netCDF or Zarr.")
        assets = {info["name"]: stac_asset(info, str(folder / info["name"])) for info in cubes}
        item = results_item(job, assets, [], status=job.status, expires=None, infos=cubes)
        try:
            return result_files_source(job_id, item)
        except CollectionInputError as exc:
            raise errors.ProcessParameterInvalid(
                f"The results of the batch job '{job_id}' cannot be loaded as one data cube: "
                f"{exc}") from None
