"""Zonal processes: aggregate_spatial (statistics per geometry, one pass over the chunks for
plain mean/sum/min/max/count) and apply_polygon (a callback per polygon).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import BANDS, GEOMETRY, OTHER, Dimension, RasterCube
from terracube.datacube.grid import Grid, as_dask, grid_of, spatial_dims
from terracube.datacube.values import ArrayValue
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube, reproject_geometries
from terracube.engine.evaluate import Callback
from terracube.engine.processes._reducing import (
    drop_dim_coords,
    is_valid_mask,
    reducer_output,
    unwrap_data,
)
from terracube.engine.processes.cube_filters import with_bands
from terracube.engine.processes.neighbourhood import PIXELS, callback_cube, stack_pixels
from terracube.engine.processes.rasterise import (
    fill_value,
    geometry_pixels,
    spatial_chunks,
    vector_input,
)
from terracube.engine.processes.udf import udf_whole_pieces
from terracube.engine.registry import process
from terracube.process_errors import (
    DataCubePropertiesImmutable,
    GeometriesOverlap,
    TargetDimensionExists,
)


@process("aggregate_spatial")
def aggregate_spatial(data: RasterCube, geometries: Any, reducer: Callback,
                      target_dimension: str | None = None, context: Any = None) -> VectorCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(_collection_members(geometries), "geometries")
    if target_dimension is not None and data.dim(target_dimension) is not None:
        raise TargetDimensionExists(
            f"The data cube already has a dimension '{target_dimension}'.",
            argument="target_dimension")
    others = [d for d in data.data.dims if d not in (ydim, xdim)]
    values = data.data.transpose(*others, ydim, xdim)
    template = drop_dim_coords(drop_dim_coords(
        xr.zeros_like(values.isel({ydim: 0, xdim: 0}, drop=True)) if grid.width and grid.height
        else values.sum([ydim, xdim]), ydim), xdim).astype(np.float64)
    geoms = reproject_geometries(vc.geometries, vc.crs, grid.crs)
    fast = _streaming_statistic(reducer, values)
    if fast is not None:
        windows = [geometry_pixels(geom, grid) for geom in geoms]
        out, valid = _zonal_statistic(values, windows, fast, template)
        total = xr.DataArray([0 if w is None else int(w[2].sum()) for w in windows],
                             dims=[GEOMETRY_DIM]).broadcast_like(out)
        return _zonal_vector_cube(vc, data, others, out, total, valid, target_dimension)
    results, totals, valids = [], [], []
    quantiles_only = _result_process(reducer) == "quantiles"
    for geom in geoms:
        found = geometry_pixels(geom, grid)
        if found is None:  # empty or outside the data: no-data
            results.append(xr.full_like(template, np.nan))
            totals.append(xr.zeros_like(template))
            valids.append(xr.zeros_like(template))
            continue
        rows, cols, mask = found
        pixels = stack_pixels(values.isel({ydim: rows, xdim: cols}), ydim, xdim)
        if not mask.all():
            pixels = pixels.isel({PIXELS: np.flatnonzero(mask.ravel())})
        value = reducer(data=ArrayValue(pixels, PIXELS), context=context)
        if quantiles_only and isinstance(value, ArrayValue) and value.dim == PIXELS:
            # quantiles(x, probabilities=[...]) as the reducer: its array is along the pixels'
            # axis, but it holds one statistic per probability, as array_create([...]) does
            value = ArrayValue(value.data.rename({PIXELS: _STATS}), _STATS)
        results.append(_statistics_output(value, template))
        if target_dimension is not None:
            totals.append(xr.full_like(template, int(mask.sum())))
            valids.append(is_valid_mask(pixels).sum(PIXELS).astype(np.float64))
    def stack(items: list) -> xr.DataArray:
        return xr.concat(items, dim=GEOMETRY_DIM, coords="minimal", compat="override",
                         join="override") if items else template.expand_dims({GEOMETRY_DIM: 0})

    counts = {r.sizes[_STATS] for r in results if _STATS in r.dims}
    if len(counts) > 1:
        raise errors.ProcessParameterInvalid(
            f"The reducer returned {' or '.join(map(str, sorted(counts)))} values for different "
            "geometries; it must return as many for every geometry.", argument="reducer")
    n = counts.pop() if counts else 0
    if n:
        empty = template.expand_dims({_STATS: n}, axis=-1)
        results = [r if _STATS in r.dims else xr.full_like(empty, np.nan) for r in results]
    out = stack(results)
    total = stack(totals) if totals else None
    valid = stack(valids) if valids else None
    if n:
        names = statistic_names(reducer, n)
        data, others, out, total, valid = _statistics_as_bands(data, others, out, total, valid,
                                                               names)
    return _zonal_vector_cube(vc, data, others, out, out if total is None else total,
                              out if valid is None else valid, target_dimension)


# Several statistics per geometry (a reducer such as array_create([mean(x), sd(x)]), CDSE's
# multi-statistics): they become band labels, band by band ({band}_{statistic}), as CDSE
# flattens them into the bands; a cube without bands gets a bands dimension of statistics.
_STATS = "__statistics__"


def _statistics_output(value: Any, template: xr.DataArray) -> xr.DataArray:
    """The reducer's value(s) for one geometry: shaped like the template, with one more
    dimension _STATS when the reducer returned an array of statistics."""
    raw = value.data if isinstance(value, ArrayValue) else value
    if isinstance(raw, xr.DataArray):
        if PIXELS in raw.dims and raw.sizes[PIXELS] == 1:
            raw = drop_dim_coords(raw.isel({PIXELS: 0}), PIXELS)
        extra = [d for d in raw.dims if d not in template.dims and d != PIXELS]
        if len(extra) == 1:
            stats = drop_dim_coords(raw, extra[0]).rename({extra[0]: _STATS})
            return stats.broadcast_like(template).transpose(*template.dims, _STATS)
    return reducer_output(value, template, PIXELS)


def _result_node(reducer: Callback) -> dict | None:
    graph = getattr(reducer, "graph", None) or {}
    return next((n for n in graph.values() if n.get("result")), None)


def _result_process(reducer: Callback) -> str | None:
    """The process id of the reducer graph's result node (None for a non-graph reducer)."""
    node = _result_node(reducer)
    return node.get("process_id") if node else None


