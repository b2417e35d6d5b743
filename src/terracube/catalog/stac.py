"""STAC collections: static catalogs, collections and items (local path or URL), and STAC API
collections searched with pystac-client; all loaded with odc-stac through StacItemsSource.

Foreign STAC metadata varies a lot (asset keys that change from item to item, several bands in
one asset, no projection extension), so items are first brought into one canonical form:
data assets only, keys stable across items, `eo:bands` + `raster:bands` per asset (one entry per
band) and `proj:shape`/`proj:transform`/`proj:epsg|proj:wkt2` read from the file header when
the metadata lacks them.
"""

from __future__ import annotations

import copy
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pandas as pd
import pystac

from terracube import errors
from terracube.catalog import cql2
from terracube.catalog.base import PropertyCheck
from terracube.catalog.metadata import (
    CollectionInputError,
    crs_string,
    drop_none,
    known_band,
    lonlat_bbox,
    reference_system,
    rfc3339,
    temporal_step,
)
from terracube.catalog.stac_items import (
    BandInfo,
    NoDataForRequest,
    StacItemsSource,
    queryables_from_items,
)
from terracube.datacube.cube import TEMPORAL, RasterCube
from terracube.datacube.request import BBox, LoadRequest

log = logging.getLogger(__name__)

EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
# Items without a date (a DEM) get this placeholder datetime and the property below.
TIMELESS_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
TIMELESS_PROPERTY = "terracube:timeless"
# A STAC API search that matches more items than this is refused (the extents are too wide).
MAX_SEARCH_ITEMS = 5000
# How many items a registered STAC API collection keeps as a sample for its metadata.
API_SAMPLE_ITEMS = 20

