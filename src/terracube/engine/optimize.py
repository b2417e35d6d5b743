"""Push-down of filters into the load step: a pure process graph -> process graph rewrite.

Spatial, temporal and band filters anywhere downstream of a `load_collection` / `load_stac`
node are merged into that node's `spatial_extent`, `temporal_extent` and `bands`, so that only
the needed windows, dates and bands are ever read (design rule 5, issue 4). The filter nodes
stay in the graph: on the smaller cube they select everything that is left, so the results are
exactly those of the graph as written.

How the needed part of a load is found: every node says, per input, which part of that input
its output depends on ("the restriction"), given the restriction its own consumers put on its
output. A filter narrows it; a node that does not move data along a dimension passes that
dimension's restriction on (`apply` everything, a reduction over bands passes space and time,
`apply_kernel` passes time and bands, ...); anything else needs the whole input. A node's
output restriction is the union of what its consumers need; a result without consumers needs
everything. A load node then gets the union of what its consumers need — or, when its
consumers need parts that do not contain each other (two separate windows), one copy of the
load per part.

Assumptions (the contract loaders keep, see docs/internals/performance.md):
- the pixel grid (lattice and resolution) of a load does not depend on `spatial_extent`, only
  which pixels of it are read; exactly the pixels whose centre is in the box are loaded, as
  filter_bbox keeps them (issue 11, defect 2). Points and lines select the pixels they pass
  through, whose centres may lie outside the geometries' bounds: such a box is widened by the
  coarsest band resolution of the collection before it is pushed (without that resolution,
  i.e. without a catalog, it is not pushed);
- the grid's resolution may depend on `bands` (the finest band); bands are therefore only
  pushed down when the collection's band metadata shows that the finest resolution stays the
  same and that every band name exists (a catalog is needed for that);
- the dimensions of a loaded cube are named t, bands, y, x.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from terracube.datacube.vector import legacy_geojson_crs
from terracube.engine import graph as graphs
from terracube.engine.alignment import literal_bounds, widen_aligned_loads
from terracube.engine.ports import Collections, CollectionSource
from terracube.engine.processes.cube_dimensions import one_day_extent, parse_instant

log = logging.getLogger(__name__)

LOAD_PROCESSES = frozenset({"load_collection", "load_stac", "load_result"})

SPACE, TIME, BANDS = "space", "time", "bands"
_ALL_KINDS = frozenset({SPACE, TIME, BANDS})
# The dimension names the loaders give, by the kind of restriction that applies to them.
_DIM_KIND = {"x": SPACE, "y": SPACE, "t": TIME, "bands": BANDS}


# --- the restriction values ------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """A bounding box in `crs` (anything pyproj reads: EPSG int, "EPSG:32632", WKT, JSON)."""

    west: float
    south: float
    east: float
    north: float
    crs: Any = 4326
    # True: pixels reaching into the box are needed, not only those whose centre is inside
    # (points and lines select the pixels they pass through).
    touch: bool = False
    # True: a "weak" extent (CDSE's dry run, openeo_driver/dry_run.py): the geometries of
    # mask_polygon / apply_polygon bound the load only when it has no spatial_extent of its own;
    # with one, the whole of that extent is needed (the process keeps it).
    weak: bool = False
    # Pixels of the load's grid needed around the box (a kernel's reach, e.g. apply_kernel
    # before an aggregate_spatial): realised with the collection's pixel size at the load.
    pixels: int = 0

    @property
    def empty(self) -> bool:
        return not (self.west <= self.east and self.south <= self.north)

    def in_crs(self, crs: Any) -> Box:
        """The box enclosing this one in `crs` (edges densified, so curved borders fit)."""
        if _same_crs(self.crs, crs):
            return replace(self, crs=crs)
        from pyproj import CRS, Transformer

        tr = Transformer.from_crs(CRS.from_user_input(_crs_input(self.crs)),
                                  CRS.from_user_input(_crs_input(crs)), always_xy=True)
        w, s, e, n = tr.transform_bounds(self.west, self.south, self.east, self.north,
                                         densify_pts=21)
        return Box(float(w), float(s), float(e), float(n), crs, self.touch, self.weak,
                   self.pixels)

    def widened(self, margin: float) -> Box:
        """This box grown by `margin` (in its CRS units) on every side; no longer touching."""
        return Box(self.west - margin, self.south - margin, self.east + margin,
                   self.north + margin, self.crs, weak=self.weak)

    def intersect(self, other: Box) -> Box:
        if self.pixels or other.pixels:  # the margins' size is known only at the load
            return self if self.pixels <= other.pixels else other
        o = other.in_crs(self.crs)
        return Box(max(self.west, o.west), max(self.south, o.south), min(self.east, o.east),
                   min(self.north, o.north), self.crs, self.touch or o.touch)

    def union(self, other: Box) -> Box:
        if other.empty:
            return self
        if self.empty:
            return other
        o = other.in_crs(self.crs)
        # weak if either is: with an explicit load extent, the weak consumer needs all of it
        return Box(min(self.west, o.west), min(self.south, o.south), max(self.east, o.east),
                   max(self.north, o.north), self.crs, self.touch or o.touch,
                   self.weak or o.weak, max(self.pixels, o.pixels))

    def contains(self, other: Box) -> bool:
        if other.empty:
            return True
        if other.pixels > self.pixels:
            return False
        o = other.in_crs(self.crs)
        tol = 1e-9 * max(1.0, abs(self.west), abs(self.east), abs(self.south), abs(self.north))
        return (self.west - tol <= o.west and self.south - tol <= o.south
                and o.east <= self.east + tol and o.north <= self.north + tol)


@dataclass(frozen=True)
class Interval:
    """A left-closed time interval [start, end); None is open-ended. Values stay the strings
    of the graph, so a pushed-down extent reads exactly like the filter that gave it."""

    start: str | None
    end: str | None

    @property
    def empty(self) -> bool:
        return bool(self.start is not None and self.end is not None
                    and _instant(self.start) >= _instant(self.end))

    def intersect(self, other: Interval) -> Interval:
        return Interval(_pick(self.start, other.start, max), _pick(self.end, other.end, min))

    def union(self, other: Interval) -> Interval:
        if other.empty:
            return self
        if self.empty:
            return other
        start = None if self.start is None or other.start is None else \
            _pick(self.start, other.start, min)
        end = None if self.end is None or other.end is None else _pick(self.end, other.end, max)
        return Interval(start, end)

    def contains(self, other: Interval) -> bool:
        if other.empty:
            return True
        starts_before = self.start is None or (
            other.start is not None and _instant(self.start) <= _instant(other.start))
        ends_after = self.end is None or (
            other.end is not None and _instant(other.end) <= _instant(self.end))
        return bool(starts_before and ends_after)


@dataclass(frozen=True)
class Restriction:
    """The part of a cube some consumer needs; None in a field: all of that dimension."""

    space: Box | None = None
    time: Interval | None = None
    bands: frozenset[str] | None = None

    def only(self, kinds: frozenset[str]) -> Restriction:
        """This restriction with the kinds not in `kinds` lifted."""
        return Restriction(self.space if SPACE in kinds else None,
                           self.time if TIME in kinds else None,
                           self.bands if BANDS in kinds else None)

    def union(self, other: Restriction) -> Restriction:
        return Restriction(
            None if self.space is None or other.space is None else self.space.union(other.space),
            None if self.time is None or other.time is None else self.time.union(other.time),
            None if self.bands is None or other.bands is None else self.bands | other.bands)

    def region_contains(self, other: Restriction) -> bool:
        """True if the space-time part of this one contains the other's."""
        space = self.space is None or (other.space is not None
                                       and self.space.contains(other.space))
        time = self.time is None or (other.time is not None and self.time.contains(other.time))
        return space and time


