"""Processes over the user's workspace (/files): load_uploaded_files.

Files are found through terracube.workspace.files, so the same path checks apply as for the
/files endpoints: a graph can never read outside its user's own workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.engine.evaluate import ProcessContext, SavedResult
from terracube.engine.registry import process
from terracube.process_errors import FormatUnsuitable
from terracube.results.formats import INPUT_FORMATS, output_format
from terracube.workspace.files import Workspace, split_path

UPLOADED_COLLECTION = "uploaded_files"


@process("load_uploaded_files")
def load_uploaded_files(paths: list, format: str, options: dict | None = None, *,
                        ctx: ProcessContext) -> RasterCube:
    root = ctx.services.workspace
    if root is None:
        raise errors.FileNotFound("load_uploaded_files reads from your workspace, which needs "
                                  "an authenticated user.", argument="paths")
    fmt = output_format(format)
    if fmt not in INPUT_FORMATS:
        raise FormatUnsuitable(
            f"Data can't be loaded with the input format {format!r}; GET /file_formats lists "
            f"the input formats ({', '.join(INPUT_FORMATS)}).", argument="format")
    if options:
        raise errors.ProcessParameterInvalid(
            f"The input format {fmt} has no options (got {', '.join(sorted(options))}).",
            argument="options")
    if not isinstance(paths, list) or not paths:
        raise errors.ProcessParameterInvalid("paths must be a non-empty list of file paths.",
                                             argument="paths")
    workspace = Workspace(Path(root), quota=0)
    files = [_workspace_file(workspace, p) for p in paths]
    try:
        if fmt == "netCDF":
            return _load_netcdf(files)
        return _load_rasters(files)
    except errors.OpenEOError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable input, said in the user's terms
        message = str(exc).replace(str(workspace.root) + "/", "")
        raise FormatUnsuitable(f"Data can't be loaded as {fmt}: {message}",
                               argument="paths") from None


def _workspace_file(workspace: Workspace, path: Any) -> Path:
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
        split_path(shown)
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


def _load_rasters(files: list[Path]) -> RasterCube:
    from terracube.catalog.files import build_items, inspect_file
    from terracube.catalog.stac import StacSource
    from terracube.datacube.request import LoadRequest

    rasters = []
    for path in files:
        info = inspect_file(path, None)
        if info.count == 1 and info.descriptions[0]:
            info.band = info.descriptions[0]  # a single-band file that names its band
        rasters.append(info)
    if len({r.crs for r in rasters}) > 1:
        raise FormatUnsuitable("The files have different coordinate reference systems; "
                               "load them one CRS at a time.", argument="paths")
    items, bands, crs, timeless = build_items(UPLOADED_COLLECTION, rasters)
    source = StacSource(UPLOADED_COLLECTION, items, bands, crs, "Uploaded files.",
                        timeless=timeless)
    return source.load(LoadRequest())


def _load_netcdf(files: list[Path]) -> RasterCube:
    from terracube.catalog.netcdf_zarr_inspect import inspect_cube
    from terracube.catalog.netcdf_zarr_source import XarraySource
    from terracube.datacube.request import LoadRequest

    if len(files) != 1:
        raise errors.ProcessParameterInvalid(
            "netCDF files are loaded one at a time (each is a whole data cube); combine "
            "several with merge_cubes.", argument="paths")
    return XarraySource(UPLOADED_COLLECTION, inspect_cube(files[0])).load(LoadRequest())


@process("export_workspace")
def export_workspace(data: Any, workspace: str, merge: str | None = None, *,
                     ctx: ProcessContext) -> SavedResult:
    """Ask for the files of a save_result to be copied into the user's workspace (/files),
    into the folder `workspace` (and `merge` below it) once they are written."""
    if not isinstance(data, SavedResult):
        raise errors.ProcessParameterInvalid(
            "export_workspace exports what save_result returns: pass the save_result node as "
            "'data'.", argument="data")
    if ctx.services.workspace is None or ctx.services.user is None:
        raise errors.ProcessParameterInvalid(
            "This request has no user workspace to export to.", argument="workspace")
    for part in (workspace, merge):
        if part is not None:
            split_path(part)  # refuses '..', absolute paths and empty names
    data.exports.append((workspace, merge))
    return data
