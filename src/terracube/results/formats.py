"""The file formats the server reads and writes (GET /file_formats)."""

from __future__ import annotations

_GTIFF = {
    "title": "GeoTIFF (Cloud-Optimized)",
    "description": "Raster cubes as a tiled, compressed Cloud-Optimized GeoTIFF with overviews. "
                   "Bands (and dates, if several) become GeoTIFF bands named after them.",
    "gis_data_types": ["raster"],
    # The options tile_size (256/512/1024) and compression (deflate/lzw/zstd/none) are
    # accepted but not listed: every parameter schema is ambiguous under the oneOf of the
    # API's process_json_schema, so listing any fails strict OpenAPI validation (wp4).
    # docs/user-guide/formats.md documents them.
    "parameters": {},
}
_NETCDF = {
    "title": "netCDF",
    "description": "CF-1.8 netCDF-4; every band is a variable over (t, y, x) with its CRS as a "
                   "grid mapping.",
    "gis_data_types": ["raster", "vector"],
    "parameters": {},
}
_JSON = {
    "title": "JSON",
    "description": "Any result as JSON: numbers, arrays, objects; data cubes as nested arrays "
                   "with their dimensions and labels.",
    "gis_data_types": ["raster", "vector", "other"],
    "parameters": {},
}

_GEOJSON = {
    "title": "GeoJSON",
    "description": "Vector cubes (e.g. aggregate_spatial results) as a FeatureCollection in "
                   "WGS 84; every value becomes a feature property named after its labels.",
    "gis_data_types": ["vector"],
    "parameters": {},
}
_CSV = {
    "title": "CSV",
    "description": "Vector cubes as a table: one row per geometry (and date), one column per "
                   "band, the geometry as WKT.",
    "gis_data_types": ["vector"],
    "parameters": {},
}
_PARQUET = {
    "title": "GeoParquet",
    "description": "Vector cubes as GeoParquet, one row per geometry (and date).",
    "gis_data_types": ["vector"],
    "parameters": {},
}

_PNG = {
    "title": "PNG quicklook",
    "description": "An 8-bit picture of a cube with 1 (grey) or 3 (RGB) layers, each stretched "
                   "between its 2nd and 98th percentile (or the options min/max); no-data is "
                   "transparent. For looking, not for analysis.",
    "gis_data_types": ["raster"],
    "parameters": {},
}
_ZARR = {
    "title": "Zarr (zipped)",
    "description": "The cube as a Zarr v3 store (a variable per band over t/y/x, the CRS as "
                   "CF grid mapping), zipped into one file; open it with "
                   "xarray.open_zarr(zarr.storage.ZipStore(path, mode='r')).",
    "gis_data_types": ["raster"],
    "parameters": {},
}
_JPEG = {**_PNG, "title": "JPEG quicklook",
         "description": "Like PNG, but JPEG-compressed and with no-data in black."}

OUTPUT_FORMATS = {"GTiff": _GTIFF, "netCDF": _NETCDF, "JSON": _JSON, "GeoJSON": _GEOJSON,
                  "CSV": _CSV, "Parquet": _PARQUET, "PNG": _PNG, "JPEG": _JPEG, "Zarr": _ZARR}
INPUT_FORMATS = {"GTiff": _GTIFF, "netCDF": _NETCDF, "GeoJSON": _GEOJSON, "Parquet": _PARQUET}

# Names users write, case-insensitively, for each output format.
_ALIASES = {"gtiff": "GTiff", "geotiff": "GTiff", "tif": "GTiff", "tiff": "GTiff",
            "cog": "GTiff", "netcdf": "netCDF", "nc": "netCDF", "json": "JSON",
            "zarr": "Zarr", "png": "PNG", "jpeg": "JPEG", "jpg": "JPEG",
            "geojson": "GeoJSON", "csv": "CSV", "parquet": "Parquet", "geoparquet": "Parquet"}

MEDIA_TYPES = {"GTiff": "image/tiff; application=geotiff; profile=cloud-optimized",
               "netCDF": "application/x-netcdf", "JSON": "application/json",
               "GeoJSON": "application/geo+json", "CSV": "text/csv",
               "Parquet": "application/vnd.apache.parquet", "PNG": "image/png",
               "JPEG": "image/jpeg", "Zarr": "application/zip"}
EXTENSIONS = {"GTiff": "tif", "netCDF": "nc", "JSON": "json", "GeoJSON": "geojson",
              "CSV": "csv", "Parquet": "parquet", "PNG": "png", "JPEG": "jpg",
              "Zarr": "zarr.zip"}
VECTOR_ONLY = {"GeoJSON", "CSV", "Parquet"}


def file_formats() -> dict:
    return {"input": INPUT_FORMATS, "output": OUTPUT_FORMATS}


def output_format(name: str) -> str | None:
    """The canonical name of an output format, or None if not supported."""
    return _ALIASES.get(str(name).lower())