EVERYTHING = Restriction()


def _pick(a: str | None, b: str | None, choose: Callable) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if choose(_instant(a), _instant(b)) == _instant(a) else b


def _instant(value: str) -> np.datetime64:
    return parse_instant(value)


def _crs_input(crs: Any) -> Any:
    return 4326 if crs is None else crs


def _same_crs(a: Any, b: Any) -> bool:
    if a == b:
        return True
    from pyproj import CRS

    try:
        return CRS.from_user_input(_crs_input(a)) == CRS.from_user_input(_crs_input(b))
    except Exception:  # noqa: BLE001 - unreadable CRS: treat as different
        return False


def _hashable_crs(crs: Any) -> Any:
    return json.dumps(crs, sort_keys=True) if isinstance(crs, (dict, list)) else crs


# --- reading restrictions out of arguments ---------------------------------------------------
def _box_of_extent(extent: Any) -> Box | None:
    """A Box for a literal bounding-box object, else None."""
    found = literal_bounds(extent)
    if found is None:
        return None
    (w, s, e, n), crs = found
    return Box(w, s, e, n, _hashable_crs(crs))


def _box_of_geojson(value: Any, *, weak: bool = False) -> Box | None:
    """The bounds of literal GeoJSON geometries, in EPSG:4326 or the CRS their legacy `crs`
    member names (a vector cube from a node: None)."""
    if not isinstance(value, dict) or "type" not in value:
        return None
    if value.get("type") == "FeatureCollection":
        geoms = [f.get("geometry") for f in value.get("features") or []]
    elif value.get("type") == "Feature":
        geoms = [value.get("geometry")]
    else:
        geoms = [value]
    if not geoms or any(not isinstance(g, dict) for g in geoms):
        return None
    try:
        from shapely.geometry import shape

        shapes = [shape(g) for g in geoms]
        bounds = [g.bounds for g in shapes]
    except Exception:  # noqa: BLE001 - invalid GeoJSON: the process itself reports it
        return None
    if not bounds or any(not all(math.isfinite(v) for v in b) for b in bounds):
        return None
    crs: Any = 4326
    if value.get("crs") is not None:  # GeoJSON 2008 named CRS (the client's `crs=`)
        try:
            crs = _hashable_crs(legacy_geojson_crs(value))
        except Exception:  # noqa: BLE001 - unreadable: the process reports it
            return None
    touch = any(g.geom_type not in ("Polygon", "MultiPolygon") for g in shapes
                if not g.is_empty)
    return Box(min(b[0] for b in bounds), min(b[1] for b in bounds),
               max(b[2] for b in bounds), max(b[3] for b in bounds), crs, touch, weak)


