"""A user's workspace: a private folder of files with a quota, safe against path tricks.

Each user has the folder `<data_dir>/workspaces/<user>`. Paths from requests are checked
before they touch the file system: no absolute paths, no `.`/`..`, no characters the API's
`file.path` pattern forbids, and no symbolic links on the way (a link could lead out of the
workspace; users cannot create links, but an administrator or a process could). Uploads are
streamed into a temporary file inside the workspace and renamed into place only when complete.

The quota is reserved, not just checked: an upload first reserves its announced size (or, for
a body of unknown length, blocks of RESERVE_STEP_BYTES as it grows) by extending its temporary
file to that size (sparse: no disk space is used) while holding an exclusive lock on the
workspace folder. Every reservation is therefore visible in the file sizes to every process on
the host (several servers, the workers, the CLI), and concurrent uploads of one user can
neither exceed the quota together nor refuse each other wrongly. Each upload also holds a lock
on its own temporary file; a temporary file nobody holds a lock on belongs to a process that
died and is removed (with its reservation) the next time the quota is computed.
"""

from __future__ import annotations

import fcntl
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from terracube import errors

WORKSPACES_FOLDER = "workspaces"
# Uploads in progress: `<workspace>/.tc-upload-<random>.part`; never listed, never addressable.
UPLOAD_PREFIX = ".tc-upload-"
MAX_PATH_LENGTH = 1024
MAX_NAME_BYTES = 255
# Characters the API's `file.path` pattern excludes (^[^/\r\n\\:'"][^\r\n\\:'"]*$), and NUL.
FORBIDDEN_CHARACTERS = frozenset("\\:'\"\r\n\0")
# An upload of unknown length reserves quota in blocks of this size as its bytes arrive.
RESERVE_STEP_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileInfo:
    """A file of a workspace as GET /files lists it."""

    path: str  # relative to the workspace, '/'-separated
    size: int  # bytes
    modified: datetime  # UTC

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size,
                "modified": self.modified.strftime("%Y-%m-%dT%H:%M:%SZ")}


def workspaces_root(data_dir: Path) -> Path:
    return Path(data_dir) / WORKSPACES_FOLDER


def folder_name(user_id: str) -> str:
    """The folder of a user below `workspaces/`: the user id, made safe and unique.

    User ids may contain '.', '~' and capitals; '.' and '..' (and ids starting with '.') would
    address the wrong folder, and on case-insensitive file systems 'Ann' and 'ann' would
    share one. A capital letter becomes '^' + its lower case and a leading '.' becomes '^.';
    '^' is not allowed in user ids, so different users always get different folders.
    """
    if not user_id:
        raise ValueError("empty user id")
    name = "".join(f"^{c.lower()}" if "A" <= c <= "Z" else c for c in user_id)
    if name.startswith("."):
        name = "^" + name
    if "/" in name or "\0" in name:
        raise ValueError(f"user id {user_id!r} cannot name a folder")
    return name


def workspace_folder(settings: Any, user_id: str) -> Path:
    """The workspace folder of a user (it may not exist yet)."""
    return workspaces_root(settings.data_dir) / folder_name(user_id)


def workspace_for(settings: Any, user_id: str) -> Workspace:
    return Workspace(workspace_folder(settings, user_id), settings.storage_quota_bytes)


