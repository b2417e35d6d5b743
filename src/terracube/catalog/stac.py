"""STAC collections as collection sources: static catalogs, collections and items (local path
or URL) and STAC API collections searched at load time; all loaded with odc-stac through
StacItemsSource. Reading and normalising the STAC documents is stac_documents.py.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd
import pystac

from terracube import errors
from terracube.catalog.base import PropertyCheck
from terracube.catalog.metadata import (
    CollectionInputError,
    drop_none,
    reference_system,
    rfc3339,
    temporal_step,
)
from terracube.catalog.stac_documents import (
    as_utc,
    describe_stac,
    filter_items,
    normalise_items,
    read_static_items,
    search_api,
    unrolled_bands,
)
from terracube.catalog.stac_items import (
    BandInfo,
    NoDataForRequest,
    StacItemsSource,
)
from terracube.datacube.cube import TEMPORAL, RasterCube
from terracube.datacube.request import BBox, LoadRequest

log = logging.getLogger(__name__)

# How many items a registered STAC API collection keeps as a sample for its metadata.
API_SAMPLE_ITEMS = 20


# --- the source -----------------------------------------------------------------------------
class StacSource(StacItemsSource):
    """A collection of canonical STAC items (from a folder of files or a static STAC).

    Adds to StacItemsSource: collections without a time dimension (`timeless`), band selection
    by common name, metadata derived from the items, and queryables.
    """

    def __init__(self, collection_id: str, items: list[pystac.Item], bands: list[BandInfo],
                 crs: str, description: str, *, timeless: bool = False,
                 temporal_interval: list | None = None, **kwargs: Any) -> None:
        super().__init__(collection_id, items, bands, crs, description, **kwargs)
        self.timeless = timeless
        self.temporal_interval = temporal_interval

    # --- metadata ---------------------------------------------------------------------------
    def stac(self) -> dict:
        extra = self.extra
        self.extra = {}
        try:
            doc = super().stac()
        finally:
            self.extra = extra
        dims = doc["cube:dimensions"]
        summaries = doc["summaries"]
        dims["x"]["reference_system"] = dims["y"]["reference_system"] = \
            reference_system(self.crs)
        summaries.pop("eo:cloud_cover", None)
        covers = [it.properties.get("eo:cloud_cover") for it in self.items]
        covers = [c for c in covers if isinstance(c, (int, float))]
        if covers:
            summaries["eo:cloud_cover"] = {"minimum": min(covers), "maximum": max(covers)}
        if not summaries.get("proj:epsg"):
            summaries.pop("proj:epsg", None)
            summaries["proj:wkt2"] = [self.crs]
        if self.timeless:
            dims.pop("t")
            doc["extent"]["temporal"]["interval"] = [[None, None]]
        else:
            times = sorted({it.datetime for it in self.items})
            if self.temporal_interval:
                doc["extent"]["temporal"]["interval"] = [list(self.temporal_interval)]
                dims["t"]["extent"] = list(self.temporal_interval)
            else:
                dims["t"]["step"] = temporal_step(times)
                if len(times) <= 100:
                    dims["t"]["values"] = [rfc3339(t) for t in times]
        for band in summaries.get("raster:bands", []):
            if band.get("scale") == 1.0 and band.get("offset") == 0.0:
                band.pop("scale")
                band.pop("offset")
        doc["cube:dimensions"] = {k: dims[k] for k in ("t", "bands", "y", "x") if k in dims}
        doc.update(extra)
        return doc

    # --- loading ----------------------------------------------------------------------------
    def select_items(self, request: LoadRequest,
                     check_property: Callable[[str, Any, Any], bool] | None = None
                     ) -> list[pystac.Item]:
        if self.timeless:
            request = replace(request, temporal_extent=None)
        return super().select_items(request, check_property)

    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        unrolled = unrolled_bands(self.bands)
        if unrolled:
            return self._load_unrolled(request, unrolled, check_property)
        if request.bands:
            request = replace(request, bands=self.resolve_bands(request.bands))
        if self.timeless:
            request = replace(request, temporal_extent=None)
        cube = super().load(request, check_property=check_property)
        cube = cube.with_data(cube.data, attrs={**cube.attrs, "collection": self.id})
        if not self.timeless:
            return cube
        # Every item has the placeholder time, so odc-stac grouped them into one slice.
        data = cube.data.isel(t=0, drop=True)
        dims = tuple(d for d in cube.dimensions if d.type != TEMPORAL)
        return RasterCube(data, dims, nodata=cube.nodata, attrs=cube.attrs)

    def _load_unrolled(self, request: LoadRequest, unrolled: dict[str, tuple[str, str]],
                       check_property: Callable[[str, Any, Any], bool] | None
                       ) -> RasterCube:
        """A file whose bands are "<datetime>_<band>": only the requested dates and bands
        are read, then folded into the t and bands dimensions."""
        import xarray as xr

        by_pair = {pair: name for name, pair in unrolled.items()}
        bands = list(dict.fromkeys(b for _, b in unrolled.values()))
        times = sorted({t for t, _ in unrolled.values()}, key=pd.Timestamp)
        wanted = list(request.bands) if request.bands else bands
        unknown = [b for b in wanted if b not in bands]
        if unknown:
            raise errors.ProcessParameterInvalid(
                f"The data has no band(s) {', '.join(unknown)}; available: "
                f"{', '.join(bands)}.", argument="bands")
        items = self.select_items(replace(request, temporal_extent=None), check_property)
        if len(items) > 1:
            raise errors.ProcessParameterInvalid(
                f"{len(items)} items hold their dates as bands of one file; load_stac reads "
                "one such item at a time.", argument="url")
        start, end = request.temporal_extent or (None, None)
        chosen = [t for t in times
                  if (not start or as_utc(pd.Timestamp(t)) >= as_utc(pd.Timestamp(start)))
                  and (not end or as_utc(pd.Timestamp(t)) < as_utc(pd.Timestamp(end)))]
        if not items or not chosen:
            raise NoDataForRequest(
                f"No data for the given temporal extent and properties; the dates are "
                f"{times[0]} to {times[-1]}.", argument="temporal_extent")
        names = tuple(by_pair[(t, b)] for t in chosen for b in wanted)
        flat = super().load(replace(request, bands=names, temporal_extent=None,
                                    properties={}))
        data = flat.data.isel(t=0, drop=True)
        slices = [data.sel(bands=[by_pair[(t, b)] for b in wanted])
                  .assign_coords(bands=pd.Index(wanted, name="bands")) for t in chosen]
        stamps = pd.DatetimeIndex([as_utc(pd.Timestamp(t)).tz_convert(None) for t in chosen],
                                  name="t")
        folded = xr.concat(slices, dim=stamps).transpose("t", "bands", "y", "x")
        first = {b: self.bands[by_pair[(chosen[0], b)]] for b in wanted}
        band_meta = {b: replace(info, name=b) for b, info in first.items()}
        return RasterCube(folded, flat.dimensions, nodata=flat.nodata,
                          attrs={**flat.attrs, "band_metadata": band_meta,
                                 "collection": self.id})


class StacApiSource(StacSource):
    """A collection of a STAC API: items are searched at load time (bbox, time and — as a
    CQL2 filter, where the API takes one — property conditions pushed down to the API; the
    conditions are checked again on the returned items)."""

    def __init__(self, collection_id: str, api_url: str, api_collection: str,
                 sample_items: list[pystac.Item], bands: list[BandInfo], crs: str,
                 description: str, *, lonlat_extent: list[float],
                 temporal_interval: list | None, **kwargs: Any) -> None:
        super().__init__(collection_id, sample_items, bands, crs, description,
                         temporal_interval=temporal_interval, **kwargs)
        self.api_url = api_url
        self.api_collection = api_collection
        w, s, e, n = lonlat_extent
        self._native_bbox = BBox(w, s, e, n, 4326).to_crs(crs)
        self._lonlat_extent = lonlat_extent

    def stac(self) -> dict:
        doc = super().stac()
        doc["extent"]["spatial"]["bbox"] = [list(self._lonlat_extent)]
        return doc

    def queryables(self) -> dict[str, Any]:
        import httpx

        url = f"{self.api_url.rstrip('/')}/collections/{self.api_collection}/queryables"
        try:
            r = httpx.get(url, timeout=10, follow_redirects=True)
            if r.status_code == 200 and isinstance(r.json(), dict) and \
                    "properties" in r.json():
                return r.json()
        except (httpx.HTTPError, ValueError):
            pass
        return super().queryables()

    def select_items(self, request: LoadRequest,
                     check_property: Callable[[str, Any, Any], bool] | None = None
                     ) -> list[pystac.Item]:
        found = search_api(self.api_url, self.api_collection, request)
        if not found:
            return []
        items, _bands, _crs = normalise_items(found, source=self.api_url)
        return filter_items(items, request, check_property)

    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        if request.bands:
            request = replace(request, bands=self.resolve_bands(request.bands))
        items = self.select_items(request, check_property)
        if not items:
            raise NoDataForRequest(
                f"No items of '{self.api_collection}' at {self.api_url} for the given "
                "extents and properties.", argument="temporal_extent")
        # The found items make a static collection (its extent is theirs, not the API's).
        _items, found_bands, _crs = normalise_items(items, source=self.api_url)
        bands = {**{b.name: b for b in found_bands}, **self.bands}
        found = StacSource(self.id, items, list(bands.values()), self.crs, self.description)
        return found.load(replace(request, temporal_extent=None, properties={}))


# --- building sources -----------------------------------------------------------------------
def collection_fields(doc: dict | None) -> dict:
    """Title, description, licence, providers and keywords of a STAC collection document."""
    doc = doc or {}
    license_id = doc.get("license")
    if not license_id or license_id == "unknown":
        license_id = "other"
    return drop_none({
        "title": doc.get("title"),
        "description": doc.get("description"),
        "license": license_id,
        "providers": doc.get("providers"),
        "keywords": doc.get("keywords"),
    })


def source_from_href(collection_id: str, href: str) -> StacItemsSource:
    """A source for a STAC item, static collection/catalog or STAC API collection."""
    info = describe_stac(href)
    if info["kind"] == "api":
        return api_source(collection_id, href, info)
    items = read_static_items(href)
    canon, bands, crs = normalise_items(items, href)
    fields = collection_fields(info["doc"] if info["kind"] == "static" else None)
    fields.setdefault("description", f"Items of the STAC catalog {href}.")
    return StacSource(collection_id, canon, bands, crs, fields.pop("description"), **fields)


def api_source(collection_id: str, href: str, info: dict | None = None) -> StacApiSource:
    info = info or describe_stac(href)
    doc = info["doc"]
    api_url = info["api_url"]
    sample = search_api(api_url, doc["id"], None, max_items=API_SAMPLE_ITEMS)[:API_SAMPLE_ITEMS]
    if not sample:
        raise CollectionInputError(f"{href}: the STAC API collection has no items.")
    canon, bands, crs = normalise_items(sample, href)
    return StacApiSource(collection_id, api_url, doc["id"], canon, bands, crs,
                         **_api_fields(doc, href, canon))


def _api_fields(doc: dict, href: str, items: list[pystac.Item]) -> dict:
    fields = collection_fields(doc)
    fields.setdefault("description", f"The collection {href} of a STAC API.")
    extent = doc.get("extent") or {}
    bboxes = (extent.get("spatial") or {}).get("bbox") or []
    lonlat = [float(v) for v in bboxes[0]][:4] if bboxes and len(bboxes[0]) >= 4 else None
    if lonlat is None or lonlat == [-180.0, -90.0, 180.0, 90.0]:
        # No extent, or the whole world as a placeholder: use what the items cover.
        bbs = [it.bbox for it in items if it.bbox]
        lonlat = [min(b[0] for b in bbs), min(b[1] for b in bbs),
                  max(b[2] for b in bbs), max(b[3] for b in bbs)]
    intervals = (extent.get("temporal") or {}).get("interval") or []
    interval = intervals[0] if intervals and any(intervals[0]) else None
    if interval is None:
        times = sorted(it.datetime for it in items)
        interval = [rfc3339(times[0]), rfc3339(times[-1])]
    return {"description": fields.pop("description"), "lonlat_extent": lonlat,
            "temporal_interval": interval, **fields}


# --- records (persisted by the registry) ----------------------------------------------------
def source_to_record(source: StacItemsSource) -> dict:
    """What the registry stores to rebuild a STAC-backed source without reading the STAC."""
    rec: dict[str, Any] = {
        "items": [it.to_dict(include_self_link=False, transform_hrefs=False)
                  for it in source.items],
        "bands": [vars(b).copy() for b in source.bands.values()],
        "crs": source.crs,
        "description": source.description,
        "title": source.title,
        "license": source.license,
        "providers": source.providers,
        "keywords": source.keywords,
        "timeless": getattr(source, "timeless", False),
        "temporal_interval": getattr(source, "temporal_interval", None),
        "extra": source.extra,
    }
    if isinstance(source, StacApiSource):
        rec.update({"api_url": source.api_url, "api_collection": source.api_collection,
                    "lonlat_extent": source._lonlat_extent})
    return rec


def source_from_record(collection_id: str, rec: dict) -> StacItemsSource:
    items = [pystac.Item.from_dict(copy.deepcopy(d), preserve_dict=False)
             for d in rec["items"]]
    bands = [BandInfo(**b) for b in rec["bands"]]
    common = {k: rec.get(k) for k in ("title", "license", "providers", "keywords", "extra")}
    common = {k: v for k, v in common.items() if v is not None}
    if rec.get("api_url"):
        return StacApiSource(collection_id, rec["api_url"], rec["api_collection"], items, bands,
                             rec["crs"], rec["description"],
                             lonlat_extent=rec["lonlat_extent"],
                             temporal_interval=rec.get("temporal_interval"), **common)
    return StacSource(collection_id, items, bands, rec["crs"], rec["description"],
                      timeless=bool(rec.get("timeless")),
                      temporal_interval=rec.get("temporal_interval"), **common)
