"""The load-time source of a CF NetCDF file, a folder of NetCDF files or a Zarr store: its STAC
metadata and lazy loads with xarray, from the `CubeLayout` recorded when it was added
(netcdf_zarr_inspect.py).

Filters are applied before anything is read: the time, y and x windows are integer slices on
the lazily opened file, and only then is the result split into dask chunks that follow the
file's own chunking. Longitudes 0…360 are presented as -180…180; y runs north to south. A folder
cube opens only the files whose recorded time span meets the temporal extent.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracube import errors
from terracube.catalog.base import GEOMETRY_EXTENT_HINT, CollectionSource, PropertyCheck
from terracube.catalog.metadata import crs_string, drop_none, lonlat_bbox, reference_system
from terracube.catalog.netcdf_zarr_inspect import (
    CubeLayout,
    VariableInfo,
    crs_label,
    decode_cf_times,
    inspect_cube,
    load_dtype,
    open_cube_file,
)
from terracube.catalog.stac_items import PROJECTION_EXT, NoDataForRequest
from terracube.datacube.cube import BANDS, OTHER, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.request import BBox, LoadRequest

log = logging.getLogger(__name__)

# Spatial chunk edge aimed at (a multiple of the file's own chunks), as for STAC items.
SPATIAL_CHUNK = 1024


# --- the source -----------------------------------------------------------------------------
class XarraySource(CollectionSource):
    """A collection backed by one CF NetCDF file or Zarr store."""

    def __init__(self, collection_id: str, layout: CubeLayout, *, title: str | None = None,
                 description: str | None = None, license: str | None = None,
                 providers: list[dict] | None = None, keywords: list[str] | None = None,
                 extra: dict | None = None) -> None:
        self.id = collection_id
        self.layout = layout
        a = layout.attrs
        self.title = title or a.get("title") or collection_id
        self.description = description or a.get("summary") or a.get("title") or \
            _default_description(layout)
        self.license = license or _license(a.get("license"))
        if description is None and license is None and a.get("license") \
                and self.license == "other":
            # Not an SPDX id: the data's own words on its licence, where users see them.
            self.description += f"\n\nLicence (from the data): {a['license']}"
        self.providers = providers if providers is not None else _providers(a)
        self.keywords = keywords if keywords is not None else \
            [k.strip() for k in a.get("keywords", "").split(",") if k.strip()]
        self.extra = extra or {}
        self.bands = {v.name: v for v in layout.variables}

    # --- metadata ---------------------------------------------------------------------------
    def stac(self) -> dict:
        lay = self.layout
        w, s, e, n = lay.bounds()
        ref = reference_system(lay.crs)
        dims: dict[str, Any] = {}
        if lay.t:
            t: dict[str, Any] = {"type": "temporal", "extent": lay.time_extent,
                                 "step": lay.time_step}
            if lay.times and len(lay.times) <= 100:
                t["values"] = lay.times
            dims["t"] = t
        dims["bands"] = {"type": "bands", "values": lay.bands}
        for d in lay.other:
            dims[d] = {"type": "other", "values": lay.other_values.get(d, [])}
        dims["y"] = {"type": "spatial", "axis": "y", "extent": [s, n], "step": lay.y_step,
                     "reference_system": ref}
        dims["x"] = {"type": "spatial", "axis": "x", "extent": [w, e], "step": lay.x_step,
                     "reference_system": ref}
        raster_bands = [drop_none({
            "name": v.name, "data_type": v.data_type, "unit": v.unit,
            "nodata": "nan", "description": _packing(v),
        }) for v in lay.variables]
        eo_bands = [drop_none({"name": v.name, "description": v.long_name or v.standard_name})
                    for v in lay.variables]
        summaries: dict[str, Any] = {"raster:bands": raster_bands, "eo:bands": eo_bands}
        epsg = ref if isinstance(ref, int) else None
        if epsg:
            summaries["proj:epsg"] = [epsg]
        else:
            summaries["proj:wkt2"] = [lay.crs]
        return {
            "type": "Collection",
            "stac_version": "1.0.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                PROJECTION_EXT,  # proj:epsg or proj:wkt2 in the summaries
            ],
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "license": self.license,
            "keywords": self.keywords,
            "providers": self.providers,
            "extent": {
                "spatial": {"bbox": [lonlat_bbox(w, s, e, n, lay.crs)]},
                "temporal": {"interval": [lay.time_extent if lay.t else [None, None]]},
            },
            "cube:dimensions": dims,
            "summaries": summaries,
            "assets": {},
            **self.extra,
        }

    # --- loading ----------------------------------------------------------------------------
    def load(self, request: LoadRequest, *,
             check_property: PropertyCheck | None = None) -> RasterCube:
        lay = self.layout
        if request.properties:
            raise errors.ProcessParameterInvalid(
                f"Collection '{self.id}' is a single {lay.engine} cube without item metadata; "
                "it cannot be filtered by properties.", argument="properties")
        bands = list(request.bands) if request.bands else lay.bands
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            raise errors.ProcessParameterInvalid(
                f"Collection '{self.id}' has no band(s) {', '.join(unknown)}; available: "
                f"{', '.join(lay.bands)}.", argument="bands")
        if lay.files:
            ds = self._read_files(bands, request)
        else:
            ds = self._read_window(lay.path, bands, request)

        x_values = np.asarray(ds[lay.x].values, dtype="float64")
        if lay.lon_wrap:
            x_values = np.where(x_values >= 180.0, x_values - 360.0, x_values)
        dtype = load_dtype([np.dtype(self.bands[b].data_type) for b in bands])
        data = xr.concat([ds[b].astype(dtype) for b in bands],
                         dim=pd.Index(bands, name="bands"), coords="minimal",
                         compat="override", join="override")
        data = data.assign_coords({lay.x: x_values,
                                   lay.y: np.asarray(ds[lay.y].values, dtype="float64")})
        rename = {lay.x: "x", lay.y: "y"}
        if lay.t:
            rename[lay.t] = "t"
        data = data.rename(rename)
        order = (["t"] if lay.t else []) + ["bands"] + lay.other + ["y", "x"]
        data = data.transpose(*order)
        data.attrs = {}
        data.name = None
        for c in ("x", "y"):
            data[c].attrs = {}
        ref = reference_system(lay.crs)
        dimensions = []
        for d in order:
            if d == "t":
                dimensions.append(Dimension("t", TEMPORAL))
            elif d == "bands":
                dimensions.append(Dimension("bands", BANDS))
            elif d in ("x", "y"):
                dimensions.append(Dimension(d, SPATIAL, d, ref))
            else:
                dimensions.append(Dimension(d, OTHER))
        cube = RasterCube(data, tuple(dimensions), nodata=None,
                          attrs={"band_metadata": {b: self.bands[b] for b in bands},
                                 "collection": self.id})
        if request.crs is not None or request.resolution is not None:
            cube = _reproject(cube, lay, request)
        return cube

    def _read_window(self, path: str, bands: list[str], request: LoadRequest,
                     in_time_window: bool = True) -> xr.Dataset | None:
        """The request's window of one file as lazy dask arrays; None when none of the
        file's times is in the temporal extent and `in_time_window` is False."""
        lay = self.layout
        try:
            ds = open_cube_file(path, lay.engine)
        except Exception as exc:  # noqa: BLE001
            raise errors.Internal(f"Collection '{self.id}': cannot open {path} ({exc}).") \
                from None
        ds = ds[bands]
        if lay.squeeze:
            ds = ds.isel({d: 0 for d in lay.squeeze if d in ds.dims}, drop=True)
        ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims])

        # Windows as integer positions in the stored order, then read lazily.
        x_idx = self._x_positions(ds, request)
        y_idx = self._y_positions(ds, request)
        pieces: dict[str, list[slice]] = {lay.x: _runs(x_idx), lay.y: _runs(y_idx)}
        if lay.t:
            t_idx = self._t_positions(ds, request, raise_empty=in_time_window)
            if not len(t_idx):
                ds.close()
                return None
            pieces[lay.t] = _runs(t_idx)
        return _isel_runs(ds, pieces, self._chunking)

    def _read_files(self, bands: list[str], request: LoadRequest) -> xr.Dataset:
        """The request's window of a folder of files: only the files whose time span meets
        the temporal extent are opened, each windowed like a single file."""
        lay = self.layout
        start, end = request.temporal_extent or (None, None)
        t0 = _naive_utc(start) if start else None
        t1 = _naive_utc(end) if end else None
        parts = []
        for path, (first, last) in zip(lay.files, lay.file_times):
            if (t0 is not None and _naive_utc(last) < t0) or \
                    (t1 is not None and _naive_utc(first) >= t1):
                continue
            part = self._read_window(path, bands, request, in_time_window=False)
            if part is not None:
                parts.append(part)
        if not parts:
            raise self._no_times(start, end)
        if len(parts) == 1:
            return parts[0]
        # Same grid in every file (checked when added): the first file's x/y labels hold.
        return xr.concat(parts, dim=lay.t, data_vars="all", coords="minimal",
                         compat="override", join="override")

    def _x_positions(self, ds: xr.Dataset, request: LoadRequest) -> np.ndarray:
        lay = self.layout
        xs = np.asarray(ds[lay.x].values, dtype="float64")
        if lay.lon_wrap:
            xs = np.where(xs >= 180.0, xs - 360.0, xs)
        order = np.argsort(xs, kind="stable")
        xs_sorted = xs[order]
        if request.bbox is None:
            return order
        b = self._native_box(request.bbox)
        keep = (xs_sorted >= b.west) & (xs_sorted <= b.east)
        if not keep.any():
            self._no_overlap(request.bbox)
        return order[keep]

    def _y_positions(self, ds: xr.Dataset, request: LoadRequest) -> np.ndarray:
        lay = self.layout
        ys = np.asarray(ds[lay.y].values, dtype="float64")
        order = np.argsort(-ys, kind="stable")  # north to south
        ys_sorted = ys[order]
        if request.bbox is None:
            return order
        b = self._native_box(request.bbox)
        keep = (ys_sorted >= b.south) & (ys_sorted <= b.north)
        if not keep.any():
            self._no_overlap(request.bbox)
        return order[keep]

    def _t_positions(self, ds: xr.Dataset, request: LoadRequest,
                     raise_empty: bool = True) -> np.ndarray:
        lay = self.layout
        times = decode_cf_times(ds[lay.t], Path(lay.path))
        keep = np.ones(len(times), dtype=bool)
        start, end = request.temporal_extent or (None, None)
        if start:
            keep &= times >= _naive_utc(start)
        if end:
            keep &= times < _naive_utc(end)
        if not keep.any() and raise_empty:
            raise self._no_times(start, end)
        return np.flatnonzero(keep)

    def _no_times(self, start: str | None, end: str | None) -> NoDataForRequest:
        lay = self.layout
        return NoDataForRequest(
            f"No data in collection '{self.id}' for the temporal extent "
            f"[{start}, {end}); it covers {lay.time_extent[0]} to {lay.time_extent[1]}.",
            argument="temporal_extent")

    def _native_box(self, bbox: BBox) -> BBox:
        lay = self.layout
        b = bbox.to_crs(lay.crs)
        if lay.lon_wrap:
            # A box given in 0…360 longitudes: bring it to -180…180 like the cube.
            if b.west >= 180.0:
                b = BBox(b.west - 360.0, b.south, b.east - 360.0, b.north, b.crs)
        return b

    def _no_overlap(self, bbox: BBox) -> None:
        w, s, e, n = self.layout.bounds()
        raise NoDataForRequest(
            f"The spatial extent {bbox} does not intersect collection '{self.id}', which "
            f"covers {w:g}, {s:g}, {e:g}, {n:g} ({crs_label(self.layout.crs)}); "
            f"{GEOMETRY_EXTENT_HINT}", argument="spatial_extent")

    def _chunking(self, ds: xr.Dataset) -> dict[str, int]:
        lay = self.layout
        out: dict[str, int] = {}
        for d, size in ds.sizes.items():
            stored = lay.chunks.get(str(d))
            if d in (lay.x, lay.y):
                base = stored if stored and stored > 0 else SPATIAL_CHUNK
                out[str(d)] = min(size, max(base, (SPATIAL_CHUNK // base) * base))
            elif d == lay.t:
                out[str(d)] = min(size, stored or 1)
            else:
                out[str(d)] = size
        return out


def _naive_utc(t: str) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _runs(idx: np.ndarray) -> list[slice]:
    """Integer positions as the fewest slices (step +1 or -1) that list them in order."""
    idx = np.asarray(idx, dtype=int)
    if len(idx) == 0:
        return []
    out = []
    start = 0
    for i in range(1, len(idx) + 1):
        if i < len(idx):
            step = idx[i] - idx[i - 1]
            run_step = idx[start + 1] - idx[start] if i - start >= 2 else step
            if step in (1, -1) and step == run_step:
                continue
        a, b = idx[start], idx[i - 1]
        if b >= a:
            out.append(slice(int(a), int(b) + 1))
        else:
            out.append(slice(int(a), int(b) - 1 if b > 0 else None, -1))
        start = i
    return out


def _isel_runs(ds: xr.Dataset, pieces: dict[str, list[slice]],
               chunking: Callable[[xr.Dataset], dict[str, int]]) -> xr.Dataset:
    """ds restricted to runs of positions per dimension (concatenated in order), as dask
    arrays chunked by `chunking`. Pieces are chunked before they are concatenated: xarray
    would read lazily indexed file arrays into memory to concatenate them."""
    ds = ds.isel({d: runs[0] for d, runs in pieces.items() if len(runs) == 1})
    lazy = False
    for d, runs in pieces.items():
        if len(runs) < 2:
            continue
        parts = [ds.isel({d: r}) for r in runs]
        if not lazy:
            parts = [p.chunk(chunking(p)) for p in parts]
        ds = xr.concat(parts, dim=d, data_vars="all", coords="minimal", compat="override",
                       join="exact")
        lazy = True
    return ds if lazy else ds.chunk(chunking(ds))


def _reproject(cube: RasterCube, lay: CubeLayout, request: LoadRequest) -> RasterCube:
    """Warp onto the requested CRS/resolution (lazily, with odc-geo)."""
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import assign_crs, xr_reproject

    crs = request.crs or lay.crs
    same_crs = crs_string(crs) == lay.crs
    if same_crs and (request.resolution is None or
                     math.isclose(request.resolution, lay.x_step, rel_tol=1e-9)):
        return cube
    xs, ys = cube.data["x"].values, cube.data["y"].values
    native = BBox(float(xs.min()) - lay.x_step / 2, float(ys.min()) - lay.y_step / 2,
                  float(xs.max()) + lay.x_step / 2, float(ys.max()) + lay.y_step / 2, lay.crs)
    target = native.to_crs(crs)
    resolution = request.resolution or (lay.x_step if same_crs else None)
    if resolution is None:
        raise errors.ProcessParameterInvalid(
            "A target CRS without a resolution cannot be loaded from this collection.",
            argument="resolution")
    geobox = GeoBox.from_bbox((target.west, target.south, target.east, target.north),
                              crs=crs, resolution=resolution, tight=False)
    src = assign_crs(cube.data, crs=lay.crs)
    out = xr_reproject(src, geobox, resampling="nearest", dst_nodata=np.nan)
    out = out.drop_vars([c for c in out.coords if c not in out.dims])
    out = out.rename({out.odc.spatial_dims[1]: "x", out.odc.spatial_dims[0]: "y"})
    out = out.transpose(*[d.name for d in cube.dimensions])
    out.attrs = {}
    ref = reference_system(crs)
    dims = tuple(Dimension(d.name, d.type, d.axis, ref) if d.type == SPATIAL else d
                 for d in cube.dimensions)
    return RasterCube(out, dims, nodata=None, attrs=cube.attrs)


def _packing(v: VariableInfo) -> str | None:
    parts = []
    if v.scale_factor is not None or v.add_offset is not None:
        parts.append(f"stored as {v.stored_type} packed with scale_factor "
                     f"{v.scale_factor if v.scale_factor is not None else 1} and add_offset "
                     f"{v.add_offset if v.add_offset is not None else 0}; values are unpacked")
    if v.fill_value is not None:
        parts.append(f"_FillValue {v.fill_value:g} is no-data (NaN)")
    return "; ".join(parts) or None


def _default_description(layout: CubeLayout) -> str:
    if layout.files:
        return f"{len(layout.files)} NetCDF files in {layout.path}, one cube along time."
    return f"{'Zarr store' if layout.engine == 'zarr' else 'NetCDF file'} {layout.path}."


def _license(text: str | None) -> str:
    if text and re.fullmatch(r"[A-Za-z0-9.\-+]+", text.strip()):
        return text.strip()
    return "other"


def _providers(attrs: dict[str, str]) -> list[dict]:
    out = []
    for key, roles in (("institution", ["producer"]), ("creator_name", ["producer"])):
        name = attrs.get(key)
        if name and all(p["name"] != name for p in out):
            p: dict[str, Any] = {"name": name, "roles": roles}
            if key == "creator_name" and attrs.get("creator_url"):
                p["url"] = attrs["creator_url"]
            out.append(p)
    return out


def cube_source(collection_id: str, path: Path | str, variables: list[str] | None = None,
                **fields: Any) -> XarraySource:
    """A collection over a CF NetCDF file or Zarr store (checked now, read lazily later)."""
    layout = inspect_cube(path, variables)
    fields = {k: v for k, v in fields.items() if v is not None}
    return XarraySource(collection_id, layout, **fields)