def split_path(path: Any) -> tuple[str, ...]:
    """The components of a workspace path from a request; FilePathInvalid if it is unsafe."""
    if not isinstance(path, str) or not path:
        raise _invalid(path, "the path is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise _invalid(path, f"the path is longer than {MAX_PATH_LENGTH} characters")
    bad = sorted(FORBIDDEN_CHARACTERS.intersection(path))
    if bad:
        raise _invalid(path, "it contains " + ", ".join(repr(c) for c in bad)
                       + " (not allowed in openEO file paths)")
    if path.startswith("/"):
        raise _invalid(path, "absolute paths are not allowed; give the path relative to "
                             "your workspace")
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise _invalid(path, "empty, '.' and '..' path segments are not allowed")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise _invalid(path, f"a file or folder name is longer than {MAX_NAME_BYTES} bytes")
        if part.startswith(UPLOAD_PREFIX):
            raise _invalid(path, f"names starting with '{UPLOAD_PREFIX}' are reserved")
    return parts


def _invalid(path: Any, reason: str) -> errors.OpenEOError:
    return errors.FilePathInvalid(f"File path is invalid: {reason} (path {path!r}).")


def _not_found(path: str) -> errors.OpenEOError:
    return errors.FileNotFound(f"File '{path}' does not exist in your workspace; GET /files "
                               "lists your files.")


class Workspace:
    """The files of one user below `root`, with `quota` bytes of space."""

    def __init__(self, root: Path, quota: int) -> None:
        self.root = Path(root)
        self.quota = quota

    # --- paths ----------------------------------------------------------------------------
    def locate(self, path: str) -> Path:
        """The file-system path for a workspace path, checked component by component.

        FilePathInvalid if the path is unsafe or leads through a symbolic link. The result
        may not exist.
        """
        parts = split_path(path)
        current = self.root
        for part in parts:
            current = current / part
            if current.is_symlink():
                raise _invalid(path, "symbolic links are not followed")
        return current

    # --- reading --------------------------------------------------------------------------
    def list_files(self) -> list[FileInfo]:
        """Every file (not folder, not link, not upload in progress), sorted by path."""
        return sorted(self._iter_files(), key=lambda f: f.path)

    def _iter_files(self) -> Iterator[FileInfo]:
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            dirs.sort()
            rel_folder = os.path.relpath(folder, self.root)
            for name in files:
                if name.startswith(UPLOAD_PREFIX):
                    continue
                try:
                    st = os.lstat(os.path.join(folder, name))
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = name if rel_folder == "." else f"{rel_folder}/{name}"
                yield FileInfo(rel.replace(os.sep, "/"), st.st_size, _mtime(st))

    def usage(self) -> int:
        """Bytes used: all regular files, uploads in progress included."""
        return self._usage_excluding(None)

    def _usage_excluding(self, skip: Path | None, reap: bool = False) -> int:
        """Bytes used except by `skip`; with `reap` (only under the workspace lock), the
        temporary files of uploads whose process died are removed first."""
        total = 0
        if not self.root.is_dir():
            return 0
        for folder, _dirs, files in os.walk(self.root, followlinks=False):
            for name in files:
                full = os.path.join(folder, name)
                if skip is not None and full == str(skip):
                    continue
                if reap and name.startswith(UPLOAD_PREFIX) and _remove_if_orphaned(full):
                    continue
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
        return total

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workspace's quota lock (an exclusive flock on its folder): across threads
        and processes, one reservation at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def free(self) -> int:
        return max(0, self.quota - self.usage())

    def info(self, path: str) -> FileInfo:
        target = self.locate(path)
        st = self._stat_file(path, target)
        return FileInfo("/".join(split_path(path)), st.st_size, _mtime(st))

    def file_to_read(self, path: str) -> tuple[Path, os.stat_result]:
        """The file to send for GET /files/{path}, with its stat result."""
        target = self.locate(path)
        return target, self._stat_file(path, target)

    def _stat_file(self, path: str, target: Path) -> os.stat_result:
        try:
            st = target.lstat()
        except (FileNotFoundError, NotADirectoryError):
            raise _not_found(path) from None
        if stat.S_ISDIR(st.st_mode):
            raise errors.FileOperationUnsupported(
                f"'{path}' is a folder; only files can be downloaded or deleted (GET /files "
                "lists the files in it).")
        if not stat.S_ISREG(st.st_mode):
            raise _not_found(path)
        return st

    # --- changing -------------------------------------------------------------------------
    def delete(self, path: str) -> None:
        """Delete a file, then the folders this left empty (API: DELETE /files/{path})."""
        target = self.locate(path)
        self._stat_file(path, target)
        try:
            target.unlink()
        except FileNotFoundError:
            raise _not_found(path) from None
        parent = target.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop
                break
            parent = parent.parent

    def begin_upload(self, path: str, size_hint: int | None = None) -> Upload:
        """Start writing `path`; feed the Upload the body, then commit() (or abort())."""
        target = self.locate(path)
        self._check_writable(path, target)
        replaced = 0
        try:
            st = target.lstat()
            if stat.S_ISREG(st.st_mode):
                replaced = st.st_size
        except (FileNotFoundError, NotADirectoryError):
            pass
        return Upload(self, path, target, replaced, size_hint or 0)

    def _check_writable(self, path: str, target: Path) -> None:
        """FilePathInvalid if `target` is a folder or a file stands where a folder must be."""
        if target.is_dir():
            raise _invalid(path, "it points to an existing folder")
        current = self.root
        for part in split_path(path)[:-1]:
            current = current / part
            if current.exists() and not current.is_dir():
                raise _invalid(path, f"'{current.relative_to(self.root).as_posix()}' is a "
                                     "file, not a folder")

    def _make_parents(self, path: str, target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.root
        for part in split_path(path)[:-1]:
            current = current / part
            if current.is_symlink():
                raise _invalid(path, "symbolic links are not followed")
            try:
                current.mkdir(exist_ok=True)
            except FileExistsError:
                raise _invalid(path, f"'{current.relative_to(self.root).as_posix()}' is a "
                                     "file, not a folder") from None


class Upload:
    """A file being uploaded: a temporary file in the workspace, renamed into place at the end.

    The quota is reserved before bytes are accepted (see the module docstring); going over
    it removes the temporary file and raises StorageQuotaExceeded, so no partial file is
    ever left behind. `commit()` or `abort()` releases the reservation.
    """

    def __init__(self, workspace: Workspace, path: str, target: Path, replaced: int,
                 size_hint: int = 0) -> None:
        self.workspace = workspace
        self.path = path
        self.target = target
        self.replaced = replaced  # size of the file this upload replaces: freed at the end
        self.written = 0
        self.reserved = 0
        self.allowance = 0
        self.temp = workspace.root / f"{UPLOAD_PREFIX}{uuid.uuid4().hex}.part"
        with workspace.locked():
            self.allowance = self._allowance()
            if size_hint > self.allowance:
                raise self.quota_error(size_hint)
            # Unbuffered: the route writes large blocks anyway.
            self._file = open(self.temp, "xb", buffering=0)  # noqa: SIM115 - closed in commit/abort
            self._fd = self._file.fileno()
            try:
                # Our lock on the file says "in progress" to every other process.
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._extend(size_hint)
            except BaseException:
                self.abort()
                raise

    def _allowance(self) -> int:
        others = self.workspace._usage_excluding(self.temp, reap=True)
        return self.workspace.quota - (others - self.replaced)

    def _extend(self, size: int) -> None:
        """Reserve `size` bytes: the temporary file's size (sparse) is what others count."""
        if size > self.reserved:
            os.ftruncate(self._fd, size)
            self.reserved = size

    def quota_error(self, size: int) -> errors.OpenEOError:
        quota = self.workspace.quota
        free = max(0, self.allowance)
        return errors.StorageQuotaExceeded(
            f"Your storage quota has been exceeded: the file needs at least {size} bytes, "
            f"{free} of your {quota} bytes are free (uploads in progress count with their "
            "announced size). Delete files (DELETE /files/{path}) to make room.")

    def write(self, chunk: bytes) -> None:
        size = self.written + len(chunk)
        if size > self.reserved:
            self._reserve_more(size)
        with self._aborting_on_failure():
            view = memoryview(chunk)
            while view:  # an unbuffered write may take only part of the bytes
                view = view[self._file.write(view):]
        self.written = size

    def _reserve_more(self, size: int) -> None:
        with self._aborting_on_failure(), self.workspace.locked():
            self.allowance = self._allowance()
            if size > self.allowance:
                raise self.quota_error(size)
            self._extend(min(self.allowance, max(size, self.reserved + RESERVE_STEP_BYTES)))

    def commit(self) -> FileInfo:
        """Move the complete file into place (atomically) and describe it."""
        with self._aborting_on_failure():
            if self.reserved != self.written:
                os.ftruncate(self._fd, self.written)  # the unused reservation goes
            os.fsync(self._fd)
            # Under the workspace lock: between closing (which drops our lock on the file)
            # and renaming, nobody may take the file for an orphan.
            with self.workspace.locked():
                self._file.close()
                for attempt in range(2):
                    self.workspace._make_parents(self.path, self.target)
                    self.workspace._check_writable(self.path, self.target)
                    try:
                        os.replace(self.temp, self.target)
                        break
                    except FileNotFoundError:
                        # A concurrent DELETE removed the (then empty) parent folder: once more.
                        if attempt:
                            raise
        return self.workspace.info(self.path)

    @contextmanager
    def _aborting_on_failure(self) -> Iterator[None]:
        """A failure gives up the upload: its temporary file and reservation go, and a
        storage error (disk full, I/O) reaches the user as StorageFailure."""
        try:
            yield
        except errors.OpenEOError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _storage_failure(exc) from exc

    def abort(self) -> None:
        """Remove the temporary file and its reservation (safe to call more than once)."""
        try:
            if hasattr(self, "_file"):
                self._file.close()
        finally:
            self.temp.unlink(missing_ok=True)


def _remove_if_orphaned(path: str) -> bool:
    """Remove an upload's temporary file if no process holds its lock; True if removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an upload in progress
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _storage_failure(exc: OSError) -> errors.OpenEOError:
    return errors.StorageFailure(f"Unable to store the file: {exc.strerror or exc}. Please try "
                                 "again later or contact the administrator.")


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(int(st.st_mtime), UTC)
