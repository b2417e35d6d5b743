"""XYZ tiles of a process graph: the configuration of an XYZ service, and one Web Mercator
tile rendered lazily (the graph's loads restricted to the tile, warped onto its grid) as PNG.

How a tile is made: the graph's result gets a `filter_bbox` with the tile's bounds (plus a
margin of a few tile pixels, so that resampling at the edges sees its neighbours); the push-down
optimizer moves that box into every load, so only the tile's window is read. The (lazy) result
is warped onto the tile grid (datacube.grid.warp), computed with the executor, stretched to
8 bits and written as RGBA PNG (transparent where there is no data). Without a configured
`rescale`, all tiles of one result share one stretch, computed once from a coarse view of the
whole result (result_stretch, file_stretch) and cached with it: no seams between tiles.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import rasterio.enums
import rasterio.warp
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from terracube import errors, executor
from terracube.datacube.cube import RasterCube
from terracube.datacube.grid import Grid, warp
from terracube.engine.evaluate import SavedResult, Services
from terracube.engine.optimize import catalog_bands, catalog_grids
from terracube.processing.run import check_structure, evaluate_result
from terracube.results.quicklook import parse_colormap

WEB_MERCATOR = pyproj.CRS.from_epsg(3857)
MARGIN_PIXELS = 2  # of the tile, around it: resampling at the edges sees its neighbours
RESAMPLING = ("nearest", "bilinear", "cubic", "average")

# Named colour maps for one-band results: stops (position 0..1, r, g, b), linear in between.
# Taken from the published definitions (matplotlib's viridis, ColorBrewer's RdYlGn) at a few
# positions; no plotting library needed at run time.
COLORMAPS: dict[str, list[tuple[float, int, int, int]]] = {
    "greys": [(0.0, 0, 0, 0), (1.0, 255, 255, 255)],
    "viridis": [(0.0, 68, 1, 84), (0.25, 59, 82, 139), (0.5, 33, 145, 140),
                (0.75, 94, 201, 98), (1.0, 253, 231, 37)],
    "rdylgn": [(0.0, 165, 0, 38), (0.25, 244, 109, 67), (0.5, 255, 255, 191),
               (0.75, 102, 189, 99), (1.0, 0, 104, 55)],
    "ndvi": [(0.0, 140, 81, 10), (0.35, 223, 194, 125), (0.5, 246, 232, 195),
             (0.65, 128, 205, 193), (0.8, 53, 151, 53), (1.0, 0, 68, 27)],
}

# The configuration parameters of the XYZ service type (GET /service_types).
CONFIGURATION: dict[str, dict[str, Any]] = {
    "minzoom": {"description": "Lowest zoom level with tiles (lower ones answer 404).",
                "type": "integer", "minimum": 0, "maximum": 24, "default": 0},
    "maxzoom": {"description": "Highest zoom level with tiles.", "type": "integer",
                "minimum": 0, "maximum": 24, "default": 22},
    "tile_size": {"description": "Width and height of a tile in pixels.", "type": "integer",
                  "enum": [128, 256, 512], "default": 256},
    "bands": {"description": "The bands to show: one (grey or colour map) or three (red, "
                             "green, blue). Default: the result's only band, or its three.",
              "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "rescale": {"description": "[min, max] mapped onto 0..255 (one pair for all bands, or one "
                               "pair per band). Default: the 2nd to 98th percentile of each "
                               "band over the whole result, one stretch for all its tiles.",
                "type": "array", "items": {"anyOf": [
                    {"type": "number"},
                    {"type": "array", "items": {"type": "number"}, "minItems": 2,
                     "maxItems": 2}]}},
    "colormap": {"description": "For one band: a named colour map (" + ", ".join(COLORMAPS)
                                + ") applied after the rescale, or a table {value: "
                                "0xRRGGBBAA or [r, g, b, a] in 0..1} of whole values as the "
                                "PNG format's colormap option.",
                 "type": ["string", "object"], "default": None},
    "resampling": {"description": "How the result is warped onto the tile grid.",
                   "type": "string", "enum": list(RESAMPLING), "default": "bilinear"},
    "public": {"description": "true: anyone may fetch the tiles at the service's plain `url` "
                              "(no login, no signature), e.g. for a web page; the service "
                              "itself (graph, logs, changes) stays its owner's. Default false: "
                              "the `url` carries an expiring signature, or the owner logs in.",
               "type": "boolean", "default": False},
}
# A subtype of our own: the API's process_json_schema is a oneOf of three schemas that a plain
# {"type": ...} schema matches all at once (their distinguishing `subtype` is optional), so a
# strict validator refuses it; the same workaround as the file formats' options.
for _spec in CONFIGURATION.values():
    _spec["subtype"] = "service-config-option"
DEFAULTS = {name: spec["default"] for name, spec in CONFIGURATION.items() if "default" in spec}


@dataclass(frozen=True)
class TileConfig:
    """The checked configuration of an XYZ service."""

    minzoom: int = 0
    maxzoom: int = 22
    tile_size: int = 256
    bands: tuple[str, ...] | None = None
    rescale: tuple[tuple[float, float], ...] | None = None
    colormap: str | dict | None = None
    resampling: str = "bilinear"
    public: bool = False


def check_configuration(config: Any) -> TileConfig:
    """The XYZ configuration checked; ServiceConfigUnsupported / ServiceConfigInvalid."""
    if config is None:
        return TileConfig()
    if not isinstance(config, dict):
        raise errors.ServiceConfigInvalid("'configuration' must be an object.")
    unknown = sorted(set(config) - set(CONFIGURATION))
    if unknown:
        raise errors.ServiceConfigUnsupported(
            f"The XYZ service has no configuration parameter {', '.join(map(repr, unknown))}; "
            f"it has {', '.join(CONFIGURATION)} (GET /service_types).")
    values = {k: v for k, v in config.items() if v is not None}

    def invalid(name: str, why: str) -> errors.OpenEOError:
        return errors.ServiceConfigInvalid(f"Configuration '{name}': {why}; got "
                                           f"{json.dumps(config[name])[:80]}.")

    zooms = {}
    for name in ("minzoom", "maxzoom"):
        value = values.get(name, DEFAULTS[name])
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 24:
            raise invalid(name, "a whole number from 0 to 24")
        zooms[name] = value
    if zooms["minzoom"] > zooms["maxzoom"]:
        raise invalid("minzoom", "must not exceed maxzoom")
    size = values.get("tile_size", DEFAULTS["tile_size"])
    if size not in CONFIGURATION["tile_size"]["enum"] or isinstance(size, bool):
        raise invalid("tile_size", "one of 128, 256, 512")
    bands = values.get("bands")
    if bands is not None and (not isinstance(bands, list) or len(bands) not in (1, 3)
                              or not all(isinstance(b, str) for b in bands)):
        raise invalid("bands", "a list of one or three band names")
    rescale = _check_rescale(values.get("rescale"), invalid)
    colormap = values.get("colormap")
    if isinstance(colormap, str):
        if colormap.lower() not in COLORMAPS:
            raise invalid("colormap", f"one of {', '.join(COLORMAPS)} or a value table")
        colormap = colormap.lower()
    elif isinstance(colormap, dict):
        try:
            parse_colormap(colormap, "XYZ")
        except (errors.OpenEOError, TypeError, ValueError, IndexError) as exc:
            raise invalid("colormap", str(exc).rstrip(".")) from None
    elif colormap is not None:
        raise invalid("colormap", "a name or a value table")
    if colormap is not None and bands is not None and len(bands) != 1:
        raise invalid("colormap", "applies to one band only")
    resampling = values.get("resampling", DEFAULTS["resampling"])
    if resampling not in RESAMPLING:
        raise invalid("resampling", f"one of {', '.join(RESAMPLING)}")
    public = values.get("public", False)
    if not isinstance(public, bool):
        raise invalid("public", "true or false")
    return TileConfig(minzoom=zooms["minzoom"], maxzoom=zooms["maxzoom"], tile_size=size,
                      bands=tuple(bands) if bands else None, rescale=rescale,
                      colormap=colormap, resampling=resampling, public=public)


def _check_rescale(value: Any, invalid: Callable[[str, str], errors.OpenEOError]
                   ) -> tuple[tuple[float, float], ...] | None:
    if value is None:
        return None
    why = "[min, max] or one [min, max] per band, numbers with min < max"
    if not isinstance(value, list) or not value:
        raise invalid("rescale", why)
    pairs = [value] if all(_is_number(v) for v in value) else value
    if not all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)
               and p[0] < p[1] for p in pairs) or len(pairs) not in (1, 3):
        raise invalid("rescale", why)
    return tuple((float(p[0]), float(p[1])) for p in pairs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- the tile grid -----------------------------------------------------------------------------
@functools.cache
def _web_mercator() -> Any:
    """morecantile's WebMercatorQuad, imported on the first tile: it costs ~12 MB in every
    server process, and most never serve a tile."""
    import morecantile

    return morecantile.tms.get("WebMercatorQuad")


def tile_grid(z: int, x: int, y: int, size: int) -> Grid:
    """The pixel grid of tile z/x/y of WebMercatorQuad, `size` pixels square."""
    b = _web_mercator().xy_bounds(x, y, z)
    transform = Affine((b.right - b.left) / size, 0, b.left, 0, -(b.top - b.bottom) / size,
                       b.top)
    return Grid(crs=WEB_MERCATOR, transform=transform, width=size, height=size,
                reference_system=3857)


def check_tile(z: int, x: int, y: int, config: TileConfig) -> None:
    """NotFound (404) for tiles outside the zoom range or the grid."""
    if not config.minzoom <= z <= config.maxzoom:
        raise errors.NotFound(f"Zoom {z} is outside this service's range {config.minzoom}.."
                           f"{config.maxzoom}.")
    if not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise errors.NotFound(f"There is no tile {z}/{x}/{y} in WebMercatorQuad.")


# --- the graph of one tile ---------------------------------------------------------------------
def tile_process(process: dict[str, Any], grid: Grid, catalog: Any = None) -> dict[str, Any]:
    """The process graph of one tile: the result (or the data a save_result result node
    saves) filtered to the tile's bounds plus a margin, in EPSG:3857; with the `catalog`,
    loads read at the tile's resolution at low zooms (read_overviews)."""
    graph = copy.deepcopy(check_structure(process))
    result_id = next(nid for nid, node in graph.items() if node.get("result"))
    result = graph[result_id]
    data: Any = {"from_node": result_id}
    if result.get("process_id") == "save_result":  # show what it saves, write nothing
        data = result.get("arguments", {}).get("data")
        del graph[result_id]
    result.pop("result", None)
    left, bottom, right, top = grid.bounds
    pad = MARGIN_PIXELS * grid.resolution[0]
    node_id = "tile_bbox"
    while node_id in graph:
        node_id += "_"
    graph[node_id] = {"process_id": "filter_bbox", "result": True, "arguments": {
        "data": data, "extent": {"west": left - pad, "south": bottom - pad, "east": right + pad,
                                 "north": top + pad, "crs": "EPSG:3857"}}}
    if catalog is not None:
        read_overviews(graph, grid, catalog, pad)
    return {**({} if "process_graph" not in process else
               {k: v for k, v in process.items() if k != "process_graph"}),
            "process_graph": graph}


