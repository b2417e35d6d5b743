"""The file formats the server reads and writes (GET /file_formats)."""

from __future__ import annotations

from terracube import errors

# Every parameter schema carries a `subtype` of its own: the API's process_json_schema is a
# oneOf of "Generic", "Process Graph" and "Datacube", and a plain schema such as
# {"type": "string"} matches all three (their only distinguishing keyword, `subtype`, is
# optional), so a strict validator refuses it. A subtype that is neither "process-graph" nor
# "datacube" matches "Generic" alone (decision 0008).
_OPTION_SUBTYPE = "file-format-option"


def _param(description: str, schema: dict, default: object = None) -> dict:
    return {"description": description, "subtype": _OPTION_SUBTYPE, "default": default,
            **schema}


_COLOR = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 4294967295},
                    {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                     "minItems": 4, "maxItems": 4}]}
_COLORMAP = _param(
    "A colour map for a single-band result with integer values: an object mapping a value "
    "to a colour, either a 32-bit RGBA integer (0xRRGGBBAA) or [r, g, b, a] with each "
    "between 0 and 1 (as CDSE). PNG: values not in the map are transparent; GeoTIFF colour "
    "tables keep no alpha.",
    {"type": ["object", "null"], "additionalProperties": _COLOR})
_FILENAME_PREFIX = _param(
    "The start of the file names of a batch job's result files, instead of 'openEO' "
    "(e.g. 'ndvi' gives ndvi_2022-06-01Z.tif).", {"type": ["string", "null"]})
_SAMPLE_BY_FEATURE = _param(
    "Write one file per feature (geometry) instead of one file for all: of a vector cube "
    "(aggregate_spatial results), or of a raster cube cut to polygons with filter_spatial "
    "(each file cropped to its polygon's bounds).", {"type": "boolean"}, False)
_FEATURE_ID_PROPERTY = _param(
    "With sample_by_feature: the feature property whose value names each feature's file "
    "(default: the feature's position, 0, 1, ...).", {"type": ["string", "null"]})

_GTIFF = {
    "title": "GeoTIFF (Cloud-Optimized)",
    "description": "Raster cubes as tiled, compressed Cloud-Optimized GeoTIFFs with overviews, "
                   "the bands as GeoTIFF bands. A batch job writes one file per date "
                   "(openEO_2022-06-01Z.tif); a synchronous request one file, with a band per "
                   "date and band when the cube has several dates.",
    "gis_data_types": ["raster"],
    "parameters": {
        "compression": _param("The compression of the GeoTIFF.",
                              {"type": "string",
                               "enum": ["deflate", "lzw", "zstd", "none"]}, "deflate"),
        "ZLEVEL": _param("Compression level: 1-9 for deflate (default 1, the fastest; "
                         "higher levels take longer for files at most a few % smaller), 1-22 "
                         "for zstd (default 9).",
                         {"type": "integer", "minimum": 1, "maximum": 22}, 1),
        "predictor": _param("GeoTIFF predictor: 1 none, 2 horizontal differencing, "
                            "3 floating point.",
                            {"type": "integer", "enum": [1, 2, 3]}, 1),
        "tile_size": _param("The size of the GeoTIFF's internal tiles in pixels.",
                            {"type": ["integer", "null"], "enum": [256, 512, 1024, None]},
                            512),
        "overviews": _param("AUTO writes overviews (reduced-resolution copies), OFF none.",
                            {"type": "string", "enum": ["AUTO", "OFF"]}, "AUTO"),
        "colormap": _COLORMAP,
        "filename_prefix": _FILENAME_PREFIX,
        "separate_asset_per_band": _param(
            "Write one file per band (and per date in a batch job), e.g. "
            "openEO_2022-06-01Z_B04.tif.", {"type": "boolean"}, False),
        "sample_by_feature": _SAMPLE_BY_FEATURE,
        "feature_id_property": _FEATURE_ID_PROPERTY,
        # CDSE's tiling of a job's GeoTIFFs into a grid; only its default (no grid) here,
        # so that graphs passing the default run and a real grid is refused, not ignored.
        "tile_grid": _param("Only null (no tile grid): one GeoTIFF per date covers the "
                            "whole extent.", {"type": "null"}),
    },
}
_NETCDF = {
    "title": "netCDF",
    "description": "CF-1.8 netCDF-4; every band is a variable over (t, y, x) with its CRS as a "
                   "grid mapping.",
    "gis_data_types": ["raster", "vector"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX,
                   "sample_by_feature": _SAMPLE_BY_FEATURE,
                   "feature_id_property": _FEATURE_ID_PROPERTY},
}
_JSON = {
    "title": "JSON",
    "description": "Any result as JSON: numbers, arrays, objects; raster data cubes as nested "
                   "arrays with their dimensions and labels; vector cubes (aggregate_spatial "
                   "results) as CDSE writes them: {date: [[band values] per geometry]} "
                   "(what openeo.rest.conversions.timeseries_json_to_pandas reads), or "
                   "[[band values] per geometry] without dates.",
    "gis_data_types": ["raster", "vector", "other"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX},
}