def _interval_of_extent(extent: Any) -> Interval | None:
    if not isinstance(extent, (list, tuple)) or len(extent) != 2:
        return None
    start, end = one_day_extent(extent)
    if not all(v is None or isinstance(v, str) for v in (start, end)):
        return None
    if start is None and end is None:
        return None
    try:
        for v in (start, end):
            if v is not None:
                _instant(v)
    except Exception:  # noqa: BLE001 - an invalid date: the process itself reports it
        return None
    return Interval(start, end)


def _literal_bands(bands: Any) -> frozenset[str] | None:
    if isinstance(bands, list) and bands and all(isinstance(b, str) for b in bands):
        return frozenset(bands)
    return None


# --- what each process passes upstream ---------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """For one input of a node: which restriction kinds of its output pass to that input, and
    the node's own restriction of it."""

    passes: frozenset[str]
    own: Restriction = EVERYTHING
    # Pixels the node reaches around each output pixel (a kernel's half size).
    reach: int = 0


def _all_but(*dims: Any) -> frozenset[str] | None:
    """The kinds passed by a node that works along `dims`; None if a dim is not known."""
    kinds = set(_ALL_KINDS)
    for d in dims:
        if d is None:
            continue
        if not isinstance(d, str) or d not in _DIM_KIND:
            return None
        kinds.discard(_DIM_KIND[d])
    return frozenset(kinds)


