"""The interfaces through which the engine reaches data, file formats and the user's workspace.

The engine defines what it needs here; catalog/, results/ and workspace/ implement it with
small adapters (catalog/access.py, results/access.py, workspace/access.py, and the Catalog
itself for `Collections`), and processing/ passes them in `Services`. So the engine imports
none of those packages and can be run with other implementations (tests, another catalog).
The protocols are structural: an adapter does not import this module (it sits on a lower
floor); mypy checks that it fits where processing/ builds the Services.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from terracube.datacube.cube import RasterCube
from terracube.datacube.request import LoadRequest

PropertyCheck = Callable[[str, Any, Any], bool]
"""(property name, condition from `properties`, an item's value) -> keep the item."""


class CollectionSource(Protocol):
    """One collection as the engine uses it: its metadata and a lazy loader."""

    @property
    def id(self) -> str: ...

    def stac(self) -> dict[str, Any]:
        """The STAC collection document incl. `cube:dimensions` and summaries."""
        ...

    def queryables(self) -> dict[str, Any]:
        """JSON schema of the properties `load_collection(properties=...)` can filter on."""
        ...

    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        """A lazy (dask-backed) cube restricted to the request; items whose properties fail
        `check_property` are left out. openEO errors (e.g. unknown bands) for bad requests."""
        ...


class Collections(Protocol):
    """The collections of the server, by id (load_collection, the optimizer's band lookup)."""

    def get(self, collection_id: str) -> CollectionSource:
        """The collection; `errors.CollectionNotFound` if there is none with that id."""
        ...

    def queryables(self, collection_id: str) -> dict[str, Any]:
        """JSON schema of the properties the collection can be filtered on."""
        ...


class StacReader(Protocol):
    """STAC documents at a URL as a collection (load_stac)."""

    def open(self, url: str) -> CollectionSource:
        """The item, collection, catalog or STAC API collection at the http(s) `url`.

        ValueError (message for the user) if it cannot be read as STAC."""
        ...


class UploadedFileReader(Protocol):
    """Files from the user's workspace as a cube (load_uploaded_files)."""

    def read_rasters(self, files: Sequence[Path], collection_id: str) -> RasterCube:
        """GeoTIFF (or other GDAL raster) files as one cube, bands and dates from the files."""
        ...

    def read_netcdf(self, file: Path, collection_id: str) -> RasterCube:
        """One netCDF file (a whole data cube)."""
        ...


class FileFormats(Protocol):
    """The file formats the server writes and reads, by the names users give them."""

    def output_format(self, name: str) -> str | None:
        """The canonical output format for a user's name (any case or alias), else None."""
        ...

    def input_format(self, name: str) -> str | None:
        """The canonical input format for a user's name, else None (also for output-only)."""
        ...

    def input_formats(self) -> Sequence[str]:
        """The canonical names of the input formats (for messages)."""
        ...


class WorkspaceAccess(Protocol):
    """One user's workspace (/files): its path rules, reading and quota-checked writing."""

    @property
    def root(self) -> Path:
        """The folder (only to keep it out of messages shown to the user)."""
        ...

    def check_path(self, path: str) -> tuple[str, ...]:
        """The components of a workspace path; `errors.FilePathInvalid` if it is unsafe."""
        ...

    def locate(self, path: str) -> Path:
        """The file-system path of a workspace path (may not exist); FilePathInvalid if it
        is unsafe or leads through a symbolic link."""
        ...

    def write_file(self, path: str, content: bytes) -> None:
        """Write (or replace) a file as an upload would: path rules, quota, atomic rename."""
        ...


class Account(Protocol):
    """The user a graph runs for (auth.users.User); the engine only needs to know there is one."""

    @property
    def user_id(self) -> str: ...


class JobResults(Protocol):
    """The finished batch jobs of the user a graph runs for, by job id. Another user's job is
    not found (`errors.JobNotFound`, never their data); a job that has not finished raises
    `errors.JobNotFinished` saying its status."""

    def folder(self, job_id: str) -> Path:
        """The folder holding the job's result files (load_ml_model)."""
        ...

    def collection(self, job_id: str) -> CollectionSource:
        """The job's raster results as a collection (load_result): its files with their
        dates and bands, read lazily where they are."""
        ...

JobLog = Callable[..., None]
"""(level, message, node id, *, data=None, code=None) -> an entry in the log of the job that
runs the graph (`data`: JSON, e.g. what inspect logs)."""

UdpLookup = Callable[[str, str | None], dict[str, Any] | None]
"""(process id, namespace) -> the user-defined process document, or None."""
