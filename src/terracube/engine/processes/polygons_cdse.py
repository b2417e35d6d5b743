"""chunk_polygon: CDSE's older name of apply_polygon (its `chunks` are apply_polygon's
`geometries`), kept because UDF examples written for CDSE still call it."""

from __future__ import annotations

from typing import Any

from terracube.datacube.cube import RasterCube
from terracube.engine.evaluate import Callback
from terracube.engine.processes.zonal import apply_polygon
from terracube.engine.registry import process


@process("chunk_polygon")
def chunk_polygon(data: RasterCube, chunks: Any, mask_value: Any = None, *,
                  process: Callback, context: Any = None) -> RasterCube:
    # parameters in the order of CDSE's definition (process, required, after mask_value)
    return apply_polygon(data, chunks, process, mask_value=mask_value, context=context)