_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".h5", ".hdf", ".nc")
_NOT_DATA_ROLES = {"thumbnail", "overview", "visual", "metadata", "preview", "snow-ice"}


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
    def resolve_bands(self, bands: Iterable[str]) -> tuple[str, ...]:
        """Band names for requested names or common names (load_stac: names win)."""
        out: list[str] = []
        for b in bands:
            if b in self.bands:
                out.append(b)
                continue
            matched = [n for n, info in self.bands.items() if info.common_name == b]
            out.extend(matched or [b])
        return tuple(dict.fromkeys(out))

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
                  if (not start or _utc(pd.Timestamp(t)) >= _utc(pd.Timestamp(start)))
                  and (not end or _utc(pd.Timestamp(t)) < _utc(pd.Timestamp(end)))]
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
        stamps = pd.DatetimeIndex([_utc(pd.Timestamp(t)).tz_convert(None) for t in chosen],
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


# --- reading STAC ---------------------------------------------------------------------------
def is_url(href: str) -> bool:
    return urlparse(str(href)).scheme in ("http", "https")


def read_json(href: str) -> dict:
    """A JSON document from a local path or an http(s) URL."""
    try:
        if is_url(href):
            import httpx

            r = httpx.get(href, timeout=30, follow_redirects=True)
            r.raise_for_status()
            return r.json()
        return json.loads(Path(href).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        raise CollectionInputError(f"{href}: cannot read a STAC document ({exc})") from None


def _api_root(doc: dict, href: str) -> str:
    for link in doc.get("links", []):
        if link.get("rel") == "root" and link.get("href"):
            return urljoin(href, link["href"])
    # .../collections/{id} -> ...
    parts = href.rstrip("/").rsplit("/collections/", 1)
    return parts[0] if len(parts) == 2 else href


def describe_stac(href: str) -> dict:
    """What a STAC href is: {'kind': 'item'|'static'|'api', 'doc': ..., 'api_url': ...}."""
    doc = read_json(href)
    kind = doc.get("type")
    if kind == "Feature":
        return {"kind": "item", "doc": doc}
    if kind == "FeatureCollection":
        return {"kind": "features", "doc": doc}
    if kind not in ("Collection", "Catalog"):
        raise CollectionInputError(
            f"{href}: not a STAC Item, Collection or Catalog (type is {kind!r}).")
    rels = {link.get("rel") for link in doc.get("links", [])}
    if kind == "Collection" and "items" in rels and "item" not in rels:
        return {"kind": "api", "doc": doc, "api_url": _api_root(doc, href)}
    if kind == "Catalog" and "conformsTo" in doc and "search" in rels:
        raise CollectionInputError(
            f"{href} is the landing page of a STAC API; give the URL of one of its "
            "collections (…/collections/<id>).")
    return {"kind": "static", "doc": doc}


def read_static_items(href: str) -> list[pystac.Item]:
    """All items of a static STAC item, collection or catalog (sub-catalogs included)."""
    try:
        obj = pystac.read_file(href)
    except Exception as exc:  # noqa: BLE001
        raise CollectionInputError(f"{href}: cannot read the STAC document ({exc})") from None
    if isinstance(obj, pystac.Item):
        items = [obj]
    elif isinstance(obj, pystac.ItemCollection):
        items = list(obj.items)
    else:
        try:
            items = list(obj.get_items(recursive=True))
        except Exception as exc:  # noqa: BLE001
            raise CollectionInputError(f"{href}: cannot read its items ({exc})") from None
    for item in items:
        if item.get_self_href():
            item.make_asset_hrefs_absolute()
    if not items:
        raise CollectionInputError(f"{href}: the STAC catalog has no items.")
    return items


def search_api(api_url: str, collection: str, request: LoadRequest | None,
               max_items: int = MAX_SEARCH_ITEMS) -> list[pystac.Item]:
    """Items of a STAC API collection within the request's box and time range and, when the
    API takes CQL2 filters, matching its property conditions (see search_filter)."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    client = Client.open(api_url)
    params: dict[str, Any] = {"collections": [collection], "max_items": max_items + 1}
    if request is not None and request.bbox is not None:
        b = request.bbox.to_crs(4326)
        params["bbox"] = [b.west, b.south, b.east, b.north]
    if request is not None and request.temporal_extent:
        start, end = request.temporal_extent
        params["datetime"] = f"{_api_time(start) or '..'}/{_api_time(end) or '..'}"
    items: list[pystac.Item] | None = None
    flt = search_filter(client.get_conforms_to(), request)
    if flt is not None:
        try:
            items = list(client.search(**params, method="POST", filter=flt,
                                       filter_lang=cql2.FILTER_LANG).items())
        except APIError as exc:
            # An API may claim the filter extension and still refuse a property (not among
            # its queryables) or an operator: search without, the items are checked anyway.
            log.warning("%s refused the filter %s (%s); searching without it", api_url,
                        json.dumps(flt), str(exc)[:300])
    if items is None:
        items = list(client.search(**params).items())
    if len(items) > max_items:
        raise errors.ProcessParameterInvalid(
            f"The STAC API {api_url} has more than {max_items} items of '{collection}' in "
            "the requested extents; use a smaller spatial or temporal extent.",
            argument="spatial_extent")
    return items


def search_filter(conforms_to: list[str], request: LoadRequest | None) -> dict | None:
    """The CQL2-JSON filter for the request's property conditions, or None when the API does
    not advertise the filter extension (or no condition has a CQL2 form)."""
    if request is None or not request.properties:
        return None
    return cql2.property_filter(request.properties,
                                cql2.Cql2Support.from_conformance(conforms_to))


def _api_time(t: str | None) -> str | None:
    if not t:
        return None
    return rfc3339(pd.Timestamp(t))


def filter_items(items: list[pystac.Item], request: LoadRequest,
                 check_property: Callable[[str, Any, Any], bool] | None) -> list[pystac.Item]:
    """Items within [start, end) whose properties satisfy every condition."""
    start, end = request.temporal_extent or (None, None)
    t0 = _utc(pd.Timestamp(start)) if start else None
    t1 = _utc(pd.Timestamp(end)) if end else None
    out = []
    for item in items:
        t = pd.Timestamp(item.datetime)
        if (t0 is not None and t < t0) or (t1 is not None and t >= t1):
            continue
        if check_property and not all(check_property(name, cond, item.properties.get(name))
                                      for name, cond in request.properties.items()):
            continue
        out.append(item)
    return out


def _utc(t: pd.Timestamp) -> pd.Timestamp:
    return t.tz_localize("UTC") if t.tzinfo is None else t


# --- canonical items ------------------------------------------------------------------------
def _data_assets(item: pystac.Item) -> dict[str, pystac.Asset]:
    """The raster data assets of an item. When two assets hold the same band (Earth Search
    has each band as COG and as JPEG2000), the GeoTIFF is kept."""
    out: dict[str, pystac.Asset] = {}
    taken: set[str] = set()

    def tiff_first(kv: tuple[str, pystac.Asset]) -> int:
        return 0 if "tiff" in (kv[1].media_type or "").lower() else 1

    for key, asset in sorted(item.assets.items(), key=tiff_first):
        names = {b["name"] for b in _asset_bands(key, asset, item) if b["name"]}
        if names & taken:
            continue
        roles = set(asset.roles or [])
        if roles & _NOT_DATA_ROLES and "data" not in roles:
            continue
        media = (asset.media_type or "").split(";")[0].strip().lower()
        path = urlparse(asset.href).path.lower()
        if media.startswith("image/") or "data" in roles or media in (
                "application/x-hdf5", "application/x-hdf", "application/x-netcdf") \
                or (not media and path.endswith(_RASTER_SUFFIXES)):
            if media in ("image/png", "image/jpeg") and "data" not in roles:
                continue
            out[key] = asset
            taken |= names
    return {k: out[k] for k in item.assets if k in out}  # in the item's own order


def split_by_asset_time(item: pystac.Item) -> list[pystac.Item]:
    """One item per date when the data assets of an item carry dates of their own (openEO
    batch job results: one file per date in one item); the item itself otherwise."""
    def when(asset: pystac.Asset) -> str | None:
        f = asset.extra_fields
        return f.get("datetime") or f.get("start_datetime")

    dates = sorted({when(a) for a in item.assets.values() if when(a)})
    if len(dates) < 2:
        return [item]
    out = []
    for date in dates:
        part = item.clone()
        part.id = f"{item.id}_{date}"
        part.assets = {k: a for k, a in part.assets.items() if when(a) in (date, None)}
        part.properties.pop("start_datetime", None)
        part.properties.pop("end_datetime", None)
        part.datetime = pd.Timestamp(date).to_pydatetime()
        out.append(part)
    return out


_UNROLLED = re.compile(r"^(\d{4}-\d\d-\d\d(?:T[\d:.]+)?(?:Z|[+-]\d\d:\d\d)?)_(.+)$")


def unrolled_bands(names: Iterable[str | None]) -> dict[str, tuple[str, str]] | None:
    """{name: (datetime, band)} when every band of a file is named "<datetime>_<band>" and
    the names make a full date × band grid (terracube's GTiff results of a cube with time);
    None otherwise."""
    out: dict[str, tuple[str, str]] = {}
    for name in names:
        m = _UNROLLED.match(name or "")
        if m is None:
            return None
        out[str(name)] = (m.group(1), m.group(2))
    times = {t for t, _ in out.values()}
    bands = {b for _, b in out.values()}
    if len(out) < 2 or len(times) * len(bands) != len(out):
        return None
    return out


def _asset_bands(key: str, asset: pystac.Asset, item: pystac.Item) -> list[dict]:
    """One dict per band of an asset: name, common_name, center_wavelength, nodata,
    data_type, scale, offset (whatever the metadata says; None when unknown)."""
    d = asset.to_dict()
    eo = d.get("eo:bands") or []
    raster = d.get("raster:bands") or []
    common = d.get("bands") or []  # STAC 1.1
    n = max(len(eo), len(raster), len(common), 1)
    bands = []
    for i in range(n):
        e = eo[i] if i < len(eo) and isinstance(eo[i], dict) else {}
        r = raster[i] if i < len(raster) and isinstance(raster[i], dict) else {}
        c = common[i] if i < len(common) and isinstance(common[i], dict) else {}
        name = e.get("name") or c.get("name")
        bands.append({
            "name": name,
            "common_name": e.get("common_name") or c.get("eo:common_name"),
            "center_wavelength": e.get("center_wavelength") or c.get("eo:center_wavelength"),
            "nodata": r.get("nodata", c.get("nodata", d.get("nodata"))),
            "data_type": r.get("data_type") or c.get("data_type") or d.get("data_type"),
            "scale": r.get("scale", c.get("raster:scale")),
            "offset": r.get("offset", c.get("raster:offset")),
        })
    return bands


def _asset_proj(asset: pystac.Asset, item: pystac.Item) -> dict:
    d = asset.extra_fields
    p = item.properties

    def get(name: str) -> Any:
        return d.get(name, p.get(name))

    crs = None
    if get("proj:epsg"):
        crs = f"EPSG:{int(get('proj:epsg'))}"
    elif get("proj:code"):
        crs = str(get("proj:code"))
    elif get("proj:wkt2"):
        crs = str(get("proj:wkt2"))
    elif get("proj:projjson"):
        crs = json.dumps(get("proj:projjson"))
    return {"crs": crs, "shape": get("proj:shape"), "transform": get("proj:transform")}


def read_header(href: str) -> dict:
    """Grid, band count, data types and no-data of a raster file (local path or URL)."""
    import rasterio

    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(href) as ds:
            if ds.crs is None and ds.subdatasets:
                raise CollectionInputError(
                    f"{href}: a file of {len(ds.subdatasets)} variables (e.g. NetCDF); "
                    "load_stac reads raster files with their bands, such as GeoTIFF/COG "
                    "(a batch job writes those with save_result format GTiff).")
            if ds.crs is None:
                raise CollectionInputError(f"{href}: the file has no CRS (no georeference).")
            t = ds.transform
            return {"crs": crs_string(ds.crs), "shape": [ds.height, ds.width],
                    "transform": [t.a, t.b, t.c, t.d, t.e, t.f], "count": ds.count,
                    "dtypes": list(ds.dtypes), "nodata": ds.nodata,
                    "scales": list(ds.scales), "offsets": list(ds.offsets),
                    "descriptions": list(ds.descriptions)}
    except CollectionInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CollectionInputError(f"{href}: cannot open the raster file ({exc})") from None


def normalise_items(items: list[pystac.Item], source: str
                    ) -> tuple[list[pystac.Item], list[BandInfo], str]:
    """Canonical copies of STAC items, their bands and the most common CRS."""
    if not items:
        raise CollectionInputError(f"{source}: no items.")
    items = [part for item in items for part in split_by_asset_time(item)]
    per_item = [_data_assets(it) for it in items]
    if not any(per_item):
        raise CollectionInputError(f"{source}: the items have no raster data assets.")
    key_sets = {tuple(sorted(a)) for a in per_item}
    # One data asset per item, named after the file (or named bands anyway): call it "data",
    # so that the same band has the same asset key in every item (and in every search).
    rename_single = all(len(a) == 1 for a in per_item) and (len(key_sets) > 1 or all(
        all(b["name"] for b in _asset_bands(k, a, it))
        for it, assets in zip(items, per_item) for k, a in assets.items()))

    # Read the headers that the metadata does not replace, in parallel (URLs are slow).
    need_header = []
    for item, assets in zip(items, per_item):
        for asset in assets.values():
            proj = _asset_proj(asset, item)
            bands = _asset_bands("", asset, item)
            if not (proj["crs"] and proj["shape"] and proj["transform"]) or \
                    any(b["data_type"] is None for b in bands):
                need_header.append(asset.href)
    headers: dict[str, dict] = {}
    if need_header:
        unique = list(dict.fromkeys(need_header))
        with ThreadPoolExecutor(max_workers=8) as pool:
            for href, header in zip(unique, pool.map(read_header, unique)):
                headers[href] = header

    out: list[pystac.Item] = []
    band_infos: dict[str, BandInfo] = {}
    band_owner: dict[str, str] = {}
    crs_count: Counter[str] = Counter()
    for item, assets in zip(items, per_item):
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        new_assets = {}
        for key, asset in assets.items():
            canon_key = "data" if rename_single else key
            header = headers.get(asset.href)
            proj = _asset_proj(asset, item)
            if header and not (proj["crs"] and proj["shape"] and proj["transform"]):
                proj = {k: header[k] for k in ("crs", "shape", "transform")}
            if not (proj["crs"] and proj["shape"] and proj["transform"]):
                raise CollectionInputError(
                    f"{asset.href}: no CRS or grid in the metadata and none in the file.")
            bands = _asset_bands(key, asset, item)
            if header:
                count = header["count"]
                if len(bands) < count and unrolled_bands(header["descriptions"]):
                    # One band per date and band (a GTiff result of a cube with time):
                    # named "<datetime>_<band>", folded back into time at load.
                    bands = [dict.fromkeys(bands[0]) for _ in range(count)]
                    for b, description in zip(bands, header["descriptions"]):
                        b["name"] = description
                if len(bands) < count:
                    bands += [dict.fromkeys(bands[0]) for _ in range(count - len(bands))]
                bands = bands[:count]
                for i, b in enumerate(bands):
                    b["data_type"] = b["data_type"] or header["dtypes"][i]
                    if b["nodata"] is None and header["nodata"] is not None:
                        b["nodata"] = header["nodata"]
                    if not b["name"] and header["descriptions"][i] and count > 1:
                        b["name"] = header["descriptions"][i]
            for i, b in enumerate(bands):
                if not b["name"]:
                    b["name"] = canon_key if len(bands) == 1 else f"{canon_key}_{i + 1}"
            crs = crs_string(proj["crs"])
            crs_count[crs] += 1
            fields: dict[str, Any] = {
                "eo:bands": [drop_none({"name": b["name"], "common_name": b["common_name"],
                                        "center_wavelength": b["center_wavelength"]})
                             for b in bands],
                "raster:bands": [drop_none({"data_type": b["data_type"], "nodata": b["nodata"],
                                            "scale": b["scale"], "offset": b["offset"]})
                                 for b in bands],
                "proj:shape": list(proj["shape"]),
                "proj:transform": list(proj["transform"])[:6],
            }
            fields.update(_proj_crs_fields(crs))
            new_assets[canon_key] = {"href": asset.href, "type": asset.media_type,
                                     "roles": ["data"], **fields}
            resolution = abs(float(proj["transform"][0]))
            all_names = [b["name"] for b in bands]
            for b in bands:
                if band_owner.setdefault(b["name"], canon_key) != canon_key:
                    raise CollectionInputError(
                        f"{source}: band '{b['name']}' is in two assets "
                        f"({band_owner[b['name']]} and {canon_key}).")
                if b["name"] in band_infos:
                    continue
                known = known_band(b["name"], all_names)
                band_infos[b["name"]] = BandInfo(
                    name=b["name"],
                    nodata=_number(b["nodata"]),
                    resolution=resolution,
                    scale=float(b["scale"]) if b["scale"] is not None else 1.0,
                    offset=float(b["offset"]) if b["offset"] is not None else 0.0,
                    data_type=str(b["data_type"] or "float32"),
                    common_name=b["common_name"] or known.common_name,
                    center_wavelength=b["center_wavelength"] or known.center_wavelength,
                )
        d["assets"] = new_assets
        d["stac_extensions"] = sorted(set(d.get("stac_extensions") or []) |
                                      {EO_EXT, RASTER_EXT})
        d["links"] = []
        props = d.setdefault("properties", {})
        if not props.get("datetime"):
            start = props.get("start_datetime")
            if not start:
                raise CollectionInputError(f"{source}: item {d.get('id')} has no datetime.")
            props["datetime"] = start
        new_item = pystac.Item.from_dict(d, preserve_dict=False)
        if new_item.geometry is None or new_item.bbox is None:
            set_footprint(new_item, crs)
        out.append(new_item)
    crs = crs_count.most_common(1)[0][0]
    return out, list(band_infos.values()), crs


def _proj_crs_fields(crs: str) -> dict:
    if crs.startswith("EPSG:"):
        return {"proj:epsg": int(crs.split(":", 1)[1])}
    return {"proj:wkt2": crs}


def _number(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def set_footprint(item: pystac.Item, crs: str) -> None:
    """Give an item the lon/lat footprint of its assets (odc-stac needs one)."""
    from shapely.geometry import box, mapping

    west = south = float("inf")
    east = north = float("-inf")
    for asset in item.assets.values():
        (h, w), tr = asset.extra_fields["proj:shape"], asset.extra_fields["proj:transform"]
        acrs = asset.extra_fields.get("proj:wkt2") or \
            f"EPSG:{asset.extra_fields.get('proj:epsg')}"
        b = BBox(min(tr[2], tr[2] + tr[0] * w), min(tr[5], tr[5] + tr[4] * h),
                 max(tr[2], tr[2] + tr[0] * w), max(tr[5], tr[5] + tr[4] * h), acrs)
        ll = lonlat_bbox(b.west, b.south, b.east, b.north, b.crs)
        west, south = min(west, ll[0]), min(south, ll[1])
        east, north = max(east, ll[2]), max(north, ll[3])
    item.bbox = [west, south, east, north]
    item.geometry = mapping(box(*item.bbox))


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


def href_parent(href: str) -> str:
    return posixpath.dirname(href) if is_url(href) else str(Path(href).parent)


__all__ = ["StacSource", "StacApiSource", "NoDataForRequest", "source_from_href",
           "normalise_items", "queryables_from_items", "CollectionInputError"]
