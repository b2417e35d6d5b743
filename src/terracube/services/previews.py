"""Map previews of collections: the process graph and configuration of a collection's XYZ
preview layer (the `rel: xyz` link of its STAC document), built from its metadata."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from terracube.services.render import TileConfig

PREVIEW_DAYS = 31  # the preview is the median of the last month of the collection
MAX_READ_FACTOR = 8  # the lowest zoom reads at most 8× the tile's pixels per axis
EQUATOR_M_PER_PX = 156543.03392804097  # WebMercatorQuad, zoom 0, 256 px tiles


def preview_bands(stac: dict[str, Any]) -> list[str] | None:
    """Red, green and blue by their common names, else the first band; None without bands."""
    eo_bands = (stac.get("summaries") or {}).get("eo:bands") or []
    by_common = {str(b.get("common_name")): str(b["name"]) for b in eo_bands
                 if isinstance(b, dict) and b.get("name")}
    if all(c in by_common for c in ("red", "green", "blue")):
        return [by_common["red"], by_common["green"], by_common["blue"]]
    for dim in (stac.get("cube:dimensions") or {}).values():
        if dim.get("type") == "bands" and dim.get("values"):
            return [str(dim["values"][0])]
    names = [str(b["name"]) for b in eo_bands if isinstance(b, dict) and b.get("name")]
    return names[:1] or None


def preview_process(stac: dict[str, Any]) -> dict[str, Any]:
    """The graph of a collection's preview: its preview bands over its whole area, the median
    of the last PREVIEW_DAYS of its temporal extent."""
    dims = stac.get("cube:dimensions") or {}
    arguments: dict[str, Any] = {"id": stac["id"]}
    bbox = ((stac.get("extent") or {}).get("spatial") or {}).get("bbox") or []
    if bbox and len(bbox[0]) == 4:
        west, south, east, north = bbox[0]
        arguments["spatial_extent"] = {"west": west, "south": south, "east": east,
                                       "north": north}
    bands = preview_bands(stac)
    if bands:
        arguments["bands"] = bands
    graph: dict[str, Any] = {"load": {"process_id": "load_collection", "arguments": arguments}}
    temporal = next((name for name, d in dims.items() if d.get("type") == "temporal"), None)
    if temporal is not None:
        end = (dims[temporal].get("extent") or [None, None])[1]
        if isinstance(end, str):
            last = datetime.fromisoformat(end.replace("Z", "+00:00"))
            start = (last - timedelta(days=PREVIEW_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
            finish = (last + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            arguments["temporal_extent"] = [start, finish]
        graph["median"] = {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": temporal, "reducer": {
                "process_graph": {"m": {"process_id": "median", "arguments": {
                    "data": {"from_parameter": "data"}}, "result": True}}}}}
    graph[list(graph)[-1]]["result"] = True
    return {"process_graph": graph}


def preview_config(stac: dict[str, Any]) -> TileConfig:
    """Zooms where a tile reads at most MAX_READ_FACTOR² times its pixels (from the
    collection's pixel size), stretched per tile."""
    dims = stac.get("cube:dimensions") or {}
    steps = [abs(float(d["step"])) for d in dims.values()
             if d.get("type") == "spatial" and d.get("axis") == "x"
             and isinstance(d.get("step"), (int, float)) and d["step"]]
    minzoom = 8
    if steps:
        step = steps[0]
        if step < 1:  # degrees: about 111 km each
            step *= 111_000
        minzoom = max(0, min(18, math.ceil(math.log2(EQUATOR_M_PER_PX /
                                                     (step * MAX_READ_FACTOR)))))
    return TileConfig(minzoom=minzoom, maxzoom=22, resampling="bilinear")
