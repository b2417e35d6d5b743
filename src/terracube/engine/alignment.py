"""Loads widened to the grid they are aligned with: a pure process graph rewrite.

When a cube loaded in one reference system is put onto the grid of a cube loaded in another
(the `data` of resample_cube_spatial onto its `target`, `cube2` of merge_cubes onto `cube1`,
the `mask` of mask onto its `data`), the target covers the envelope of its bounding box in its
own CRS: a longitude/latitude box loaded from a UTM collection is a UTM rectangle a little
larger than the box. The other cube, loaded with the same box in its own CRS (e.g. a DEM in
EPSG:4326), would leave the corners of that rectangle empty. CDSE loads such a cube directly
in the target's CRS over the target's extent; this rewrite does the same by growing the
source load's box to the envelope, in the source's CRS, of the target's envelope, plus one
source pixel for the resampling kernel. Whatever the source holds beyond that is cut by the
resampling onto the target grid, so results differ only where they were empty before.

Assumptions: the source reaches the aligning argument through nodes that keep its grid
(`_GRID_KEEPING`, always through their `data`) and nothing else uses the source's load or
those nodes (else the rewrite would change another result); both loads are load_collection or
load_stac with a literal bounding box, and their CRS and pixel size are known (`grids`: the
catalog, or the STAC document a load_stac URL gives).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from terracube.engine import graph as graphs

# The argument that is aligned and the one it is aligned with, per process.
_ALIGNING = {
    "resample_cube_spatial": ("data", "target"),
    "merge_cubes": ("cube2", "cube1"),
    "mask": ("mask", "data"),
}
# Processes whose result has the horizontal grid of their `data`.
_GRID_KEEPING = frozenset({
    "apply", "apply_dimension", "reduce_dimension", "drop_dimension", "filter_bands",
    "filter_temporal", "rename_labels", "add_dimension", "ndvi", "linear_scale_range",
    "slope", "aspect", "aggregate_temporal", "aggregate_temporal_period",
})

# A load node's collection CRS and pixel size in its units (engine.optimize.catalog_grids).
GridLookup = Callable[[dict], "tuple[Any, float] | None"]
Bounds = tuple[float, float, float, float]


def widen_aligned_loads(graph: dict, grids: GridLookup) -> list[str]:
    """Grow (in place) the spatial_extent of load nodes whose cube is aligned with a cube in
    another CRS to cover that cube's extent; return the ids of the loads changed."""
    uses: dict[str, int] = {nid: 0 for nid in graph}
    for node in graph.values():
        for value in (node.get("arguments") or {}).values():
            for kind, ref in graphs.iter_references(value):
                if kind == "from_node" and ref in uses:
                    uses[ref] += 1
    changed = []
    for node in graph.values():
        roles = _ALIGNING.get(node.get("process_id", ""))
        if roles is None:
            continue
        args = node.get("arguments") or {}
        source = _load_of(graph, args.get(roles[0]), uses, exclusive=True)
        target = _load_of(graph, args.get(roles[1]), uses, exclusive=False)
        if source is None or target is None or source == target:
            continue
        if _widen(graph[source], graph[target], grids):
            changed.append(source)
    return changed


def _load_of(graph: dict, value: Any, uses: dict[str, int], *, exclusive: bool) -> str | None:
    """The load_collection / load_stac node whose cube `value` is, through grid-keeping nodes; with
    `exclusive`, only if every node on the way (the load too) has this one use."""
    while isinstance(value, dict) and set(value) == {"from_node"}:
        nid = value["from_node"]
        node = graph.get(nid)
        if node is None or (exclusive and uses.get(nid) != 1):
            return None
        process_id = node.get("process_id")
        if process_id in ("load_collection", "load_stac"):
            return str(nid)
        if process_id not in _GRID_KEEPING:
            return None
        value = (node.get("arguments") or {}).get("data")
    return None


def _widen(source: dict, target: dict, grids: GridLookup) -> bool:
    source_grid, target_grid = grids(source), grids(target)
    if source_grid is None or target_grid is None or _same_crs(source_grid[0], target_grid[0]):
        return False
    args = source.setdefault("arguments", {})
    have = literal_bounds(args.get("spatial_extent"))
    wanted = literal_bounds((target.get("arguments") or {}).get("spatial_extent"))
    if have is None or wanted is None or not all(
            w < e and s < n for (w, s, e, n), _ in (have, wanted)):
        return False
    crs, pixel = source_grid
    # The target's extent: its box's envelope in its own CRS (what it loads).
    needed = _envelope(_envelope(wanted[0], wanted[1], target_grid[0]), target_grid[0], crs)
    needed = (needed[0] - pixel, needed[1] - pixel, needed[2] + pixel, needed[3] + pixel)
    current = _envelope(have[0], have[1], crs)
    grown = (min(current[0], needed[0]), min(current[1], needed[1]),
             max(current[2], needed[2]), max(current[3], needed[3]))
    if grown == current:
        return False
    extent = dict(args["spatial_extent"])
    extent.update(zip(("west", "south", "east", "north"), grown, strict=True))
    # (catalog_grids gives a PROJJSON CRS as its JSON text, to keep it hashable)
    extent["crs"] = json.loads(crs) if isinstance(crs, str) and crs.startswith("{") else crs
    args["spatial_extent"] = extent
    return True


def literal_bounds(extent: Any) -> tuple[Bounds, Any] | None:
    """(bounds, crs) of a literal bounding-box spatial_extent (crs 4326 if not given), else
    None (GeoJSON, a parameter, nothing, non-finite numbers)."""
    if not isinstance(extent, dict) or not {"west", "south", "east", "north"} <= set(extent):
        return None
    try:
        w, s, e, n = (float(extent[k]) for k in ("west", "south", "east", "north"))
    except (TypeError, ValueError):
        return None
    crs = extent.get("crs")
    if not all(math.isfinite(v) for v in (w, s, e, n)) \
            or isinstance(crs, dict) and len(crs) == 1 and "from_parameter" in crs:
        return None
    return (w, s, e, n), 4326 if crs is None else crs


def _envelope(bounds: Bounds, crs: Any, to: Any) -> Bounds:
    if _same_crs(crs, to):
        return bounds
    from pyproj import CRS, Transformer

    tr = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_user_input(to),
                              always_xy=True)
    w, s, e, n = tr.transform_bounds(*bounds, densify_pts=21)
    return float(w), float(s), float(e), float(n)


def _same_crs(a: Any, b: Any) -> bool:
    if a == b:
        return True
    from pyproj import CRS

    try:
        return bool(CRS.from_user_input(a) == CRS.from_user_input(b))
    except Exception:  # noqa: BLE001 - unreadable CRS: treat as different
        return False