def rule_for(process_id: str, args: dict, argument: str) -> Rule | None:
    """How a node's input `argument` depends on its output; None: it needs all of it."""
    p, a = process_id, argument
    if p == "mask_polygon" and a == "data":
        # CDSE bounds a load without extent by the polygons when the outside is masked with
        # nodata (not `inside`, no replacement): the result is the polygons' bounding box.
        if args.get("inside") or args.get("replacement") is not None:
            return Rule(_ALL_KINDS)
        return Rule(_ALL_KINDS, Restriction(space=_box_of_geojson(args.get("mask"), weak=True)))
    if p in ("apply_polygon", "chunk_polygon") and a == "data":
        # The process sees whole chunks (a UDF may look anywhere in one): nothing downstream
        # narrows them; a load without extent is bounded by the polygons, as on CDSE.
        geometries = args.get("chunks" if p == "chunk_polygon" else "geometries")
        return Rule(frozenset(), Restriction(space=_box_of_geojson(geometries, weak=True)))
    if p in ("apply", "add_dimension", "filter_labels") and a == "data":
        return Rule(_ALL_KINDS)
    if p == "filter_bbox" and a == "data":
        return Rule(_ALL_KINDS, Restriction(space=_box_of_extent(args.get("extent"))))
    if p == "filter_spatial" and a == "data":
        return Rule(_ALL_KINDS, Restriction(space=_box_of_geojson(args.get("geometries"))))
    if p == "filter_temporal" and a == "data":
        if args.get("dimension") not in (None, "t"):
            return Rule(_ALL_KINDS)
        return Rule(_ALL_KINDS, Restriction(time=_interval_of_extent(args.get("extent"))))
    if p == "filter_bands" and a == "data":
        own = None if args.get("wavelengths") else _literal_bands(args.get("bands"))
        return Rule(_ALL_KINDS, Restriction(bands=own))
    if p == "ndvi" and a == "data":
        return Rule(frozenset({SPACE, TIME}))
    if p == "mask" and a in ("data", "mask"):
        # Non-spatial labels of data and mask must be equal: both get the same restriction.
        return Rule(frozenset({SPACE, TIME}))
    if p in ("reduce_dimension", "rename_labels", "drop_dimension") and a == "data":
        kinds = _all_but(args.get("dimension", args.get("name")))
        return None if kinds is None else Rule(kinds)
    if p == "apply_dimension" and a == "data":
        target = args.get("target_dimension")
        kinds = _all_but(args.get("dimension"),
                         target if isinstance(target, str) and target in _DIM_KIND else None)
        return None if kinds is None else Rule(kinds)
    if p in ("aggregate_temporal", "aggregate_temporal_period", "resample_cube_temporal") \
            and a == "data":
        return Rule(frozenset({SPACE, BANDS}))
    if p == "apply_kernel" and a == "data":
        # An output pixel depends on the input pixels within half the kernel's size: a box
        # its consumers need passes, grown by that many pixels of the load's grid.
        reach = _kernel_reach(args.get("kernel"))
        return Rule(frozenset({TIME, BANDS}) if reach is None else _ALL_KINDS, reach=reach or 0)
    if p in ("resample_spatial", "resample_cube_spatial") and a == "data":
        return Rule(frozenset({TIME, BANDS}))
    if p == "aggregate_spatial" and a == "data":
        # The result has no x/y: only the pixels under the geometries are used.
        return Rule(frozenset({TIME, BANDS}),
                    Restriction(space=_box_of_geojson(args.get("geometries"))))
    return None


def _kernel_reach(kernel: Any) -> int | None:
    """Half the size of a literal kernel (rows of numbers), else None."""
    if not isinstance(kernel, list) or not kernel or \
            not all(isinstance(row, list) and row for row in kernel):
        return None
    return max(len(kernel), max(len(row) for row in kernel)) // 2


def _narrow(out: Restriction, rule: Rule) -> Restriction:
    passed = out.only(rule.passes)
    if rule.reach and passed.space is not None:
        # a weak box does not pass a kernel (CDSE buffers it; its result would change shape)
        space = None if passed.space.weak else \
            replace(passed.space, pixels=passed.space.pixels + rule.reach)
        passed = replace(passed, space=space)
    own = rule.own
    space = _narrow_space(own.space, passed.space)
    time = passed.time if own.time is None else (
        own.time if passed.time is None else own.time.intersect(passed.time))
    bands = passed.bands
    if own.bands is not None and (bands is None or not bands <= own.bands):
        # Names that are not literally among the filter's (common names...): keep the filter's.
        bands = own.bands
    return Restriction(space, time, bands)


def _narrow_space(own: Box | None, passed: Box | None) -> Box | None:
    """A node's own box and the one its consumers need: a strong (explicit) box wins over a
    weak one, as CDSE's spatial_extent wins over its weak_spatial_extent; of two weak boxes the
    one nearer the load (the node's own) counts; two strong boxes intersect."""
    if own is None or passed is None:
        return passed if own is None else own
    if own.weak != passed.weak:
        return passed if own.weak else own
    if own.weak:
        return own
    return own.intersect(passed)


# --- the graph walk ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """`consumer` uses the node in its argument `argument`; `direct`: as the whole value."""

    consumer: str
    argument: str
    direct: bool


def _consumers(graph: dict) -> dict[str, list[Edge]]:
    found: dict[str, list[Edge]] = {nid: [] for nid in graph}
    for nid, node in graph.items():
        for name, value in (node.get("arguments") or {}).items():
            direct = isinstance(value, dict) and set(value) == {"from_node"}
            for kind, ref in graphs.iter_references(value):
                if kind == "from_node" and ref in found:
                    found[ref].append(Edge(nid, name, direct))
    return found