def statistic_names(reducer: Callback, count: int) -> list[str]:
    """Names of the statistics a reducer returns: the processes of its array_create elements
    (quantiles by percent, e.g. `p25`, also as the reducer itself), else `stat_0`,
    `stat_1`... (identifiers: they end up as column and property names)."""
    graph = getattr(reducer, "graph", None) or {}
    result = _result_node(reducer)
    names: list[str] = []
    items: Any = None
    if result is not None and result.get("process_id") == "array_create":
        items = (result.get("arguments") or {}).get("data")
    elif result is not None and result.get("process_id") == "quantiles":
        items = [result]
    if isinstance(items, list):
        for item in items:
            node = item if item is result else (
                graph.get(item.get("from_node")) if isinstance(item, dict) else None)
            pid = node.get("process_id") if node else None
            arguments = (node or {}).get("arguments") or {}
            probabilities = arguments.get("probabilities")
            q = arguments.get("q")
            if probabilities is None and isinstance(q, int) and not isinstance(q, bool) and q > 1:
                probabilities = [k / q for k in range(1, q)]  # quantiles(q=4): quartiles
            if pid == "quantiles" and isinstance(probabilities, list):
                names += ["p" + f"{p * 100:g}".replace(".", "_")
                          if isinstance(p, (int, float)) else "quantile" for p in probabilities]
            else:
                names.append(str(pid) if pid else str(len(names)))
    if len(names) != count or len(set(names)) != count:
        return [f"stat_{k}" for k in range(count)]
    return names


