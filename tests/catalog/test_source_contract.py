"""The contract every collection source fulfils (catalog/base.py CollectionSource), checked
the same way for each kind of source on real files: the built-in synthetic samples, a folder
of COGs, a CF NetCDF file, a Zarr store and a static STAC catalog.

A new kind of source gets a fixture in SOURCES below and must pass every test here; so does
the worked example of docs/internals/how-to-add-a-collection-source.md, run from the page.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft201909Validator
from pyproj import CRS
from tests.support.paths import REPO
from tests.support.real_data import (
    BELGIUM_STAC,
    need,
    write_belgium_catalog,
    write_era5_netcdf,
    write_era5_zarr,
    write_slovenia_geotiffs,
)

from terracube import errors
from terracube.catalog.base import CollectionSource
from terracube.catalog.catalog import sample_source
from terracube.catalog.registry import inspect_source
from terracube.catalog.samples.dem_landcover_synthetic import (
    ensure_dem_landcover_data,
    static_map_sources,
)
from terracube.catalog.samples.rainfall_synthetic import ensure_rainfall_data, rainfall_source
from terracube.catalog.samples.sentinel1_synthetic import ensure_sentinel1_data, sentinel1_source
from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, RasterCube, is_lazy
from terracube.datacube.request import BBox, LoadRequest


# --- the sources under test -------------------------------------------------------------------
def _sentinel2_sample(sample_data_dir: Path, _tmp: Path) -> CollectionSource:
    return sample_source(ensure_sample_data(sample_data_dir))


def _rainfall_sample(sample_data_dir: Path, _tmp: Path) -> CollectionSource:
    return rainfall_source(ensure_rainfall_data(sample_data_dir))


def _sentinel1_sample(sample_data_dir: Path, _tmp: Path) -> CollectionSource:
    return sentinel1_source(ensure_sentinel1_data(sample_data_dir))


def _static_map(collection_id: str) -> Callable[[Path, Path], CollectionSource]:
    def make(sample_data_dir: Path, _tmp: Path) -> CollectionSource:
        sources = static_map_sources(ensure_dem_landcover_data(sample_data_dir))
        return next(s for s in sources if s.id == collection_id)

    return make


def _cog_folder(_samples: Path, tmp: Path) -> CollectionSource:
    write_slovenia_geotiffs(tmp / "cogs", count=4)
    return inspect_source("SLOVENIA", str(tmp / "cogs"), pattern="{date:%Y%m%d}_{band}.tif")[1]


def _netcdf(_samples: Path, tmp: Path) -> CollectionSource:
    return inspect_source("ERA5_NC", str(write_era5_netcdf(tmp / "era5.nc")))[1]


def _zarr(_samples: Path, tmp: Path) -> CollectionSource:
    return inspect_source("ERA5_ZARR", str(write_era5_zarr(tmp / "era5.zarr")))[1]


def _static_stac(_samples: Path, tmp: Path) -> CollectionSource:
    return inspect_source("BELGIUM", str(write_belgium_catalog(tmp / "stac")))[1]


HOW_TO = REPO / "docs" / "internals" / "how-to-add-a-collection-source.md"


def _how_to_example(_samples: Path, _tmp: Path) -> CollectionSource:
    """The GeoTiffSource of the how-to page (its first python block after "Worked example")
    over a real 3-band Sentinel-2 GeoTIFF."""
    section = HOW_TO.read_text().split("## Worked example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("how_to_geotiff_source")
    exec(compile(code, str(HOW_TO), "exec"), module.__dict__)  # noqa: S102 - our own page
    tif = need(BELGIUM_STAC / "openEO_2023-06-01Z.tif")
    return module.GeoTiffSource("BELGIUM_TIF", tif, ["B02", "B03", "B04"])


SOURCES: dict[str, Callable[[Path, Path], CollectionSource]] = {
    "sentinel2-sample": _sentinel2_sample,
    "rainfall-sample": _rainfall_sample,
    "sentinel1-sample": _sentinel1_sample,
    "dem-sample": _static_map("COPERNICUS_30"),
    "worldcover-sample": _static_map("ESA_WORLDCOVER_10M_2021_V2"),
    "cog-folder": _cog_folder,
    "netcdf": _netcdf,
    "zarr": _zarr,
    "static-stac": _static_stac,
    "how-to-example": _how_to_example,
}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def source(request: pytest.FixtureRequest, sample_data_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> CollectionSource:
    return SOURCES[request.param](sample_data_dir, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def full(source: CollectionSource) -> RasterCube:
    """The whole collection, lazily (nothing is read)."""
    return source.load(LoadRequest())


# --- helpers ----------------------------------------------------------------------------------
def spatial_crs(cube: RasterCube) -> object:
    (crs,) = {d.reference_system for d in cube.dimensions if d.type == SPATIAL}
    return crs


def inner_box(cube: RasterCube) -> BBox:
    """The middle half of the cube's extent (in its own CRS), at least one pixel wide."""
    xs, ys = cube.data["x"].values, cube.data["y"].values
    x0, x1 = np.quantile(xs, [0.25, 0.75])
    y0, y1 = np.quantile(ys, [0.25, 0.75])
    return BBox(float(x0), float(y0), float(x1), float(y1), spatial_crs(cube))


