"""What a UDF's `apply_metadata(metadata, context)` says about its result.

The openEO Python UDF API (`openeo.udf.udf_signatures.apply_metadata`) lets a UDF declare how
it changes the metadata of the cube — another resolution (`metadata.resample_spatial(...)`,
e.g. an upsampling model in apply_neighborhood), other band labels
(`metadata.rename_labels("bands", [...])` in apply_dimension over bands) — so that the
back-end knows the shape of the result before any block is computed. This module describes
the input cube for it (STAC datacube fields, as the UDF's `CollectionMetadata` reads them),
and reads the answer (which the sandboxed runner gives back as plain JSON: udf_runner
`apply_metadata`) into a `MetadataChange`. It never runs user code: engine/udf_sandbox.py does.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import xarray as xr

from terracube import errors
from terracube.datacube.cube import BANDS, OTHER, SPATIAL, TEMPORAL, RasterCube
from terracube.datacube.grid import grid_of

# Names of spatial dimensions of the arrays a UDF gets over a dimension (apply_dimension),
# where the cube's dimension roles are not at hand (engine/processes/udf.py uses the same).
SPATIAL_NAMES = ("x", "y", "lon", "lat", "longitude", "latitude")
_MAX_DENOMINATOR = 64


def defines_function(code: str, name: str) -> bool:
    """True when the UDF's code defines a top-level function `name` (read from its syntax
    tree; nothing is run)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
               and node.name == name for node in tree.body)


def defines_apply_metadata(code: str) -> bool:
    """True when the UDF's code defines a top-level `apply_metadata` function."""
    return defines_function(code, "apply_metadata")


@dataclass(frozen=True)
class MetadataChange:
    """How the UDF's result differs from its input, per dimension name.

    `scale`: output pixels per input pixel of a spatial dimension (2 for a resolution halved;
    only dimensions that change); `labels`: the new labels of a bands dimension whose labels
    apply_metadata changed."""

    scale: dict[str, Fraction] = field(default_factory=dict)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def changes_anything(self) -> bool:
        return bool(self.scale or self.labels)


def _dimension_type(arr: xr.DataArray, name: Any) -> str:
    if name in SPATIAL_NAMES:
        return SPATIAL
    if name in arr.coords:
        values = np.asarray(arr.coords[name].values)
        if np.issubdtype(values.dtype, np.datetime64):
            return TEMPORAL
        if values.dtype.kind in "US" or (values.dtype == object and all(
                isinstance(v, str) for v in values.ravel())):
            return BANDS
    return OTHER


def describe(data: RasterCube | xr.DataArray) -> dict:
    """The cube as `apply_metadata` gets it (x and y first, as collections describe them):
    spatial dimensions with extent, step (the pixel size) and reference system, temporal
    ones with their extent, bands with their names. A bare array (the data of
    apply_dimension's callback) gets its roles from its labels."""
    if isinstance(data, RasterCube):
        arr = data.data
        types = {d.name: d.type for d in data.dimensions}
        try:
            grid = grid_of(data) if data.x_dim and data.y_dim else None
        except errors.OpenEOError:
            grid = None
        crs = data.crs
    else:
        arr, grid, crs = data, None, None
        types = {str(d): _dimension_type(data, d) for d in data.dims}
    out: list[dict] = []
    for name in arr.dims:
        kind = types.get(str(name), OTHER)
        entry: dict[str, Any] = {"name": str(name), "type": kind}
        labels = np.asarray(arr.coords[name].values) if name in arr.coords else None
        if kind == SPATIAL:
            step = _spatial_step(labels, grid, data, name)
            if labels is not None and len(labels) and step is not None:
                lo, hi = float(np.min(labels)), float(np.max(labels))
                entry["extent"] = [lo - step / 2, hi + step / 2]
            entry["step"] = step
            entry["reference_system"] = _epsg_or_none(crs)
        elif kind == TEMPORAL and labels is not None and len(labels):
            times = np.sort(labels.astype("datetime64[s]"))
            entry["extent"] = [f"{times[0]}Z", f"{times[-1]}Z"]
        elif kind == BANDS:
            entry["values"] = [] if labels is None else [str(v) for v in labels]
        out.append(entry)
    first = [e for e in out if e["type"] == SPATIAL]
    order = sorted(first, key=lambda e: 0 if _axis(data, e["name"]) == "x" else 1)
    return {"dimensions": order + [e for e in out if e["type"] != SPATIAL]}