# A load is read at the tile's resolution (from the files' overviews) once a tile pixel is at
# least this many times coarser than the collection's finest band: the rule resample_spatial
# follows (engine/processes/resample.py), and below it full-resolution pixels are cheap enough.
OVERVIEW_FACTOR = 2


def read_overviews(graph: dict[str, Any], grid: Grid, catalog: Any, pad: float) -> list[str]:
    """At low zooms, each load_collection of a tile's graph is restricted to the tile (its
    own extent intersected, so its edges stay where the user put them) and followed by a
    resample_spatial (nearest) onto the tile's pixel size in the collection's CRS: the
    loader then reads the COG overviews, as for a coarse resample_spatial, instead of every
    full-resolution pixel under a zoomed-out tile. Changes `graph`; the ids of the loads
    read so."""
    grids, bands_of = catalog_grids(catalog), catalog_bands(catalog)
    left, bottom, right, top = grid.bounds
    done = []
    for nid, node in list(graph.items()):
        if node.get("process_id") != "load_collection":
            continue
        found, bands = grids(node), bands_of(node)
        if found is None or not bands:
            continue
        wanted = node.get("arguments", {}).get("bands")
        wanted = wanted if isinstance(wanted, list) and wanted else list(bands)
        resolutions = [bands.get(b) for b in wanted if isinstance(b, str)]
        if not resolutions or any(r is None for r in resolutions):
            continue  # a band of unknown resolution: no safe coarser grid
        finest = min(r for r in resolutions if r is not None)
        try:
            crs = pyproj.CRS.from_user_input(found[0])
            x0, y0, x1, y1 = rasterio.warp.transform_bounds(
                WEB_MERCATOR.to_wkt(), crs.to_wkt(), left - pad, bottom - pad, right + pad,
                top + pad, densify_pts=21)
            tx0, ty0, tx1, ty1 = rasterio.warp.transform_bounds(
                WEB_MERCATOR.to_wkt(), crs.to_wkt(), left, bottom, right, top, densify_pts=21)
        except Exception:  # noqa: BLE001 - the evaluation reports unreadable CRSs
            continue
        tile_pixel = min(tx1 - tx0, ty1 - ty0) / grid.width
        if not tile_pixel >= OVERVIEW_FACTOR * finest:
            continue
        # The overview level at or finer than a tile pixel: COG overviews halve the
        # resolution level by level; the box is snapped to that level's lattice (files lie on
        # round coordinates) so that the read takes the overview's own pixels.
        target = finest * 2 ** math.floor(math.log2(tile_pixel / finest))
        x0, y0 = math.floor(x0 / target) * target, math.floor(y0 / target) * target
        x1, y1 = math.ceil(x1 / target) * target, math.ceil(y1 / target) * target
        box = _intersect(node["arguments"].get("spatial_extent"), (x0, y0, x1, y1), crs)
        if box is None:
            continue
        node["arguments"]["spatial_extent"] = box
        rid = f"{nid}_overview"
        while rid in graph:
            rid += "_"
        _repoint(graph, nid, rid)
        graph[rid] = {"process_id": "resample_spatial", "arguments": {
            "data": {"from_node": nid}, "resolution": target, "method": "near"}}
        done.append(nid)
    return done


