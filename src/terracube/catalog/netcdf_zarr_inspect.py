"""NetCDF files, folders of NetCDF files and Zarr stores, checked when added as a collection.

`inspect_cube` / `inspect_folder` open a CF cube once at `terracube collections add`, refuse what
cannot be a cube (no grid, uneven steps, unreadable times, folders whose files differ) and derive
its `CubeLayout`: the record stored in the collection registry from which
`netcdf_zarr_source.XarraySource` reads the cube again at load time without re-inspecting it.

The CRS comes from the variable's `grid_mapping` (CF attributes, `crs_wkt` or `spatial_ref`),
from a rioxarray-style `spatial_ref` variable, or — for 1-D latitude/longitude axes in degrees —
is WGS 84 (EPSG:4326). Times are decoded from their CF units; packed values are unpacked
(scale_factor/add_offset) and _FillValue/missing_value become NaN, because in CF the unpacked
numbers are the data (unlike the digital numbers of optical rasters, see decision 0001).

A folder of NetCDF files on one grid (one file per day, month, …) is one cube along time: every
file is checked when the folder is added (same variables, grid and CRS, a time axis, no dates
in two files) and its time span recorded, so a load opens only the files in its time window.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracube.catalog.metadata import (
    CollectionInputError,
    crs_string,
    rfc3339,
    temporal_step,
)

log = logging.getLogger(__name__)

NETCDF_SUFFIXES = frozenset({".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".he5"})
# The files of a folder that make a cube along time (HDF5 files may be rasters: files.py).
FOLDER_SUFFIXES = frozenset({".nc", ".nc4", ".netcdf", ".cdf"})

_X_NAMES = {"x", "lon", "longitude", "rlon", "nav_lon", "easting"}
_Y_NAMES = {"y", "lat", "latitude", "rlat", "nav_lat", "northing"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}


@dataclass
class VariableInfo:
    """One data variable = one band."""

    name: str
    data_type: str  # after unpacking
    stored_type: str
    unit: str | None = None
    long_name: str | None = None
    standard_name: str | None = None
    fill_value: float | None = None
    scale_factor: float | None = None
    add_offset: float | None = None
    resolution: float | None = None  # pixel size (all bands of a cube share the grid)


@dataclass
class CubeLayout:
    """Everything needed to read a CF cube again, derived once when it is added."""

    path: str
    engine: str
    variables: list[VariableInfo]
    x: str
    y: str
    t: str | None
    crs: str
    x_size: int
    y_size: int
    x_step: float  # > 0, after longitude wrapping
    y_step: float  # > 0; the cube's y runs north to south
    x_first: float  # centre of the westernmost column (after wrapping)
    y_last: float  # centre of the northernmost row
    lon_wrap: bool = False  # longitudes 0…360 shown as -180…180
    y_ascending: bool = False  # stored south to north
    other: list[str] = field(default_factory=list)  # further dimensions kept (size > 1)
    squeeze: list[str] = field(default_factory=list)  # size-1 dimensions dropped
    other_values: dict[str, list] = field(default_factory=dict)
    times: list[str] = field(default_factory=list)  # RFC 3339, when at most MAX_TIMES
    time_count: int = 0
    time_extent: list[str | None] = field(default_factory=lambda: [None, None])
    time_step: str | None = None
    chunks: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)
    # A folder of files along time (`path` is the folder): the files in time order and the
    # [first, last] time (RFC 3339) of each. Empty for a single file or store.
    files: list[str] = field(default_factory=list)
    file_times: list[list[str]] = field(default_factory=list)

    @property
    def bands(self) -> list[str]:
        return [v.name for v in self.variables]

    def bounds(self) -> tuple[float, float, float, float]:
        """Pixel-edge bounds (west, south, east, north) in the cube's CRS."""
        west = self.x_first - self.x_step / 2
        north = self.y_last + self.y_step / 2
        return (west, north - self.y_step * self.y_size, west + self.x_step * self.x_size,
                north)

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict) -> CubeLayout:
        rec = dict(rec)
        rec["variables"] = [VariableInfo(**v) for v in rec["variables"]]
        return cls(**rec)


