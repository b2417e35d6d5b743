"""The contract every collection source fulfils, and the load request it receives."""

from __future__ import annotations

from typing import Protocol

from terracube.datacube.cube import RasterCube
from terracube.datacube.request import BBox, LoadRequest

__all__ = ["BBox", "CollectionSource", "LoadRequest"]  # BBox, LoadRequest: datacube/request.py


class CollectionSource(Protocol):
    """A collection the server offers: its STAC metadata and a lazy loader."""

    id: str

    def stac(self) -> dict:
        """The STAC collection document (without links) incl. `cube:dimensions` and summaries."""
        ...

    def load(self, request: LoadRequest) -> RasterCube:
        """A lazy (dask-backed) cube restricted to the request."""
        ...
