"""SAR viewing geometry of a loaded cube: per acquisition the orbit and incidence angles, and
the terrain they fall on, so that `sar_backscatter` can normalise the backscatter.

A catalog source of SAR data (the synthetic SENTINEL1_GRD sample) puts a `SarGeometry` into
the attrs of the cubes it loads (key `SAR_GEOMETRY`); the engine's SAR processes read it. The
angle formulas live here, once, for the generator of the sample and for the processes alike.

The model (documented for users in docs/user-guide/sample-data.md):

- the ellipsoid incidence angle varies linearly with the distance along the look direction
  from the scene centre: theta_e = theta_centre + gradient * d;
- the local incidence angle is the angle between the terrain normal (from the heights by
  central differences, `numpy.gradient`) and the direction from the ground to the satellite;
- layover where the terrain rises away from the sensor more steeply than theta_e, radar
  shadow where it falls away more steeply than 90 degrees - theta_e.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# RasterCube.attrs key of a cube's SarGeometry.
SAR_GEOMETRY = "sar_geometry"


@dataclass(frozen=True)
class SarAcquisition:
    """The viewing geometry of one acquisition (one time label)."""

    orbit_state: str
    """"ascending" or "descending"."""
    heading: float
    """Direction of flight, degrees clockwise from north."""
    look_azimuth: float
    """Horizontal direction from the satellite to the ground, degrees clockwise from north
    (heading + 90 for a right-looking radar)."""
    incidence_centre: float
    """Ellipsoid incidence angle at `centre`, degrees."""
    incidence_gradient: float
    """Change of the ellipsoid incidence angle per metre along the look azimuth, degrees."""
    centre: tuple[float, float]
    """(x, y) of the scene centre in the terrain's CRS."""
    nesz_db: float
    """Noise equivalent sigma0 (dB) that noise removal took off the stored values."""


@dataclass(frozen=True)
class Terrain:
    """Terrain heights (metres) on a regular grid, north-up."""

    heights: np.ndarray
    transform: tuple[float, float, float, float, float, float]
    """GDAL-order affine (a, b, c, d, e, f) of the grid."""
    crs: str


@dataclass(frozen=True)
class SarGeometry:
    """What a SAR cube's processes need beyond its values."""

    acquisitions: Mapping[str, SarAcquisition]
    """By time label, as ISO text to the second ("2022-04-02T17:13:42")."""
    terrain: Callable[[], Terrain]
    """Reads the terrain (called when the process's values are computed)."""
    dem_id: str
    """The elevation collection the terrain stands for (sar_backscatter's
    `elevation_model`)."""
    backscatter: str
    """What the stored values are (e.g. "gamma0-ellipsoid"), linear."""


def label_key(value: object) -> str:
    """The key of `SarGeometry.acquisitions` for a time label (numpy datetime64 or text)."""
    return str(np.datetime64(value, "s"))  # type: ignore[call-overload]


def ellipsoid_incidence(acq: SarAcquisition, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ellipsoid incidence angle (degrees) at map coordinates x, y (broadcast)."""
    phi = np.radians(acq.look_azimuth)
    distance = (x - acq.centre[0]) * np.sin(phi) + (y - acq.centre[1]) * np.cos(phi)
    return np.asarray(acq.incidence_centre + acq.incidence_gradient * distance)


def terrain_slopes(terrain: Terrain) -> tuple[np.ndarray, np.ndarray]:
    """dz/dx (east) and dz/dy (north) of the terrain, by central differences."""
    a, _, _, _, e, _ = terrain.transform
    d_row, d_col = np.gradient(terrain.heights.astype(np.float64))
    return np.asarray(d_col / a), np.asarray(d_row / e)  # e < 0: rows run south


def local_incidence(acq: SarAcquisition, theta_e: np.ndarray, dzdx: np.ndarray,
                    dzdy: np.ndarray) -> np.ndarray:
    """Local incidence angle (degrees): between the terrain normal and the direction from
    the ground to the satellite."""
    phi = np.radians(acq.look_azimuth)
    te = np.radians(theta_e)
    # Unit vector from the ground to the satellite (east, north, up).
    sx, sy, sz = -np.sin(phi) * np.sin(te), -np.cos(phi) * np.sin(te), np.cos(te)
    norm = np.sqrt(1.0 + dzdx**2 + dzdy**2)
    cos_local = (-dzdx * sx - dzdy * sy + sz) / norm
    return np.asarray(np.degrees(np.arccos(np.clip(cos_local, -1.0, 1.0))))


def layover_or_shadow(acq: SarAcquisition, theta_e: np.ndarray, dzdx: np.ndarray,
                      dzdy: np.ndarray) -> np.ndarray:
    """True where the terrain lies in layover or radar shadow."""
    phi = np.radians(acq.look_azimuth)
    # Slope angle along the look direction (positive: rising away from the sensor).
    rise = np.degrees(np.arctan(dzdx * np.sin(phi) + dzdy * np.cos(phi)))
    return np.asarray((rise > theta_e) | (-rise > 90.0 - theta_e))
