"""Collection metadata derived from the data: CRS spellings, time steps, band descriptions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# numpy, pandas and pyproj (datacube/request.py) are imported by the functions that use them:
# the collection records (registry.py: `terracube collections list|remove`) need only
# CollectionInputError and check_collection_id from here.


class CollectionInputError(ValueError):
    """The data given to `collections add` (or load_stac) cannot become a collection.

    The message names the file (or URL) and says what is wrong with it.
    """


# STAC eo extension common band names (eo v1.1.0).
COMMON_NAMES = frozenset({
    "pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071",
    "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir",
    "lwir11", "lwir12",
})


@dataclass(frozen=True)
class KnownBand:
    common_name: str | None
    center_wavelength: float | None  # micrometres


# Sentinel-2 MSI (Sentinel-2A centre wavelengths), the names used by CDSE and the SAFE files.
SENTINEL2_BANDS: dict[str, KnownBand] = {
    "B01": KnownBand("coastal", 0.443),
    "B02": KnownBand("blue", 0.490),
    "B03": KnownBand("green", 0.560),
    "B04": KnownBand("red", 0.665),
    "B05": KnownBand("rededge", 0.704),
    "B06": KnownBand("rededge", 0.740),
    "B07": KnownBand("rededge", 0.783),
    "B08": KnownBand("nir", 0.842),
    "B8A": KnownBand("nir08", 0.865),
    "B09": KnownBand("nir09", 0.945),
    "B10": KnownBand("cirrus", 1.375),
    "B11": KnownBand("swir16", 1.610),
    "B12": KnownBand("swir22", 2.190),
}


def known_band(name: str, all_names: Sequence[str]) -> KnownBand:
    """Common name and wavelength for a band name, when the name says it unambiguously.

    Sentinel-2 names are only trusted when most bands of the collection are Sentinel-2 names
    (a lone "B04" in a Landsat collection is not Sentinel-2 red).
    """
    s2 = sum(1 for n in all_names if n.upper() in SENTINEL2_BANDS)
    if name.upper() in SENTINEL2_BANDS and s2 >= max(1, len(all_names) // 2):
        return SENTINEL2_BANDS[name.upper()]
    if name.lower() in COMMON_NAMES:
        return KnownBand(name.lower(), None)
    return KnownBand(None, None)


# --- CRS ------------------------------------------------------------------------------------
def crs_string(crs: Any) -> str:
    """'EPSG:n' when the CRS is an EPSG one, else its WKT2 (what we store and hand to odc-geo)."""
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    epsg = c.to_epsg(min_confidence=95)
    return f"EPSG:{epsg}" if epsg else c.to_wkt()


def reference_system(crs: Any) -> int | str:
    """The datacube extension's reference_system: an EPSG code, else WKT2."""
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    epsg = c.to_epsg(min_confidence=95)
    return epsg if epsg else c.to_wkt()


def lonlat_bbox(west: float, south: float, east: float, north: float,
                crs: Any) -> list[float]:
    """The WGS84 box enclosing a box in `crs` (clipped to the valid range)."""
    from terracube.datacube.request import BBox

    b = BBox(west, south, east, north, crs).to_crs(4326)
    return [max(-180.0, b.west), max(-90.0, b.south), min(180.0, b.east), min(90.0, b.north)]


# --- time -----------------------------------------------------------------------------------
def rfc3339(t: Any) -> str:
    import pandas as pd

    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration of a whole number of seconds (P1D, PT1H, PT5M, ...)."""
    s = int(round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{days}D"
    if hours or minutes or secs:
        out += "T"
        out += f"{hours}H" if hours else ""
        out += f"{minutes}M" if minutes else ""
        out += f"{secs}S" if secs else ""
    return out if out != "P" else "PT0S"


def temporal_step(times: Sequence[Any]) -> str | None:
    """The regular step of a time series as ISO 8601 duration, None if irregular.

    Monthly and yearly series (calendar months have different lengths) are recognised.
    """
    import numpy as np
    import pandas as pd

    idx = pd.DatetimeIndex([pd.Timestamp(t).tz_localize(None) if pd.Timestamp(t).tzinfo is None
                            else pd.Timestamp(t).tz_convert("UTC").tz_localize(None)
                            for t in times]).sort_values()
    if len(idx) < 2:
        return None
    diffs = np.diff(idx.asi8) / 1e9
    if np.all(diffs == diffs[0]) and diffs[0] > 0:
        return iso_duration(float(diffs[0]))
    months = (idx.year * 12 + idx.month).to_numpy()
    steps = np.diff(months)
    same_day = len(set(idx.day)) == 1 or bool(np.all(np.abs(np.diff(idx.day)) <= 3))
    if len(set(steps)) == 1 and steps[0] > 0 and same_day:
        n = int(steps[0])
        return f"P{n // 12}Y" if n % 12 == 0 else f"P{n}M"
    return None


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_collection_id(collection_id: str) -> None:
    if not _SAFE_ID.match(collection_id) or len(collection_id) > 100:
        raise CollectionInputError(
            f"'{collection_id}' is not a valid collection id: use letters, digits, '_', '-' "
            "and '.', starting with a letter or digit (at most 100 characters).")


def drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
