"""Hydrology on a DEM (experimental, our own processes built on pyflwdir): fill_sinks,
flow_direction, flow_accumulation, stream_network, catchment.

Water flows over the whole grid, so these processes cannot work chunk by chunk: each takes the
complete x/y plane as one dask block (per label of any other dimension) and runs pyflwdir on
it. They stay lazy like every other process; MAX_CELLS bounds the plane they accept.

Flow directions are the D8 codes used by ESRI and pyflwdir (uint8): 1 east, 2 south-east,
4 south, 8 south-west, 16 west, 32 north-west, 64 north, 128 north-east, 0 for a cell that
drains out of the grid (an outlet at the edge or next to no-data), 247 for no-data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyproj
import xarray as xr
from affine import Affine

from terracube import errors
from terracube.datacube.cube import BANDS, RasterCube
from terracube.datacube.grid import Grid, as_dask, grid_of, spatial_dims
from terracube.engine.registry import process

# The planes are held in memory whole (input, output and pyflwdir's network, ~40 bytes a cell).
MAX_CELLS = 25_000_000
D8_NODATA = 247
D8_CODES = (0, 1, 2, 4, 8, 16, 32, 64, 128)
STREAM_NODATA = 255
_NODATA_ELEVATION = -9999.0
_UNITS = {"cells": "cell", "km2": "km2"}


# --- the processes ------------------------------------------------------------------------------
@process("fill_sinks")
def fill_sinks(data: RasterCube, max_depth: float | None = None) -> RasterCube:
    depth = _max_depth(max_depth)
    plane = _Plane(data, "fill_sinks")

    def fill(elevation: np.ndarray, transform: Affine, latlon: bool) -> np.ndarray:
        import pyflwdir

        missing = ~np.isfinite(elevation)
        filled, _ = pyflwdir.dem.fill_depressions(
            np.where(missing, _NODATA_ELEVATION, elevation), nodata=_NODATA_ELEVATION,
            max_depth=depth)
        return np.where(missing, np.nan, filled).astype(elevation.dtype)

    return plane.apply(fill, _float_dtype(data), nodata=None)


@process("flow_direction")
def flow_direction(data: RasterCube, max_depth: float | None = None) -> RasterCube:
    depth = _max_depth(max_depth)
    plane = _Plane(data, "flow_direction")

    def d8(elevation: np.ndarray, transform: Affine, latlon: bool) -> np.ndarray:
        import pyflwdir

        missing = ~np.isfinite(elevation)
        _, codes = pyflwdir.dem.fill_depressions(
            np.where(missing, _NODATA_ELEVATION, elevation), nodata=_NODATA_ELEVATION,
            max_depth=depth)
        codes[missing] = D8_NODATA
        return codes.astype(np.uint8)

    return plane.apply(d8, np.dtype(np.uint8), nodata=D8_NODATA, band="flow_direction")


@process("flow_accumulation")
def flow_accumulation(data: RasterCube, unit: str = "cells") -> RasterCube:
    how = _unit(unit)
    plane = _Plane(data, "flow_accumulation", d8=True)

    def accumulate(codes: np.ndarray, transform: Affine, latlon: bool) -> np.ndarray:
        flw = _network(codes, transform, latlon)
        area = flw.upstream_area(how).astype(np.float64)
        area[codes == D8_NODATA] = np.nan
        return area

    return plane.apply(accumulate, np.dtype(np.float64), nodata=None, band="upstream_area")


@process("stream_network")
def stream_network(data: RasterCube, threshold: float, unit: str = "cells") -> RasterCube:
    how = _unit(unit)
    if not _is_number(threshold) or threshold <= 0:
        raise errors.ProcessParameterInvalid(
            "threshold must be a number above 0: the upstream area from which a cell is a "
            "stream.", argument="threshold")
    plane = _Plane(data, "stream_network", d8=True)

    def streams(codes: np.ndarray, transform: Affine, latlon: bool) -> np.ndarray:
        flw = _network(codes, transform, latlon)
        order = flw.stream_order(type="strahler", mask=flw.upstream_area(how) >= threshold)
        order = order.astype(np.uint8)
        order[codes == D8_NODATA] = STREAM_NODATA
        return order

    return plane.apply(streams, np.dtype(np.uint8), nodata=STREAM_NODATA, band="stream_order")


@process("catchment")
def catchment(data: RasterCube, outlet: dict, snap_threshold: float | None = None,
              unit: str = "cells") -> RasterCube:
    how = _unit(unit)
    if snap_threshold is not None and (not _is_number(snap_threshold) or snap_threshold <= 0):
        raise errors.ProcessParameterInvalid(
            "snap_threshold must be null or a number above 0.", argument="snap_threshold")
    plane = _Plane(data, "catchment", d8=True)
    x, y = _outlet_in(plane.grid, outlet)

    def basin(codes: np.ndarray, transform: Affine, latlon: bool) -> np.ndarray:
        flw = _network(codes, transform, latlon)
        col, row = ~transform * (x, y)
        row = min(int(np.floor(row)), codes.shape[0] - 1)
        col = min(int(np.floor(col)), codes.shape[1] - 1)
        idx = row * codes.shape[1] + col
        if snap_threshold is not None:
            # Down the flow path to the first cell with enough upstream area (pyflwdir's own
            # snap() fails on lon/lat grids in 0.5.12).
            area = flw.upstream_area(how).ravel()
            downstream = flw.idxs_ds
            while area[idx] < snap_threshold and downstream[idx] != idx:
                idx = int(downstream[idx])
        return (flw.basins(idxs=np.array([idx])) > 0).astype(np.uint8)

    return plane.apply(basin, np.dtype(np.uint8), nodata=None, band="catchment")


# --- helpers -----------------------------------------------------------------------------------
class _Plane:
    """The x/y plane(s) of a cube, north up, one dask block each, and a way back."""

    def __init__(self, cube: RasterCube, process_id: str, d8: bool = False) -> None:
        self.cube = cube
        self.process_id = process_id
        self.ydim, self.xdim = spatial_dims(cube)
        self.grid = grid_of(cube)
        self.d8 = d8
        if not np.issubdtype(cube.data.dtype, np.number) or cube.data.dtype == bool:
            raise errors.ProcessParameterInvalid(
                "data must hold numbers: elevations, or flow directions (D8 codes) as "
                "flow_direction returns them.", argument="data")
        if self.grid.width < 2 or self.grid.height < 2:
            raise errors.ProcessParameterInvalid(
                "data must be at least 2 x 2 cells wide.", argument="data")
        if self.grid.width * self.grid.height > MAX_CELLS:
            raise errors.ProcessParameterInvalid(
                f"The hydrology processes hold the whole x/y plane in memory; it has "
                f"{self.grid.width} x {self.grid.height} cells, at most {MAX_CELLS:,} are "
                f"allowed. Choose a smaller spatial_extent or resample_spatial to a coarser "
                f"resolution first.", argument="data")
        crs: pyproj.CRS = self.grid.crs
        self.latlon = bool(crs.is_geographic)
        t = self.grid.transform
        self.flip = t.e > 0  # rows run south to north: turn them around for pyflwdir
        self.north_up = Affine(t.a, 0.0, t.c, 0.0, -abs(t.e),
                               t.f + t.e * self.grid.height if self.flip else t.f)
        if t.a < 0:
            raise errors.ProcessParameterInvalid(
                "data must have x labels that increase from west to east.", argument="data")

    def apply(self, func: Callable[[np.ndarray, Affine, bool], np.ndarray], dtype: np.dtype,
              nodata: float | None, band: str | None = None) -> RasterCube:
        """The cube of func's results per plane; a single band label becomes `band`."""
        order = [d for d in self.cube.data.dims if d not in (self.ydim, self.xdim)]
        values = self.cube.data.transpose(*order, self.ydim, self.xdim)
        arr = as_dask(values)
        lead = arr.ndim - 2
        arr = arr.rechunk({**{i: 1 for i in range(lead)}, lead: -1, lead + 1: -1})
        out = arr.map_blocks(_run_on_plane, compute=func, transform=self.north_up,
                             latlon=self.latlon, flip=self.flip,
                             d8=self.process_id if self.d8 else None,
                             nodata_in=self.cube.nodata, dtype=dtype, meta=np.array((), dtype))
        result = xr.DataArray(out, dims=values.dims, coords=values.coords)
        attrs = dict(self.cube.attrs)
        bands = self.cube.first_dim_of_type(BANDS)
        if band is not None and bands is not None and result.sizes[bands.name] == 1:
            # e.g. "elevation" in, "flow_direction" out: the old band's metadata no longer fits
            result = result.assign_coords({bands.name: [band]})
            attrs.pop("band_metadata", None)
        return self.cube.with_data(result.transpose(*self.cube.data.dims), nodata=nodata,
                                   attrs=attrs)


