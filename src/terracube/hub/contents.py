"""The lab's file manager: saving into mystorage/ counts against the workspace quota.

JupyterLab saves, uploads, copies and moves files through the Jupyter server's contents API;
this ContentsManager (configured by the hub's spawner) checks every write that lands in
`mystorage/` (the user's terracube workspace, the folder GET /files lists) against the same
quota and the same usage count as the API, before anything is written. Over quota the request
fails with HTTP 507 and a message JupyterLab shows in its "File Save Error" dialog; nothing
is written (a refused later chunk of a chunked upload removes the part already written).
Notebook checkpoints go to `~/.ipynb_checkpoints/`, not next to the file, so they never show
up in (or count against) the workspace. Files a kernel writes with plain Python `open()` do
not pass through here: they count against the quota afterwards (the API refuses uploads then),
but are not refused — see docs/administration/hub.md.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_dir_exists
from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web
from traitlets import Integer, Unicode, default

from terracube.workspace.files import Workspace

INSUFFICIENT_STORAGE = 507


class QuotaContentsManager(AsyncLargeFileManager):
    """AsyncLargeFileManager (Jupyter's default) with the workspace quota on mystorage/."""

    storage_folder = Unicode(
        "mystorage", config=True, help="Folder below the root that is the user's workspace.")
    quota_bytes = Integer(config=True, help="Workspace quota in bytes.")

    @default("quota_bytes")
    def _default_quota(self) -> int:
        return int(os.environ.get("TERRACUBE_STORAGE_QUOTA_BYTES", 10 * 1024**3))

    @default("checkpoints_class")
    def _default_checkpoints_class(self) -> type:
        return HomeCheckpoints

    # --- where a path lands ---------------------------------------------------------------
    def _storage_link(self) -> str:
        return os.path.join(os.path.abspath(self.root_dir), self.storage_folder)

    def _in_storage(self, os_path: str) -> bool:
        link = self._storage_link()
        return os.path.abspath(os_path) == link or os.path.abspath(os_path).startswith(
            link + os.sep)

    def _workspace(self) -> Workspace:
        return Workspace(Path(os.path.realpath(self._storage_link())), self.quota_bytes)

    def _check_room(self, os_path: str, new_bytes: int, replaced: int) -> None:
        workspace = self._workspace()
        used = workspace.usage()
        free = workspace.quota - (used - replaced)
        if new_bytes > free:
            raise web.HTTPError(
                INSUFFICIENT_STORAGE,
                f"Not saved: your storage quota is exceeded. {os.path.basename(os_path)} needs "
                f"{_size(new_bytes)}, {self.storage_folder}/ has {_size(max(0, free))} free "
                f"of {_size(workspace.quota)}. Delete files in {self.storage_folder}/ to make "
                "room, or save the file outside it (files outside are not kept).")

    # --- writes ---------------------------------------------------------------------------
    async def save(self, model: dict, path: str = "") -> dict:
        os_path = self._get_os_path(path.strip("/"))
        if (self._in_storage(os_path) and model.get("type") in ("file", "notebook")
                and "content" in model):
            chunk = model.get("chunk")
            appending = chunk is not None and chunk != 1
            replaced = 0 if appending else _file_size(os_path)
            try:
                self._check_room(os_path, _content_bytes(model), replaced)
            except web.HTTPError:
                if appending:  # the chunks written so far: no partial file stays
                    with self.perm_to_403(os_path):
                        if os.path.isfile(os_path) and not os.path.islink(os_path):
                            os.unlink(os_path)
                raise
        return await super().save(model, path)

    async def rename_file(self, old_path: str, new_path: str) -> None:
        old_os = self._get_os_path(old_path.strip("/"))
        new_os = self._get_os_path(new_path.strip("/"))
        if old_os == self._storage_link():
            raise web.HTTPError(403, f"{self.storage_folder}/ is your terracube workspace; "
                                     "it cannot be renamed.")
        if self._in_storage(new_os) and not self._in_storage(old_os):
            self._check_room(new_os, _tree_size(old_os), _file_size(new_os))
        await super().rename_file(old_path, new_path)

    async def delete_file(self, path: str) -> None:
        if self._get_os_path(path.strip("/")) == self._storage_link():
            raise web.HTTPError(403, f"{self.storage_folder}/ is your terracube workspace; "
                                     "delete the files in it instead.")
        await super().delete_file(path)


class HomeCheckpoints(AsyncFileCheckpoints):
    """Checkpoints in ~/.ipynb_checkpoints/<folder>/ instead of beside the file."""

    def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
        path = path.strip("/")
        parent, name = ("/" + path).rsplit("/", 1)
        basename, ext = os.path.splitext(name)
        cp_dir = os.path.join(os.path.abspath(self.root_dir), self.checkpoint_dir,
                              *[p for p in parent.split("/") if p])
        with self.perm_to_403():
            ensure_dir_exists(cp_dir)
        return os.path.join(cp_dir, f"{basename}-{checkpoint_id}{ext}")


def _content_bytes(model: dict) -> int:
    """How many bytes saving the model writes."""
    content = model["content"]
    if model["type"] == "notebook":
        nb = nbformat.from_dict(content)
        return len(nbformat.writes(nb, version=nbformat.NO_CONVERT).encode("utf-8"))
    if model.get("format") == "base64":
        try:
            return len(base64.b64decode(content.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:
            raise web.HTTPError(400, f"Encoding error: {exc}") from exc
    return len(content.encode("utf-8")) if isinstance(content, str) else 0


def _file_size(os_path: str) -> int:
    try:
        return os.lstat(os_path).st_size if os.path.isfile(os_path) else 0
    except OSError:
        return 0


def _tree_size(os_path: str) -> int:
    if not os.path.isdir(os_path):
        return _file_size(os_path)
    total = 0
    for folder, _dirs, files in os.walk(os_path):
        for name in files:
            total += _file_size(os.path.join(folder, name))
    return total


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
