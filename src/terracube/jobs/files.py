"""Where job results live on disk: data_dir/jobs/<job_id>/<run_id>/<file>.

Each run of a job (each claim by a worker) writes into its own folder, so a run that lost its
claim can never overwrite the files of the run that replaced it; the job record says which
run folder holds the current results.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_SAFE_NAME = re.compile(r"^[\w\-.~]+$")


class JobFolders:
    """The job folders under data_dir/jobs."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.root / _checked(job_id)

    def run_dir(self, job_id: str, run_id: str) -> Path:
        return self.job_dir(job_id) / _checked(run_id)

    def asset_path(self, job_id: str, run_id: str, name: str) -> Path:
        return self.run_dir(job_id, run_id) / _checked(name)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_run(self, job_id: str, run_id: str | None) -> None:
        if not run_id:
            return
        shutil.rmtree(self.run_dir(job_id, run_id), ignore_errors=True)
        try:
            self.job_dir(job_id).rmdir()  # only if empty
        except OSError:
            pass

    def remove_runs_except(self, job_id: str, keep: str | None) -> None:
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if entry.name != keep:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def size(self, job_id: str, run_id: str) -> int:
        folder = self.run_dir(job_id, run_id)
        if not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _checked(name: str) -> str:
    if not name or name in (".", "..") or not _SAFE_NAME.match(name):
        raise ValueError(f"invalid job file name {name!r}")
    return name