MAX_TIMES = 1000  # time labels kept in the record (and listed in cube:dimensions)


# --- opening --------------------------------------------------------------------------------
def is_zarr(path: Path) -> bool:
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any(
        (path / marker).exists() for marker in (".zgroup", "zarr.json", ".zattrs")))


def detect_engine(path: Path) -> str:
    if path.is_dir():
        if is_zarr(path):
            return "zarr"
        raise CollectionInputError(f"{path}: a folder, but not a Zarr store.")
    return "netcdf4"


def list_netcdf_files(folder: Path) -> list[Path]:
    """The NetCDF files in a folder and its sub-folders (hidden ones left out)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def open_cube_file(path: str, engine: str, decode_times: bool = True) -> xr.Dataset:
    """The dataset, opened lazily (no dask yet, nothing cached): filters index it first."""
    kwargs: dict[str, Any] = {"chunks": None, "cache": False, "decode_times": decode_times,
                              "mask_and_scale": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if engine == "zarr":
            return xr.open_dataset(path, engine="zarr", consolidated=None, **kwargs)
        try:
            return xr.open_dataset(path, engine=engine, **kwargs)
        except (OSError, ValueError) as first:
            if engine != "netcdf4":
                raise
            try:
                return xr.open_dataset(path, engine="h5netcdf", **kwargs)
            except Exception:  # noqa: BLE001
                raise first from None


# --- inspecting (at `collections add`) ------------------------------------------------------
def inspect_cube(path: Path | str, variables: list[str] | None = None) -> CubeLayout:
    """Check a NetCDF file or Zarr store and derive its layout; refuse what cannot be a cube."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise CollectionInputError(f"{path}: no such file or folder.")
    if path.is_dir() and not is_zarr(path):
        return inspect_folder(path, variables)
    engine = detect_engine(path)
    try:
        ds = open_cube_file(str(path), engine)
    except Exception as exc:  # noqa: BLE001
        raise CollectionInputError(_open_problem(path, engine, exc)) from None
    with ds:
        return _layout(path, engine, ds, variables)


def inspect_folder(folder: Path, variables: list[str] | None = None) -> CubeLayout:
    """The layout of a folder of NetCDF files that make one cube along time.

    Every file must hold the same variables on the same grid and CRS, with a time axis; the
    files may hold different numbers of times but no time twice.
    """
    paths = list_netcdf_files(folder)
    if not paths:
        raise CollectionInputError(
            f"{folder}: no NetCDF files (looked for {', '.join(sorted(FOLDER_SUFFIXES))}).")
    layouts = [inspect_cube(paths[0], variables)]
    first = layouts[0]
    if first.t is None or not first.time_count:
        raise _no_time(paths[0], first)
    for path in paths[1:]:
        lay = inspect_cube(path, first.bands)
        _check_same_cube(path, lay, paths[0], first)
        layouts.append(lay)
    layouts.sort(key=lambda lay: lay.time_extent[0])
    for before, after in zip(layouts, layouts[1:]):
        if after.time_extent[0] <= before.time_extent[1]:
            raise CollectionInputError(
                f"{after.path}: its times ({after.time_extent[0]} to {after.time_extent[1]}) "
                f"overlap those of {before.path} ({before.time_extent[0]} to "
                f"{before.time_extent[1]}); each date may be in one file only.")
    times = [t for lay in layouts for t in lay.times]
    count = sum(lay.time_count for lay in layouts)
    merged = CubeLayout(**{**asdict(first), "variables": first.variables})
    merged.path = str(folder)
    merged.files = [lay.path for lay in layouts]
    merged.file_times = [list(lay.time_extent) for lay in layouts]
    merged.time_count = count
    merged.time_extent = [layouts[0].time_extent[0], layouts[-1].time_extent[1]]
    merged.times = times if len(times) == count and count <= MAX_TIMES else []
    if merged.times:
        merged.time_step = temporal_step(merged.times)
    elif all(lay.time_count == 1 for lay in layouts):
        merged.time_step = temporal_step([lay.time_extent[0] for lay in layouts])
    else:  # too many times to keep: the files' own step, when they agree
        steps = {lay.time_step for lay in layouts if lay.time_count > 1}
        merged.time_step = steps.pop() if len(steps) == 1 else None
    # A file's chunk along time cannot be longer than the shortest file.
    if first.t in merged.chunks:
        merged.chunks[first.t] = min([merged.chunks[first.t]] +
                                     [lay.time_count for lay in layouts])
    for i, v in enumerate(merged.variables):
        # float64 when any file stores float64 (decision 0001).
        v.data_type = str(load_dtype([np.dtype(lay.variables[i].data_type)
                                       for lay in layouts]))
    return merged