def _run_on_plane(block: np.ndarray, *, compute: Callable, transform: Affine, latlon: bool,
                  flip: bool, d8: str | None, nodata_in: float | None) -> np.ndarray:
    """`compute` on every plane of a block; `d8` names the process that wants D8 codes."""
    lead = block.shape[:-2]
    planes = block.reshape((-1, *block.shape[-2:]))
    results = []
    for plane in planes:
        if flip:
            plane = plane[::-1]
        plane = _as_d8(plane, nodata_in, d8) if d8 else _as_elevation(plane, nodata_in)
        result = compute(plane, transform, latlon)
        results.append(result[::-1] if flip else result)
    return np.stack(results).reshape((*lead, *block.shape[-2:]))


def _as_elevation(plane: np.ndarray, nodata: float | None) -> np.ndarray:
    values = plane.astype(np.float64 if plane.dtype == np.float64 else np.float32)
    if nodata is not None and np.issubdtype(plane.dtype, np.integer):
        values[plane == nodata] = np.nan
    return values


def _as_d8(plane: np.ndarray, nodata: float | None, process_id: str) -> np.ndarray:
    missing = ~np.isfinite(plane) if np.issubdtype(plane.dtype, np.floating) else \
        np.zeros(plane.shape, bool)
    if nodata is not None:
        missing |= plane == nodata
    codes = np.where(missing, D8_NODATA, np.nan_to_num(plane)).astype(np.int64)
    if not np.isin(codes, (*D8_CODES, D8_NODATA)).all():
        bad = [int(v) for v in sorted(set(np.unique(codes)) - {*D8_CODES, D8_NODATA})[:5]]
        # Raised while the values are computed, so no node id is known: name the process.
        raise errors.ProcessParameterInvalid(
            f"{process_id}: data must hold flow directions as D8 codes (0, 1, 2, 4, …, 128; "
            f"247 no-data) as flow_direction returns them; found {bad}. Pass the result of "
            f"flow_direction, not the elevations.", argument="data")
    return codes.astype(np.uint8)


