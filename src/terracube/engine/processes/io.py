"""Processes that read and write: load_collection, save_result."""

from __future__ import annotations

from typing import Any

from terracube import errors
from terracube import process_errors as pe
from terracube.datacube.cube import RasterCube
from terracube.datacube.request import BBox, LoadRequest
from terracube.engine.evaluate import Callback, ProcessContext, SavedResult
from terracube.engine.processes.cube_dimensions import one_day_extent
from terracube.engine.registry import process


def parse_spatial_extent(extent: Any, argument: str = "spatial_extent") -> BBox | None:
    """A BBox for a bounding-box object or GeoJSON (its bounds); None for null."""
    if extent is None:
        return None
    if not isinstance(extent, dict):
        raise errors.ProcessParameterInvalid(
            "spatial_extent must be a bounding box object {west, south, east, north, crs} or "
            "GeoJSON.", argument=argument)
    if {"west", "south", "east", "north"} <= set(extent):
        try:
            w, s, e, n = (float(extent[k]) for k in ("west", "south", "east", "north"))
        except (TypeError, ValueError):
            raise errors.ProcessParameterInvalid(
                "west, south, east and north must be numbers.", argument=argument) from None
        if w >= e or s >= n:
            raise errors.ProcessParameterInvalid(
                f"Empty bounding box: west ({w}) must be < east ({e}) and south ({s}) < north "
                f"({n}).", argument=argument)
        crs = extent.get("crs") or 4326
        try:
            from pyproj import CRS

            geographic = CRS.from_user_input(crs).is_geographic
        except Exception:
            raise errors.ProcessParameterInvalid(
                f"Unknown CRS {crs!r} in {argument}; use an EPSG code such as 32632.",
                argument=argument) from None
        if geographic and not (-90 <= s and n <= 90):
            raise errors.ProcessParameterInvalid(
                f"south ({s}) and north ({n}) are latitudes, between -90 and 90, in the CRS "
                f"{crs}: were longitudes and latitudes swapped, or are these coordinates of "
                "another CRS (then give its EPSG code as crs)?", argument=argument)
        return BBox(w, s, e, n, crs)
    if "type" in extent:
        from shapely.geometry import shape

        geoms = _geojson_geometries(extent)
        if not geoms:
            raise errors.ProcessParameterInvalid("The GeoJSON has no geometry.",
                                                 argument=argument)
        bounds = [shape(g).bounds for g in geoms]
        return BBox(min(b[0] for b in bounds), min(b[1] for b in bounds),
                    max(b[2] for b in bounds), max(b[3] for b in bounds), 4326)
    raise errors.ProcessParameterInvalid(
        "spatial_extent needs west, south, east and north (and optionally crs).",
        argument=argument)


def _geojson_geometries(obj: dict) -> list[dict]:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        return [f["geometry"] for f in obj.get("features", []) if f.get("geometry")]
    if kind == "Feature":
        return [obj["geometry"]] if obj.get("geometry") else []
    return [obj]


def parse_temporal_extent(extent: Any) -> tuple[str | None, str | None] | None:
    if extent is None:
        return None
    if not isinstance(extent, (list, tuple)) or len(extent) != 2:
        raise errors.ProcessParameterInvalid(
            "temporal_extent must be a list of two dates [start, end] (either may be null).",
            argument="temporal_extent")
    for value in extent:
        _check_instant(value)
    start, end = one_day_extent(extent)
    if start is None and end is None:
        raise errors.ProcessParameterInvalid(
            "temporal_extent: at most one of start and end may be null.",
            argument="temporal_extent")
    if start is not None and end is not None and str(start) >= str(end):
        raise pe.TemporalExtentEmpty(
            f"temporal_extent: the start {start} must be before the end {end} (the end is "
            "excluded; for one day give the next day as the end, or the same date twice).",
            argument="temporal_extent")
    return (None if start is None else str(start), None if end is None else str(end))


