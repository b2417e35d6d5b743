"""Folders of raster files (GeoTIFF, COG, JPEG2000, KNMI HDF5 …) as collections.

The date and the band of a file come from a filename pattern such as
`{date:%Y%m%d}_{band}.tif`, or from the file's tags (a DATE/DATETIME tag, band descriptions).
Files may hold one band or several; bands may have different resolutions. Every file is
checked once, when the collection is added: the result is a list of canonical STAC items
(see catalog/stac_documents.py) that the registry stores, so a server never scans the folder again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd
import pystac

from terracube.catalog.metadata import CollectionInputError, crs_string, known_band
from terracube.catalog.stac import StacSource
from terracube.catalog.stac_documents import (
    EO_EXT,
    RASTER_EXT,
    TIMELESS_DATETIME,
    TIMELESS_PROPERTY,
    set_footprint,
)
from terracube.catalog.stac_items import BandInfo

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2", ".vrt", ".img", ".h5", ".hdf5", ".he5",
                             ".asc", ".bil", ".dem", ".hgt"})
_MEDIA_TYPES = {".tif": "image/tiff; application=geotiff",
                ".tiff": "image/tiff; application=geotiff", ".jp2": "image/jp2"}
# Tags that hold the acquisition time (TIFFTAG_DATETIME is the time the file was written).
_DATE_TAGS = ("datetime", "date", "acquisition_date", "acquisition_datetime", "date_acquired",
              "sensing_time", "start_datetime")

# strftime directive -> regular expression of what it matches
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}",
    "M": r"\d{2}", "S": r"\d{2}", "j": r"\d{3}", "f": r"\d{1,6}", "b": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+", "z": r"[+-]\d{4}", "%": "%",
}
_FIELD = re.compile(r"\{(\w+)(?::([^}]*))?\}|\*\*|\*")


@dataclass(frozen=True)
class FilePattern:
    """A compiled filename pattern."""

    text: str
    regex: re.Pattern
    date_format: str | None
    fields: tuple[str, ...]
    on_path: bool  # match the path relative to the folder (the pattern has a '/')

    def match(self, root: Path, path: Path) -> re.Match | None:
        target = path.relative_to(root).as_posix() if self.on_path else path.name
        return self.regex.fullmatch(target)


def compile_pattern(pattern: str) -> FilePattern:
    """Turn `{date:%Y%m%d}_{band}.tif` into a regular expression.

    Fields: `{date:FORMAT}` (strftime; `{date}` alone means ISO 8601 like 2023-06-01 or
    20230601T102101), `{band}`, any other `{name}` (kept as an item property, e.g. `{tile}`),
    `*` (any characters except '/') and `**` (any characters).
    """
    parts: list[str] = []
    fields: list[str] = []
    date_format = None
    pos = 0
    for m in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[pos:m.start()]))
        pos = m.end()
        token = m.group(0)
        if token == "**":
            parts.append(r".*")
            continue
        if token == "*":
            parts.append(r"[^/]*")
            continue
        name, fmt = m.group(1), m.group(2)
        if name in fields:
            raise CollectionInputError(f"pattern {pattern!r}: field {{{name}}} appears twice.")
        fields.append(name)
        if name == "date":
            date_format = fmt or ""
            parts.append(f"(?P<date>{_date_regex(fmt, pattern) if fmt else _ISO_DATE})")
        else:
            parts.append(f"(?P<{name}>[^/]+?)")
    parts.append(re.escape(pattern[pos:]))
    return FilePattern(pattern, re.compile("".join(parts)), date_format, tuple(fields),
                       "/" in pattern)


_ISO_DATE = r"\d{4}-?\d{2}-?\d{2}(?:[T_]?\d{2}:?\d{2}(?::?\d{2})?)?Z?"


def _date_regex(fmt: str, pattern: str) -> str:
    out = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVES:
                raise CollectionInputError(
                    f"pattern {pattern!r}: unsupported date directive "
                    f"'%{fmt[i + 1:i + 2]}' (use %Y %y %m %d %H %M %S %j %f %b %B).")
            out.append(_DIRECTIVES[fmt[i + 1]])
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_date(text: str, fmt: str, path: Path) -> datetime:
    try:
        if fmt:
            t = datetime.strptime(text, fmt)
        else:
            t = pd.Timestamp(text.replace("_", "T")).to_pydatetime()
    except (ValueError, TypeError):
        shown = fmt or "ISO 8601"
        raise CollectionInputError(
            f"{path}: cannot read a date from '{text}' with the format {shown}.") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- one file -------------------------------------------------------------------------------
@dataclass
class RasterFile:
    """What the header of one raster file says."""

    path: Path
    href: str  # what GDAL opens (the file, or a VRT beside it that adds the georeference)
    crs: str
    transform: tuple[float, ...]
    shape: tuple[int, int]
    dtypes: list[str]
    nodata: float | None
    scales: list[float]
    offsets: list[float]
    descriptions: list[str | None]
    date: datetime | None = None
    fields: dict[str, str] = field(default_factory=dict)
    band: str | None = None

    @property
    def count(self) -> int:
        return len(self.dtypes)

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        h, w = self.shape
        xs, ys = (c, c + a * w), (f, f + e * h)
        return min(xs), min(ys), max(xs), max(ys)


def inspect_file(path: Path, sidecar_dir: Path | None) -> RasterFile:
    """Open one file's header; refuse files without a usable georeference."""
    import rasterio

    try:
        # Sidecar files (.prj, .aux.xml) may hold the georeference: let GDAL look for them.
        with _quiet(), rasterio.open(path) as ds:
            tags = ds.tags()
            if ds.crs is None and _is_knmi_hdf5(tags):
                return _knmi_file(path, tags, sidecar_dir)
            if ds.count == 0 and ds.subdatasets:
                raise CollectionInputError(
                    f"{path}: the file holds several datasets ({len(ds.subdatasets)}) and "
                    "none is a georeferenced raster terracube knows how to read.")
            if ds.crs is None:
                raise CollectionInputError(
                    f"{path}: the file has no CRS (no georeference), so it cannot be placed on "
                    "a map; add one (gdal_edit.py -a_srs EPSG:<code> FILE) and try again.")
            t = ds.transform
            if t.b != 0 or t.d != 0:
                raise CollectionInputError(
                    f"{path}: the grid is rotated (geotransform {tuple(t)[:6]}); warp it to a "
                    "north-up grid first (gdalwarp).")
            return RasterFile(
                path=path, href=str(path), crs=crs_string(ds.crs),
                transform=(t.a, t.b, t.c, t.d, t.e, t.f), shape=(ds.height, ds.width),
                dtypes=list(ds.dtypes), nodata=ds.nodata, scales=list(ds.scales),
                offsets=list(ds.offsets), descriptions=list(ds.descriptions),
                date=_date_from_tags(tags, path),
            )
    except CollectionInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        raise CollectionInputError(f"{path}: cannot open the raster file ({exc}).") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No NotGeoreferencedWarning: a missing georeference is reported as an error."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        yield


