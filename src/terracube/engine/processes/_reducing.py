"""Calling a reducer callback on groups of labels or pixels, and shaping what it returns.

Shared by the temporal (aggregate_temporal, …), spatial (reduce_spatial,
aggregate_spatial_window) and zonal (aggregate_spatial) processes: the reducer is called once
per group (or once for equally sized groups stacked) on whole lazy arrays, never per pixel.
Registers no process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.datacube.values import ArrayValue
from terracube.engine.evaluate import Callback


def drop_dim_coords(value: xr.DataArray, dim: str) -> xr.DataArray:
    stale = [c for c in value.coords if c == dim or dim in value.coords[c].dims]
    return value.drop_vars(stale) if stale else value


def take_positions(data: xr.DataArray, dim: str, positions: Any) -> xr.DataArray:
    """`data.isel({dim: positions})` without copying blocks for dask-backed data.

    dask's integer indexing copies every block it touches (a shuffle of the chunks), even
    for positions that are consecutive; a run of consecutive positions is a slice instead
    (views of the blocks) and the runs are concatenated, which only refers to the blocks.
    Same values, dims and coordinates as isel.
    """
    positions = np.asarray(positions, dtype=int)
    if not isinstance(data.data, dsa.Array) or positions.ndim != 1 or not len(positions):
        return data.isel({dim: positions})
    size = data.sizes[dim]
    positions = np.where(positions < 0, positions + size, positions)
    if positions.min() < 0 or positions.max() >= size:
        return data.isel({dim: positions})  # isel raises its own IndexError
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(positions, breaks)]
    if len(runs) == 1:
        return data.isel({dim: slice(*runs[0])})
    parts = [data.isel({dim: slice(a, b)}) for a, b in runs]
    axis = data.get_axis_num(dim)
    values = dsa.concatenate([p.data for p in parts], axis=axis)
    coords = {k: xr.concat([p.coords[k] for p in parts], dim=dim) if dim in c.dims else c
              for k, c in data.coords.items()}
    return xr.DataArray(values, dims=data.dims, coords=coords, name=data.name,
                        attrs=data.attrs)


def unwrap_data(value: Any) -> Any:
    """The DataArray inside a callback's ArrayValue or RasterCube result; others as they are."""
    if isinstance(value, (ArrayValue, RasterCube)):
        return value.data
    return value


def public_dims(names: Any) -> str:
    """Dimension names for a user's error message: our internal ones (`__array__`, the pixels
    of a geometry, ...) are not the user's dimensions and read as 'an array'."""
    shown = sorted({"an array" if is_internal_dim(n) else f"dimension '{n}'"
                    for n in map(str, names)})
    return " and ".join(shown) or "no dimension"


def is_internal_dim(name: Any) -> bool:
    """True for the dimensions the engine adds itself (named `__...__`)."""
    text = str(name)
    return text.startswith("__") and text.endswith("__")


def reducer_output(value: Any, template: xr.DataArray, dim: str) -> xr.DataArray:
    """A reducer's result as a DataArray shaped like the template (the cube without `dim`)."""
    value = unwrap_data(value)
    if isinstance(value, xr.DataArray):
        if dim in value.dims:
            if value.sizes[dim] != 1:
                raise errors.ProcessParameterInvalid(
                    "The reducer must return a single value per group, but returned an array "
                    f"along {public_dims([dim])}.", argument="reducer")
            value = value.isel({dim: 0})
        value = drop_dim_coords(value, dim)
        extra = set(value.dims) - set(template.dims)
        for d in [d for d in extra if is_internal_dim(d) and value.sizes[d] == 1]:
            # a one-element array (array_create([mean(x)]), quantiles with one probability)
            # is its single value, as on CDSE
            value = drop_dim_coords(value.isel({d: 0}), d)
            extra.discard(d)
        if extra:
            raise errors.ProcessParameterInvalid(
                "The reducer must return a single value, but returned "
                + ("an array of values (e.g. from array_create or quantiles)"
                   if all(is_internal_dim(d) for d in extra)
                   else f"values along {public_dims(extra)}") + ".", argument="reducer")
        return value.broadcast_like(template).transpose(*template.dims)
    if value is None:
        value = np.nan
    if isinstance(value, (bool, int, float, np.generic)):
        return xr.full_like(template, value, dtype=np.asarray(value).dtype)
    raise errors.ProcessParameterInvalid(
        f"The reducer returned a {type(value).__name__}; a number, boolean or null was expected.",
        argument="reducer")