def _intersect(extent: Any, box: tuple[float, float, float, float],
               crs: pyproj.CRS) -> dict[str, Any] | None:
    """The load's spatial_extent cut to `box` (in `crs`), in the extent's own CRS; None if
    the extent is not a plain box (then the load is left as it is)."""
    if extent is None:
        return {"west": box[0], "south": box[1], "east": box[2], "north": box[3],
                "crs": crs.to_wkt()}
    if not isinstance(extent, dict) or not all(
            _is_number(extent.get(k)) for k in ("west", "south", "east", "north")):
        return None
    try:
        own = pyproj.CRS.from_user_input(extent.get("crs") or 4326)
        w, s, e, n = rasterio.warp.transform_bounds(crs.to_wkt(), own.to_wkt(), *box,
                                                    densify_pts=21)
    except Exception:  # noqa: BLE001
        return None
    return {**extent, "west": max(extent["west"], w), "south": max(extent["south"], s),
            "east": min(extent["east"], e), "north": min(extent["north"], n)}


def _repoint(graph: dict[str, Any], old: str, new: str) -> None:
    """Every {"from_node": old} among the graph's node arguments (not inside child process
    graphs, whose node ids are their own) becomes {"from_node": new}."""
    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("from_node") == old and len(value) == 1:
                return {"from_node": new}
            if "process_graph" in value:
                return value
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    for node in graph.values():
        node["arguments"] = swap(node.get("arguments", {}))