def _date_from_tags(tags: dict[str, str], path: Path) -> datetime | None:
    lower = {k.lower(): v for k, v in tags.items()}
    for key in _DATE_TAGS:
        if lower.get(key):
            return parse_date(lower[key].strip(), "", path)
    return None


# KNMI radar composites (HDF5 "KNMI format" 3.x): GDAL reads the image but not its grid, which
# is described by attributes of the `geographic` group; a VRT beside the data supplies it.
_KNMI_PROJ = "geographic_map_projection_projection_proj4_params"


def _is_knmi_hdf5(tags: dict[str, str]) -> bool:
    return _KNMI_PROJ in tags and "geographic_geo_row_offset" in tags


def _knmi_file(path: Path, tags: dict[str, str], sidecar_dir: Path | None) -> RasterFile:
    import numpy as np
    import rasterio
    from pyproj import CRS, Transformer

    if sidecar_dir is None:
        raise CollectionInputError(f"{path}: a KNMI HDF5 file needs a folder for its VRT.")
    proj4 = tags[_KNMI_PROJ]
    params = dict(p.lstrip("+").split("=", 1) for p in proj4.split() if "=" in p)
    if float(params.get("a", 6378137)) < 1e5:
        # Ellipsoid axes given in km: the grid is in km too.
        params["a"] = str(float(params["a"]) * 1000)
        params["b"] = str(float(params["b"]) * 1000)
        params["units"] = "km"
    crs = CRS.from_proj4(" ".join(f"+{k}={v}" for k, v in params.items()))
    rows = int(float(tags["geographic_geo_number_rows"]))
    cols = int(float(tags["geographic_geo_number_columns"]))
    px = float(tags["geographic_geo_pixel_size_x"])
    py = float(tags["geographic_geo_pixel_size_y"])
    col_off = float(tags["geographic_geo_column_offset"])
    row_off = float(tags["geographic_geo_row_offset"])
    corners = [float(v) for v in tags["geographic_geo_product_corners"].split()]
    to_grid = Transformer.from_crs(4326, crs, always_xy=True)
    cx, cy = to_grid.transform(corners[0::2], corners[1::2])
    x0, y0 = col_off * abs(px), -row_off * abs(py)
    # The corners (LL, UL, UR, LR in lon/lat) must fall on the grid's corners.
    expect_x = [x0, x0, x0 + cols * abs(px), x0 + cols * abs(px)]
    expect_y = [y0 - rows * abs(py), y0, y0, y0 - rows * abs(py)]
    if not (np.allclose(cx, expect_x, atol=abs(px)) and np.allclose(cy, expect_y, atol=abs(py))):
        raise CollectionInputError(
            f"{path}: the KNMI grid attributes do not agree with its corner coordinates.")
    sub = f'HDF5:"{path}"://image1/image_data'
    with _quiet(), rasterio.open(sub) as ds:
        dtype = ds.dtypes[0]
        if (ds.height, ds.width) != (rows, cols):
            raise CollectionInputError(
                f"{path}: image1/image_data is {ds.height}x{ds.width}, the grid {rows}x{cols}.")
    nodata = tags.get("image1_calibration_calibration_missing_data")
    scale, offset = 1.0, 0.0
    m = re.match(r"GEO\s*=\s*([-\d.eE+]+)\s*\*\s*PV\s*([+-]\s*[-\d.eE+]+)?",
                 tags.get("image1_calibration_calibration_formulas", ""))
    if m:
        scale = float(m.group(1))
        offset = float(m.group(2).replace(" ", "")) if m.group(2) else 0.0
    param = tags.get("image1_image_geo_parameter", "value")
    name = "precipitation" if "PRECIP" in param.upper() else \
        re.sub(r"[^a-z0-9]+", "_", param.lower()).strip("_")
    transform = (abs(px), 0.0, x0, 0.0, -abs(py), y0)
    sidecar_dir.mkdir(parents=True, exist_ok=True)
    vrt = sidecar_dir / f"{path.stem}.vrt"
    _write_vrt(vrt, sub, crs.to_wkt(), transform, (rows, cols), dtype, nodata, scale, offset,
               name)
    date = None
    end = tags.get("overview_product_datetime_end")
    if end:
        try:
            date = datetime.strptime(end.strip(), "%d-%b-%Y;%H:%M:%S.%f").replace(
                tzinfo=UTC)
        except ValueError:
            date = None
    return RasterFile(
        path=path, href=str(vrt), crs=crs.to_wkt(), transform=transform, shape=(rows, cols),
        dtypes=[dtype], nodata=float(nodata) if nodata else None, scales=[scale],
        offsets=[offset], descriptions=[name], date=date)