class _Needs:
    """What every node's consumers need of its output (memoised over the DAG)."""

    def __init__(self, graph: dict, consumers: dict[str, list[Edge]]) -> None:
        self.graph = graph
        self.consumers = consumers
        self.memo: dict[str, Restriction] = {}

    def fill(self) -> None:
        """Compute every node's need, consumers first (no deep recursion on long chains)."""
        for nid in _consumers_first(self.graph, self.consumers):
            self.of_output(nid)

    def of_output(self, nid: str) -> Restriction:
        if nid not in self.memo:
            edges = self.consumers.get(nid, [])
            if not edges or self.graph[nid].get("result"):
                need = EVERYTHING
            else:
                need = self.of_edge(edges[0])
                for edge in edges[1:]:
                    need = need.union(self.of_edge(edge))
            self.memo[nid] = need
        return self.memo[nid]

    def of_edge(self, edge: Edge) -> Restriction:
        if not edge.direct:
            return EVERYTHING
        node = self.graph[edge.consumer]
        args = _with_literal_geometries(self.graph, node.get("arguments") or {})
        rule = rule_for(node["process_id"], args, edge.argument)
        if rule is None:
            return EVERYTHING
        return _narrow(self.of_output(edge.consumer), rule)


# Arguments that hold geometries (the processes of rule_for that read their bounds).
_GEOMETRY_ARGUMENTS = ("geometries", "mask", "chunks")


def _with_literal_geometries(graph: dict, args: dict) -> dict:
    """`args` with geometries that come from a load_geojson node of literal GeoJSON replaced
    by that GeoJSON (the client's `connection.load_geojson(...)`), so their bounds count."""
    found = {}
    for name in _GEOMETRY_ARGUMENTS:
        value = args.get(name)
        if isinstance(value, dict) and set(value) == {"from_node"}:
            source = graph.get(value["from_node"]) or {}
            data = (source.get("arguments") or {}).get("data")
            if source.get("process_id") == "load_geojson" and isinstance(data, dict):
                found[name] = data
    return {**args, **found} if found else args


def _consumers_first(graph: dict, consumers: dict[str, list[Edge]]) -> list[str]:
    """Node ids ordered so that every node comes after all of its consumers."""
    order: list[str] = []
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        stack = [(start, iter(consumers.get(start, [])))]
        done.add(start)
        while stack:
            nid, it = stack[-1]
            for edge in it:
                if edge.consumer not in done:
                    done.add(edge.consumer)
                    stack.append((edge.consumer, iter(consumers.get(edge.consumer, []))))
                    break
            else:
                stack.pop()
                order.append(nid)
    return order


# --- band metadata (for band push-down) ---------------------------------------------------------
BandLookup = Callable[[dict], "dict[str, float | None] | None"]
# A load node's collection CRS and coarsest band resolution (to widen touching boxes).
GridLookup = Callable[[dict], "tuple[Any, float] | None"]


# A load_stac URL's source (processing gives engine.processes.stac_io.stac_sources).
StacLookup = Callable[[str], "CollectionSource | None"]


def catalog_grids(catalog: Collections | None, stac: StacLookup | None = None) -> GridLookup:
    """A lookup of a load node's collection CRS and coarsest band resolution: in `catalog`
    for load_collection, through `stac` for load_stac."""

    def lookup(node: dict) -> tuple[Any, float] | None:
        args = node.get("arguments") or {}
        source: CollectionSource | None = None
        try:
            if node.get("process_id") == "load_collection" and catalog is not None:
                cid = args.get("id")
                source = catalog.get(cid) if isinstance(cid, str) else None
            elif node.get("process_id") == "load_stac" and stac is not None:
                url = args.get("url")
                source = stac(url) if isinstance(url, str) else None
        except Exception:  # noqa: BLE001 - unknown collection: the load reports it
            return None
        return None if source is None else _grid_of(source)

    return lookup


def _grid_of(source: CollectionSource) -> tuple[Any, float] | None:
    try:
        dims = source.stac().get("cube:dimensions") or {}
    except Exception:  # noqa: BLE001 - no metadata: no grid known
        return None
    crs = (dims.get("x") or {}).get("reference_system")
    steps = [_number((dims.get(a) or {}).get("step")) for a in ("x", "y")]
    resolutions = [r for r in (source_bands(source) or {}).values() if r is not None]
    margin = max([r for r in (*steps, *resolutions) if r is not None], default=None)
    if crs is None or margin is None or margin <= 0:
        return None
    return _hashable_crs(crs), margin


