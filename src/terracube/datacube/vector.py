"""The vector data cube: geometries with their CRS, and values computed per geometry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.geometry
import xarray as xr
from shapely.geometry.base import BaseGeometry

from terracube.datacube.cube import GEOMETRY, OTHER, Dimension

GEOMETRY_DIM = "geometry"
GEOJSON_CRS = 4326  # RFC 7946: GeoJSON coordinates are WGS 84 longitude/latitude


@dataclass(frozen=True)
class VectorCube:
    """A vector data cube.

    `geometries` are the labels of the geometry dimension (shapely objects, possibly empty), in
    `crs`. `values` is None for plain geometries (e.g. loaded GeoJSON) or a (lazy)
    `xarray.DataArray` with a "geometry" dimension (coordinate: the position 0..n-1) plus any
    other dimensions such as t or bands; `dimensions` holds the openEO role of every xarray
    dim of `values`, in order. `properties` are the GeoJSON feature properties, one dict per
    geometry.
    """

    geometries: tuple[BaseGeometry, ...]
    crs: Any = GEOJSON_CRS  # EPSG code (int), WKT2 or PROJJSON, as in Dimension.reference_system
    values: xr.DataArray | None = None
    dimensions: tuple[Dimension, ...] = ()
    properties: tuple[dict[str, Any], ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "geometries", tuple(self.geometries))
        props = tuple(self.properties) or tuple({} for _ in self.geometries)
        if len(props) != len(self.geometries):
            raise ValueError("one properties dict per geometry is required")
        object.__setattr__(self, "properties", props)
        if self.values is None:
            return
        if GEOMETRY_DIM not in self.values.dims:
            raise ValueError(f"vector cube values need a '{GEOMETRY_DIM}' dimension")
        if self.values.sizes[GEOMETRY_DIM] != len(self.geometries):
            raise ValueError("the geometry dimension must have one value per geometry")
        if not self.dimensions:
            object.__setattr__(self, "dimensions", tuple(
                Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=self.crs)
                if n == GEOMETRY_DIM else Dimension(str(n), OTHER) for n in self.values.dims))
        names = tuple(d.name for d in self.dimensions)
        if names != tuple(self.values.dims):
            raise ValueError(f"vector cube dimensions {names} do not match {self.values.dims}")

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_geojson(cls, obj: dict[str, Any]) -> VectorCube:
        """Geometries (and feature properties) of a GeoJSON Geometry, Feature or
        FeatureCollection. GeometryCollection is not supported (openEO spec)."""
        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError("expected a GeoJSON object with a 'type'")
        crs = legacy_geojson_crs(obj)
        kind = obj["type"]
        if kind == "FeatureCollection":
            features = obj.get("features") or []
        elif kind == "Feature":
            features = [obj]
        else:
            features = [{"type": "Feature", "geometry": obj, "properties": {}}]
        geoms, props = [], []
        for feature in features:
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise ValueError("a FeatureCollection may only contain Features")
            geoms.append(_geometry(feature.get("geometry")))
            props.append(dict(feature.get("properties") or {}))
        return cls(tuple(geoms), crs, properties=tuple(props))

    def with_values(self, values: xr.DataArray,
                    dimensions: Iterable[Dimension] | None = None) -> VectorCube:
        return replace(self, values=values, dimensions=tuple(dimensions or ()))

    # --- look-ups -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def geometry_types(self) -> set[str]:
        return {g.geom_type for g in self.geometries if not g.is_empty}

    def geometries_in(self, crs: Any) -> list[BaseGeometry]:
        """The geometries transformed to another CRS (axis order x/y, i.e. lon/lat)."""
        return reproject_geometries(self.geometries, self.crs, crs)


def reproject_geometries(geoms: Iterable[BaseGeometry], src_crs: Any,
                         dst_crs: Any) -> list[BaseGeometry]:
    geoms = list(geoms)
    src, dst = pyproj.CRS.from_user_input(src_crs), pyproj.CRS.from_user_input(dst_crs)
    if src == dst:
        return geoms
    transformer = pyproj.Transformer.from_crs(src, dst, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return [g if g.is_empty else shapely.transform(g, project) for g in geoms]


def _geometry(obj: Any) -> BaseGeometry:
    if obj is None:
        return shapely.geometry.GeometryCollection()
    if not isinstance(obj, dict):
        raise ValueError("a GeoJSON geometry must be an object")
    if obj.get("type") == "GeometryCollection":
        raise ValueError("GeoJSON GeometryCollection is not supported; use a FeatureCollection")
    if not obj.get("coordinates"):
        return shapely.geometry.GeometryCollection()
    geom = shapely.geometry.shape(obj)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def legacy_geojson_crs(obj: dict[str, Any]) -> Any:
    """The CRS of the pre-RFC 7946 `crs` member ({"type": "name", ...}), else EPSG:4326."""
    member = obj.get("crs")
    if isinstance(member, dict) and isinstance(member.get("properties"), dict):
        name = member["properties"].get("name")
        if name:
            crs = pyproj.CRS.from_user_input(name)
            epsg = crs.to_epsg()
            return epsg if epsg is not None else crs.to_wkt()
    return GEOJSON_CRS
