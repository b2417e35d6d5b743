"""Writers for vector data cubes (aggregate_spatial results): GeoJSON, CSV, GeoParquet, netCDF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from terracube import executor
from terracube.datacube.cube import TEMPORAL, datetime_labels_to_strings
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube


def _labels(cube: VectorCube, dim: str, values: Any) -> list[str]:
    d = next((x for x in cube.dimensions if x.name == dim), None)
    if d is not None and d.type == TEMPORAL:
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
    for row in table.itertuples(index=False):
        rec = row._asdict()
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


def write_vector(cube: VectorCube, fmt: str, path: Path) -> None:
    if fmt in ("GeoJSON", "JSON"):
        path.write_text(json.dumps(to_geojson(cube), allow_nan=True))
    elif fmt == "CSV":
        table = long_table(cube)
        table.insert(1, "geometry", [cube.geometries_in(4326)[i].wkt
                                     for i in table["feature_index"]])
        table.to_csv(path, index=False)
    elif fmt == "Parquet":
        import geopandas as gpd

        table = long_table(cube)
        frame = gpd.GeoDataFrame(table, geometry=[cube.geometries_in(4326)[i]
                                                  for i in table["feature_index"]], crs=4326)
        frame.to_parquet(path)
    elif fmt == "netCDF":
        ds = cube.values.to_dataset(name="value") if cube.values is not None else None
        if ds is None:
            raise ValueError("a vector cube without values cannot be written as netCDF")
        bands = next((d.name for d in cube.dimensions if d.type == "bands"), None)
        if bands:
            ds = cube.values.to_dataset(dim=bands)
            ds = ds.rename({k: str(k) for k in ds.data_vars})
        ds = ds.assign_coords({GEOMETRY_DIM: np.arange(len(cube.geometries))})
        ds["geometry_wkt"] = ((GEOMETRY_DIM,), [g.wkt for g in cube.geometries_in(4326)])
        ds.attrs["Conventions"] = "CF-1.8"
        ds.to_netcdf(path, engine="netcdf4")
    else:
        raise ValueError(f"vector cubes cannot be written as {fmt}")