def catalog_bands(catalog: Collections | None) -> BandLookup:
    """A lookup of a load node's collection bands -> resolution (None: unknown) in `catalog`."""

    def lookup(node: dict) -> dict[str, float | None] | None:
        if node.get("process_id") != "load_collection" or catalog is None:
            return None
        cid = (node.get("arguments") or {}).get("id")
        if not isinstance(cid, str):
            return None
        try:
            source = catalog.get(cid)
        except Exception:  # noqa: BLE001 - unknown collection: load_collection reports it
            return None
        return source_bands(source)

    return lookup


def source_bands(source: CollectionSource) -> dict[str, float | None] | None:
    """Band name -> spatial resolution of a collection source, from its metadata."""
    infos = getattr(source, "bands", None)
    if isinstance(infos, dict) and infos:
        return {str(k): _number(getattr(v, "resolution", None)) for k, v in infos.items()}
    try:
        doc = source.stac()
    except Exception:  # noqa: BLE001
        return None
    names = (((doc.get("cube:dimensions") or {}).get("bands") or {}).get("values"))
    if not isinstance(names, list) or not names:
        return None
    summaries = doc.get("summaries") or {}
    res: dict[str, float | None] = {str(n): None for n in names}
    for key, field in (("raster:bands", "spatial_resolution"), ("eo:bands", "gsd")):
        for b in summaries.get(key) or []:
            if isinstance(b, dict) and b.get("name") in res and res[b["name"]] is None:
                res[b["name"]] = _number(b.get(field))
    gsd = summaries.get("gsd")
    if isinstance(gsd, list) and len(gsd) == 1:  # one resolution for all bands
        res = {k: _number(gsd[0]) if v is None else v for k, v in res.items()}
    return res


def _number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# --- applying a restriction to a load node --------------------------------------------------
def _push_space(args: dict, box: Box | None, grid: tuple[Any, float] | None = None) -> bool:
    if box is None or box.empty:
        return False
    if box.weak and args.get("spatial_extent") is not None:
        return False  # the load's own extent wins over geometries that only bound it on CDSE
    if box.touch or box.pixels:
        if grid is None:
            return False  # the pixel size is unknown: the box cannot be widened to it
        crs, margin = grid  # the coarsest band's pixel: at least one pixel of the load's grid
        box = box.in_crs(crs).widened(margin * (box.pixels + (1 if box.touch else 0)))
    current = args.get("spatial_extent")
    if current is None:
        new = box
    else:
        have = _box_of_extent(current)
        if have is None:  # GeoJSON (a polygon filter) or a parameter: leave it alone
            return False
        if box.contains(have):
            return False
        new = have.intersect(box)
    if not (new.west < new.east and new.south < new.north):
        return False  # empty, or a point/line's zero-area box: the loader needs an area
    extent = dict(current) if isinstance(current, dict) else {}
    extent.update(west=new.west, south=new.south, east=new.east, north=new.north)
    crs = new.crs
    if isinstance(crs, str) and crs.startswith("{"):
        crs = json.loads(crs)
    extent["crs"] = crs
    args["spatial_extent"] = extent
    return True


def _push_time(args: dict, interval: Interval | None) -> bool:
    if interval is None or interval.empty:
        return False
    current = args.get("temporal_extent")
    if current is None:
        new = interval
    else:
        have = _interval_of_extent(current)
        if have is None or interval.contains(have):
            return False
        new = have.intersect(interval)
        if new.empty:
            return False
    if new.start is None and new.end is None:
        return False
    args["temporal_extent"] = [new.start, new.end]
    return True


def _push_bands(args: dict, wanted: frozenset[str] | None,
                available: dict[str, float | None] | None) -> bool:
    if wanted is None or not wanted or available is None:
        return False
    current = args.get("bands")
    if current is None:
        loaded = list(available)
    elif isinstance(current, list) and all(isinstance(b, str) for b in current):
        loaded = list(current)
    else:
        return False
    if not wanted <= set(loaded) or not set(loaded) <= set(available):
        return False  # common names or unknown bands: only the filter knows what it means
    keep = [b for b in loaded if b in wanted]
    if len(keep) == len(loaded):
        return False
    resolutions = [r for b in loaded if (r := available[b]) is not None]
    if len(resolutions) < len(loaded):
        return False  # a band of unknown resolution: the loaded grid might get coarser
    if min(r for b in keep if (r := available[b]) is not None) != min(resolutions):
        return False  # the loaded grid would get coarser
    args["bands"] = keep
    return True