_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
               "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
               "float64": "Float64"}


def _write_vrt(vrt: Path, source: str, wkt: str, transform: tuple[float, ...],
               shape: tuple[int, int], dtype: str, nodata: str | None, scale: float,
               offset: float, name: str) -> None:
    a, _, c, _, e, f = transform
    rows, cols = shape
    nd = f"    <NoDataValue>{escape(str(nodata))}</NoDataValue>\n" if nodata else ""
    text = (
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">\n'
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(wkt)}</SRS>\n'
        f"  <GeoTransform>{c!r}, {a!r}, 0.0, {f!r}, 0.0, {e!r}</GeoTransform>\n"
        f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float32")}" band="1">\n'
        f"    <Description>{escape(name)}</Description>\n{nd}"
        f"    <Offset>{offset!r}</Offset>\n    <Scale>{scale!r}</Scale>\n"
        f"    <SimpleSource>\n"
        f'      <SourceFilename relativeToVRT="0">{escape(source)}</SourceFilename>\n'
        f"      <SourceBand>1</SourceBand>\n"
        f"    </SimpleSource>\n  </VRTRasterBand>\n</VRTDataset>\n"
    )
    tmp = vrt.with_suffix(".vrt.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(vrt)


# --- a folder -------------------------------------------------------------------------------
def list_raster_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
                  and not p.name.startswith("."))


