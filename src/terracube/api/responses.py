"""Responses shared by the routes."""

from __future__ import annotations

from fastapi.responses import FileResponse


class FileDownload(FileResponse):
    """A file sent in 4 MiB pieces: results run to gigabytes, and Starlette's 64 KiB default
    makes the event loop spend its time on sends (2.4 GB: 37,000 of them)."""

    chunk_size = 4 * 2**20
