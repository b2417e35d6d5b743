"""The contract every collection source fulfils: `CollectionSource`, an abstract base class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from terracube.datacube.cube import RasterCube
from terracube.datacube.request import BBox, LoadRequest

# BBox, LoadRequest live in datacube/request.py; re-exported for older imports.
__all__ = ["BBox", "CollectionSource", "LoadRequest", "PropertyCheck", "queryables_schema"]

PropertyCheck = Callable[[str, Any, Any], bool]
"""(property name, condition from load_collection's `properties`, an item's value) -> keep it."""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2019-09/schema"
# The end of a "does not intersect" error: a load without spatial_extent reads the bounding
# box of the geometries and filters that use it (engine/optimize.py, decision 0016).
GEOMETRY_EXTENT_HINT = ("a load without spatial_extent reads the bounding box of the geometries "
                        "and filters used on it later in the graph: give ones that meet the "
                        "collection.")


class CollectionSource(ABC):
    """A collection the server offers: its STAC metadata, its queryables and a lazy loader.

    Every source in catalog/ subclasses this (it also fits the engine's structural
    `engine.ports.CollectionSource`). tests/catalog/test_source_contract.py is the contract
    suite a new source must pass; docs/internals/how-to-add-a-collection-source.md walks
    through adding one.
    """

    id: str
    """The collection id (`GET /collections/{id}`, `load_collection(id=...)`)."""

    asset_files: Mapping[str, tuple[Path, str]] = MappingProxyType({})
    """Files the API serves as collection-level assets (`GET /collections/{id}/assets/{key}`):
    asset key -> (path on the server, media type). Default: none."""

    @abstractmethod
    def stac(self) -> dict[str, Any]:
        """The STAC collection document (without links) incl. `cube:dimensions` whose keys are
        the dimension names of the cube `load()` returns, and `summaries`."""

    @abstractmethod
    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        """A lazy (dask-backed) cube restricted to the request's bbox, time window and bands
        before anything is read. Items whose properties fail `check_property` are left out.

        Bad requests raise openEO errors (`errors.ProcessParameterInvalid` naming the
        argument, e.g. unknown bands; `NoDataForRequest` when nothing is in the extents)."""

    def queryables(self) -> dict[str, Any]:
        """JSON schema of the properties `load_collection(properties=...)` can filter on
        (`GET /collections/{id}/queryables`). Default: none — a source without item
        metadata refuses property filters."""
        return queryables_schema(self.id, {})


def queryables_schema(collection_id: str, properties: dict[str, dict]) -> dict[str, Any]:
    """The queryables document of a collection with these property schemas (OGC API Features
    part 3: a JSON schema object that allows no other properties)."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"queryables/{collection_id}",
        "type": "object",
        "title": f"Queryables of {collection_id}",
        "properties": properties,
        "additionalProperties": False,
    }
