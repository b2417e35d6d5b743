"""Collection ids of other openEO back-ends (Terrascope, openEO Platform, CDSE's Sentinel Hub
layers) that users' programs type, with where the like data is here. Used only to word the
CollectionNotFound error: this server does not pretend to have those collections (their values
differ: mosaics of orbits, other coefficients), it says what to load instead."""

from __future__ import annotations

import re

_S1_SIGMA0 = (
    "Sentinel-1 sigma0 backscatter of {orbit} orbits: load 'SENTINEL1_GRD' with "
    "bands=['VV', 'VH'] and properties={{'sat:orbit_state': lambda s: s == '{orbit}'}}, "
    "then sar_backscatter(coefficient='sigma0-ellipsoid')")
_S1_GAMMA0 = (
    "Sentinel-1 gamma0 backscatter: load 'SENTINEL1_GRD' with bands=['VV', 'VH'], then "
    "sar_backscatter(coefficient='gamma0-terrain')")

_DEM = "the Copernicus DEM: load 'COPERNICUS_30' or 'COPERNICUS_90' (band DEM)"

HINTS: dict[str, str] = {
    # Terrascope / openEO Platform
    "S1_GRD_SIGMA0_ASCENDING": _S1_SIGMA0.format(orbit="ascending"),
    "S1_GRD_SIGMA0_DESCENDING": _S1_SIGMA0.format(orbit="descending"),
    "SENTINEL1_GRD_SIGMA0": (
        "Sentinel-1 sigma0 backscatter: load 'SENTINEL1_GRD' with bands=['VV', 'VH'], then "
        "sar_backscatter(coefficient='sigma0-ellipsoid')"),
    "TERRASCOPE_S1_GAMMA0_V1": _S1_GAMMA0,
    "SENTINEL1_GAMMA0": _S1_GAMMA0,
    "SENTINEL1_GAMMA0_SENTINELHUB": _S1_GAMMA0,
    "TERRASCOPE_S2_TOC_V2": (
        "Sentinel-2 top-of-canopy reflectance: load 'SENTINEL2_L2A' (the same band names "
        "B02...B12 and SCL)"),
    # CDSE's data catalogue (documentation.dataspace.copernicus.eu, Data/collections.json)
    "COP_DEM": _DEM,
    "COP_DEM_EEA": _DEM,
    "SENTINEL1_RTC": _S1_GAMMA0,
    "SENTINEL1_CARDBS": (
        "Sentinel-1 CARD-BS backscatter (gamma0 on the ellipsoid, orthorectified): load "
        "'SENTINEL1_GRD' with bands=['VV', 'VH'], then "
        "sar_backscatter(coefficient='gamma0-ellipsoid')"),
    "SENTINEL1_SLC": (
        "Sentinel-1 there are no single look complex images here (no phase: no coherence or "
        "interferometry); the backscatter is in 'SENTINEL1_GRD'"),
}


def hint(collection_id: str, available: set[str]) -> str | None:
    """What to load here instead of another back-end's `collection_id`, if this server has
    the collections the hint names."""
    text = HINTS.get(collection_id.upper())
    if text is None:
        return None
    return text if set(re.findall(r"'([A-Z0-9_]+)'", text)) & available else None