def scan_files(root: Path, pattern: str | None = None, band_names: list[str] | None = None,
               sidecar_dir: Path | None = None) -> list[RasterFile]:
    """Every raster file under root that matches the pattern, with its date and band."""
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise CollectionInputError(f"{root}: no such file or folder.")
    candidates = list_raster_files(root)
    if not candidates:
        raise CollectionInputError(
            f"{root}: no raster files (looked for {', '.join(sorted(RASTER_SUFFIXES))}).")
    base = root.parent if root.is_file() else root
    compiled = compile_pattern(pattern) if pattern else None
    found: list[RasterFile] = []
    skipped: list[Path] = []
    for path in candidates:
        match = compiled.match(base, path) if compiled else None
        if compiled and match is None:
            skipped.append(path)
            continue
        info = inspect_file(path, sidecar_dir)
        if match is not None:
            groups = match.groupdict()
            if "date" in groups:
                info.date = parse_date(groups.pop("date"), compiled.date_format or "", path)
            info.band = groups.pop("band", None)
            info.fields = {k: v for k, v in groups.items() if v is not None}
        if info.band is None and not band_names and info.count == 1 and info.descriptions[0]:
            # A single-band file that names its band (tag-based collections).
            info.band = info.descriptions[0]
        found.append(info)
    if not found:
        examples = ", ".join(p.name for p in skipped[:3])
        raise CollectionInputError(
            f"{root}: no file matches the pattern {pattern!r} (files found: {examples}"
            f"{', …' if len(skipped) > 3 else ''}).")
    if skipped:
        log.info("%d file(s) in %s do not match %r and are left out", len(skipped), root,
                 pattern)
    _check_consistency(found, band_names)
    return found


def _check_consistency(files: list[RasterFile], band_names: list[str] | None) -> None:
    dated = [f for f in files if f.date is not None]
    if dated and len(dated) != len(files):
        undated = next(f for f in files if f.date is None)
        raise CollectionInputError(
            f"{undated.path}: no date (not in the pattern, no DATE/DATETIME tag), but "
            f"{dated[0].path.name} has one; give a pattern with {{date:…}}.")
    crs_count = Counter(f.crs for f in files)
    main_crs = crs_count.most_common(1)[0][0]
    for f in files:
        if f.crs != main_crs:
            first = next(g for g in files if g.crs == main_crs)
            raise CollectionInputError(
                f"{f.path}: inconsistent grids: the CRS is {_short(f.crs)}, but "
                f"{first.path.name} and {crs_count[main_crs] - 1} other file(s) use "
                f"{_short(main_crs)}; a folder collection needs one CRS (use a STAC catalog "
                "for data in several CRSs).")
    by_asset: dict[str, RasterFile] = {}
    for f in files:
        key = f.band or "data"
        ref = by_asset.setdefault(key, f)
        if f is ref:
            continue
        what = f"band {key}" if f.band else "the files"
        if f.count != ref.count or f.dtypes != ref.dtypes:
            raise CollectionInputError(
                f"{f.path}: inconsistent bands: {f.count} band(s) of {'/'.join(f.dtypes)}, but "
                f"{ref.path.name} has {ref.count} of {'/'.join(ref.dtypes)} for {what}.")
        if not _close(f.resolution, ref.resolution):
            raise CollectionInputError(
                f"{f.path}: inconsistent grids: pixels of {_res(f)} for {what}, but "
                f"{ref.path.name} has {_res(ref)}.")
        for origin, ref_origin, step in ((f.transform[2], ref.transform[2], ref.resolution[0]),
                                          (f.transform[5], ref.transform[5], ref.resolution[1])):
            shift = (origin - ref_origin) / step
            if abs(shift - round(shift)) > 1e-3:
                raise CollectionInputError(
                    f"{f.path}: inconsistent grids: its pixel grid is shifted by "
                    f"{abs(shift - round(shift)):.3f} pixel against {ref.path.name} for {what};"
                    " resample it onto the same grid (gdalwarp -tap).")
    if band_names is not None and len(by_asset) == 1:
        (ref,) = by_asset.values()
        if len(band_names) != ref.count:
            raise CollectionInputError(
                f"{ref.path}: {ref.count} band(s), but {len(band_names)} band name(s) were "
                f"given ({', '.join(band_names)}).")


def _short(crs: str) -> str:
    return crs if crs.startswith("EPSG:") else crs.split("[", 1)[0] + "[…]"


def _res(f: RasterFile) -> str:
    return f"{f.resolution[0]:g} x {f.resolution[1]:g}"


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _band_names(f: RasterFile, band_names: list[str] | None) -> list[str]:
    key = f.band
    if band_names and len(band_names) == f.count and not (key and f.count == 1):
        return list(band_names)
    if key and f.count == 1:
        return [key]
    desc = [d for d in f.descriptions if d]
    if len(desc) == f.count and len(set(desc)) == f.count:
        return [f"{key}_{d}" for d in desc] if key else desc
    if key:
        return [f"{key}_{i + 1}" for i in range(f.count)]
    return [f"b{i + 1}" for i in range(f.count)]