def step(values: np.ndarray) -> float:
    return float(np.abs(np.diff(values)).min()) if len(values) > 1 else 0.0


# --- the contract -----------------------------------------------------------------------------
def test_is_a_collection_source(source: CollectionSource) -> None:
    assert isinstance(source, CollectionSource)
    assert isinstance(source.id, str) and source.id


def test_stac_describes_the_loaded_cube(source: CollectionSource, full: RasterCube) -> None:
    doc = source.stac()
    assert doc["type"] == "Collection" and doc["id"] == source.id
    assert doc["description"] and doc["license"]
    assert doc["extent"]["spatial"]["bbox"] and doc["extent"]["temporal"]["interval"]
    dims = doc["cube:dimensions"]
    # The same dimensions, with the same types, as the cube load() returns.
    assert set(dims) == set(full.data.dims) == {d.name for d in full.dimensions}
    for d in full.dimensions:
        assert dims[d.name]["type"] == d.type, d.name
        if d.type == SPATIAL:
            assert dims[d.name]["axis"] == d.axis
            assert CRS.from_user_input(dims[d.name]["reference_system"]) == \
                CRS.from_user_input(d.reference_system)
    bands = full.first_dim_of_type(BANDS)
    assert bands is not None
    assert dims[bands.name]["values"] == [str(b) for b in full.data[bands.name].values]


def test_load_is_lazy(full: RasterCube) -> None:
    assert is_lazy(full)
    assert full.data.dtype.kind == "f"
    assert all(n > 0 for n in full.data.shape)


def test_bbox_restricts_the_load(source: CollectionSource, full: RasterCube) -> None:
    box = inner_box(full)
    part = source.load(LoadRequest(bbox=box))
    assert is_lazy(part)
    xs, ys = part.data["x"].values, part.data["y"].values
    assert 0 < len(xs) < len(full.data["x"]) and 0 < len(ys) < len(full.data["y"])
    # Pixel centres in the box (half a pixel of slack for sources that snap to their grid).
    dx, dy = step(full.data["x"].values) / 2, step(full.data["y"].values) / 2
    assert box.west - dx <= xs.min() and xs.max() <= box.east + dx
    assert box.south - dy <= ys.min() and ys.max() <= box.north + dy
    # The same box given in WGS 84 selects (about) the same pixels.
    in_lonlat = source.load(LoadRequest(bbox=box.to_crs(4326)))
    assert len(in_lonlat.data["x"]) >= len(xs) and len(in_lonlat.data["y"]) >= len(ys)


def test_temporal_extent_restricts_the_load(source: CollectionSource, full: RasterCube) -> None:
    t = full.first_dim_of_type(TEMPORAL)
    if t is None or len(full.data[t.name]) < 2:
        pytest.skip("no temporal dimension with several labels")
    times = pd.DatetimeIndex(full.data[t.name].values)
    start, end = times[0], times[1]  # [start, end): only the first label(s)
    part = source.load(LoadRequest(temporal_extent=(start.isoformat() + "Z",
                                                    end.isoformat() + "Z")))
    got = pd.DatetimeIndex(part.data[t.name].values)
    assert len(got) >= 1 and (got >= start).all() and (got < end).all()
    assert len(got) < len(times)


def test_band_selection_restricts_the_load(source: CollectionSource, full: RasterCube) -> None:
    bands = full.first_dim_of_type(BANDS)
    names = [str(b) for b in full.data[bands.name].values]
    last = names[-1]
    part = source.load(LoadRequest(bands=(last,)))
    assert [str(b) for b in part.data[bands.name].values] == [last]
    assert is_lazy(part)


def test_unknown_band_is_the_users_error(source: CollectionSource) -> None:
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        source.load(LoadRequest(bands=("NO_SUCH_BAND",)))
    assert info.value.argument == "bands" and info.value.status == 400
    assert "NO_SUCH_BAND" in info.value.message


def test_bbox_outside_is_the_users_error(source: CollectionSource, full: RasterCube) -> None:
    far = BBox(-179.0, -89.0, -178.0, -88.0, 4326)  # Antarctica: none of the test data
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        source.load(LoadRequest(bbox=far))
    assert info.value.status == 400


def test_queryables_is_a_json_schema(source: CollectionSource) -> None:
    schema = source.queryables()
    Draft201909Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    assert schema["type"] == "object" and isinstance(schema["properties"], dict)
    for name, prop in schema["properties"].items():
        Draft201909Validator.check_schema(prop)
        assert prop.get("title") == name