def load_footprint(process: dict[str, Any], services: Services | None = None
                   ) -> tuple[float, float, float, float] | None:
    """The union of the graph's load boxes in EPSG:3857, or None when some load has no plain
    box (then every tile must be evaluated). A load_result without a box covers its job's
    results (looked up through `services`), so tiles beside them are empty, not errors."""
    boxes = []
    for node in check_structure(process).values():
        if node.get("process_id") not in ("load_collection", "load_stac", "load_result"):
            continue
        extent = node.get("arguments", {}).get("spatial_extent")
        if extent is None and node.get("process_id") == "load_result":
            extent = _results_box(node.get("arguments", {}).get("id"), services)
        if not isinstance(extent, dict) or not all(
                _is_number(extent.get(k)) for k in ("west", "south", "east", "north")):
            return None
        try:
            crs = pyproj.CRS.from_user_input(extent.get("crs") or 4326)
            boxes.append(rasterio.warp.transform_bounds(
                crs.to_wkt(), WEB_MERCATOR.to_wkt(), extent["west"], extent["south"],
                extent["east"], extent["north"], densify_pts=21))
        except Exception:  # noqa: BLE001 - a bad crs: the evaluation reports it
            return None
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def _loads_results(process: dict[str, Any]) -> bool:
    return any(node.get("process_id") == "load_result"
               for node in check_structure(process).values())