def _statistics_as_bands(data: RasterCube, others: list[str], out: xr.DataArray,
                         total: xr.DataArray | None, valid: xr.DataArray | None,
                         names: list[str]) -> tuple[RasterCube, list[str], xr.DataArray,
                                                    xr.DataArray | None, xr.DataArray | None]:
    """The _STATS dimension folded into the bands: labels {band}_{statistic}, band-major."""
    bands = next((d for d in data.dims_of_type(BANDS) if d.name in others), None)
    count = len(names)
    if bands is None:
        dim = Dimension("bands", BANDS)
        labels = names
        out = out.rename({_STATS: dim.name})
        total, valid = (None if x is None else x.expand_dims({dim.name: count}, axis=-1)
                        for x in (total, valid))
        data = data.with_data(data.data.expand_dims({dim.name: 1}),
                              (dim, *data.dimensions))
        others = [*others, dim.name]
    else:
        dim = bands
        band_labels = [str(b) for b in data.labels(dim.name)]
        labels = [f"{b}_{s}" for b in band_labels for s in names]
        out = out.stack({"__flat__": (dim.name, _STATS)}).drop_vars(
            ["__flat__", dim.name, _STATS], errors="ignore").rename({"__flat__": dim.name})
        total, valid = (None if x is None else x.isel(
            {dim.name: np.repeat(np.arange(len(band_labels)), count)}) for x in (total, valid))
    label_array = np.array(labels, dtype=object)
    out, total, valid = (None if x is None else drop_dim_coords(x, dim.name).assign_coords(
        {dim.name: label_array}).transpose(GEOMETRY_DIM, *others) for x in (out, total, valid))
    return data, others, out, total, valid


def _zonal_vector_cube(vc: VectorCube, data: RasterCube, others: list[str], out: xr.DataArray,
                       total: xr.DataArray, valid: xr.DataArray,
                       target_dimension: str | None) -> VectorCube:
    """The vector cube of aggregate_spatial: one value per geometry (and per other label);
    with a target dimension also the geometry's pixel count and its valid pixels."""
    n = len(vc.geometries)
    dims = [Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=vc.crs)] + [
        data.dim(d) for d in others]
    if target_dimension is not None:
        out = xr.concat([x.astype(np.float64) for x in (out, total, valid)], dim=target_dimension,
                        coords="minimal", compat="override", join="override")
        out = out.assign_coords({target_dimension: ["value", "total_count", "valid_count"]})
        dims.append(Dimension(target_dimension, OTHER))
    out = out.assign_coords({GEOMETRY_DIM: np.arange(n)})
    out = out.transpose(*[d.name for d in dims])
    return VectorCube(vc.geometries, vc.crs, out, tuple(dims), vc.properties)


# Reducers that combine from per-chunk partial results (sum, count, min, max of the pixels).
_STREAMING_REDUCERS = ("mean", "sum", "min", "max", "count")


def _streaming_statistic(reducer: Callback, values: xr.DataArray) -> str | None:
    """The reducer's name when it is a plain mean/sum/min/max/count of the pixels of float
    data, which aggregate_spatial computes in one pass over the chunks."""
    name = getattr(reducer, "single_process", None)
    if name not in _STREAMING_REDUCERS or values.dtype.kind != "f":
        return None
    args = reducer.single_process_arguments()
    if args.get("data") != {"from_parameter": "data"}:
        return None
    rest = {k: v for k, v in args.items() if k != "data"}
    if name == "count":
        return name if rest.get("condition") is None and set(rest) <= {"condition"} else None
    if set(rest) <= {"ignore_nodata"} and rest.get("ignore_nodata", True) is True:
        return name
    return None


_SUM, _COUNT, _MIN, _MAX = range(4)