_GEOJSON = {
    "title": "GeoJSON",
    "description": "Vector cubes (e.g. aggregate_spatial results) as a FeatureCollection in "
                   "WGS 84; every value becomes a feature property named after its labels.",
    "gis_data_types": ["vector"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX},
}
_CSV = {
    "title": "CSV",
    "description": "Vector cubes as a table as CDSE writes it: columns date (if the cube has "
                   "dates), feature_index and one per band (band_unnamed for a cube without "
                   "band names); one row per geometry and date.",
    "gis_data_types": ["vector"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX},
}
_PARQUET = {
    "title": "GeoParquet",
    "description": "Vector cubes as GeoParquet, one row per geometry (and date).",
    "gis_data_types": ["vector"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX},
}

_PNG = {
    "title": "PNG quicklook",
    "description": "An 8-bit picture of a cube with 1 (grey) or 3 (RGB) layers, each stretched "
                   "between its 2nd and 98th percentile (or the options min/max); no-data is "
                   "transparent. For looking, not for analysis.",
    "gis_data_types": ["raster"],
    "parameters": {
        "min": _param("The value shown black (default: the 2nd percentile of each layer).",
                      {"type": ["number", "null"]}),
        "max": _param("The value shown white (default: the 98th percentile of each layer).",
                      {"type": ["number", "null"]}),
        "colormap": _COLORMAP,
        "red": _param("The band shown red (with green and blue: an RGB picture of these three "
                      "bands of a cube with more; the openEO cookbook's PNG options).",
                      {"type": ["string", "null"]}),
        "green": _param("The band shown green (see red).", {"type": ["string", "null"]}),
        "blue": _param("The band shown blue (see red).", {"type": ["string", "null"]}),
        "filename_prefix": _FILENAME_PREFIX,
    },
}
_ZARR = {
    "title": "Zarr (zipped)",
    "description": "The cube as a Zarr v3 store (a variable per band over t/y/x, the CRS as "
                   "CF grid mapping), zipped into one file; open it with "
                   "xarray.open_zarr(zarr.storage.ZipStore(path, mode='r')).",
    "gis_data_types": ["raster"],
    "parameters": {"filename_prefix": _FILENAME_PREFIX},
}
_JPEG = {**_PNG, "title": "JPEG quicklook",
         "description": "Like PNG, but JPEG-compressed and with no-data in black.",
         "parameters": {k: v for k, v in _PNG["parameters"].items() if k != "colormap"}}

OUTPUT_FORMATS = {"GTiff": _GTIFF, "netCDF": _NETCDF, "JSON": _JSON, "GeoJSON": _GEOJSON,
                  "CSV": _CSV, "Parquet": _PARQUET, "PNG": _PNG, "JPEG": _JPEG, "Zarr": _ZARR}
# Reading takes no options: input formats list none.
INPUT_FORMATS = {name: {**OUTPUT_FORMATS[name], "parameters": {}}
                 for name in ("GTiff", "netCDF", "GeoJSON", "Parquet")}

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


# Options that only repeat the format (client keywords passed on as format options).
_FORMAT_REPEATED = frozenset({"format", "output_format", "out_format"})


def check_options(fmt: str, options: dict | None) -> dict:
    """The save_result options of `fmt`, checked against its /file_formats parameters.

    An option the format does not have, or a value of the wrong kind, is an openEO error
    naming the option and the format: a misspelt option must not be ignored in silence.
    The exception: the format named again as an option (`execute_batch(...,
    output_format="GTiff")` puts the keyword the client does not know into the options, as in
    the CDSE notebooks), dropped when it names this same format.
    """
    options = dict(options or {})
    params = OUTPUT_FORMATS[fmt]["parameters"]
    for name in _FORMAT_REPEATED & options.keys():
        if output_format(options[name]) != fmt:
            raise errors.ProcessParameterInvalid(
                f"The option '{name}' ({options[name]!r}) names another format than {fmt}: "
                "set the format with save_result's `format` (the client's `out_format`).",
                argument="options")
        del options[name]
    for name, value in options.items():
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise errors.ProcessParameterInvalid(
                f"The format {fmt} has no option '{name}'; its options are: {known} "
                "(GET /file_formats).", argument="options")
        schema = {k: v for k, v in params[name].items()
                  if k not in ("description", "subtype", "default")}
        if value is None and params[name].get("default") is None:
            continue
        # jsonschema costs ~20 MB of imports; most requests never pass format options.
        import jsonschema

        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            if schema.get("type") == "null":
                raise errors.ProcessParameterInvalid(
                    f"The option '{name}' of format {fmt} is not supported here except as "
                    f"null (its default); got {value!r}.", argument="options") from None
            raise errors.ProcessParameterInvalid(
                f"The option '{name}' of format {fmt} is invalid: {exc.message}.",
                argument="options") from None
    return options