def _results_box(job_id: Any, services: Services | None) -> dict[str, Any] | None:
    """The longitude/latitude box of the results of one of the user's jobs, or None (a URL,
    no such job: the evaluation then reports what is wrong)."""
    if services is None or services.job_results is None or not isinstance(job_id, str) \
            or job_id.startswith(("http://", "https://")):
        return None
    try:
        bbox = services.job_results.collection(job_id).stac()["extent"]["spatial"]["bbox"][0]
        west, south, east, north = (float(v) for v in bbox[:4])
    except Exception:  # noqa: BLE001 - no footprint; the tile's evaluation gives the error
        return None
    return {"west": west, "south": south, "east": east, "north": north, "crs": 4326}


def outside(grid: Grid, footprint: tuple[float, float, float, float] | None) -> bool:
    if footprint is None:
        return False
    left, bottom, right, top = grid.bounds
    return right <= footprint[0] or left >= footprint[2] or top <= footprint[1] or \
        bottom >= footprint[3]


# --- rendering ---------------------------------------------------------------------------------
# A graph whose loads cover at most this many metres (Web Mercator) each way is evaluated
# once (lazily) for the whole area and kept: a tile then only warps and computes its window,
# skipping the graph's evaluation (about half of a warm tile's time). Larger areas are
# evaluated per tile, restricted to the tile, so that no tile builds a graph of a huge area.
WHOLE_AREA_MAX_M = 50_000


def render_tile(process: dict[str, Any], config: TileConfig, z: int, x: int, y: int,
                services: Services, parameters: dict[str, Any] | None = None,
                cubes: CubeCache | None = None, cube_key: tuple | None = None) -> bytes:
    """Tile z/x/y of the process's raster result as RGBA PNG bytes. With `cubes`, the lazy
    result of a small-area graph is kept there under `cube_key` (+ the parameters the process
    uses) for the next tiles, and so is the result's one stretch (see result_stretch)."""
    check_tile(z, x, y, config)
    grid = tile_grid(z, x, y, config.tile_size)
    footprint = load_footprint(process, services)
    if outside(grid, footprint):
        return empty_png(config.tile_size)
    bound = bound_parameters(process, parameters)
    used = referenced_parameters(process)
    bound = {k: v for k, v in bound.items() if k in used}  # e.g. no cache-busting `?v=2`
    # A job's results are not kept as a whole-area cube: running the job again replaces the
    # files such a cube would still read.
    small = footprint is not None and max(footprint[2] - footprint[0],
                                          footprint[3] - footprint[1]) <= WHOLE_AREA_MAX_M \
        and not _loads_results(process)
    whole = None
    if cubes is not None and cube_key is not None:
        key = (*cube_key, json.dumps(bound, sort_keys=True, default=str))
        if small:
            whole = cubes.get_or_make(key, lambda: evaluate_result(process, services, bound))
        if needs_stretch(config) and footprint is not None:
            ranges = cubes.get_or_make((*key, "stretch"), lambda: result_stretch(
                process, config, footprint, services, bound, whole))
            if ranges is not None:
                config = dataclasses.replace(config, rescale=ranges)
    values = _layer_values(process, config, grid, services, bound, whole)
    if values is None:
        return empty_png(config.tile_size)
    return encode_png(values, config)