def _no_time(path: Path, lay: CubeLayout) -> CollectionInputError:
    v = lay.variables[0].name
    if lay.t is not None:
        return CollectionInputError(f"{path}: the time axis '{lay.t}' has no values.")
    return CollectionInputError(
        f"{path}: no time dimension ('{v}' has the dimensions "
        f"{', '.join(d for d in [*lay.other, lay.y, lay.x])}): in a folder of NetCDF files "
        "each file holds its dates along a time axis (CF standard_name 'time' or axis 'T').")


def _check_same_cube(path: Path, lay: CubeLayout, first_path: Path, first: CubeLayout) -> None:
    """Refuse a file of a folder that does not continue the first one along time."""
    if lay.t is None or not lay.time_count:
        raise _no_time(path, lay)

    def differ(what: str, mine: Any, theirs: Any) -> CollectionInputError:
        return CollectionInputError(
            f"{path}: {what} differs from that of {first_path} ({mine} instead of {theirs}); "
            "the files of a folder must be one grid along time.")

    if lay.bands != first.bands:
        raise differ("the list of variables", ", ".join(lay.bands), ", ".join(first.bands))
    dims, first_dims = (lay.x, lay.y, lay.t, *lay.other), \
        (first.x, first.y, first.t, *first.other)
    if dims != first_dims:
        raise differ("the dimensions", ", ".join(dims), ", ".join(first_dims))
    if lay.crs != first.crs:
        from pyproj import CRS

        if CRS.from_user_input(lay.crs) != CRS.from_user_input(first.crs):
            raise differ("the CRS", crs_label(lay.crs), crs_label(first.crs))
    grid = ("x_size", "y_size", "x_step", "y_step", "x_first", "y_last")
    mine = tuple(getattr(lay, k) for k in grid)
    theirs = tuple(getattr(first, k) for k in grid)
    tolerance = 1e-6 * max(first.x_step, first.y_step)
    if mine[:2] != theirs[:2] or any(abs(a - b) > tolerance for a, b in
                                     zip(mine[2:], theirs[2:])) \
            or (lay.lon_wrap, lay.y_ascending) != (first.lon_wrap, first.y_ascending):
        describe = "{} x {} pixels of {:g} x {:g} from x {:g}, y {:g}"
        raise differ("the grid", describe.format(*mine), describe.format(*theirs))
    if lay.other_values != first.other_values or lay.squeeze != first.squeeze:
        raise differ("the non-spatial dimensions", lay.other_values or lay.squeeze,
                     first.other_values or first.squeeze)


