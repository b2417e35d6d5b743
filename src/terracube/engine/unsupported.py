"""What to use instead of processes other back-ends (CDSE, VITO, EODC) offer and terracube does
not: the ProcessUnsupported message names the way that works here (cdse-processes.md lists
them), so that a user's program can be changed without a search."""

from __future__ import annotations

_INSTEAD: dict[str, str] = {
    "ard_surface_reflectance": (
        "Sentinel-2 Level-2A collections (SENTINEL2_L2A) hold surface reflectance already: "
        "load them directly and mask clouds with the SCL band (to_scl_dilation_mask)."),
    "atmospheric_correction": (
        "Sentinel-2 Level-2A collections (SENTINEL2_L2A) are atmospherically corrected "
        "already: load them directly."),
    "resolution_merge": (
        "load_collection puts 20 m and 60 m bands on the 10 m grid when they are loaded with "
        "10 m bands; for smoother values use resample_cube_spatial with method 'bilinear' or "
        "'cubic'."),
    "cloud_detection": "Mask clouds with the SCL band (to_scl_dilation_mask, mask).",
    "run_udf_externally": "Use run_udf: UDFs run on this server.",
    "fit_class_catboost": "Use fit_class_random_forest (and predict_random_forest).",
    "predict_catboost": "Use predict_random_forest with a model of fit_class_random_forest.",
    "load_vector_cube": (  # EODC's (openEO Platform's vessel detection use case)
        "Load vector data from a URL with load_url (format 'GeoJSON'), or pass the GeoJSON "
        "itself (e.g. to mask_polygon)."),
    "sen2like": (  # EODC's harmonised Sentinel-2 from Level-1C
        "Sentinel-2 Level-2A collections (SENTINEL2_L2A) hold surface reflectance: load them "
        "directly and mask clouds with the SCL band (to_scl_dilation_mask)."),
    "load_disk_data": (
        "Files on the server's disk are not read: upload them (load_uploaded_files), or use "
        "load_stac or load_url."),
}


def unsupported_message(process_id: str) -> str:
    """The message of ProcessUnsupported for a process that is neither predefined nor one of
    the user's."""
    message = (f"Process '{process_id}' is not available. GET /processes lists the predefined "
               "processes, GET /process_graphs your own ones.")
    instead = _INSTEAD.get(process_id)
    return f"{message} {instead}" if instead else message
