"""openEO processes that select parts of a cube by labels: bands, bounding box, time, and a
condition on labels. They only index, so they stay lazy and cheap."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from terracube import errors
from terracube import process_errors as pe
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, RasterCube, require_dimension
from terracube.datacube.periods import period_start_times
from terracube.datacube.values import ArrayValue, to_python
from terracube.datacube.vector import VectorCube
from terracube.engine.evaluate import Callback, ProcessContext
from terracube.engine.processes._arguments import list_argument
from terracube.engine.processes._reducing import take_positions
from terracube.engine.processes._vector_values import on_values, take_geometries
from terracube.engine.processes.cube_dimensions import (
    label_to_json,
    one_day_extent,
    parse_instant,
    temporal_index,
)
from terracube.engine.registry import process

_BAND_FIELDS = ("common_name", "center_wavelength", "full_width_half_max")


# --- band metadata ----------------------------------------------------------------------------
def band_metadata(cube: RasterCube) -> dict[str, dict]:
    """Band name -> {common_name, center_wavelength, full_width_half_max} from the cube attrs.

    Read from `attrs["band_metadata"]` (name -> object or dict, as the catalog sets it) or
    from a STAC-like list in `attrs["bands"]` / `attrs["eo:bands"]`.
    """
    raw = cube.attrs.get("band_metadata")
    entries: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        entries = list(raw.items())
    else:
        for key in ("bands", "eo:bands"):
            listed = cube.attrs.get(key)
            if isinstance(listed, list):
                entries = [(b.get("name"), b) for b in listed if isinstance(b, dict)]
                break
    meta = {}
    for name, info in entries:
        if isinstance(info, dict):
            fields = {f: info.get(f) for f in _BAND_FIELDS}
            if fields["center_wavelength"] is None:
                fields["center_wavelength"] = info.get("eo:center_wavelength")
            if fields["common_name"] is None:
                fields["common_name"] = info.get("eo:common_name")
        else:
            fields = {f: getattr(info, f, None) for f in _BAND_FIELDS}
        meta[str(name)] = fields
    return meta


def resolve_band(name: str, labels: list[str], meta: dict[str, dict]) -> str | None:
    """The band called `name`, else the single band with that common name, else None."""
    if name in labels:
        return name
    matches = [label for label in labels if meta.get(label, {}).get("common_name") == name]
    return matches[0] if len(matches) == 1 else None


def with_bands(cube: RasterCube, labels: list) -> RasterCube:
    """The cube with its band metadata limited to (and ordered like) `labels`."""
    attrs = dict(cube.attrs)
    names = [str(label) for label in labels]
    raw = attrs.get("band_metadata")
    if isinstance(raw, dict):
        attrs["band_metadata"] = {n: raw[n] for n in names if n in raw}
    for key in ("bands", "eo:bands"):
        listed = attrs.get(key)
        if isinstance(listed, list):
            by_name = {b.get("name"): b for b in listed if isinstance(b, dict)}
            attrs[key] = [by_name[n] for n in names if n in by_name]
    return RasterCube(cube.data, cube.dimensions, cube.nodata, attrs)


def _positions(data: xr.DataArray, dim: str, keep: np.ndarray) -> xr.DataArray:
    """`data` limited to the positions where `keep` is true; a slice when they are contiguous
    (cheaper for dask than fancy indexing)."""
    idx = np.flatnonzero(keep)
    if len(idx) == data.sizes[dim]:
        return data
    if len(idx) == 0:
        return data.isel({dim: slice(0, 0)})
    if idx[-1] - idx[0] + 1 == len(idx):
        return data.isel({dim: slice(int(idx[0]), int(idx[-1]) + 1)})
    return take_positions(data, dim, idx)


# --- filter_bands -----------------------------------------------------------------------------
@process()
def filter_bands(data: RasterCube | VectorCube, bands: list | None = None,
                 wavelengths: list | None = None,
                 ctx: ProcessContext | None = None) -> RasterCube | VectorCube:
    """Keep the bands named (by name or common name) or within the wavelength ranges, in the
    order given."""
    if isinstance(data, VectorCube):
        return on_values(data, "filter_bands",
                         lambda cube: filter_bands(cube, bands, wavelengths, ctx))
    bands = list_argument(bands, "bands") if bands is not None else []
    wavelengths = list_argument(wavelengths, "wavelengths") if wavelengths is not None else []
    if not bands and not wavelengths:
        raise pe.BandFilterParameterMissing(
            "filter_bands needs the parameter bands or wavelengths (or both).",
            argument="bands")
    bands_dim = data.first_dim_of_type(BANDS)
    if bands_dim is None:
        raise pe.DimensionMissing(
            "The cube has no dimension of type bands (dimensions: "
            f"{', '.join(d.name for d in data.dimensions) or 'none'}).", argument="data")
    name = bands_dim.name
    labels = list(data.data.coords[name].values) if name in data.data.coords else []
    meta = band_metadata(data)
    chosen: list[int] = []

    def take(positions: list[int]) -> None:
        chosen.extend(p for p in positions if p not in chosen)

    for wanted in bands:
        exact = [i for i, label in enumerate(labels) if label == wanted or str(label) == wanted]
        if exact:
            take(exact[:1])
            continue
        common = [i for i, label in enumerate(labels)
                  if meta.get(str(label), {}).get("common_name") == wanted]
        if not common and ctx is not None:
            ctx.warn(f"filter_bands: the cube has no band '{wanted}' (bands: "
                     f"{', '.join(map(str, labels))}).")
        take(common)
    for pair in wavelengths:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise errors.ProcessParameterInvalid(
                f"Each wavelength range must be [min, max] in micrometres, got {pair!r}.",
                argument="wavelengths")
        low, high = pair
        take([i for i, label in enumerate(labels)
              if _within(meta.get(str(label), {}).get("center_wavelength"), low, high)])
    out = take_positions(data.data, name, chosen)  # no block copies for dask data
    return with_bands(data.with_data(out, data.dimensions), [labels[i] for i in chosen])


def _within(value: Any, low: float, high: float) -> bool:
    return value is not None and low <= float(value) <= high


# --- filter_bbox ------------------------------------------------------------------------------
def bbox_in_crs(extent: dict, target_crs: Any) -> tuple[float, float, float, float]:
    """(west, south, east, north) of an openEO bounding box in `target_crs`; the box crs
    defaults to EPSG:4326. Reprojected boxes are densified so that they cover the whole area."""
    try:
        west, south, east, north = (float(extent[k]) for k in ("west", "south", "east", "north"))
    except (KeyError, TypeError, ValueError):
        raise errors.ProcessParameterInvalid(
            "The bounding box needs the numbers west, south, east and north.",
            argument="extent") from None
    if west > east or south > north:
        raise errors.ProcessParameterInvalid(
            f"The bounding box is empty: west ({west}) must not exceed east ({east}) and south "
            f"({south}) not north ({north}).", argument="extent")
    box_crs = extent.get("crs")
    if box_crs is None:
        box_crs = 4326
    if target_crs is None:
        return west, south, east, north
    from pyproj import CRS, Transformer

    try:
        source = CRS.from_user_input(box_crs)
    except Exception as exc:  # noqa: BLE001 - pyproj raises CRSError and others
        raise errors.ProcessParameterInvalid(
            f"The bounding box crs {str(box_crs)[:80]!r} is not a valid EPSG code or WKT2.",
            argument="extent") from exc
    target = CRS.from_user_input(target_crs)
    if source == target:
        return west, south, east, north
    transformer = Transformer.from_crs(source, target, always_xy=True)
    w, s, e, n = transformer.transform_bounds(west, south, east, north, densify_pts=21)
    return float(w), float(s), float(e), float(n)


@process()
def filter_bbox(data: RasterCube | VectorCube, extent: dict) -> RasterCube | VectorCube:
    """Keep the pixels whose centre lies in the bounding box (borders included); of a vector
    cube the geometries fully within the box (the definition)."""
    if not isinstance(extent, dict):
        raise errors.ProcessParameterInvalid("The extent must be a bounding box object.",
                                             argument="extent")
    if isinstance(data, VectorCube):
        import shapely

        area = shapely.box(*bbox_in_crs(extent, data.crs))
        candidates = np.array(data.geometries, dtype=object)
        keep = shapely.within(candidates, area) & ~shapely.is_empty(candidates)
        return take_geometries(data, np.flatnonzero(keep))
    x_dim, y_dim = data.x_dim, data.y_dim
    if x_dim is None or y_dim is None:
        raise pe.DimensionMissing(
            "filter_bbox needs spatial dimensions with the axes x and y; the cube has "
            f"{', '.join(d.name for d in data.dimensions) or 'none'}.", argument="data")
    west, south, east, north = bbox_in_crs(extent, data.crs)
    out = data.data
    xs = np.asarray(out.coords[x_dim.name].values, dtype=float)
    ys = np.asarray(out.coords[y_dim.name].values, dtype=float)
    out = _positions(out, x_dim.name, (xs >= west) & (xs <= east))
    out = _positions(out, y_dim.name, (ys >= south) & (ys <= north))
    z_dim = next((d for d in data.dims_of_type(SPATIAL) if d.axis == "z"), None)
    base, height = extent.get("base"), extent.get("height")
    if z_dim is not None and (base is not None or height is not None):
        zs = np.asarray(out.coords[z_dim.name].values, dtype=float)
        keep = np.ones(len(zs), dtype=bool)
        if base is not None:
            keep &= zs >= float(base)
        if height is not None:
            keep &= zs <= float(height)
        out = _positions(out, z_dim.name, keep)
    return data.with_data(out, data.dimensions)


# --- filter_temporal --------------------------------------------------------------------------
@process()
def filter_temporal(data: RasterCube | VectorCube, extent: list,
                    dimension: str | None = None) -> RasterCube | VectorCube:
    """Keep the labels in the left-closed interval [start, end) of the temporal dimension(s)."""
    if isinstance(data, VectorCube):
        return on_values(data, "filter_temporal",
                         lambda cube: filter_temporal(cube, extent, dimension))
    if not isinstance(extent, (list, tuple)) or len(extent) != 2:
        raise errors.ProcessParameterInvalid(
            "The temporal extent must be an array [start, end].", argument="extent")
    start_raw, end_raw = one_day_extent(extent)
    if start_raw is None and end_raw is None:
        raise errors.ProcessParameterInvalid(
            "The temporal extent needs a start or an end (both are null).", argument="extent")
    start = None if start_raw is None else parse_instant(start_raw)
    end = None if end_raw is None else parse_instant(end_raw)
    if start is not None and end is not None and end <= start:
        raise pe.TemporalExtentEmpty(
            f"The temporal extent is empty: the end ({end_raw}) must be later than the start "
            f"({start_raw}).", argument="extent")
    if dimension is not None:
        dim = require_dimension(data, dimension)
        if dim.type != TEMPORAL:
            raise pe.DimensionNotAvailable(
                f"Dimension '{dimension}' is of type {dim.type}, not temporal.",
                argument="dimension")
        targets = [dim]
    else:
        targets = data.dims_of_type(TEMPORAL)
        if not targets:
            raise pe.DimensionNotAvailable(
                "The cube has no temporal dimension (dimensions: "
                f"{', '.join(d.name for d in data.dimensions) or 'none'}).",
                argument="dimension")
    out = data.data
    for dim in targets:
        labels = out.coords[dim.name].values
        # Periods of aggregate_temporal_period (`2022-01` a dekad) are compared by their first
        # day, as CDSE labels them (decision 0013): a dekad label is no date to parse.
        starts = period_start_times(dim, labels)
        times = starts if starts is not None else temporal_index(labels).values
        keep = np.ones(len(times), dtype=bool)
        if start is not None:
            keep &= times >= start
        if end is not None:
            keep &= times < end
        out = _positions(out, dim.name, keep)
    return data.with_data(out, data.dimensions)


# --- filter_labels ----------------------------------------------------------------------------
def _truthy(value: Any) -> bool:
    value = to_python(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


@process()
def filter_labels(data: RasterCube | VectorCube, condition: Callback, dimension: str,
                  context: Any = None) -> RasterCube | VectorCube:
    """Keep the labels for which the condition is true.

    Numeric labels first go to the condition once as an array (vectorised); when that does not
    give one flag per label (a process that only takes single values), and for string and date
    labels (dates as RFC 3339 strings), the condition runs once per label. Labels are
    metadata, so this never touches the cube's values.
    """
    if isinstance(data, VectorCube):
        return on_values(data, "filter_labels",
                         lambda cube: filter_labels(cube, condition, dimension, context))
    dim = require_dimension(data, dimension)
    coords = data.data.coords
    raw = coords[dimension].values if dimension in coords else np.arange(data.data.sizes[dimension])
    keep = None
    if np.asarray(raw).dtype.kind in "iuf" and dim.type != TEMPORAL and len(raw) > 1:
        try:
            result = condition(value=xr.DataArray(np.asarray(raw), dims=[dimension]),
                               context=context)
            keep = _flags_per_label(result, len(raw))
        except errors.OpenEOError as exc:
            if exc.status >= 500:
                raise  # a bug of ours, not a condition that wants single values
            keep = None  # the condition wants single values: ask label by label below
    if keep is None:
        keep = np.array([_truthy(condition(value=label_to_json(v, dim.type), context=context))
                         for v in raw], dtype=bool)
    return data.with_data(_positions(data.data, dimension, keep), data.dimensions)


def _flags_per_label(result: Any, n: int) -> np.ndarray | None:
    """One boolean per label from a vectorised condition result, or None if it is not that."""
    if isinstance(result, ArrayValue):
        result = result.data
    if isinstance(result, xr.DataArray):
        if result.ndim != 1:
            return None
        result = result.values  # the labels' own small array, not cube data
    flags = np.asarray(result)
    if flags.shape != (n,):
        return None
    if flags.dtype.kind == "b":
        return flags
    return np.array([_truthy(v) for v in flags], dtype=bool)