def _open_problem(path: Path, engine: str, exc: Exception) -> str:
    text = str(exc)
    if "time" in text.lower() and ("decode" in text.lower() or "units" in text.lower()):
        try:
            raw = open_cube_file(str(path), engine, decode_times=False)
            units = {n: raw[n].attrs.get("units") for n in raw.variables
                     if "since" in str(raw[n].attrs.get("units", ""))}
            raw.close()
        except Exception:  # noqa: BLE001
            units = {}
        where = ", ".join(f"'{n}' (units '{u}')" for n, u in units.items()) or "the times"
        return f"{path}: cannot decode the dates of {where}: {text}"
    return f"{path}: cannot open it as {'Zarr' if engine == 'zarr' else 'NetCDF'} ({text})."


def _is_lon(ds: xr.Dataset, name: str) -> bool:
    if name not in ds.variables:
        return False
    a = ds[name].attrs
    return (str(a.get("units", "")).lower().replace(" ", "") in _LON_UNITS
            or a.get("standard_name") in ("longitude",))


def _is_lat(ds: xr.Dataset, name: str) -> bool:
    if name not in ds.variables:
        return False
    a = ds[name].attrs
    return (str(a.get("units", "")).lower().replace(" ", "") in _LAT_UNITS
            or a.get("standard_name") in ("latitude",))


def _axis_dim(ds: xr.Dataset, dims: tuple, axis: str) -> str | None:
    names, std = (_X_NAMES, ("longitude", "projection_x_coordinate", "grid_longitude")) \
        if axis == "X" else (_Y_NAMES, ("latitude", "projection_y_coordinate", "grid_latitude"))
    for d in dims:
        if d in ds.coords and ds[d].ndim == 1:
            a = ds[d].attrs
            if str(a.get("axis", "")).upper() == axis or a.get("standard_name") in std \
                    or (_is_lon(ds, d) if axis == "X" else _is_lat(ds, d)):
                return str(d)
    for d in dims:
        if str(d).lower() in names and d in ds.coords and ds[d].ndim == 1:
            return str(d)
    return None


def _time_dim(ds: xr.Dataset, dims: tuple) -> str | None:
    for d in dims:
        if d in ds.coords:
            c = ds[d]
            if np.issubdtype(c.dtype, np.datetime64) or c.dtype == object or \
                    str(c.attrs.get("axis", "")).upper() == "T" or \
                    c.attrs.get("standard_name") == "time":
                return str(d)
    return None


def _data_variables(ds: xr.Dataset, path: Path, wanted: list[str] | None) -> list[str]:
    skip = set()
    for v in ds.variables.values():
        for key in ("bounds", "grid_mapping", "coordinates", "ancillary_variables"):
            ref = v.attrs.get(key) or v.encoding.get(key)
            if isinstance(ref, str):
                skip.update(t.rstrip(":") for t in ref.split())
    if wanted:
        missing = [w for w in wanted if w not in ds.data_vars]
        if missing:
            raise CollectionInputError(
                f"{path}: no variable(s) {', '.join(missing)}; the data variables are "
                f"{', '.join(map(str, ds.data_vars))}.")
        return list(wanted)
    gridded = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2 and n not in skip]
    if not gridded:
        raise CollectionInputError(
            f"{path}: no gridded data variable (with at least two dimensions); variables: "
            f"{', '.join(map(str, ds.data_vars)) or 'none'}.")
    # The bands of a cube share their dimensions: keep the variables shaped like the first
    # (largest) one.
    main = max(gridded, key=lambda n: ds[n].ndim)
    return [n for n in gridded if ds[n].dims == ds[main].dims]


