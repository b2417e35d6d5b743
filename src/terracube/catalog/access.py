"""The catalog's side of the engine's data ports (engine/ports.py): STAC documents at a URL
(load_stac), files from a user's workspace (load_uploaded_files) and a batch job's result files
(load_result) as cubes.

The `Catalog` itself is the engine's `Collections`; the classes here are stateless readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pystac

from terracube.catalog.base import CollectionSource
from terracube.catalog.files import build_items, inspect_file
from terracube.catalog.netcdf_zarr_inspect import inspect_cube
from terracube.catalog.netcdf_zarr_source import XarraySource
from terracube.catalog.stac import StacSource, source_from_href
from terracube.catalog.stac_cube_files import cube_document_source, cube_file_source
from terracube.catalog.stac_documents import normalise_items
from terracube.datacube.cube import RasterCube
from terracube.datacube.request import LoadRequest
from terracube.process_errors import FormatUnsuitable
from terracube.url_policy import remote_only

# The id the sources of load_stac carry (there is no collection id for a URL).
LOAD_STAC_COLLECTION = "load_stac"


class StacUrlReader:
    """engine.ports.StacReader: an item, collection, catalog or STAC API collection."""

    def __init__(self, allowed_hosts: Sequence[str] = (), *, remote_only: bool = True) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.remote_only = remote_only  # False: trusted callers (tests of local STAC data)

    def open(self, url: str) -> CollectionSource:
        # CollectionInputError (a ValueError) says what is wrong with the document; so does
        # FetchRefused (a ValueError) for a URL, link or asset href a user may not make the
        # server read (url_policy: public http(s) only, plus the administrator's allow-list).
        # An item of one netCDF/Zarr file (job results) is a whole cube, read as such.
        if not self.remote_only:
            return cube_file_source(LOAD_STAC_COLLECTION, url) or \
                source_from_href(LOAD_STAC_COLLECTION, url)
        with remote_only(self.allowed_hosts):
            source = cube_file_source(LOAD_STAC_COLLECTION, url) or \
                source_from_href(LOAD_STAC_COLLECTION, url)
        # a proxy with the source's interface (attribute access forwarded)
        return cast(CollectionSource, _RemoteOnlySource(source, self.allowed_hosts))


class _RemoteOnlySource:
    """A load_stac source whose loads (a STAC API searches again) keep the fetch policy."""

    def __init__(self, source: CollectionSource, allowed_hosts: tuple[str, ...]) -> None:
        self._source = source
        self._allowed = allowed_hosts

    def load(self, request: LoadRequest, **kwargs: Any) -> Any:
        with remote_only(self._allowed):
            return self._source.load(request, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


class UploadedFileReader:
    """engine.ports.UploadedFileReader: raster and netCDF files as a cube, read in place."""

    def read_rasters(self, files: Sequence[Path], collection_id: str) -> RasterCube:
        rasters = []
        for path in files:
            info = inspect_file(path, None)
            if info.count == 1 and info.descriptions[0]:
                info.band = info.descriptions[0]  # a single-band file that names its band
            rasters.append(info)
        if len({r.crs for r in rasters}) > 1:
            raise FormatUnsuitable("The files have different coordinate reference systems; "
                                   "load them one CRS at a time.")
        items, bands, crs, timeless = build_items(collection_id, rasters)
        source = StacSource(collection_id, items, bands, crs, "Uploaded files.",
                            timeless=timeless)
        return source.load(LoadRequest())

    def read_netcdf(self, file: Path, collection_id: str) -> RasterCube:
        return XarraySource(collection_id, inspect_cube(file)).load(LoadRequest())


def result_files_source(collection_id: str, item: dict[str, Any]) -> CollectionSource:
    """A batch job's result files as a collection, from the STAC Item that describes them
    (jobs/results_stac.py; asset hrefs are paths on this server's disk, read in place): one
    netCDF or Zarr file is a whole cube; GeoTIFFs (one per date, or per date and band) are
    items with their dates and bands. CollectionInputError says why files cannot be read."""
    source = cube_document_source(collection_id, item, "")
    if source is not None:
        return source
    items, bands, crs = normalise_items([pystac.Item.from_dict(item)], collection_id)
    # A cube without a time dimension (a composite) was written without dates: load it so.
    timeless = not any(isinstance(a, dict) and ("datetime" in a or "start_datetime" in a)
                       for a in (item.get("assets") or {}).values())
    title = (item.get("properties") or {}).get("title")
    return StacSource(collection_id, items, bands, crs,
                      f"Results of the batch job {collection_id}", title=title,
                      timeless=timeless)
