"""The workspace side of the engine's `WorkspaceAccess` port (engine/ports.py): one user's
files, with the same path rules and quota as the /files endpoints."""

from __future__ import annotations

import sys
from pathlib import Path

from terracube.workspace.files import Workspace, split_path


class UserWorkspace:
    """engine.ports.WorkspaceAccess over the Workspace at `folder`; `quota` None: unlimited."""

    def __init__(self, folder: Path, quota: int | None = None) -> None:
        self._space = Workspace(Path(folder), sys.maxsize if quota is None else quota)

    @property
    def root(self) -> Path:
        return self._space.root

    def check_path(self, path: str) -> tuple[str, ...]:
        return split_path(path)

    def locate(self, path: str) -> Path:
        return self._space.locate(path)

    def write_file(self, path: str, content: bytes) -> None:
        # Through an upload: quota, path rules and atomic replacement as for PUT /files.
        upload = self._space.begin_upload(path, size_hint=len(content))
        try:
            upload.write(content)
        except BaseException:
            upload.abort()
            raise
        upload.commit()
