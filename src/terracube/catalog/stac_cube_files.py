"""load_stac of STAC items whose data is a whole cube in one file (netCDF, zipped Zarr), as a
batch job's results are when saved as netCDF or Zarr (ours and CDSE's): the file is fetched
once into a local cache and read as an xarray cube with its bands, dates and CRS."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlparse

from terracube.catalog.metadata import CollectionInputError
from terracube.catalog.netcdf_zarr_inspect import inspect_cube
from terracube.catalog.netcdf_zarr_source import XarraySource
from terracube.catalog.stac_documents import http_client
from terracube.url_policy import FetchRefused, check_fetch

NETCDF_TYPES = {"application/x-netcdf", "application/netcdf", "application/x-netcdf4"}
ZARR_ZIP_SUFFIX = ".zarr.zip"  # results/formats.py: Zarr results are one zipped store
_RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff")
# Where fetched files stay while the server runs (a cube reads its file lazily, later).
CACHE_DIR = Path(tempfile.gettempdir()) / "terracube-load-stac"


def _is_url(href: str) -> bool:
    return urlparse(href).scheme in ("http", "https")


def _read_json(href: str) -> dict:
    check_fetch(href)
    try:
        if _is_url(href):
            with http_client() as client:
                r = client.get(href)
            r.raise_for_status()
            doc = r.json()
        else:
            doc = json.loads(Path(href).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        raise CollectionInputError(f"{href}: cannot read a STAC document ({exc})") from None
    return doc if isinstance(doc, dict) else {}


def _kind(asset: dict) -> str | None:
    media = str(asset.get("type") or "").split(";")[0].strip().lower()
    path = str(asset.get("href") or "").split("?", 1)[0].lower()
    roles = set(asset.get("roles") or ["data"])
    if "data" not in roles:
        return None
    if media in NETCDF_TYPES or path.endswith(".nc"):
        return "netcdf"
    if path.endswith(ZARR_ZIP_SUFFIX):
        return "zarr"
    return None


def cube_file_source(collection_id: str, href: str) -> XarraySource | None:
    """A source for a STAC item whose data assets are netCDF or zipped Zarr files only, or a
    batch job's results Collection with such collection-level assets (the openEO API requires
    every result file there); None for anything else (GeoTIFF items, other collections, STAC
    APIs go the usual way)."""
    return cube_document_source(collection_id, _read_json(href), href)


def cube_document_source(collection_id: str, doc: dict, href: str) -> XarraySource | None:
    """`cube_file_source` of a document already read; asset hrefs are relative to `href`."""
    if doc.get("type") not in ("Feature", "Collection"):
        return None
    assets = {k: a for k, a in (doc.get("assets") or {}).items() if isinstance(a, dict)}
    cubes = {k: a for k, a in assets.items() if _kind(a)}
    rasters = [k for k, a in assets.items()
               if str(a.get("type") or "").lower().startswith(_RASTER_TYPES)]
    if not cubes or rasters:
        return None
    if len(cubes) > 1:
        raise CollectionInputError(
            f"{href}: the item has {len(cubes)} netCDF/Zarr assets ({', '.join(cubes)}); "
            "load_stac reads an item with one such file (save each cube in a job of its own, "
            "or as GTiff).")
    ((key, asset),) = cubes.items()
    local = fetch(urljoin(href, str(asset["href"])), _kind(asset) or "netcdf")
    return XarraySource(collection_id, inspect_cube(local),
                        title=str((doc.get("properties") or {}).get("title") or doc.get("title")
                                  or key))


def fetch(href: str, kind: str) -> Path:
    """The file at `href` in the local cache (a zipped Zarr store unpacked); fetched once."""
    check_fetch(href)  # before the cache: a user must not get what an administrator fetched
    if kind != "zarr" and not _is_url(href):
        return Path(href)  # a file of this server's (a job's results): read where it is
    digest = hashlib.sha256(href.encode()).hexdigest()[:32]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = CACHE_DIR / (f"{digest}.zarr" if kind == "zarr" else f"{digest}.nc")
    if target.exists():
        return target
    part = CACHE_DIR / f".{digest}.{os.getpid()}.part"
    try:
        if _is_url(href):
            with http_client(60) as client, client.stream("GET", href) as r:
                r.raise_for_status()
                with open(part, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
        else:
            shutil.copyfile(href, part)
        if kind == "zarr":
            unpacked = CACHE_DIR / f".{digest}.{os.getpid()}.zarr"
            with zipfile.ZipFile(part) as zf:
                zf.extractall(unpacked)
            os.replace(unpacked, target)
        else:
            os.replace(part, target)
    except (CollectionInputError, FetchRefused):
        raise
    except Exception as exc:  # noqa: BLE001 - one readable message for the user
        raise CollectionInputError(f"{href}: cannot fetch the file ({exc})") from None
    finally:
        part.unlink(missing_ok=True)
    return target
