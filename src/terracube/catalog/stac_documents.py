"""STAC documents: reading catalogs, collections and items (local path or http), searching
STAC APIs (with CQL2 filters where the API takes them), and bringing foreign items into one
canonical form that the sources of stac.py and files.py load.

Foreign STAC metadata varies a lot (asset keys that change from item to item, several bands in
one asset, no projection extension), so items are first brought into one canonical form:
data assets only, keys stable across items, `eo:bands` + `raster:bands` per asset (one entry per
band) and `proj:shape`/`proj:transform`/`proj:epsg|proj:wkt2` read from the file header when
the metadata lacks them.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pandas as pd
import pystac

from terracube import errors
from terracube.catalog import cql2
from terracube.catalog.metadata import (
    CollectionInputError,
    crs_string,
    drop_none,
    known_band,
    lonlat_bbox,
    rfc3339,
)
from terracube.catalog.stac_items import (
    BandInfo,
)
from terracube.datacube.request import BBox, LoadRequest
from terracube.url_policy import FetchRefused, active_policy, check_fetch

log = logging.getLogger(__name__)


EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
# Items without a date (a DEM) get this placeholder datetime and the property below.
TIMELESS_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
TIMELESS_PROPERTY = "terracube:timeless"
# A STAC API search that matches more items than this is refused (the extents are too wide).
MAX_SEARCH_ITEMS = 5000

_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".h5", ".hdf", ".nc")
_NOT_DATA_ROLES = {"thumbnail", "overview", "visual", "metadata", "preview", "snow-ice"}


# --- reading STAC ---------------------------------------------------------------------------
def is_url(href: str) -> bool:
    return urlparse(str(href)).scheme in ("http", "https")


def http_client(timeout: float = 30) -> Any:
    """An httpx client that follows redirects, each checked by the active fetch policy."""
    import httpx

    def check(request: Any) -> None:
        check_fetch(str(request.url))

    return httpx.Client(timeout=timeout, follow_redirects=True,
                        event_hooks={"request": [check]})


class _CheckedStacIO(pystac.stac_io.DefaultStacIO):
    """pystac's reader with every document (children and items too) checked first."""

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        href = str(getattr(source, "href", source))
        check_fetch(href)
        if active_policy() is not None and is_url(href):
            with http_client() as client:
                r = client.get(href)
            r.raise_for_status()
            return r.text
        return super().read_text(source, *args, **kwargs)


def read_json(href: str) -> dict:
    """A JSON document from a local path or an http(s) URL."""
    check_fetch(href)  # for a user (load_stac): public http(s) URLs only, redirects too
    try:
        if is_url(href):
            with http_client() as client:
                r = client.get(href)
            r.raise_for_status()
            return r.json()
        return json.loads(Path(href).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        raise CollectionInputError(f"{href}: cannot read a STAC document ({exc})") from None


def api_root(doc: dict, href: str) -> str:
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
        return {"kind": "api", "doc": doc, "api_url": api_root(doc, href)}
    if kind == "Catalog" and "conformsTo" in doc and "search" in rels:
        raise CollectionInputError(
            f"{href} is the landing page of a STAC API; give the URL of one of its "
            "collections (…/collections/<id>).")
    return {"kind": "static", "doc": doc}


def read_static_items(href: str) -> list[pystac.Item]:
    """All items of a static STAC item, collection or catalog (sub-catalogs included)."""
    try:
        obj = pystac.read_file(href, stac_io=_CheckedStacIO())
    except FetchRefused:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CollectionInputError(f"{href}: cannot read the STAC document ({exc})") from None
    if isinstance(obj, pystac.Item):
        items = [obj]
    elif isinstance(obj, pystac.ItemCollection):
        items = list(obj.items)
    else:
        try:
            items = list(obj.get_items(recursive=True))
        except FetchRefused:
            raise
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

    check_fetch(api_url)
    # Every request of the search (pages, links) is checked by the active fetch policy.
    client = Client.open(api_url, request_modifier=lambda r: check_fetch(r.url) or r)
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
    t0 = as_utc(pd.Timestamp(start)) if start else None
    t1 = as_utc(pd.Timestamp(end)) if end else None
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


def as_utc(t: pd.Timestamp) -> pd.Timestamp:
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
    if active_policy() is not None:  # a user's load_stac: no local files, no private hosts
        for item in items:
            for asset in _data_assets(item).values():
                check_fetch(asset.href)
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
    # A file per band whose keys change from item to item (job results written with
    # separate_asset_per_band: openEO_2022-06-02Z_B04.tif): the band's name is the stable key.
    key_by_band = not rename_single and len(key_sets) > 1 and all(
        len(bands := _asset_bands(k, a, it)) == 1 and bands[0]["name"]
        for it, assets in zip(items, per_item) for k, a in assets.items())

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
            if key_by_band:
                canon_key = str(_asset_bands(key, asset, item)[0]["name"])
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


def href_parent(href: str) -> str:
    return posixpath.dirname(href) if is_url(href) else str(Path(href).parent)