def _crs(ds: xr.Dataset, var: str, x: str, y: str, path: Path) -> str:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    v = ds[var]
    gm = v.attrs.get("grid_mapping") or v.encoding.get("grid_mapping")
    candidates = []
    if isinstance(gm, str) and gm.strip():
        candidates.append(gm.split(":")[0].strip())
    candidates.append("spatial_ref")
    for name in candidates:
        if name not in ds.variables:
            if name != "spatial_ref":
                log.warning("%s: grid_mapping '%s' of '%s' does not exist", path, name, var)
            continue
        attrs = ds[name].attrs
        try:
            wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
            crs = CRS.from_wkt(wkt) if wkt else CRS.from_cf(dict(attrs))
        except (CRSError, ValueError, KeyError) as exc:
            raise CollectionInputError(
                f"{path}: the grid mapping '{name}' of '{var}' does not describe a CRS "
                f"({exc}).") from None
        return crs_string(crs)
    if _is_lon(ds, x) and _is_lat(ds, y):
        return "EPSG:4326"  # CF: latitude/longitude without grid mapping
    raise CollectionInputError(
        f"{path}: no CRS for '{var}': it has no grid_mapping attribute, the file has no "
        f"spatial_ref variable, and its axes '{x}'/'{y}' are not longitude/latitude in degrees. "
        "Add a CF grid_mapping variable (or write the CRS with rioxarray).")


def _regular_step(values: np.ndarray, name: str, path: Path) -> float:
    if len(values) < 2:
        raise CollectionInputError(
            f"{path}: the axis '{name}' has a single value, so its pixel size is unknown.")
    diffs = np.diff(values.astype("float64"))
    step = float(np.median(diffs))
    if step == 0 or np.max(np.abs(diffs - step)) > 1e-3 * abs(step):
        raise CollectionInputError(
            f"{path}: inconsistent grid: the axis '{name}' is not evenly spaced (steps from "
            f"{diffs.min():g} to {diffs.max():g}); regrid it to a regular grid first.")
    return step


def _chunks(ds: xr.Dataset, var: str) -> dict[str, int]:
    enc = ds[var].encoding
    preferred = enc.get("preferred_chunks") or {}
    sizes = enc.get("chunksizes") or enc.get("chunks")
    if not preferred and sizes and len(sizes) == ds[var].ndim:
        preferred = dict(zip(ds[var].dims, sizes))
    return {str(k): int(v) for k, v in preferred.items()}