def _network(codes: np.ndarray, transform: Affine, latlon: bool) -> Any:
    import pyflwdir

    try:
        return pyflwdir.from_array(codes, ftype="d8", transform=transform, latlon=latlon)
    except ValueError as exc:  # e.g. directions that form a loop
        raise errors.ProcessParameterInvalid(
            f"data is not a valid flow direction grid: {exc}", argument="data") from None


def _outlet_in(grid: Grid, outlet: Any) -> tuple[float, float]:
    """The outlet point in the cube's CRS; it must lie on the grid."""
    if isinstance(outlet, dict) and outlet.get("type") == "Feature":
        outlet = outlet.get("geometry")
    coords = outlet.get("coordinates") if isinstance(outlet, dict) else None
    if not (isinstance(outlet, dict) and outlet.get("type") == "Point"
            and isinstance(coords, (list, tuple)) and len(coords) >= 2
            and all(_is_number(c) for c in coords[:2])):
        raise errors.ProcessParameterInvalid(
            "outlet must be a GeoJSON Point (or a Feature with one) in longitude/latitude, "
            "e.g. {\"type\": \"Point\", \"coordinates\": [74.6, 42.9]}.", argument="outlet")
    lon, lat = float(coords[0]), float(coords[1])
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    x, y = to_grid.transform(lon, lat)
    west, south, east, north = grid.bounds
    if not (west <= x < east and south < y <= north):
        raise errors.ProcessParameterInvalid(
            f"The outlet ({lon}, {lat}) lies outside the data cube.", argument="outlet")
    return x, y


def _max_depth(value: Any) -> float:
    if value is None:
        return -1.0  # pyflwdir: no limit
    if not _is_number(value) or value < 0:
        raise errors.ProcessParameterInvalid("max_depth must be null or a number of 0 or more.",
                                             argument="max_depth")
    return float(value)


def _unit(unit: Any) -> str:
    if not isinstance(unit, str) or unit not in _UNITS:  # a list or object is no key
        raise errors.ProcessParameterInvalid(
            f"unit must be one of {', '.join(_UNITS)}, got {unit!r}.", argument="unit")
    return _UNITS[unit]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float_dtype(cube: RasterCube) -> np.dtype:
    return np.dtype(np.float64 if cube.data.dtype == np.float64 else np.float32)


# --- descriptions for GET /processes (our own processes, so written by us) ----------------------
_RASTER = {"type": "object", "subtype": "datacube",
           "dimensions": [{"type": "spatial", "axis": ["x", "y"]}]}
_PYFLWDIR = {"href": "https://deltares.github.io/pyflwdir/", "rel": "about", "type": "text/html",
             "title": "pyflwdir: fast methods to work with hydro- and topography data"}
_D8_LINK = {"href": "https://deltares.github.io/pyflwdir/latest/_examples/from_dem.html",
            "rel": "about", "type": "text/html", "title": "pyflwdir: flow directions from a DEM"}
_WHOLE_PLANE = (
    " The whole x/y plane is processed at once (water flows across the whole grid), so it is "
    f"limited to {MAX_CELLS:,} cells; other dimensions are processed label by label. Water "
    "leaves the grid at its edges and next to no-data.")
_D8_TEXT = (
    "Flow directions are D8 codes: 1 east, 2 south-east, 4 south, 8 south-west, 16 west, "
    "32 north-west, 64 north, 128 north-east, 0 where water leaves the grid, 247 no-data.")