def _zonal_partials(block: np.ndarray, bounds: np.ndarray, masks: list[np.ndarray | None],
                    statistic: str, block_info: dict | None = None) -> np.ndarray:
    """Sum, count, min and max of the valid pixels of every geometry in one spatial chunk:
    shape (*leading, 1, 1, geometries, 4). Only the count and what `statistic` needs are
    computed (a mean needs no extremes: half the passes over the pixels); the others stay
    0, inf, -inf."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"][-2:]
    lead = block.shape[:-2]
    out = np.zeros((*lead, 1, 1, len(masks), 4))
    out[..., _MIN] = np.inf
    out[..., _MAX] = -np.inf
    rs, re_, cs, ce = bounds.T
    hits = np.flatnonzero((rs < r1) & (re_ > r0) & (cs < c1) & (ce > c0))
    for i in hits:
        mask = masks[i]
        a0, a1 = max(rs[i], r0), min(re_[i], r1)
        b0, b1 = max(cs[i], c0), min(ce[i], c1)
        inside = mask[a0 - rs[i]:a1 - rs[i], b0 - cs[i]:b1 - cs[i]]
        if not inside.any():
            continue
        window = block[..., a0 - r0:a1 - r0, b0 - c0:b1 - c0]
        # = window[..., inside] (same pixels, same order); numpy's boolean indexing of the
        # last two axes takes its general path, 7x slower than compress of the flat window
        pixels = np.compress(inside.ravel(), window.reshape(*window.shape[:-2], -1), axis=-1)
        valid = ~np.isnan(pixels)
        target = out[..., 0, 0, i, :]
        target[..., _COUNT] = valid.sum(axis=-1)
        if statistic in ("mean", "sum"):
            target[..., _SUM] = np.where(valid, pixels, 0).sum(axis=-1, dtype=np.float64)
        if pixels.shape[-1] and statistic == "min":
            target[..., _MIN] = np.where(valid, pixels, np.inf).min(axis=-1)
        if pixels.shape[-1] and statistic == "max":
            target[..., _MAX] = np.where(valid, pixels, -np.inf).max(axis=-1)
    return out


def _zonal_statistic(values: xr.DataArray, windows: list, statistic: str,
                     template: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """(statistic, valid-pixel count) per geometry in one pass over the chunks of `values`
    (dims: others…, y, x): every chunk contributes partial sums/counts/extremes for the
    geometries it touches, instead of one sub-graph per geometry."""
    arr = as_dask(values)
    n = len(windows)
    bounds = np.array([(w[0].start, w[0].stop, w[1].start, w[1].stop) if w is not None
                       else (0, 0, 0, 0) for w in windows], dtype=np.int64).reshape(n, 4)
    masks = [None if w is None else w[2] for w in windows]
    chunks = (*arr.chunks[:-2], (1,) * len(arr.chunks[-2]), (1,) * len(arr.chunks[-1]),
              (n,), (4,))
    parts = da.map_blocks(_zonal_partials, arr, bounds, masks, statistic, chunks=chunks,
                          new_axis=[arr.ndim, arr.ndim + 1], dtype=np.float64,
                          meta=np.array((), dtype=np.float64))
    spatial = (arr.ndim - 2, arr.ndim - 1)
    count = parts[..., _COUNT].sum(axis=spatial)
    found = count > 0
    if statistic == "count":
        result = count
    elif statistic == "sum":
        result = da.where(found, parts[..., _SUM].sum(axis=spatial), np.nan)
    elif statistic == "mean":
        result = da.where(found, parts[..., _SUM].sum(axis=spatial) / da.maximum(count, 1),
                          np.nan)
    elif statistic == "min":
        result = da.where(found, parts[..., _MIN].min(axis=spatial), np.nan)
    else:
        result = da.where(found, parts[..., _MAX].max(axis=spatial), np.nan)
    outside = np.array([w is None for w in windows])
    if outside.any():  # geometries without pixels: no-data, whatever the statistic
        result = da.where(outside, np.nan, result)
    dims = [*template.dims, GEOMETRY_DIM]
    coords = {k: c for k, c in template.coords.items() if set(c.dims) <= set(template.dims)}
    as_array = (lambda a: xr.DataArray(a, dims=dims, coords=coords)  # noqa: E731
                .transpose(GEOMETRY_DIM, *template.dims))
    return as_array(result), as_array(count)


def _collection_members(geometries: Any) -> Any:
    """A GeoJSON GeometryCollection as a FeatureCollection of its members: openEO API 1.0's
    aggregate_spatial took one (a value per member), and so do CDSE and the client's shapely
    conversions (the NDVI_Timeseries notebooks); anything else unchanged."""
    if isinstance(geometries, dict) and geometries.get("type") == "GeometryCollection":
        members = geometries.get("geometries")
        if isinstance(members, list):
            return {"type": "FeatureCollection", "features": [
                {"type": "Feature", "geometry": g, "properties": {}} for g in members]}
    return geometries


@process("apply_polygon")
def apply_polygon(data: RasterCube, geometries: Any, process: Callback, mask_value: Any = None,
                  context: Any = None) -> RasterCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(geometries, "geometries")
    geoms = vc.geometries_in(grid.crs)
    for g in geoms:
        if not g.is_empty and g.geom_type not in ("Polygon", "MultiPolygon"):
            raise errors.ProcessParameterInvalid(
                f"'geometries' may only contain polygons, found a {g.geom_type}.",
                argument="geometries")
    found = [(i, w) for i, w in enumerate(
        geometry_pixels(g, grid, polygons_only=True) for g in geoms) if w is not None]
    _check_overlaps([w for _, w in found])
    fill, values = fill_value(data, None)
    inner_fill = fill if mask_value is None else mask_value
    dims = list(data.data.dims)
    zones = xr.DataArray(da.map_blocks(
        _zone_block, geoms, grid, dtype=np.int32, chunks=spatial_chunks(data),
        meta=np.array((), dtype=np.int32)), dims=[ydim, xdim])
    height, width = values.sizes[ydim], values.sizes[xdim]
    pieces = []
    for index, (rows, cols, mask) in found:
        piece = values.isel({ydim: rows, xdim: cols})
        inside = xr.DataArray(mask, dims=[ydim, xdim])
        sub = data.with_data(piece.where(inside, inner_fill))
        with udf_whole_pieces(may_reshape=True):  # a UDF gets the polygon's pixels in one call
            value = process(data=sub, context=context)
        pieces.append((index, rows, cols, _polygon_result(value, piece, ydim, xdim, pieces)))
    # the labels of the result: the input's, or those of a UDF that changed their number
    # (e.g. another number of bands, as CDSE allows)
    labelled = pieces[0][3] if pieces else values
    shape = [labelled.sizes[d] if d not in (ydim, xdim) else values.sizes[d] for d in dims]
    changed = [d for d in dims if d not in (ydim, xdim) and labelled.sizes[d] != values.sizes[d]]
    coords = {d: values.coords[d].values for d in dims if d in values.coords and d not in changed}
    coords.update({d: labelled.coords[d].values if d in labelled.coords
                   else np.arange(labelled.sizes[d]) for d in changed})
    dtype = np.result_type(values.dtype, *(p[3].dtype for p in pieces))
    result = xr.DataArray(da.full(shape, fill, dtype=dtype,
                                  chunks=[c if d in (ydim, xdim) else -1 for d, c in
                                          zip(dims, as_dask(values).chunks, strict=True)]),
                          dims=dims, coords=coords)
    for index, rows, cols, processed in pieces:
        pad = [(0, 0) if d not in (ydim, xdim) else
               ((rows.start, height - rows.stop) if d == ydim else
                (cols.start, width - cols.stop)) for d in dims]
        padded = da.pad(as_dask(processed), pad, mode="constant", constant_values=0)
        result = xr.where(zones == index, xr.DataArray(padded, dims=dims, coords=coords),
                          result)
    if not changed:
        return data.with_data(result.transpose(*dims))
    return _relabelled(data, result.transpose(*dims), labelled)


def _polygon_result(value: Any, piece: xr.DataArray, ydim: str, xdim: str,
                    earlier: list) -> xr.DataArray:
    """What the process returned for one polygon: the piece's dimensions and spatial sizes;
    other dimensions may have another number of labels when every polygon gives the same."""
    value = unwrap_data(value)
    if not isinstance(value, xr.DataArray) or set(value.dims) != set(piece.dims):
        return callback_cube(value, piece)  # its error
    value = value.transpose(*piece.dims)
    reference = earlier[0][3] if earlier else piece
    for d in piece.dims:
        expected = piece.sizes[d] if d in (ydim, xdim) or not earlier else reference.sizes[d]
        if value.sizes[d] != expected and (d in (ydim, xdim) or earlier):
            raise DataCubePropertiesImmutable(
                f"The process returned {value.sizes[d]} labels along '{d}' for a polygon, "
                f"where {expected} were expected (every polygon must give the same number; "
                "the spatial dimensions must stay).", argument="process")
    return value


def _relabelled(data: RasterCube, result: xr.DataArray, labelled: xr.DataArray) -> RasterCube:
    """The result cube of apply_polygon when the process changed the number of labels."""
    dims = tuple(d if result.sizes[d.name] == data.data.sizes[d.name]
                 else Dimension(d.name, d.type, d.axis, None) for d in data.dimensions)
    cube = RasterCube(result, dims, data.nodata, dict(data.attrs))
    bands = [d.name for d in dims if d.type == BANDS]
    if bands and result.sizes[bands[0]] != data.data.sizes[bands[0]]:
        cube = with_bands(cube, [str(v) for v in np.asarray(labelled.coords[bands[0]].values)]
                          if bands[0] in labelled.coords else
                          list(range(result.sizes[bands[0]])))
    return cube


def _zone_block(geoms: list[BaseGeometry], grid: Grid,
                block_info: dict | None = None) -> np.ndarray:
    """The index of the polygon each pixel centre of a chunk lies in (-1: none)."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    shapes = [(g, i) for i, g in enumerate(geoms) if not g.is_empty]
    if not shapes or r1 <= r0 or c1 <= c0:
        return np.full((r1 - r0, c1 - c0), -1, dtype=np.int32)
    return rasterio.features.rasterize(
        shapes, out_shape=(r1 - r0, c1 - c0), fill=-1, dtype="int32", all_touched=False,
        transform=grid.transform @ Affine.translation(c0, r0))


def _check_overlaps(windows: list[tuple[slice, slice, np.ndarray]]) -> None:
    boxes = [shapely.box(c.start, r.start, c.stop - 0.5, r.stop - 0.5) for r, c, _ in windows]
    tree = shapely.STRtree(boxes)
    for i, j in zip(*tree.query(boxes, predicate="intersects")):
        if i >= j:
            continue
        (ri, ci, mi), (rj, cj, mj) = windows[i], windows[j]
        r0, r1 = max(ri.start, rj.start), min(ri.stop, rj.stop)
        c0, c1 = max(ci.start, cj.start), min(ci.stop, cj.stop)
        if r0 >= r1 or c0 >= c1:
            continue
        a = mi[r0 - ri.start:r1 - ri.start, c0 - ci.start:c1 - ci.start]
        b = mj[r0 - rj.start:r1 - rj.start, c0 - cj.start:c1 - cj.start]
        if (a & b).any():
            raise GeometriesOverlap(
                f"Polygons #{i} and #{j} share pixels; apply_polygon needs polygons that do "
                "not overlap.", argument="geometries")