def _layout(path: Path, engine: str, ds: xr.Dataset,
            variables: list[str] | None) -> CubeLayout:
    names = _data_variables(ds, path, variables)
    first = ds[names[0]]
    dims = first.dims
    x = _axis_dim(ds, dims, "X")
    y = _axis_dim(ds, dims, "Y")
    if x is None or y is None:
        two_d = [n for n in ds.coords if ds[n].ndim == 2 and (_is_lat(ds, n) or _is_lon(ds, n))]
        two_d += [n for n in ("lat", "lon", "latitude", "longitude")
                  if n in ds.variables and ds[n].ndim == 2 and n not in two_d]
        if two_d:
            raise CollectionInputError(
                f"{path}: '{names[0]}' is on a curvilinear grid (2-D {', '.join(two_d)}) "
                "without a grid_mapping; terracube needs a regular grid with 1-D x/y axes "
                "(regrid it first, e.g. with xesmf or cdo remapbil).")
        raise CollectionInputError(
            f"{path}: '{names[0]}' has dimensions {', '.join(map(str, dims))}, but none is "
            "recognisable as x/longitude and y/latitude (CF axis, standard_name or units).")
    for n in names:
        if ds[n].dims != dims:
            raise CollectionInputError(
                f"{path}: inconsistent grids: '{n}' has dimensions {ds[n].dims}, but "
                f"'{names[0]}' has {dims}.")
    crs = _crs(ds, names[0], x, y, path)
    t = _time_dim(ds, dims)
    other = [str(d) for d in dims if d not in (x, y, t)]
    squeeze = [d for d in other if ds.sizes[d] == 1]
    other = [d for d in other if ds.sizes[d] > 1]

    xs = np.asarray(ds[x].values, dtype="float64")
    ys = np.asarray(ds[y].values, dtype="float64")
    x_step = _regular_step(xs, x, path)
    y_step = _regular_step(ys, y, path)
    if x_step < 0:
        raise CollectionInputError(f"{path}: the x axis '{x}' runs east to west.")
    from pyproj import CRS

    lon_wrap = bool(CRS.from_user_input(crs).is_geographic and xs.max() > 180.0)
    if lon_wrap:
        if xs.min() < 0:
            raise CollectionInputError(f"{path}: longitudes from {xs.min()} to {xs.max()}.")
        xs = np.sort(np.where(xs >= 180.0, xs - 360.0, xs))
    layout = CubeLayout(
        path=str(path), engine=engine, variables=[_variable_info(ds[n]) for n in names],
        x=x, y=y, t=t, crs=crs, x_size=int(ds.sizes[x]), y_size=int(ds.sizes[y]),
        x_step=abs(x_step), y_step=abs(y_step), x_first=float(xs[0]),
        y_last=float(ys.max()), lon_wrap=lon_wrap, y_ascending=bool(y_step > 0),
        other=other, squeeze=squeeze,
        other_values={d: [_plain(v) for v in ds[d].values] if d in ds.coords
                      else list(range(ds.sizes[d])) for d in other},
        chunks=_chunks(ds, names[0]),
        attrs={k: str(v) for k, v in ds.attrs.items()
               if k in ("title", "summary", "license", "institution", "source", "references",
                        "comment", "keywords", "creator_name", "creator_url", "acknowledgment",
                        "acknowledgement", "Conventions")},
    )
    for v in layout.variables:
        v.resolution = min(layout.x_step, layout.y_step)
    if t is not None:
        times = decode_cf_times(ds[t], path)
        if len(times) and (not times.is_monotonic_increasing or times.has_duplicates):
            raise CollectionInputError(
                f"{path}: the times of '{t}' are not strictly increasing.")
        layout.time_count = len(times)
        layout.time_extent = [rfc3339(times[0]), rfc3339(times[-1])] if len(times) else \
            [None, None]
        layout.time_step = temporal_step(list(times))
        if len(times) <= MAX_TIMES:
            layout.times = [rfc3339(v) for v in times]
    return layout


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def decode_cf_times(coord: xr.DataArray, path: Path) -> pd.DatetimeIndex:
    values = coord.values
    if np.issubdtype(values.dtype, np.datetime64):
        return pd.DatetimeIndex(values)
    try:
        return xr.CFTimeIndex(values).to_datetimeindex(time_unit="ns")
    except Exception:  # noqa: BLE001
        raise CollectionInputError(
            f"{path}: the times of '{coord.name}' (units "
            f"'{coord.encoding.get('units') or coord.attrs.get('units')}', calendar "
            f"'{coord.encoding.get('calendar', 'standard')}') cannot be read as dates of the "
            "standard calendar.") from None


def _variable_info(v: xr.DataArray) -> VariableInfo:
    enc = v.encoding
    fill = enc.get("_FillValue", enc.get("missing_value"))
    return VariableInfo(
        name=str(v.name), data_type=str(load_dtype([v.dtype])),
        stored_type=str(enc.get("dtype", v.dtype)),
        unit=v.attrs.get("units"), long_name=v.attrs.get("long_name"),
        standard_name=v.attrs.get("standard_name"),
        fill_value=_num(fill), scale_factor=_num(enc.get("scale_factor")),
        add_offset=_num(enc.get("add_offset")),
    )


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        item = np.asarray(v).ravel()[0]
        # float32 attributes as written (0.01, not 0.009999999776482582)
        f = float(str(item)) if isinstance(item, np.float32) else float(item)
    except (TypeError, ValueError, IndexError):
        return None
    return None if math.isnan(f) else f


def load_dtype(dtypes: list[np.dtype]) -> np.dtype:
    """float64 only when the file stores float64 values; float32 otherwise (decision 0001)."""
    return np.dtype("float64") if any(np.dtype(d) == np.float64 for d in dtypes) \
        else np.dtype("float32")


def crs_label(crs: str) -> str:
    """A short name of a CRS for messages: its EPSG code or the start of its WKT."""
    return crs if crs.startswith("EPSG:") else "CRS " + crs.split("[", 1)[0]