def _layer_values(process: dict[str, Any], config: TileConfig, grid: Grid, services: Services,
                  bound: dict[str, Any], whole: Any = None) -> np.ndarray | None:
    """The float layers (layers, y, x) of the result on `grid`: cut from `whole` (the lazy
    result of the whole area) or evaluated for the grid's area only; None when the result
    has no pixels there."""
    value = whole if whole is not None else evaluate_result(
        tile_process(process, grid, services.catalog), services, bound)
    if isinstance(value, SavedResult):  # a graph ending in save_result (as editors write
        value = value.data              # them): the map shows what it would save
    xd = value.x_dim if isinstance(value, RasterCube) else None
    yd = value.y_dim if isinstance(value, RasterCube) else None
    if xd is None or yd is None:
        raise errors.ProcessParameterInvalid(
            "An XYZ service shows a raster data cube with x and y dimensions; this process "
            f"returns {type(value).__name__}.")
    cube = value
    if 0 in (cube.data.sizes[xd.name], cube.data.sizes[yd.name]):
        return None
    layers = tile_layers(warp(cube, grid, config.resampling), config)
    running = services.executor or executor.current()
    (values,) = running.compute(layers)
    return np.asarray(values, dtype="float64")


# --- one stretch per result --------------------------------------------------------------------
# Without a configured `rescale`, every tile of one result is stretched with the same range:
# the 2nd-98th percentile of each layer over the whole result, from a coarse view of it (at
# most this many pixels each way). Stretching each tile on its own values made seams.
STRETCH_PIXELS = 256
STRETCH_PERCENTILES = (2, 98)
FILE_STRETCH_PIXELS = 1024  # a result file is read at most this large (its COG overviews)

Ranges = tuple[tuple[float, float], ...]


def needs_stretch(config: TileConfig) -> bool:
    """Whether tiles with this configuration need a stretch computed from the data."""
    return config.rescale is None and not isinstance(config.colormap, dict)


def result_stretch(process: dict[str, Any], config: TileConfig,
                   footprint: tuple[float, float, float, float], services: Services,
                   bound: dict[str, Any], whole: Any = None) -> Ranges | None:
    """The stretch of each layer of a graph's result over its whole footprint (EPSG:3857),
    from the result rendered onto a grid of at most STRETCH_PIXELS each way: cut from `whole`
    (a small area's lazy result), else evaluated with every load read from the COG overviews
    at that grid's pixel size. None — each tile then stretches itself — when the footprint
    has no pixels, or when some load cannot be read so (load_stac, bands of unknown
    resolution): reading a large area at full resolution would stall the first tiles."""
    left, bottom, right, top = footprint
    res = max(right - left, top - bottom) / STRETCH_PIXELS
    if res <= 0:
        return None
    width, height = max(1, math.ceil((right - left) / res)), max(1, math.ceil((top - bottom) / res))
    grid = Grid(crs=WEB_MERCATOR, transform=Affine(res, 0, left, 0, -res, top), width=width,
                height=height, reference_system=3857)
    if whole is None:
        coarse = tile_process(process, grid)
        nodes = coarse["process_graph"]
        loads = {nid for nid, node in nodes.items()
                 if node.get("process_id") in ("load_collection", "load_stac", "load_result")}
        if services.catalog is None or set(read_overviews(
                nodes, grid, services.catalog, MARGIN_PIXELS * res)) != loads:
            return None
        whole = evaluate_result(coarse, services, bound)
    values = _layer_values(process, config, grid, services, bound, whole)
    if values is None or not np.isfinite(values).any():
        return None
    return tuple(percentile_range(layer) for layer in values)


