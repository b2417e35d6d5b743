"""Where synchronous results are written: a RAM-backed folder while they fit its budget,
else the disk.

A POST /result writes its file, sends it and deletes it. On a disk, the kernel also writes the
file back to the device meanwhile (W4 large: 2.4 GB), while the client writes its own copy:
the two compete for the disk and the server's writes wait for the writeback. A file in tmpfs
(`/dev/shm`) is never written back. RAM is bounded, so a result goes there only when its size
by the dry run (an upper limit: uncompressed bytes, twice for GeoTIFFs and several files, whose
writers make a second file) fits what is left of the budget (setting
`sync_result_ram_bytes`, all requests of this server process together) and of the file
system's free space; otherwise, or when the dry run could not size it, on the disk as before.

Every folder is deleted once its response is sent, also when the client went away
(`SyncResult.remove` in the route's response) or the computation failed; folders of server
processes killed before they could do so are removed at the next start
(`remove_stale_result_folders`, by the pid in their names).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULT_FOLDER_PREFIX = "terracube-result-"
# Bytes a result's dry-run size leaves out: file headers, coordinates, metadata.
_HEADROOM = 16 * 1024**2


@dataclass
class ResultFolder:
    """One request's result folder; `release()` deletes it and gives its RAM back."""

    path: Path
    in_ram: bool
    reserved: int
    _scratch: ResultScratch | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        shutil.rmtree(self.path, ignore_errors=True)
        if self._scratch is not None:
            self._scratch.give_back(self.reserved)


class ResultScratch:
    """The result folders of one server process: in `ram_dir` within `ram_bytes`, else in
    `disk_dir`."""

    def __init__(self, ram_dir: Path | None, ram_bytes: int, disk_dir: Path) -> None:
        self.ram_dir = ram_dir if ram_dir is not None and _usable(ram_dir) else None
        self.ram_bytes = ram_bytes if self.ram_dir is not None else 0
        self.disk_dir = disk_dir
        self._lock = threading.Lock()
        self._reserved = 0

    @classmethod
    def from_settings(cls, settings: Any) -> ResultScratch:
        ram = str(getattr(settings, "sync_result_ram_dir", "") or "")
        return cls(Path(ram) if ram else None, int(getattr(settings, "sync_result_ram_bytes", 0)),
                   Path(tempfile.gettempdir()))

    @property
    def reserved(self) -> int:
        """Bytes of RAM held by result folders now."""
        with self._lock:
            return self._reserved

    def folder(self, expected_bytes: int | None) -> ResultFolder:
        """A new, empty result folder: in RAM when `expected_bytes` (the results' size by the
        dry run; None: unknown) fits, else on the disk."""
        need = self._need(expected_bytes)
        if need is not None:
            with self._lock:
                fits = self._reserved + need <= self.ram_bytes and need <= _free(self.ram_dir)
                if fits:
                    self._reserved += need
            if fits:
                assert self.ram_dir is not None
                try:
                    return ResultFolder(_new_folder(self.ram_dir), True, need, self)
                except OSError as exc:  # the folder vanished or is read-only now: the disk
                    log.warning("cannot make a result folder in %s (%s); using the disk",
                                self.ram_dir, exc)
                    self.give_back(need)
        return self.disk_folder()

    def disk_folder(self) -> ResultFolder:
        return ResultFolder(_new_folder(self.disk_dir), False, 0, None)

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - nbytes)

    def _need(self, expected_bytes: int | None) -> int | None:
        if self.ram_dir is None or expected_bytes is None or expected_bytes < 0:
            return None
        return int(expected_bytes) + _HEADROOM

    def folders(self) -> list[Path]:
        """The places result folders are made in."""
        return [p for p in (self.ram_dir, self.disk_dir) if p is not None]


def expected_result_bytes(outputs: list[dict[str, Any]]) -> int | None:
    """The bytes a synchronous request's result folder holds at most, from the dry run's
    outputs (`Explanation.outputs`): each output's uncompressed size, twice for a GeoTIFF (the
    writer's tiled scratch file, then the COG) and twice for several files (then a tar of
    them); None when there are none (nothing was sized)."""
    if not outputs:
        return None
    total = 0
    for output in outputs:
        size = int(output.get("bytes") or 0)
        total += 2 * size if str(output.get("format", "")).upper() in ("GTIFF", "GEOTIFF") \
            else size
    return 2 * total if len(outputs) > 1 else total


def _new_folder(parent: Path) -> Path:
    # The pid in the name lets a later start remove what a killed server left behind.
    return Path(tempfile.mkdtemp(prefix=f"{RESULT_FOLDER_PREFIX}{os.getpid()}-", dir=parent))


def _usable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _free(folder: Path | None) -> int:
    if folder is None:
        return 0
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def remove_stale_result_folders(parents: list[Path] | None = None) -> int:
    """Remove the result folders of server processes that are gone (killed before they could
    clean up) from `parents` (default: the temporary folder); returns how many. Folders of
    live processes are left alone."""
    removed = 0
    for parent in parents or [Path(tempfile.gettempdir())]:
        for folder in parent.glob(f"{RESULT_FOLDER_PREFIX}*"):
            pid_text = folder.name[len(RESULT_FOLDER_PREFIX):].split("-", 1)[0]
            if not pid_text.isdigit() or not folder.is_dir() or folder.is_symlink():
                continue  # a name of an older version, or not ours: left alone
            pid = int(pid_text)
            if pid == os.getpid() or _alive(pid):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another account's live process
    return True