def _apply(node: dict, need: Restriction, bands: BandLookup | None,
           grids: GridLookup | None = None) -> list[str]:
    args = node.setdefault("arguments", {})
    changed = []
    touch = need.space is not None and (need.space.touch or need.space.pixels > 0)
    if _push_space(args, need.space, grids(node) if touch and grids is not None else None):
        changed.append("spatial_extent")
    if _push_time(args, need.time):
        changed.append("temporal_extent")
    if bands is not None and _push_bands(args, need.bands, bands(node)):
        changed.append("bands")
    return changed


def _groups(edges: list[tuple[Edge, Restriction]]) -> list[tuple[Restriction, list[Edge]]]:
    """Edges by the space-time region they need; regions inside another one join it."""
    groups: list[tuple[Restriction, list[Edge]]] = []
    for edge, need in edges:
        for i, (have, members) in enumerate(groups):
            if have.region_contains(need) or need.region_contains(have):
                groups[i] = (have.union(need), [*members, edge])
                break
        else:
            groups.append((need, [edge]))
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i][0], groups[j][0]
                if a.region_contains(b) or b.region_contains(a):
                    groups[i] = (a.union(b), groups[i][1] + groups[j][1])
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def _fresh_id(graph: dict, base: str) -> str:
    k = 2
    while f"{base}_part{k}" in graph:
        k += 1
    return f"{base}_part{k}"


def optimize(graph: dict, catalog: Collections | None = None, *,
             band_lookup: BandLookup | None = None, stac: StacLookup | None = None) -> dict:
    """The graph with filters pushed down into its load nodes (a new dict; `graph` is kept).

    `catalog` (or `band_lookup`) gives the bands of a collection; without it bands are not
    pushed down (spatial and temporal extents still are). `stac` opens a load_stac URL, for
    the grid of a load_stac cube aligned with another (alignment.py). Child process graphs are
    left as they are: they cannot load data from the graph's nodes.
    """
    out = copy.deepcopy(graph)
    loads = [nid for nid, node in out.items() if node.get("process_id") in LOAD_PROCESSES]
    if not loads:
        return out
    bands = band_lookup or (catalog_bands(catalog) if catalog is not None else None)
    grids = catalog_grids(catalog, stac) if catalog is not None or stac is not None else None
    if grids is not None:  # loads put onto another CRS's grid cover that grid (alignment.py)
        for nid in widen_aligned_loads(out, grids):
            log.debug("widened %s to %s", nid, out[nid]["arguments"]["spatial_extent"])
    consumers = _consumers(out)
    needs = _Needs(out, consumers)
    needs.fill()
    for nid in loads:
        edges = consumers[nid]
        if not edges or out[nid].get("result"):
            continue
        per_edge = [(edge, needs.of_edge(edge)) for edge in edges]
        groups = _groups(per_edge)  # an edge that needs everything makes one group
        original = copy.deepcopy(out[nid])
        for k, (need, members) in enumerate(groups):
            if k == 0:
                target = nid
            else:
                target = _fresh_id(out, nid)
                out[target] = copy.deepcopy(original)
                out[target].pop("result", None)
                for edge in members:
                    out[edge.consumer]["arguments"][edge.argument] = {"from_node": target}
            changed = _apply(out[target], need, bands, grids)
            if changed:
                log.debug("push-down into %s (%s): %s", target, out[target]["process_id"],
                          {k2: out[target]["arguments"].get(k2) for k2 in changed})
    return out


def pushed_down(before: dict, after: dict) -> Iterator[tuple[str, str, Any, Any]]:
    """(node, argument, old, new) for every load argument `optimize` changed or added."""
    for nid, node in after.items():
        if node.get("process_id") not in LOAD_PROCESSES:
            continue
        old_args = (before.get(nid) or {}).get("arguments") or {}
        for name in ("spatial_extent", "temporal_extent", "bands"):
            new = (node.get("arguments") or {}).get(name)
            old = old_args.get(name) if nid in before else None
            if nid not in before or new != old:
                yield nid, name, old, new