def _check_instant(value: Any) -> None:
    """A start or end of temporal_extent is null or an RFC 3339 date or date-time string: a
    number (e.g. a year given as 2022) or an impossible date ('2022-13-45') is refused here,
    instead of being read as nanoseconds since 1970 or reported as a reversed extent."""
    if value is None:
        return
    if isinstance(value, str):
        import pandas as pd

        try:
            if not pd.isna(pd.Timestamp(value)):
                return
        except (ValueError, TypeError):
            pass
    raise errors.ProcessParameterInvalid(
        f"temporal_extent: {value!r} is not a date; give dates as strings like '2022-06-01' "
        "or '2022-06-01T10:00:00Z' (or null for an open start or end).",
        argument="temporal_extent")


def load_request(spatial_extent: Any, temporal_extent: Any, bands: Any,
                 properties: dict | None) -> LoadRequest:
    """The LoadRequest of load_collection / load_stac; checks `bands` and `properties`,
    parses the extents."""
    if bands is not None and (not isinstance(bands, list) or not bands
                              or not all(isinstance(b, str) for b in bands)):
        raise errors.ProcessParameterInvalid(
            f"bands must be a non-empty list of band names (strings), got {bands!r}; "
            "GET /collections/{id} lists the bands of a collection.", argument="bands")
    if properties is not None and not isinstance(properties, dict):
        raise errors.ProcessParameterInvalid(
            "properties must be an object of conditions, one per item property, e.g. "
            '{"eo:cloud_cover": {"process_graph": {...lte...}}}; with the Python client: '
            "properties={'eo:cloud_cover': lambda v: v <= 20}.", argument="properties")
    return LoadRequest(
        bbox=parse_spatial_extent(spatial_extent),
        temporal_extent=parse_temporal_extent(temporal_extent),
        bands=tuple(bands) if bands else None,
        properties=dict(properties or {}),
    )


def masked_to_polygons(loaded: Any, spatial_extent: Any) -> Any:
    """A cube loaded with GeoJSON polygons as its spatial extent: the pixels (centres) outside
    every polygon set to no-data, as the definitions of load_collection and load_stac say
    (the load itself reads the polygons' bounding box)."""
    if not (isinstance(loaded, RasterCube) and isinstance(spatial_extent, dict)
            and "type" in spatial_extent and loaded.x_dim is not None
            and loaded.y_dim is not None):
        return loaded
    kinds = {g.get("type") for g in _geojson_geometries(spatial_extent) if isinstance(g, dict)}
    if not kinds or not kinds <= {"Polygon", "MultiPolygon"}:
        return loaded  # no polygons to mask with: the bounding box alone
    from terracube.engine.processes.rasterise import mask_polygon

    return mask_polygon(loaded, spatial_extent)


def _property_check(name: str, condition: Any, value: Any) -> bool:
    if isinstance(condition, Callback):
        return bool(condition(value=value))
    return condition == value


@process("load_collection")
def load_collection(id: str, spatial_extent: Any = None, temporal_extent: Any = None,
                    bands: list[str] | None = None, properties: dict | None = None,
                    featureflags: dict | None = None, *, ctx: ProcessContext) -> Any:
    # `featureflags`: CDSE's tuning hints for its loader (tile size, partitioning), which
    # openEO Platform programs set (SRR2's UC3-Benchmark); they change no value, so ignored.
    catalog = ctx.services.catalog
    if catalog is None:
        raise errors.CollectionNotFound(f"Collection '{id}' does not exist (no catalog).")
    source = catalog.get(id)
    request = load_request(spatial_extent, temporal_extent, bands, properties)
    return masked_to_polygons(source.load(request, check_property=_property_check),
                              spatial_extent)


@process("save_result")
def save_result(data: Any, format: str, options: dict | None = None, *,
                ctx: ProcessContext) -> SavedResult:
    formats = ctx.services.formats
    if formats is None:
        raise errors.ProcessUnsupported("save_result needs the server's file formats, which "
                                        "this evaluation was not given.")
    fmt = formats.output_format(format)
    if fmt is None:
        raise errors.ProcessParameterInvalid(
            f"Output format '{format}' is not supported; GET /file_formats lists the formats "
            "(GTiff, netCDF, JSON).", argument="format")
    saved = SavedResult(data, fmt, dict(options or {}), node_id=ctx.node_id)
    ctx.services.saved.append(saved)
    return saved