def file_stretch(path: Any) -> Ranges:
    """The stretch of each layer (the first band, or the first three) of a GeoTIFF, computed
    once per file version (path, modification time, size) and kept in memory."""
    st = os.stat(path)
    return _file_stretch(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _file_stretch(path: str, mtime_ns: int, size: int) -> Ranges:
    with rasterio.open(path) as ds:
        count = 3 if ds.count >= 3 else 1
        scale = max(ds.width, ds.height) / FILE_STRETCH_PIXELS
        shape = (ds.height, ds.width) if scale <= 1 else (
            max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
        ranges = []
        for i in range(count):
            # a decimated read uses the file's overviews when it has them
            band = ds.read(i + 1, out_shape=shape, masked=True,
                           resampling=rasterio.enums.Resampling.nearest)
            ranges.append(percentile_range(band.astype("float64").filled(np.nan)))
    return tuple(ranges)


def percentile_range(values: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentile of the finite values; (0, 1) when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, STRETCH_PERCENTILES)
    return float(lo), float(hi)


def render_file_tile(path: Any, config: TileConfig, z: int, x: int, y: int) -> bytes:
    """Tile z/x/y of a GeoTIFF (e.g. a batch job's result): its one or three bands (the first
    three of more) warped onto the tile grid, nodata transparent; without a configured
    `rescale`, stretched with the file's one stretch (file_stretch)."""
    check_tile(z, x, y, config)
    if needs_stretch(config):
        config = dataclasses.replace(config, rescale=file_stretch(path))
    grid = tile_grid(z, x, y, config.tile_size)
    with rasterio.open(path) as ds:
        count = 3 if ds.count >= 3 else 1
        out = np.full((count, grid.height, grid.width), np.nan, dtype="float64")
        nodata = ds.nodata
        for i in range(count):
            rasterio.warp.reproject(
                rasterio.band(ds, i + 1), out[i], dst_transform=grid.transform,
                dst_crs=WEB_MERCATOR.to_wkt(), src_nodata=nodata, dst_nodata=np.nan,
                resampling=rasterio.warp.Resampling[config.resampling])
    return encode_png(out, config)


class CubeCache:
    """The lazy results of the last `capacity` small-area graphs (see WHOLE_AREA_MAX_M) and
    the stretches of results, by a key the caller makes (service, graph hash, parameters);
    `forget(service)` drops them."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._cubes: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[tuple, threading.Lock] = {}  # one maker per key at a time

    def get_or_make(self, key: tuple, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cubes:
                self._cubes.move_to_end(key)
                return self._cubes[key]
            making = self._making.setdefault(key, threading.Lock())
        # A map asks for a dozen tiles at once: the first makes the value (outside the cache's
        # lock: evaluating takes a while), the others wait for it instead of repeating it.
        with making:
            with self._lock:
                if key in self._cubes:
                    return self._cubes[key]
            try:
                value = make()
                with self._lock:
                    self._cubes[key] = value
                    while len(self._cubes) > self.capacity:
                        self._cubes.popitem(last=False)
            finally:  # after storing: a newcomer finds the value, not a fresh lock
                with self._lock:
                    self._making.pop(key, None)
        return value

    def forget(self, service_id: str) -> None:
        with self._lock:
            for key in [k for k in self._cubes if k[0] == service_id]:
                del self._cubes[key]


def referenced_parameters(value: Any) -> set[str]:
    """The names of every `from_parameter` in a process (child graphs too: a superset)."""
    if isinstance(value, dict):
        names = {value["from_parameter"]} if isinstance(value.get("from_parameter"), str) \
            else set()
        for item in value.values():
            names |= referenced_parameters(item)
        return names
    if isinstance(value, list):
        return set().union(*(referenced_parameters(v) for v in value)) if value else set()
    return set()


def bound_parameters(process: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """The process parameters of a tile: the defaults the process declares, overridden by the
    values given (from the tile URL's query string)."""
    declared = process.get("parameters") if isinstance(process, dict) else None
    out = {p["name"]: p["default"] for p in declared or []
           if isinstance(p, dict) and "name" in p and "default" in p}
    return {**out, **(given or {})}


def tile_layers(cube: RasterCube, config: TileConfig) -> Any:
    """The (lazy) array of the layers to show, shaped (layers, y, x): the configured bands,
    or the cube's only one or three."""
    xd, yd = cube.x_dim, cube.y_dim
    assert xd is not None and yd is not None
    arr = cube.data
    if config.bands:
        band_dim = next((d for d in cube.dimensions if d.type == "bands"), None)
        if band_dim is None:
            raise errors.ServiceConfigInvalid(
                f"Configuration 'bands' selects {list(config.bands)}, but the result has no "
                "bands dimension.")
        have = [str(b) for b in arr.coords[band_dim.name].values]
        missing = [b for b in config.bands if b not in have]
        if missing:
            raise errors.ServiceConfigInvalid(
                f"Configuration 'bands': the result has no band {', '.join(missing)}; it has "
                f"{', '.join(have)}.")
        arr = arr.sel({band_dim.name: list(config.bands)})
    other = [d for d in arr.dims if d not in (xd.name, yd.name)]
    arr = arr.transpose(*other, yd.name, xd.name)
    layers = int(np.prod([arr.sizes[d] for d in other])) if other else 1
    if layers not in (1, 3):
        raise errors.ProcessParameterInvalid(
            f"An XYZ tile shows 1 (grey) or 3 (RGB) layers, but this result has {layers} "
            f"({', '.join(f'{d}: {arr.sizes[d]}' for d in other)}); reduce the other "
            "dimensions in the graph or choose bands in the configuration.")
    return arr.data.reshape(layers, arr.shape[-2], arr.shape[-1])


def stretch_range(band: np.ndarray, index: int, config: TileConfig) -> tuple[float, float]:
    """The [low, high] a layer is stretched over: the configured rescale (or the result's
    one stretch put there), else the 2nd and 98th percentile of this tile's valid values
    (a graph whose extent is unknown)."""
    if config.rescale:
        return config.rescale[min(index, len(config.rescale) - 1)]
    return percentile_range(band)


def stretch(values: np.ndarray, config: TileConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fractions 0..1 of each layer, valid mask) of float layers (layers, y, x)."""
    valid = np.isfinite(values).all(axis=0)
    out = np.zeros(values.shape, dtype="float64")
    for i, band in enumerate(values):
        lo, hi = stretch_range(band, i, config)
        with np.errstate(invalid="ignore"):
            scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        out[i] = np.clip(np.nan_to_num(scaled), 0, 1)
    return out, valid


def encode_png(values: np.ndarray, config: TileConfig) -> bytes:
    """RGBA PNG of float layers (layers, y, x): stretched, coloured, no-data transparent."""
    size = values.shape[-2:]
    rgba = np.zeros((4, *size), dtype="uint8")
    if isinstance(config.colormap, dict):
        table = parse_colormap(config.colormap, "XYZ")
        layer = values[0]
        for value, color in table.items():
            hit = layer == value
            for i in range(4):
                rgba[i][hit] = color[i]
        return _png(rgba)
    fractions, valid = stretch(values, config)
    if values.shape[0] == 3:
        rgba[:3] = np.round(fractions * 255).astype("uint8")
    elif isinstance(config.colormap, str):
        rgba[:3] = apply_colormap(fractions[0], config.colormap)
    else:
        rgba[:3] = np.round(fractions[0] * 255).astype("uint8")
    rgba[3] = np.where(valid, 255, 0)
    rgba[:3, ~valid] = 0
    return _png(rgba)


def apply_colormap(fraction: np.ndarray, name: str) -> np.ndarray:
    """(3, y, x) uint8 colours of fractions 0..1 through a named colour map."""
    stops = COLORMAPS[name]
    where = [s[0] for s in stops]
    return np.stack([np.round(np.interp(fraction, where, [s[c] for s in stops]))
                     .astype("uint8") for c in (1, 2, 3)])


def _png(rgba: np.ndarray) -> bytes:
    # A tile PNG carries no georeferencing (the URL says where it is): no warning about it.
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with mem.open(driver="PNG", width=rgba.shape[2], height=rgba.shape[1], count=4,
                      dtype="uint8") as ds:
            ds.write(rgba)
        return bytes(mem.read())


_EMPTY: dict[int, bytes] = {}


def empty_png(size: int) -> bytes:
    """A fully transparent tile."""
    if size not in _EMPTY:
        _EMPTY[size] = _png(np.zeros((4, size, size), dtype="uint8"))
    return _EMPTY[size]


# --- the tile cache ----------------------------------------------------------------------------
def graph_hash(process: Any, configuration: Any) -> str:
    """A digest of what a tile depends on in a service: its process and configuration."""
    text = json.dumps([process, configuration], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileCache:
    """The last `capacity` tiles rendered, keyed by (service, graph hash, z, x, y, query);
    `forget(service)` drops a service's tiles (PATCH, DELETE)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple, tile: bytes) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.capacity:
                self._tiles.popitem(last=False)

    def forget(self, service_id: str) -> None:
        with self._lock:
            for key in [k for k in self._tiles if k[0] == service_id]:
                del self._tiles[key]

    def __len__(self) -> int:
        return len(self._tiles)