_D8_PARAM = {"name": "data", "description": (
    "Flow directions as `flow_direction` returns them (D8 codes). " + _D8_TEXT),
    "schema": _RASTER}
_UNIT_PARAM = {"name": "unit", "description": (
    "The unit of upstream areas: `cells` (number of cells, counting the cell itself) or `km2` "
    "(square kilometres; cell areas on the ellipsoid for a geographic CRS, from the CRS units "
    "as metres otherwise)."),
    "schema": {"type": "string", "enum": ["cells", "km2"]}, "default": "cells", "optional": True}
_MAX_DEPTH_PARAM = {"name": "max_depth", "description": (
    "Sinks deeper than this (in the units of the elevations) are not filled but kept as pits "
    "where water ends; `null` fills every sink."),
    "schema": {"type": ["number", "null"], "minimum": 0}, "default": None, "optional": True}


def _hydrology(process_id: str, summary: str, description: str, parameters: list[dict],
               returns: str) -> dict:
    return {
        "id": process_id, "summary": summary, "description": description + _WHOLE_PLANE,
        "categories": ["cubes", "hydrology"], "experimental": True, "parameters": parameters,
        "returns": {"description": returns, "schema": _RASTER},
        "exceptions": {"ProcessParameterInvalid": {
            "message": "The value passed for parameter '{parameter}' in process '{process}' is "
                       "invalid: {reason}"}},
        "links": [_PYFLWDIR, _D8_LINK],
    }


DESCRIPTIONS: dict[str, dict] = {
    "fill_sinks": _hydrology(
        "fill_sinks", "Fill the sinks of a digital elevation model",
        "Raises every cell of a depression (a sink: a cell or group of cells from which water "
        "cannot flow downhill to the edge) to the level of its lowest outlet, so that water "
        "can flow from every cell to the edge of the grid. Uses the priority-flood algorithm "
        "of Wang & Liu (2006) as implemented in pyflwdir.",
        [{"name": "data", "description": "Elevations (a DEM), one value per cell.",
          "schema": _RASTER}, _MAX_DEPTH_PARAM],
        "The elevations with the sinks filled; same dimensions, no-data stays no-data."),
    "flow_direction": _hydrology(
        "flow_direction", "D8 flow directions from a digital elevation model",
        "Fills the sinks of the elevations (as `fill_sinks`) and gives every cell the "
        "direction to the steepest downhill neighbour of its eight neighbours (D8). "
        + _D8_TEXT,
        [{"name": "data", "description": "Elevations (a DEM), one value per cell.",
          "schema": _RASTER}, _MAX_DEPTH_PARAM],
        "The D8 flow direction of every cell (unsigned 8-bit integers, no-data 247); a single "
        "band is named `flow_direction`."),
    "flow_accumulation": _hydrology(
        "flow_accumulation", "Upstream area (flow accumulation)",
        "The area that drains through each cell, including the cell itself, following the "
        "flow directions.",
        [_D8_PARAM, _UNIT_PARAM],
        "The upstream area of every cell in the given unit; no-data where the flow "
        "directions are no-data. A single band is named `upstream_area`."),
    "stream_network": _hydrology(
        "stream_network", "Stream network with Strahler order",
        "Cells whose upstream area is at least `threshold` are streams; each stream cell gets "
        "its Strahler order (1 for a source stream; where two streams of order n meet, n + 1).",
        [_D8_PARAM,
         {"name": "threshold", "description": (
             "The upstream area (in `unit`) from which a cell counts as a stream."),
          "schema": {"type": "number", "exclusiveMinimum": 0}},
         _UNIT_PARAM],
        "The Strahler order of every stream cell, 0 for cells that are not streams, 255 for "
        "no-data (unsigned 8-bit integers). A single band is named `stream_order`."),
    "catchment": _hydrology(
        "catchment", "The catchment (drainage basin) upstream of a point",
        "Marks every cell whose water flows through the outlet cell. With `snap_threshold`, "
        "the outlet is first moved downstream along the flow directions to the first cell "
        "with at least that upstream area, so a point placed next to a river finds the river.",
        [_D8_PARAM,
         {"name": "outlet", "description": (
             "The outlet as a GeoJSON Point (or a Feature with a Point) in longitude/latitude "
             "(EPSG:4326). It must lie on the data cube."),
          "schema": {"type": "object", "subtype": "geojson"}},
         {"name": "snap_threshold", "description": (
             "Move the outlet downstream to the first cell with at least this upstream area "
             "(in `unit`); `null` uses the cell the point lies in."),
          "schema": {"type": ["number", "null"], "exclusiveMinimum": 0}, "default": None,
          "optional": True},
         _UNIT_PARAM],
        "1 for the cells of the catchment, 0 elsewhere (unsigned 8-bit integers). A single "
        "band is named `catchment`."),
}
