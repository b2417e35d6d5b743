"""Processes over the user's workspace (/files): load_uploaded_files, export_workspace.

Files are found through the workspace port (engine/ports.py, implemented by workspace/), so the
same path checks apply as for the /files endpoints: a graph can never read outside its user's
own workspace. The files are read into a cube by the uploaded-files port (catalog/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from terracube import errors
from terracube.datacube.cube import BANDS, GEOMETRY, OTHER, TEMPORAL, Dimension, RasterCube
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube
from terracube.engine.evaluate import ProcessContext, SavedResult
from terracube.engine.ports import WorkspaceAccess
from terracube.engine.processes.vectors import allowed_hosts, vector_from_content, vector_from_url
from terracube.engine.registry import process
from terracube.process_errors import FormatUnsuitable

UPLOADED_COLLECTION = "uploaded_files"
# Input formats that hold vector data: loaded as vector cubes (issue 11, defect 11).
VECTOR_FORMATS = ("GeoJSON", "Parquet")


@process("load_uploaded_files")
def load_uploaded_files(paths: list, format: str, options: dict | None = None, *,
                        ctx: ProcessContext) -> RasterCube | VectorCube:
    workspace = ctx.services.workspace
    if workspace is None:
        raise errors.FileNotFound("load_uploaded_files reads from your workspace, which needs "
                                  "an authenticated user.", argument="paths")
    formats, reader = ctx.services.formats, ctx.services.uploads
    if formats is None or reader is None:
        raise errors.ProcessUnsupported("load_uploaded_files needs the server's file formats "
                                        "and file reader, which this evaluation was not given.")
    fmt = formats.input_format(format)
    if fmt is None:
        raise FormatUnsuitable(
            f"Data can't be loaded with the input format {format!r}; GET /file_formats lists "
            f"the input formats ({', '.join(formats.input_formats())}).", argument="format")
    if options:
        raise errors.ProcessParameterInvalid(
            f"The input format {fmt} has no options (got {', '.join(sorted(options))}).",
            argument="options")
    if not isinstance(paths, list) or not paths:
        raise errors.ProcessParameterInvalid("paths must be a non-empty list of file paths.",
                                             argument="paths")
    if fmt in VECTOR_FORMATS and all(isinstance(p, str) and _is_url(p) for p in paths):
        # The client's `vectorcube_from_paths([url], format="parquet")` (its guide for large
        # vector data) sends URLs here; CDSE reads them like load_url does.
        allowed = allowed_hosts(ctx)
        try:
            return _joined([vector_from_url(p, fmt, allowed) for p in paths])
        except errors.OpenEOError as exc:
            exc.at(argument="paths")
            raise
    files = [_workspace_file(workspace, p) for p in paths]
    if fmt == "netCDF" and len(files) != 1:
        raise errors.ProcessParameterInvalid(
            "netCDF files are loaded one at a time (each is a whole data cube); combine "
            "several with merge_cubes.", argument="paths")
    try:
        if fmt in VECTOR_FORMATS:
            return _vector_files(files, fmt)
        if fmt == "netCDF":
            vectors = _vector_netcdf(files[0])
            if vectors is not None:
                return vectors
            return reader.read_netcdf(files[0], UPLOADED_COLLECTION)
        return reader.read_rasters(files, UPLOADED_COLLECTION)
    except errors.OpenEOError as exc:
        exc.at(argument="paths")
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable input, said in the user's terms
        message = str(exc).replace(str(workspace.root) + "/", "")
        raise FormatUnsuitable(f"Data can't be loaded as {fmt}: {message}",
                               argument="paths") from None


def _is_url(path: str) -> bool:
    return path.lower().startswith(("http://", "https://"))


def _vector_files(files: list[Path], fmt: str) -> VectorCube:
    """One vector cube with the geometries (and properties) of all files, in order."""
    return _joined([vector_from_content(f.read_bytes(), fmt) for f in files])


def _joined(cubes: list[VectorCube]) -> VectorCube:
    """One vector cube of the geometries (and properties) of several, in order."""
    if len(cubes) == 1:
        return cubes[0]
    crs = cubes[0].crs
    if any(c.crs != crs for c in cubes[1:]):
        raise errors.ProcessParameterInvalid(
            "The files have different coordinate reference systems; load them one at a time "
            "(and reproject with vector_reproject).", argument="paths")
    return VectorCube(tuple(g for c in cubes for g in c.geometries), crs,
                      properties=tuple(p for c in cubes for p in c.properties))


# netCDF holds vector cubes too (/file_formats: raster and vector): a variable of WKT geometries
# along a geometry dimension, as our own vector results (and CDSE's) write them.
_WKT_VARIABLES = ("geometry_wkt", "wkt", "geometry")


def _vector_netcdf(file: Path) -> VectorCube | None:
    """The vector cube in a netCDF file with WKT geometries, or None for a raster file."""
    import numpy as np
    import shapely.wkt
    import xarray as xr

    with xr.open_dataset(file) as ds:
        name = next((v for v in _WKT_VARIABLES if v in ds.variables
                     and ds[v].ndim == 1 and ds[v].dtype.kind in "OUS"), None)
        if name is None:
            return None
        dim = ds[name].dims[0]
        geoms = tuple(shapely.wkt.loads(str(w)) for w in ds[name].values)
        names = [v for v in ds.data_vars if v != name and dim in ds[v].dims
                 and ds[v].dtype.kind in "iufb"]
        if not names:
            return VectorCube(geoms, 4326)
        values = xr.concat([ds[v].load() for v in names], dim="bands")
        values = values.assign_coords(bands=np.array(names, dtype=object))
        values = values.rename({dim: GEOMETRY_DIM})
        values = values.drop_vars([c for c in values.coords
                                   if c not in values.dims or c == GEOMETRY_DIM])
        order = [GEOMETRY_DIM, *(d for d in values.dims if d not in (GEOMETRY_DIM, "bands")),
                 "bands"]
        values = values.transpose(*order)
    types = {"bands": BANDS}
    dims = tuple(Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=4326) if d == GEOMETRY_DIM
                 else Dimension(str(d), TEMPORAL if values[d].dtype.kind == "M" else
                                types.get(str(d), OTHER)) for d in values.dims)
    return VectorCube(geoms, 4326, values, dims)


def _workspace_file(workspace: WorkspaceAccess, path: Any) -> Path:
    """The file for one entry of `paths`.

    The process definition makes '/a/b.tif', 'a/b.tif' and './a/b.tif' the same file, and a
    path outside the workspace a FileNotFound.
    """
    if not isinstance(path, str):
        raise errors.ProcessParameterInvalid(f"A path must be a string, got {path!r}.",
                                             argument="paths")
    parts = [p for p in path.lstrip("/").split("/") if p not in ("", ".")]
    shown = "/".join(parts)
    if not parts or ".." in parts:
        raise errors.FileNotFound(f"File '{path}' is not in your workspace.", argument="paths")
    try:
        workspace.check_path(shown)
        target = workspace.locate(shown)
    except errors.FilePathInvalid as exc:
        raise errors.FileNotFound(f"File '{path}' can't be read: {exc.message}",
                                  argument="paths") from None
    if target.is_dir():
        raise errors.FolderOperationUnsupported(
            f"'{path}' is a folder; list the files in it instead (GET /files).",
            argument="paths")
    if not target.is_file():
        raise errors.FileNotFound(f"File '{path}' does not exist in your workspace; GET /files "
                                  "lists your files.", argument="paths")
    return target


@process("export_workspace")
def export_workspace(data: Any, workspace: str, merge: str | None = None, *,
                     ctx: ProcessContext) -> SavedResult:
    """Ask for the files of a save_result to be copied into the user's workspace (/files),
    into the folder `workspace` (and `merge` below it) once they are written."""
    if not isinstance(data, SavedResult):
        raise errors.ProcessParameterInvalid(
            "export_workspace exports what save_result returns: pass the save_result node as "
            "'data'.", argument="data")
    space = ctx.services.workspace
    if space is None or ctx.services.user is None:
        raise errors.ProcessParameterInvalid(
            "This request has no user workspace to export to.", argument="workspace")
    for part in (workspace, merge):
        if part is not None:
            space.check_path(part)  # refuses '..', absolute paths and empty names
    data.exports.append((workspace, merge))
    return data
