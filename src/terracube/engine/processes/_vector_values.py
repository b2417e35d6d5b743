"""Cube processes on the values of a vector data cube (e.g. aggregate_spatial's statistics per
geometry over t and bands): filter_bands, filter_labels, filter_temporal, apply_dimension and
reduce_dimension take "any data cube" (openEO processes 2.0), and the client offers them on
its VectorCube. The values are handled as a cube whose geometry dimension is just another
dimension, then put back with their geometries. Registers no process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube


def values_cube(data: VectorCube, process_id: str) -> RasterCube:
    """The values of a vector cube as a cube of their dimensions (geometry, t, bands, ...)."""
    if data.values is None:
        raise errors.ProcessParameterInvalid(
            f"{process_id} works on the values of a vector data cube, and this one holds "
            "geometries without values (e.g. from load_geojson); compute values first, e.g. "
            "with aggregate_spatial.", argument="data")
    return RasterCube(data.values, data.dimensions)


def on_values(data: VectorCube, process_id: str,
              run: Callable[[RasterCube], RasterCube]) -> VectorCube:
    """`run` on the values of `data`, as a vector cube again. The geometry dimension may lose
    labels (a filter), never go away."""
    out = run(values_cube(data, process_id))
    if GEOMETRY_DIM not in out.data.dims:
        raise errors.ProcessParameterInvalid(
            f"{process_id} cannot remove the geometry dimension of a vector data cube.",
            argument="dimension")
    kept = np.asarray(out.data.coords[GEOMETRY_DIM].values, dtype=int)
    # one replace: the cube checks that there is a value per geometry (filter_labels on the
    # geometry dimension keeps some of them)
    return replace(data, values=out.data.assign_coords({GEOMETRY_DIM: np.arange(len(kept))}),
                   dimensions=out.dimensions,
                   geometries=tuple(data.geometries[i] for i in kept),
                   properties=tuple(dict(data.properties[i]) for i in kept))


def take_geometries(cube: VectorCube, index: Sequence[int],
                    geometries: Sequence[BaseGeometry] | None = None) -> VectorCube:
    """The cube with the geometries at `index` (repeats allowed), optionally replaced."""
    index = [int(i) for i in index]
    geoms = list(geometries) if geometries is not None else [cube.geometries[i] for i in index]
    props = tuple(dict(cube.properties[i]) for i in index)
    values = cube.values
    if values is not None:
        values = values.isel({GEOMETRY_DIM: np.asarray(index, dtype=int)})
        values = values.assign_coords({GEOMETRY_DIM: np.arange(len(index))})
    return replace(cube, geometries=tuple(geoms), values=values, properties=props)
