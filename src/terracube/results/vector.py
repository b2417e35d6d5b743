"""Writers for vector data cubes (aggregate_spatial results): GeoJSON, CSV, GeoParquet, netCDF."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from terracube import errors, executor
from terracube.datacube.cube import TEMPORAL, datetime_labels_to_strings
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube
from terracube.results.json_safe import without_non_finite


def _labels(cube: VectorCube, dim: str, values: Any) -> list[str]:
    d = next((x for x in cube.dimensions if x.name == dim), None)
    values = np.asarray(values)
    # Only dates become RFC 3339 text: period labels of a temporal dimension ("2008-mam",
    # the normals' "01".."12") are written as they are, not parsed into dates.
    if d is not None and d.type == TEMPORAL and np.issubdtype(values.dtype, np.datetime64):
        return datetime_labels_to_strings(values)
    return [str(v) for v in values]


def long_table(cube: VectorCube) -> pd.DataFrame:
    """One row per geometry (× label of every non-band dimension), one column per band."""
    base = pd.DataFrame({"feature_index": range(len(cube.geometries))})
    if cube.values is None:
        return base
    (values,) = executor.current().compute(cube.values)  # progress and cluster as rasters
    bands = next((d.name for d in cube.dimensions if d.type == "bands"), None)
    others = [d for d in values.dims if d not in (GEOMETRY_DIM, bands)]
    order = [GEOMETRY_DIM, *others] + ([bands] if bands else [])
    values = values.transpose(*order)
    index = pd.MultiIndex.from_product(
        [range(values.sizes[GEOMETRY_DIM])] + [
            _labels(cube, d, values.coords[d].values if d in values.coords
                    else np.arange(values.sizes[d])) for d in others],
        names=["feature_index", *others])
    if bands:
        names = [str(b) for b in values.coords[bands].values]
        data = values.values.reshape(-1, len(names))
        return pd.DataFrame(data, index=index, columns=names).reset_index()
    return pd.DataFrame({"value": values.values.reshape(-1)}, index=index).reset_index()


def wide_properties(cube: VectorCube) -> list[dict]:
    """Per geometry: its own properties plus one entry per value (labels joined by '_')."""
    table = long_table(cube)
    props = [dict(p) for p in cube.properties]
    keys = [c for c in table.columns if c != "feature_index"]
    label_cols = [c for c in keys if table[c].dtype == object and c in
                  [d.name for d in cube.dimensions]]
    value_cols = [c for c in keys if c not in label_cols]
    # records, not itertuples(): band names such as "0" or "q0.25" are no Python identifiers
    for rec in table.to_dict("records"):
        prefix = "_".join(str(rec[c]) for c in label_cols)
        for c in value_cols:
            v = rec[c]
            name = f"{prefix}_{c}" if prefix else c
            props[rec["feature_index"]][name] = _json_value(v)
    return props


def _json_value(v: Any) -> Any:
    """A number as float, no-data as None; other values (e.g. GeoJSON text properties) as is."""
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return None
    if isinstance(v, (int, float, np.number, np.bool_)):
        return float(v)
    return v


def to_geojson(cube: VectorCube) -> dict:
    geoms = cube.geometries_in(4326)
    props = wide_properties(cube)
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "geometry": shapely.geometry.mapping(g), "properties": p}
        for i, (g, p) in enumerate(zip(geoms, props))]}


# --- CDSE's layouts (openeo-python-driver's AggregatePolygonResult) ---------------------------
UNNAMED_BAND = "band_unnamed"


def _cdse_parts(cube: VectorCube) -> tuple[np.ndarray, list[str] | None, list[str]]:
    """The computed values as (geometry, [time,] band) and the time labels and band names:
    dimensions other than time and bands are folded into the band names ('<label>_<band>')."""
    (values,) = executor.current().compute(cube.values)
    time = next((d.name for d in cube.dimensions if d.type == TEMPORAL
                 and d.name in values.dims), None)
    bands = next((d.name for d in cube.dimensions if d.type == "bands"
                  and d.name in values.dims), None)
    if bands is None:
        values = values.expand_dims({"__band": [UNNAMED_BAND]}, axis=-1)
        bands = "__band"
    others = [d for d in values.dims if d not in (GEOMETRY_DIM, time, bands)]
    order = [GEOMETRY_DIM] + ([time] if time else []) + others + [bands]
    values = values.transpose(*order)
    names = [str(b) for b in values.coords[bands].values]
    if others:
        labels = [_labels(cube, d, values.coords[d].values if d in values.coords
                          else np.arange(values.sizes[d])) for d in others]
        grids = np.meshgrid(*labels, names, indexing="ij")
        names = ["_".join(parts) for parts in zip(*[g.ravel() for g in grids])]
    shape = [values.sizes[GEOMETRY_DIM]] + ([values.sizes[time]] if time else []) + [len(names)]
    array = np.asarray(values.values).reshape(shape)
    return array, (_labels(cube, time, values.coords[time].values) if time else None), names


def _number(v: Any) -> Any:
    return _json_value(v.item() if isinstance(v, np.generic) else v)


def to_cdse_json(cube: VectorCube) -> Any:
    """CDSE's JSON of aggregate_spatial: {date: [[band values] per geometry]} with dates, or
    [[band values] per geometry] without; no-data is null. A cube without values (plain
    geometries) has no such layout and is GeoJSON."""
    if cube.values is None:
        return to_geojson(cube)
    array, dates, _names = _cdse_parts(cube)
    if dates is None:
        return [[_number(v) for v in row] for row in array]
    return {date: [[_number(v) for v in array[g, i]] for g in range(array.shape[0])]
            for i, date in enumerate(dates)}


def cdse_table(cube: VectorCube) -> pd.DataFrame:
    """CDSE's CSV of aggregate_spatial: columns date (with dates), feature_index and one per
    band (band_unnamed without band names); rows by date, then feature."""
    if cube.values is None:
        return pd.DataFrame({"feature_index": range(len(cube.geometries))})
    array, dates, names = _cdse_parts(cube)
    count = array.shape[0]
    if dates is None:
        frame = pd.DataFrame(array.reshape(count, len(names)), columns=names)
        frame.insert(0, "feature_index", range(count))
        return frame
    flat = array.transpose(1, 0, 2).reshape(len(dates) * count, len(names))
    frame = pd.DataFrame(flat, columns=names)
    frame.insert(0, "feature_index", list(range(count)) * len(dates))
    frame.insert(0, "date", [d for d in dates for _ in range(count)])
    return frame


def feature_files(cube: VectorCube, id_property: str | None) -> list[tuple[str, VectorCube]]:
    """sample_by_feature: (file name part, one-feature cube) per feature, named by the
    feature's `id_property` (CDSE's feature_id_property) or else its position."""
    parts = []
    for i, props in enumerate(cube.properties):
        if id_property:
            if props.get(id_property) in (None, ""):
                raise errors.ProcessParameterInvalid(
                    f"The option feature_id_property is '{id_property}', but feature {i} has "
                    "no such property.", argument="options")
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(props[id_property]))
        else:
            name = str(i)
        values = None
        if cube.values is not None:
            values = cube.values.isel({GEOMETRY_DIM: [i]})
            if GEOMETRY_DIM in values.coords:
                values = values.assign_coords({GEOMETRY_DIM: [0]})
        parts.append((name, replace(cube, geometries=(cube.geometries[i],), values=values,
                                    properties=(props,))))
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise errors.ProcessParameterInvalid(
            f"The option feature_id_property is '{id_property}', but its values are not "
            "unique, so the files would overwrite each other.", argument="options")
    return parts


def write_vector(cube: VectorCube, fmt: str, path: Path) -> None:
    if fmt == "GeoJSON":
        path.write_text(json.dumps(without_non_finite(to_geojson(cube)), allow_nan=False))
    elif fmt == "JSON":
        path.write_text(json.dumps(without_non_finite(to_cdse_json(cube)), allow_nan=False))
    elif fmt == "CSV":
        cdse_table(cube).to_csv(path, index=False)
    elif fmt == "Parquet":
        import geopandas as gpd

        table = long_table(cube)
        frame = gpd.GeoDataFrame(table, geometry=[cube.geometries_in(4326)[i]
                                                  for i in table["feature_index"]], crs=4326)
        frame.to_parquet(path)
    elif fmt == "netCDF":
        values = cube.values
        if values is None:
            raise ValueError("a vector cube without values cannot be written as netCDF")
        ds = values.to_dataset(name="value")
        bands = next((d.name for d in cube.dimensions if d.type == "bands"), None)
        if bands:
            ds = values.to_dataset(dim=bands)
            ds = ds.rename({k: str(k) for k in ds.data_vars})
        ds = ds.assign_coords({GEOMETRY_DIM: np.arange(len(cube.geometries))})
        ds["geometry_wkt"] = ((GEOMETRY_DIM,), [g.wkt for g in cube.geometries_in(4326)])
        ds.attrs["Conventions"] = "CF-1.8"
        ds.to_netcdf(path, engine="netcdf4")
    else:
        raise ValueError(f"vector cubes cannot be written as {fmt}")