def build_items(collection_id: str, files: list[RasterFile],
                band_names: list[str] | None = None
                ) -> tuple[list[pystac.Item], list[BandInfo], str, bool]:
    """Canonical STAC items for checked files: one item per date (and tile/footprint)."""
    timeless = all(f.date is None for f in files)
    groups: dict[tuple, dict[str, RasterFile]] = {}
    for f in files:
        when = f.date or TIMELESS_DATETIME
        footprint = tuple(round(v, 6) for v in f.bounds)
        key = (when, tuple(sorted(f.fields.items())), footprint)
        assets = groups.setdefault(key, {})
        asset_key = f.band or "data"
        if asset_key in assets:
            other = assets[asset_key].path
            raise CollectionInputError(
                f"{f.path}: same {'band ' + asset_key if f.band else 'date and footprint'} as "
                f"{other.name}"
                f"{' on ' + when.date().isoformat() if not timeless else ''}; each band of a "
                "date needs exactly one file (add {band} or {date:…} to the pattern).")
        assets[asset_key] = f
    bands: dict[str, BandInfo] = {}
    owners: dict[str, Path] = {}
    all_names = sorted({n for fs in groups.values() for f in fs.values()
                        for n in _band_names(f, band_names)})
    crs = files[0].crs
    items = []
    counter: Counter[str] = Counter()
    for (when, fields, _footprint), assets in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        stamp = "static" if timeless else when.strftime("%Y%m%dT%H%M%S")
        base = "_".join([collection_id, stamp, *[v for _k, v in fields]])
        counter[base] += 1
        item_id = base if counter[base] == 1 else f"{base}_{counter[base]}"
        props: dict[str, Any] = dict(fields)
        if timeless:
            props[TIMELESS_PROPERTY] = True
        item = pystac.Item(id=item_id, geometry=None, bbox=None, datetime=when,
                           properties=props, stac_extensions=[EO_EXT, RASTER_EXT])
        for asset_key, f in sorted(assets.items()):
            names = _band_names(f, band_names)
            for n in names:
                if owners.setdefault(n, f.path) != f.path and n not in bands:
                    raise CollectionInputError(f"{f.path}: band name {n} is used twice.")
            extra: dict[str, Any] = {
                "eo:bands": [{"name": n} for n in names],
                "raster:bands": [
                    {k: v for k, v in (("data_type", f.dtypes[i]), ("nodata", f.nodata),
                                       ("scale", f.scales[i]), ("offset", f.offsets[i]))
                     if v is not None}
                    for i in range(f.count)],
                "proj:shape": list(f.shape),
                "proj:transform": list(f.transform),
            }
            if f.crs.startswith("EPSG:"):
                extra["proj:epsg"] = int(f.crs.split(":")[1])
            else:
                extra["proj:wkt2"] = f.crs
            item.add_asset(asset_key, pystac.Asset(
                href=f.href, media_type=_MEDIA_TYPES.get(f.path.suffix.lower()),
                roles=["data"], extra_fields=extra))
            for i, n in enumerate(names):
                if n in bands:
                    continue
                known = known_band(n, all_names)
                bands[n] = BandInfo(
                    name=n, nodata=f.nodata, resolution=min(f.resolution),
                    scale=float(f.scales[i]), offset=float(f.offsets[i]),
                    data_type=f.dtypes[i], common_name=known.common_name,
                    center_wavelength=known.center_wavelength)
        set_footprint(item, crs)
        items.append(item)
    given = list(band_names or [])
    order = given if sorted(given) == sorted(bands) else _band_order(list(bands))
    return items, [bands[n] for n in order], crs, timeless


def _band_order(names: list[str]) -> list[str]:
    """Sentinel-2 style names in sensor order (B01 … B8A … B12), others alphabetically."""
    def key(n: str) -> tuple:
        m = re.fullmatch(r"B(\d+)(A?)", n.upper())
        return (0, int(m.group(1)), m.group(2)) if m else (1, n)

    return sorted(names, key=key)


def files_source(collection_id: str, root: Path, pattern: str | None = None,
                 band_names: list[str] | None = None, sidecar_dir: Path | None = None,
                 **fields: Any) -> StacSource:
    """A collection over a folder (or one file) of rasters; refuses bad input with a message
    that names the file and the problem."""
    files = scan_files(root, pattern, band_names, sidecar_dir)
    items, bands, crs, timeless = build_items(collection_id, files, band_names)
    root = Path(root).expanduser().resolve()
    fields.setdefault("description",
                      f"{len(files)} raster file(s) in {root}"
                      f"{f' matching {pattern}' if pattern else ''}.")
    fields.setdefault("license", "other")
    description = fields.pop("description")
    return StacSource(collection_id, items, bands, crs, description, timeless=timeless,
                      **fields)
