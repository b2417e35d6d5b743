"""A collection made of STAC items with raster assets, loaded lazily with odc-stac."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pystac
import xarray as xr

from terracube import errors
from terracube.catalog import direct_read
from terracube.catalog.base import (
    GEOMETRY_EXTENT_HINT,
    CollectionSource,
    PropertyCheck,
    queryables_schema,
)
from terracube.datacube.band_reads import BAND_READS, typed_nodata
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.grid import GRID_READER
from terracube.datacube.request import BBox, LoadRequest

log = logging.getLogger(__name__)

# Tile-aligned chunks keep memory bounded by chunks, not by the collection (COGs use 256/512).
SPATIAL_CHUNK = 2048


# The attrs key of a loaded cube's GridReader.


@dataclass(frozen=True)
class GridReader:
    """How to read a loaded cube's data again onto another grid: `read(shape, transform, crs,
    resampling)`. Valid only while the cube still holds `data` itself (no process changed it)."""

    data: Any
    read: Callable[..., xr.DataArray]


# The STAC projection extension of proj:epsg / proj:wkt2 (v2 renamed proj:epsg to proj:code).
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"

class NoDataForRequest(errors.ProcessParameterInvalid):
    """The filters leave nothing to load (no item in time/space/properties)."""


@dataclass
class BandInfo:
    name: str
    nodata: float | None
    resolution: float
    scale: float = 1.0
    offset: float = 0.0
    data_type: str = "uint16"
    common_name: str | None = None
    center_wavelength: float | None = None


class StacItemsSource(CollectionSource):
    """A collection backed by a list of pystac Items whose assets are one band each."""

    def __init__(self, collection_id: str, items: list[pystac.Item], bands: list[BandInfo],
                 crs: str, description: str, title: str | None = None,
                 license: str = "proprietary", providers: list[dict] | None = None,
                 keywords: list[str] | None = None, extra: dict | None = None) -> None:
        if not items:
            raise ValueError(f"collection {collection_id} has no items")
        self.id = collection_id
        self.items = sorted(items, key=lambda it: it.datetime)
        self.bands = {b.name: b for b in bands}
        self.crs = crs
        self.description = description
        self.title = title or collection_id
        self.license = license
        self.providers = providers or []
        self.keywords = keywords or []
        self.extra = extra or {}
        self._native_bbox = self._bounds_native()

    # --- metadata -------------------------------------------------------------------------
    def _bounds_native(self) -> BBox:
        west = south = np.inf
        east = north = -np.inf
        for item in self.items:
            for asset in item.assets.values():
                shape = asset.extra_fields.get("proj:shape")
                tr = asset.extra_fields.get("proj:transform")
                if not shape or not tr:
                    continue
                x0, y0 = tr[2], tr[5]
                x1, y1 = x0 + tr[0] * shape[1], y0 + tr[4] * shape[0]
                west, east = min(west, x0, x1), max(east, x0, x1)
                south, north = min(south, y0, y1), max(north, y0, y1)
        return BBox(float(west), float(south), float(east), float(north), self.crs)

    def stac(self) -> dict:
        from pyproj import CRS

        ll = self._native_bbox.to_crs(4326)
        t0 = self.items[0].datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        t1 = self.items[-1].datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        epsg = CRS.from_user_input(self.crs).to_epsg()
        finest = min(b.resolution for b in self.bands.values())
        eo_bands = []
        raster_bands = []
        for b in self.bands.values():
            eb: dict[str, Any] = {"name": b.name}
            if b.common_name:
                eb["common_name"] = b.common_name
            if b.center_wavelength:
                eb["center_wavelength"] = b.center_wavelength
            eb["gsd"] = b.resolution
            eo_bands.append(eb)
            rb: dict[str, Any] = {"name": b.name, "data_type": b.data_type, "scale": b.scale,
                                  "offset": b.offset, "spatial_resolution": b.resolution}
            if b.nodata is not None:
                rb["nodata"] = b.nodata
            raster_bands.append(rb)
        nb = self._native_bbox
        return {
            "type": "Collection",
            "stac_version": "1.0.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                PROJECTION_EXT,  # proj:epsg (or proj:wkt2) in the summaries
            ],
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "license": self.license,
            "keywords": self.keywords,
            "providers": self.providers,
            "extent": {
                "spatial": {"bbox": [[ll.west, ll.south, ll.east, ll.north]]},
                "temporal": {"interval": [[t0, t1]]},
            },
            "cube:dimensions": {
                "x": {"type": "spatial", "axis": "x", "extent": [nb.west, nb.east],
                      "step": finest, "reference_system": epsg or self.crs},
                "y": {"type": "spatial", "axis": "y", "extent": [nb.south, nb.north],
                      "step": finest, "reference_system": epsg or self.crs},
                "t": {"type": "temporal", "extent": [t0, t1], "step": None},
                "bands": {"type": "bands", "values": list(self.bands)},
            },
            "summaries": {
                "eo:bands": eo_bands,
                "raster:bands": raster_bands,
                "proj:epsg": [epsg] if epsg else [],
                "gsd": sorted({b.resolution for b in self.bands.values()}),
            },
            "assets": {},
            **self.extra,
        }

    # --- loading --------------------------------------------------------------------------
    def queryables(self) -> dict[str, Any]:
        """JSON schema of the item properties (GET /collections/{id}/queryables)."""
        return queryables_from_items(self.id, self.items)

    def select_items(self, request: LoadRequest,
                     check_property: Callable[[str, Any, Any], bool] | None = None
                     ) -> list[pystac.Item]:
        chosen = []
        start, end = request.temporal_extent or (None, None)
        t_start = pd.Timestamp(start) if start else None
        t_end = pd.Timestamp(end) if end else None
        for item in self.items:
            t = pd.Timestamp(item.datetime)
            if t_start is not None and t < _utc(t_start):
                continue
            if t_end is not None and t >= _utc(t_end):
                continue
            if check_property and not all(
                check_property(name, cond, item.properties.get(name))
                for name, cond in request.properties.items()
            ):
                continue
            chosen.append(item)
        return chosen

    def resolve_bands(self, bands: Iterable[str]) -> tuple[str, ...]:
        """Band names for requested names or common names, as the definitions of
        load_collection and load_stac say: a name wins over a common name, a common name
        several bands have (`rededge`) gives all of them in the collection's order."""
        out: list[str] = []
        for b in bands:
            if b in self.bands:
                out.append(b)
                continue
            matched = [n for n, info in self.bands.items() if info.common_name == b]
            out.extend(matched or [b])
        return tuple(dict.fromkeys(out))

    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        if request.bands:
            request = replace(request, bands=self.resolve_bands(request.bands))
        bands = list(request.bands) if request.bands else list(self.bands)
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            raise errors.ProcessParameterInvalid(
                f"Collection '{self.id}' has no band(s) {', '.join(unknown)}; available: "
                f"{', '.join(self.bands)}.", argument="bands")
        items = self.select_items(request, check_property)
        if not items:
            known = {name for item in self.items for name in item.properties}
            unknown_properties = sorted(set(request.properties) - known)
            if unknown_properties:  # e.g. CDSE's grid:code or tileId filters
                raise NoDataForRequest(
                    f"The items of collection '{self.id}' have no property "
                    f"{', '.join(map(repr, unknown_properties))}, so the properties filter "
                    "leaves nothing to load; properties to filter on (GET /collections/"
                    f"{self.id}/queryables): {', '.join(sorted(known - {'datetime'}))}."
                    + (" (The client's max_cloud_cover sets eo:cloud_cover: leave it out for "
                       "a collection without clouds, such as radar or a DEM.)"
                       if "eo:cloud_cover" in unknown_properties else ""),
                    argument="properties")
            raise self._nothing_selected(request)
        crs = request.crs or self.crs
        resolution = request.resolution or min(self.bands[b].resolution for b in bands)
        native = self._native_bbox
        bbox = request.bbox.to_crs(crs) if request.bbox else native.to_crs(crs)
        nat = native.to_crs(crs)
        w, e = max(bbox.west, nat.west), min(bbox.east, nat.east)
        s, n = max(bbox.south, nat.south), min(bbox.north, nat.north)
        if not (w < e and s < n):
            raise NoDataForRequest(
                f"The spatial extent {request.bbox} does not intersect collection '{self.id}', "
                f"which covers {nat.west:.0f}, {nat.south:.0f}, {nat.east:.0f}, {nat.north:.0f} "
                f"(EPSG:{_epsg(crs)}){_in_degrees(native)}: choose a spatial_extent inside it "
                f"(GET /collections/{self.id} lists the extent); {GEOMETRY_EXTENT_HINT}",
                argument="spatial_extent")
        geobox = centre_inside_geobox((w, s, e, n), crs, resolution,
                                      self._grid_anchor(resolution, crs))
        if geobox is None:
            raise NoDataForRequest(
                f"The spatial extent {request.bbox} holds no pixel centre of collection "
                f"'{self.id}' at {resolution:g} units (EPSG:{_epsg(crs)}).",
                argument="spatial_extent")
        # Values stay digital numbers like on CDSE (scale/offset are metadata), but as
        # float32 so band math cannot wrap around and no-data can be NaN.
        data = direct_read.load_aligned(items, bands, {b: self.bands[b].nodata for b in bands},
                                        geobox, SPATIAL_CHUNK)
        reads = None
        if data is None:
            data = self._load_odc(items, bands, geobox)
        else:  # how its blocks are read: fused callbacks read the bands they use themselves
            reads = data.attrs.pop(BAND_READS, None)
        epsg = _epsg(crs)
        ref = epsg if epsg else str(crs)
        dims = (
            Dimension("t", TEMPORAL),
            Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", ref),
            Dimension("x", SPATIAL, "x", ref),
        )
        band_meta = {b: self.bands[b] for b in bands}
        # resample_spatial straight after this load may read these items onto its own grid
        reader = GridReader(data, partial(self._load_on_grid, items, bands))
        attrs = {"band_metadata": band_meta, "collection": self.id, GRID_READER: reader}
        if reads is not None:
            attrs[BAND_READS] = reads
        return RasterCube(data, dims, nodata=None, attrs=attrs)

    def _nothing_selected(self, request: LoadRequest) -> NoDataForRequest:
        """Why no item was selected, naming the argument to change: the temporal extent when
        no item lies in it (with the collection's dates), else the properties filter (with
        the values the items in the extent have)."""
        in_time = self.select_items(LoadRequest(temporal_extent=request.temporal_extent))
        if not in_time or not request.properties:
            starts = [pd.Timestamp(i.properties.get("start_datetime") or i.datetime)
                      for i in self.items]
            ends = [pd.Timestamp(i.properties.get("end_datetime") or i.datetime)
                    for i in self.items]
            covers = (f"; it has data from {min(starts):%Y-%m-%d} to {max(ends):%Y-%m-%d}"
                      if starts else "")
            start, end = request.temporal_extent or (None, None)
            return NoDataForRequest(
                f"No data in collection '{self.id}' for the temporal extent [{start}, {end})"
                f"{covers}.", argument="temporal_extent")
        seen = {name: sorted({repr(item.properties.get(name)) for item in in_time})[:8]
                for name in request.properties}
        return NoDataForRequest(
            f"None of the {len(in_time)} items of collection '{self.id}' in the temporal "
            "extent passes the properties filter; their values: "
            + "; ".join(f"{name}: {', '.join(values)}" for name, values in seen.items())
            + ". Conditions compare like openEO's eq/lte... (a number never equals a string).",
            argument="properties")

    def _load_on_grid(self, items: list[pystac.Item], bands: list[str], shape: tuple[int, int],
                      transform: Any, crs: Any, resampling: str) -> xr.DataArray:
        """The items read onto another grid (GDAL picks the files' overviews for a coarser
        one)."""
        from odc.geo.geobox import GeoBox

        geobox = GeoBox(shape, transform, crs)
        return self._load_odc(items, bands, geobox, resampling)

    def _load_odc(self, items: list[pystac.Item], bands: list[str], geobox: Any,
                  resampling: str = "nearest") -> xr.DataArray:
        """odc-stac for any grid (reprojection, resampling, several files per date)."""
        import odc.stac

        ds = odc.stac.load(
            items, bands=bands, geobox=geobox, groupby="time",
            chunks={"time": 1, "x": SPATIAL_CHUNK, "y": SPATIAL_CHUNK},
            resampling=resampling, fail_on_error=True,
        )
        arrays = []
        for b in bands:
            nodata = self.bands[b].nodata
            # (odc-stac's own dtype="float32" leaves some no-data pixels at 0)
            values = ds[b].astype("float32")
            # compared in the band's own type (integers stay integers, see typed_nodata)
            value = typed_nodata(ds[b].dtype, nodata)
            arrays.append(values.where(ds[b] != value) if value is not None else values)
        data = xr.concat(arrays, dim=pd.Index(bands, name="bands"))
        # odc-stac names the axes of a geographic grid latitude/longitude.
        data = data.rename({"time": "t", **{k: v for k, v in (("latitude", "y"),
                            ("longitude", "x")) if k in data.dims}})
        data = data.transpose("t", "bands", "y", "x")
        data = data.drop_vars([c for c in data.coords if c not in data.dims])
        data.attrs = {}
        data.name = None
        return data

    def _grid_anchor(self, resolution: float, crs: Any) -> tuple[float, float]:
        """Where the files' pixel grid lies (pixel edges at (k + fraction) * resolution), so
        that a load in the native CRS and resolution returns the files' own pixels, not
        resampled neighbours."""
        from pyproj import CRS

        if CRS.from_user_input(crs) != CRS.from_user_input(self.crs):
            return 0.0, 0.0
        for item in self.items[:5]:
            for asset in item.assets.values():
                tr = asset.extra_fields.get("proj:transform")
                if tr and abs(abs(tr[0]) - resolution) <= 1e-9 * resolution:
                    fx, fy = ((tr[2] / resolution) % 1.0, (tr[5] / resolution) % 1.0)
                    fx, fy = (0.0 if min(f, 1 - f) < 1e-6 else f for f in (fx, fy))
                    return fx, fy
        return 0.0, 0.0


def centre_inside_geobox(bounds: tuple[float, float, float, float], crs: Any,
                         resolution: float, anchor: tuple[float, float]) -> Any:
    """The grid of every pixel whose centre lies in `bounds` (borders included), on the
    lattice with edges at (k + anchor) * resolution; None if no centre is inside.

    This is the rule of the spatial_extent of load_collection/load_stac and of filter_bbox
    (the point at the pixel centre intersects the box), so a load and a filter_bbox of the
    same box select the same pixels (issue 11, defect 2)."""
    import math

    from affine import Affine
    from odc.geo.geobox import GeoBox

    west, south, east, north = bounds
    fx, fy = anchor
    # A relative tolerance so that a centre on the border (up to float noise) counts as in.
    eps = 1e-9

    def first_last(lo: float, hi: float, frac: float) -> tuple[int, int]:
        return (math.ceil(lo / resolution - frac - 0.5 - eps),
                math.floor(hi / resolution - frac - 0.5 + eps))

    c0, c1 = first_last(west, east, fx)
    r0, r1 = first_last(south, north, fy)
    if c1 < c0 or r1 < r0:
        return None
    transform = Affine(resolution, 0.0, (c0 + fx) * resolution,
                       0.0, -resolution, (r1 + 1 + fy) * resolution)
    return GeoBox((r1 - r0 + 1, c1 - c0 + 1), transform, crs)


def _utc(t: pd.Timestamp) -> pd.Timestamp:
    return t.tz_localize("UTC") if t.tzinfo is None else t


def _in_degrees(box: BBox) -> str:
    """The box in longitude/latitude, as users write spatial extents (", i.e. ..."), or ""."""
    try:
        b = box.to_crs(4326)
    except Exception:  # a CRS pyproj cannot transform to lon/lat: the native box is enough
        return ""
    return (f", i.e. west {b.west:.4f}, south {b.south:.4f}, east {b.east:.4f}, "
            f"north {b.north:.4f} in degrees")


def _epsg(crs: Any) -> int | None:
    from pyproj import CRS

    return CRS.from_user_input(crs).to_epsg()


def queryables_from_items(collection_id: str, items: Iterable[pystac.Item]) -> dict[str, Any]:
    """A JSON schema of the properties the items have, with their JSON types and ranges."""
    kinds: dict[str, set[str]] = {}
    ranges: dict[str, list[float]] = {}
    for item in items:
        for name, value in item.properties.items():
            if name.startswith("terracube:"):
                continue
            kinds.setdefault(name, set()).add(_json_type(value))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lo_hi = ranges.setdefault(name, [value, value])
                lo_hi[0], lo_hi[1] = min(lo_hi[0], value), max(lo_hi[1], value)
    props: dict[str, dict] = {}
    for name in sorted(kinds):
        types = sorted(kinds[name] - {"null"}) or ["null"]
        schema: dict[str, Any] = {"title": name, "type": types[0] if len(types) == 1 else types}
        if name in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
            schema = {"title": name, "type": "string", "format": "date-time"}
        elif name in ranges and types in (["integer"], ["number"]):
            schema["minimum"], schema["maximum"] = ranges[name]
        props[name] = schema
    return queryables_schema(collection_id, props)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"