def _axis(data: Any, name: str) -> str:
    if isinstance(data, RasterCube):
        dim = data.dim(name)
        return (dim.axis or "") if dim else ""
    return "x" if name in ("x", "lon", "longitude") else "y"


def _spatial_step(labels: np.ndarray | None, grid: Any, data: Any, name: Any) -> float | None:
    if grid is not None:
        return float(grid.resolution[0 if _axis(data, str(name)) == "x" else 1])
    if labels is not None and len(labels) >= 2:
        return float(abs(labels[-1] - labels[0]) / (len(labels) - 1))
    return None


def _epsg_or_none(crs: Any) -> Any:
    if crs is None or isinstance(crs, (int, str, dict)):
        return crs
    return str(crs)


def read_change(described: dict, answer: dict, node_id: str | None = None) -> MetadataChange:
    """The change apply_metadata declared (its `answer` for the cube `described`), or an
    openEO error for what the back-end cannot do: another reference system, new or renamed
    dimensions, a resolution that is not a simple fraction of the input's."""
    before = {d["name"]: d for d in described.get("dimensions", [])}
    after = answer.get("dimensions")
    if not isinstance(after, list):
        raise _invalid("its answer has no dimensions", node_id)
    scale: dict[str, Fraction] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for entry in after:
        name = entry.get("name")
        old = before.get(name)
        if old is None:
            raise _invalid(f"it returned the dimension '{name}', which the cube does not have "
                           f"(it has {', '.join(before) or 'none'}); apply_metadata may change "
                           f"the resolution and the band labels, not add or rename "
                           f"dimensions", node_id)
        if entry.get("type") != old["type"]:
            raise _invalid(f"it changed the type of dimension '{name}' from {old['type']} to "
                           f"{entry.get('type')}", node_id)
        if old["type"] == SPATIAL:
            new_crs, old_crs = entry.get("reference_system"), old.get("reference_system")
            if new_crs is not None and old_crs is not None and str(new_crs) != str(old_crs):
                raise _invalid(f"it changed the reference system of '{name}' from {old_crs} "
                               f"to {new_crs}; a UDF may change the resolution, not the "
                               f"reference system (use resample_spatial after it)", node_id)
            step, old_step = entry.get("step"), old.get("step")
            if step is not None and old_step and abs(step - old_step) > 1e-9 * old_step:
                scale[name] = _factor(name, old_step, step, node_id)
        elif old["type"] == BANDS:
            values = entry.get("values")
            if isinstance(values, list) and values != old.get("values"):
                if any(v is None for v in values) or len(set(values)) != len(values):
                    raise _invalid(f"the band labels it gave ({values}) must be distinct "
                                   f"names", node_id)
                labels[name] = tuple(values)
    return MetadataChange(scale, labels)


def _factor(name: str, old_step: float, step: float, node_id: str | None) -> Fraction:
    if step <= 0:
        raise _invalid(f"the resolution it gave for '{name}' ({step:g}) is not positive",
                       node_id)
    ratio = old_step / step
    factor = Fraction(ratio).limit_denominator(_MAX_DENOMINATOR)
    if factor <= 0 or abs(float(factor) - ratio) > 1e-6 * ratio:
        raise _invalid(f"the resolution it gave for '{name}' ({step:g}, the cube has "
                       f"{old_step:g}) is not a simple fraction of the cube's "
                       f"(such as 1/2, 2 or 3/2 of it)", node_id)
    return factor


def _invalid(reason: str, node_id: str | None) -> errors.OpenEOError:
    return errors.ProcessParameterInvalid(
        f"The UDF's apply_metadata cannot be followed: {reason}.", node_id=node_id,
        argument="udf")
