"""What a graph asks of a data source: a bounding box and the load request (push-down)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyproj import CRS, Transformer


@dataclass(frozen=True)
class BBox:
    """A bounding box in some CRS (west/south/east/north)."""

    west: float
    south: float
    east: float
    north: float
    crs: Any = 4326  # EPSG code, WKT or PROJJSON

    def to_crs(self, crs: Any) -> BBox:
        """The box enclosing this one in another CRS (densified edges, so curved borders fit)."""
        src, dst = CRS.from_user_input(self.crs), CRS.from_user_input(crs)
        if src == dst:
            return BBox(self.west, self.south, self.east, self.north, crs)
        tr = Transformer.from_crs(src, dst, always_xy=True)
        w, s, e, n = tr.transform_bounds(self.west, self.south, self.east, self.north,
                                         densify_pts=21)
        return BBox(w, s, e, n, crs)


@dataclass(frozen=True)
class LoadRequest:
    """What a graph needs from a collection: the read is limited to this (push-down)."""

    bbox: BBox | None = None
    temporal_extent: tuple[str | None, str | None] | None = None  # [start, end) RFC 3339
    bands: tuple[str, ...] | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # name -> Callback condition
    resolution: float | None = None
    crs: Any = None