def _empty_group_value(reducer: Callback, data: xr.DataArray, dim: str, context: Any) -> Any:
    """What the reducer gives for a group without values (e.g. NaN for mean, 0 for count).

    Evaluated on a tiny empty numpy array (not cube data); a reducer that fails on empty input
    yields no-data, as the spec says "most reducers" do.
    """
    shape = tuple(0 if d == dim else 1 for d in data.dims)
    probe = xr.DataArray(np.empty(shape, dtype=data.dtype), dims=data.dims,
                         coords={dim: np.array([], dtype=data.coords[dim].dtype)}
                         if dim in data.coords else None)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = unwrap_data(reducer(data=ArrayValue(probe, dim, labeled=True),
                                        context=context))
            if isinstance(value, xr.DataArray):
                value = np.asarray(value.values).reshape(-1)
                value = value[0] if value.size else np.nan
    except Exception:  # noqa: BLE001 - any failure on empty input means no-data
        return np.nan
    if value is None:
        return np.nan
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (bool, int, float)) else np.nan


# Processes whose result depends on the labels of the reduced array; a reducer using them is
# called group by group with the group's own labels.
_LABEL_PROCESSES = frozenset({
    "array_labels", "array_find_label", "array_filter", "array_apply", "array_modify",
    "array_interpolate_linear", "array_create_labeled", "rename_labels", "filter_labels",
    "dimension_labels"})
_GROUP = "__group__"


def _label_free(reducer: Any) -> bool:
    """True if the reducer graph cannot see labels, so that equally sized groups can be
    stacked and reduced in one call."""
    if not isinstance(reducer, Callback):
        return False
    registry = reducer.evaluator.services.registry

    def walk(graph: dict) -> bool:
        for node in graph.values():
            pid = node.get("process_id")
            args = node.get("arguments", {})
            if pid in _LABEL_PROCESSES or pid not in registry:
                return False
            if pid == "array_element" and args.get("label") is not None:
                return False
            for value in args.values():
                if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
                    if not walk(value["process_graph"]):
                        return False
        return True

    return walk(reducer.graph)


def reduce_groups(cube: RasterCube, dim: str, groups: Sequence[np.ndarray], labels: np.ndarray,
                  reducer: Callback, context: Any) -> RasterCube:
    """Reduce each group of positions along `dim` with the reducer.

    The reducer sees a group as a labelled array along `dim`. Groups of the same size are
    stacked along an extra dimension and reduced in one call when the reducer does not use
    labels; otherwise it is called once per group. Never per pixel.
    """
    if not callable(reducer):
        raise errors.ProcessParameterInvalid("'reducer' must be a process graph.",
                                             argument="reducer")
    data = drop_dim_coords(cube.data, dim).assign_coords({dim: cube.data.coords[dim].values}) \
        if dim in cube.data.coords else cube.data
    template = drop_dim_coords(xr.zeros_like(data.isel({dim: 0}))
                                if data.sizes[dim] else data.isel({dim: slice(0, 0)}).sum(dim),
                                dim)
    batched = _label_free(reducer)
    by_size: dict[int, list[int]] = {}
    for i, positions in enumerate(groups):
        by_size.setdefault(len(positions), []).append(i)
    parts: list[xr.DataArray] = []  # each with a _GROUP dimension
    order: list[int] = []
    for size, members in sorted(by_size.items()):
        if size == 0:
            fill = _empty_group_value(reducer, data, dim, context)
            empty = xr.full_like(template, fill, dtype=np.asarray(fill).dtype)
            parts.append(empty.expand_dims({_GROUP: len(members)}))
        elif batched and len(members) > 1:
            positions = np.concatenate([np.asarray(groups[i], dtype=int) for i in members])
            stacked = take_positions(data, dim, positions).drop_vars(dim, errors="ignore")
            stacked = stacked.coarsen({dim: size}).construct({dim: (_GROUP, dim)})
            value = reducer(data=ArrayValue(stacked, dim, labeled=True), context=context)
            group_template = template.expand_dims({_GROUP: len(members)})
            parts.append(reducer_output(value, group_template.transpose(
                *stacked.isel({dim: 0}).dims), dim))
        else:
            for i in members:
                part = take_positions(data, dim, groups[i])
                value = reducer(data=ArrayValue(part, dim, labeled=True), context=context)
                parts.append(reducer_output(value, template, dim).expand_dims({_GROUP: 1}))
        order.extend(members)
    if parts:
        out = xr.concat(parts, dim=_GROUP, coords="minimal", compat="override", join="override")
        out = take_positions(out, _GROUP, np.argsort(np.asarray(order), kind="stable"))
    else:
        out = template.astype(float).expand_dims({_GROUP: 0})
    out = out.rename({_GROUP: dim}).assign_coords({dim: labels}).transpose(*cube.data.dims)
    return cube.with_data(out)


def is_valid_mask(values: xr.DataArray) -> xr.DataArray:
    """Where values are valid (finite for floats, not null otherwise)."""
    if np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating):
        return xr.apply_ufunc(np.isfinite, values, dask="allowed")
    return values.notnull()

