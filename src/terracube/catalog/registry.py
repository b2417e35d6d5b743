"""Collections registered by an administrator: one JSON record per collection in
`<data_dir>/collections/`, written by `terracube collections add` and read by the server.

A record holds everything derived when the collection was added (items, grids, bands, time
axis), so a server never rescans the data; the catalog notices added, changed and removed
records by their modification times, so a running server picks them up without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terracube.catalog.metadata import CollectionInputError, check_collection_id

if TYPE_CHECKING:
    from terracube.catalog.base import CollectionSource

# The sources (xarray, odc-stac, rasterio) are imported by the functions that build them:
# `terracube collections list|remove` read and write records only.

log = logging.getLogger(__name__)

RECORD_VERSION = 1
FOLDER_NAME = "collections"

# Record "type" values.
FILES = "files"  # a folder (or a file) of rasters
STAC = "stac"  # a static STAC item, collection or catalog
STAC_API = "stac-api"  # a collection of a STAC API
CUBE = "cube"  # a CF NetCDF file or Zarr store


# The generated sample collections (catalog/samples/sentinel2_synthetic.py,
# rainfall_synthetic.py, dem_landcover_synthetic.py and sentinel1_synthetic.py): their ids
# cannot be registered (the built-in one would hide the registered one).
BUILT_IN_COLLECTIONS = {
    "SENTINEL2_L2A": "synthetic Sentinel-2 L2A sample",
    "RADAR_RAINFALL_SYNTHETIC": "synthetic 5-minute radar rainfall with rain gauges",
    "COPERNICUS_30": "synthetic Copernicus DEM (30 m) of the Sentinel-2 sample's valley",
    "COPERNICUS_90": "synthetic Copernicus DEM (90 m) of the Sentinel-2 sample's valley",
    "ESA_WORLDCOVER_10M_2020_V1": "synthetic ESA WorldCover 2020 of the same valley",
    "ESA_WORLDCOVER_10M_2021_V2": "synthetic ESA WorldCover 2021 of the same valley",
    "SENTINEL1_GRD": "synthetic Sentinel-1 GRD sample",
}

class CollectionExists(CollectionInputError):
    """A collection with this id is registered already."""


class CollectionNotRegistered(KeyError):
    """No registered collection has this id."""


class CollectionRegistry:
    """The registered collections of one data folder."""

    def __init__(self, data_dir: Path | str) -> None:
        self.folder = Path(data_dir) / FOLDER_NAME

    def record_path(self, collection_id: str) -> Path:
        return self.folder / f"{collection_id}.json"

    def sidecar_dir(self, collection_id: str) -> Path:
        """Where files made for a collection live (e.g. VRTs that add a georeference)."""
        return self.folder / collection_id

    def ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def state(self) -> dict[str, tuple[int, int]]:
        """(mtime_ns, size) per record: what the catalog compares to notice changes."""
        out = {}
        if not self.folder.is_dir():
            return out
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                st = entry.stat()
                out[entry.name[:-5]] = (st.st_mtime_ns, st.st_size)
        return out

    def get(self, collection_id: str) -> dict:
        try:
            return json.loads(self.record_path(collection_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionNotRegistered(collection_id) from None

    def save(self, record: dict, replace: bool = False) -> Path:
        collection_id = record["id"]
        check_collection_id(collection_id)
        path = self.record_path(collection_id)
        if path.exists() and not replace:
            raise CollectionExists(
                f"a collection '{collection_id}' is registered already; remove it first "
                f"(terracube collections remove {collection_id}) or add it with --replace.")
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # readers see the old or the new record, never half of one
        return path

    def remove(self, collection_id: str) -> None:
        path = self.record_path(collection_id)
        if not path.exists():
            raise CollectionNotRegistered(collection_id)
        path.unlink()
        shutil.rmtree(self.sidecar_dir(collection_id), ignore_errors=True)


# --- records <-> sources --------------------------------------------------------------------
def inspect_source(collection_id: str, origin: str, *, pattern: str | None = None,
                   bands: list[str] | None = None, sidecar_dir: Path | None = None,
                   **fields: Any) -> tuple[str, CollectionSource]:
    """Check the data at `origin` and build its source; (record type, source).

    Raises CollectionInputError with a message naming the file and the problem.
    """
    from terracube.catalog import (
        files,
        netcdf_zarr_inspect,
        netcdf_zarr_source,
        stac,
        stac_documents,
    )

    fields = {k: v for k, v in fields.items() if v is not None}
    if stac_documents.is_url(origin):
        if pattern:
            raise CollectionInputError("--pattern applies to folders of files, not to STAC.")
        source = stac.source_from_href(collection_id, origin)
        _apply_fields(source, fields)
        return (STAC_API if isinstance(source, stac.StacApiSource) else STAC), source
    path = Path(origin).expanduser().resolve()
    if not path.exists():
        raise CollectionInputError(f"{path}: no such file or folder.")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".json":
        source = stac.source_from_href(collection_id, str(path))
        _apply_fields(source, fields)
        return STAC, source
    is_zarr = path.is_dir() and (suffix == ".zarr" or any(
        (path / m).exists() for m in (".zgroup", "zarr.json", ".zattrs")))
    if is_zarr or (path.is_file() and suffix in netcdf_zarr_inspect.NETCDF_SUFFIXES):
        if pattern:
            raise CollectionInputError(f"{path}: --pattern applies to folders of raster files.")
        try:
            return CUBE, netcdf_zarr_source.cube_source(collection_id, path, bands, **fields)
        except CollectionInputError as cube_problem:
            if is_zarr or suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
                raise
            try:  # an HDF5 raster such as a KNMI radar composite
                return FILES, files.files_source(collection_id, path, pattern, bands,
                                                 sidecar_dir, **fields)
            except CollectionInputError:
                raise cube_problem from None
    if path.is_dir() and not files.list_raster_files(path) \
            and netcdf_zarr_inspect.list_netcdf_files(path):
        # Files on one grid along time make one cube (each is checked: inspect_folder).
        if pattern:
            raise CollectionInputError(
                f"{path}: a folder of NetCDF files is one cube along time; --pattern applies "
                "to folders of raster files.")
        return CUBE, netcdf_zarr_source.cube_source(collection_id, path, bands, **fields)
    return FILES, files.files_source(collection_id, path, pattern, bands, sidecar_dir,
                                     **fields)


def _apply_fields(source: CollectionSource, fields: dict) -> None:
    for key in ("title", "description", "license", "providers", "keywords"):
        if key in fields:
            setattr(source, key, fields[key])


def make_record(collection_id: str, kind: str, source: CollectionSource, origin: str,
                pattern: str | None = None, bands: list[str] | None = None) -> dict:
    from terracube.catalog import netcdf_zarr_source, stac
    from terracube.catalog.stac_items import StacItemsSource

    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "id": collection_id,
        "type": kind,
        "from": origin,
        "pattern": pattern,
        "bands": bands,
        "added": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if kind == CUBE:
        assert isinstance(source, netcdf_zarr_source.XarraySource)
        record["layout"] = source.layout.to_record()
        record["fields"] = {"title": source.title, "description": source.description,
                            "license": source.license, "providers": source.providers,
                            "keywords": source.keywords, "extra": source.extra}
    else:
        assert isinstance(source, StacItemsSource)
        record["stac"] = stac.source_to_record(source)
    return record


def source_from_record(record: dict) -> CollectionSource:
    """The collection source a record describes (no data is read)."""
    from terracube.catalog import netcdf_zarr_inspect, netcdf_zarr_source, stac

    if record.get("version", 1) > RECORD_VERSION:
        raise ValueError(f"record version {record['version']} is newer than this terracube")
    if record["type"] == CUBE:
        layout = netcdf_zarr_inspect.CubeLayout.from_record(record["layout"])
        fields = {k: v for k, v in (record.get("fields") or {}).items() if v is not None}
        source: CollectionSource = netcdf_zarr_source.XarraySource(record["id"], layout, **fields)
    else:
        source = stac.source_from_record(record["id"], record["stac"])
    if record.get("asset_files"):
        # Files the API serves as collection assets (GET /collections/{id}/assets/{name}).
        source.asset_files = {name: (Path(f["path"]), f["type"])
                              for name, f in record["asset_files"].items()}
    return source


def add_collection(data_dir: Path | str, collection_id: str, origin: str, *,
                   pattern: str | None = None, bands: list[str] | None = None,
                   replace: bool = False,
                   asset_files: dict[str, tuple[Path | str, str]] | None = None,
                   **fields: Any) -> dict:
    """Check the data, derive its metadata and register it; returns the record.

    `asset_files` (name -> (path, media type)) are files the API serves as the collection's
    assets; the STAC `assets` in `extra` refer to them as /collections/{id}/assets/{name}.
    """
    check_collection_id(collection_id)
    if collection_id in BUILT_IN_COLLECTIONS:
        raise CollectionExists(f"'{collection_id}' is a built-in sample collection.")
    registry = CollectionRegistry(data_dir)
    if registry.record_path(collection_id).exists() and not replace:
        raise CollectionExists(
            f"a collection '{collection_id}' is registered already; remove it first "
            f"(terracube collections remove {collection_id}) or add it with --replace.")
    staging = registry.folder / f".{collection_id}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    kind, source = inspect_source(collection_id, origin, pattern=pattern, bands=bands,
                                  sidecar_dir=staging, **fields)
    record = make_record(collection_id, kind, source, origin, pattern, bands)
    if asset_files:
        for path, _media_type in asset_files.values():
            if not Path(path).is_file():
                raise CollectionInputError(f"{path}: no such asset file.")
        record["asset_files"] = {name: {"path": str(Path(path).resolve()), "type": media_type}
                                 for name, (path, media_type) in asset_files.items()}
    if staging.exists():
        # Files made for the collection (VRTs) move to its folder; the record points there.
        final = registry.sidecar_dir(collection_id)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        text = json.dumps(record).replace(str(staging), str(final))
        record = json.loads(text)
    source_from_record(record).stac()  # the record must rebuild into a working source
    registry.save(record, replace=replace)
    return record
