"""SAR backscatter processes: `sar_backscatter` and `ard_normalized_radar_backscatter`.

They work on SAR cubes whose source recorded the viewing geometry (`datacube/sar.py`): the
synthetic SENTINEL1_GRD sample, loaded with `load_collection` (filters may follow, as on CDSE;
nothing that changes values). The stored values (gamma0 on the ellipsoid, noise removed) are
turned back into radar brightness beta0 with the ellipsoid incidence angle theta_e, then into
the requested coefficient:

    beta0 = gamma0_ellipsoid / tan(theta_e)
    sigma0-ellipsoid = beta0 sin(theta_e)     gamma0-ellipsoid = beta0 tan(theta_e)
    sigma0-terrain   = beta0 sin(theta_l)     gamma0-terrain   = beta0 tan(theta_l)

with theta_l the local incidence angle on the terrain (a facet model; no-data where the
terrain is in radar shadow, theta_l >= 90 degrees). `noise_removal=false` adds the noise
equivalent sigma0 back. The angles are computed on the cube's own grid: the terrain slopes on
the terrain's grid, resampled bilinearly when the cube has another grid.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import pyproj
import xarray as xr
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from terracube import errors, process_errors
from terracube.datacube.band_reads import BAND_READS
from terracube.datacube.cube import BANDS, TEMPORAL, RasterCube
from terracube.datacube.grid import GRID_READER, Grid, grid_of, spatial_dims
from terracube.datacube.sar import (
    SAR_GEOMETRY,
    SarGeometry,
    Terrain,
    ellipsoid_incidence,
    label_key,
    layover_or_shadow,
    local_incidence,
    terrain_slopes,
)
from terracube.engine.registry import process

COEFFICIENTS = ("beta0", "sigma0-ellipsoid", "sigma0-terrain", "gamma0-ellipsoid",
                "gamma0-terrain")
_SAR_BANDS = ("VV", "VH", "HV", "HH")


@process("sar_backscatter")
def sar_backscatter(data: RasterCube, coefficient: Any = "gamma0-terrain",
                    elevation_model: Any = None, mask: Any = False,
                    contributing_area: Any = False, local_incidence_angle: Any = False,
                    ellipsoid_incidence_angle: Any = False, noise_removal: Any = True,
                    options: Any = None) -> RasterCube:
    if coefficient is None:
        raise errors.ProcessParameterInvalid(
            "Non-normalized backscatter (coefficient null) is not available: the collection "
            f"holds calibrated backscatter. Choose one of {', '.join(COEFFICIENTS)}.",
            argument="coefficient")
    if coefficient not in COEFFICIENTS:
        raise errors.ProcessParameterInvalid(
            f"Unknown coefficient {coefficient!r}; choose one of {', '.join(COEFFICIENTS)} "
            "(or null).", argument="coefficient")
    flags = {name: _flag(value, name) for name, value in (
        ("mask", mask), ("contributing_area", contributing_area),
        ("local_incidence_angle", local_incidence_angle),
        ("ellipsoid_incidence_angle", ellipsoid_incidence_angle),
        ("noise_removal", noise_removal))}
    return _backscatter(data, str(coefficient), elevation_model, flags, options)


@process("ard_normalized_radar_backscatter")
def ard_normalized_radar_backscatter(data: RasterCube, elevation_model: Any = None,
                                     contributing_area: Any = False,
                                     ellipsoid_incidence_angle: Any = False,
                                     noise_removal: Any = True,
                                     options: Any = None) -> RasterCube:
    # CARD4L normalised radar backscatter: gamma0 on the terrain, with the data mask and the
    # local incidence angle always added.
    flags = {"mask": True, "local_incidence_angle": True,
             "contributing_area": _flag(contributing_area, "contributing_area"),
             "ellipsoid_incidence_angle": _flag(ellipsoid_incidence_angle,
                                                "ellipsoid_incidence_angle"),
             "noise_removal": _flag(noise_removal, "noise_removal")}
    return _backscatter(data, "gamma0-terrain", elevation_model, flags, options)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise errors.ProcessParameterInvalid(
            f"'{name}' must be true or false, got {value!r}.", argument=name)
    return value


def _backscatter(data: RasterCube, coefficient: str, elevation_model: Any,
                 flags: dict[str, bool], options: Any) -> RasterCube:
    geometry = _geometry(data)
    if options not in (None, {}):
        raise errors.ProcessParameterInvalid(
            f"No options are supported (got {options!r}); leave 'options' empty.",
            argument="options")
    if flags["contributing_area"]:
        raise errors.ProcessParameterInvalid(
            "contributing_area is not available here (as on CDSE): set it to false.",
            argument="contributing_area")
    dem = geometry.dem_id
    if elevation_model is not None and elevation_model != dem:
        raise process_errors.DigitalElevationModelInvalid(
            f"The elevation model {elevation_model!r} cannot be used with this cube: its "
            f"terrain is {dem!r} (or pass null).", argument="elevation_model")
    tdim = data.first_dim_of_type(TEMPORAL)
    bdim = data.first_dim_of_type(BANDS)
    if tdim is None or bdim is None:
        raise errors.ProcessParameterInvalid(
            "sar_backscatter needs the SAR cube as loaded, with its temporal and bands "
            "dimensions.", argument="data")
    bands = [str(b) for b in data.labels(bdim.name)]
    if not bands or any(b not in _SAR_BANDS for b in bands):
        raise errors.ProcessParameterInvalid(
            f"sar_backscatter needs the polarisation bands as loaded ({'/'.join(_SAR_BANDS)}); "
            f"the cube has {bands}.", argument="data")
    keys = [label_key(t) for t in data.labels(tdim.name)]
    missing = [k for k in keys if k not in geometry.acquisitions]
    if missing:
        raise errors.ProcessParameterInvalid(
            f"The time labels {missing[:3]} are not acquisitions of the loaded SAR data: "
            "call sar_backscatter on the cube of load_collection (filters only in between).",
            argument="data")
    ydim, xdim = spatial_dims(data)
    angles = _angles(geometry, grid_of(data), keys, data.data.coords, tdim.name, ydim, xdim)
    theta_e, theta_l, hidden = (angles.sel(angle=k, drop=True)
                                for k in ("theta_e", "theta_l", "hidden"))
    rad_e, rad_l = np.radians(theta_e), np.radians(theta_l)
    values = data.data.astype(np.float32)
    beta0 = values / np.tan(rad_e)
    if not flags["noise_removal"]:
        floor = [10 ** (geometry.acquisitions[k].nesz_db / 10) for k in keys]
        nesz = xr.DataArray(np.array(floor, dtype=np.float32), dims=[tdim.name],
                            coords={tdim.name: data.labels(tdim.name)})
        beta0 = beta0 + nesz / np.sin(rad_e)
    shadow = theta_l >= 90.0
    out = {
        "beta0": beta0,
        "sigma0-ellipsoid": beta0 * np.sin(rad_e),
        "gamma0-ellipsoid": beta0 * np.tan(rad_e),
        "sigma0-terrain": (beta0 * np.sin(rad_l)).where(~shadow),
        "gamma0-terrain": (beta0 * np.tan(rad_l)).where(~shadow),
    }[coefficient]
    extra: list[tuple[str, xr.DataArray]] = []
    if flags["mask"]:
        valid = values.notnull().all(bdim.name)
        extra.append(("mask", xr.where(hidden > 0, 0.0, 1.0).where(valid)))
    if flags["local_incidence_angle"]:
        extra.append(("local_incidence_angle", theta_l))
    if flags["ellipsoid_incidence_angle"]:
        extra.append(("ellipsoid_incidence_angle", theta_e))
    layers = [out.transpose(*data.data.dims)]
    for name, layer in extra:
        layer = layer.broadcast_like(values.isel({bdim.name: [0]}).squeeze(bdim.name, drop=True))
        layers.append(layer.expand_dims({bdim.name: [name]}).transpose(*data.data.dims))
    result = xr.concat(layers, dim=bdim.name).astype(np.float32)
    result = result.assign_coords({bdim.name: bands + [name for name, _ in extra]})
    attrs = {k: v for k, v in data.attrs.items()
             if k not in (BAND_READS, GRID_READER, SAR_GEOMETRY, "band_metadata")}
    return RasterCube(result, data.dimensions, None, attrs)


def _geometry(data: RasterCube) -> SarGeometry:
    if not isinstance(data, RasterCube):
        raise errors.ProcessParameterInvalid("'data' must be a raster data cube.",
                                             argument="data")
    sar = data.attrs.get(SAR_GEOMETRY)
    if not isinstance(sar, SarGeometry):
        raise errors.ProcessParameterInvalid(
            "sar_backscatter needs SAR data with its acquisition metadata: load "
            "SENTINEL1_GRD with load_collection and call it on that cube (only filters in "
            "between).", argument="data")
    return sar


def _angles(sar: SarGeometry, grid: Grid, keys: list[str], coords: Any, tname: str,
            yname: str, xname: str) -> xr.DataArray:
    """theta_e, theta_l (degrees) and layover/shadow (1/0) per time label on the cube's grid,
    lazily: (t, angle, y, x)."""
    slopes = dask.delayed(_slopes_on_grid)(sar.terrain, grid)
    layers = []
    for key in keys:
        acq = sar.acquisitions[key]
        one = dask.delayed(_angle_layers)(acq, slopes)
        layers.append(da.from_delayed(one, shape=(3, grid.height, grid.width),
                                      dtype=np.float32))
    stack = da.stack(layers) if layers else da.zeros((0, 3, grid.height, grid.width),
                                                     dtype=np.float32)
    return xr.DataArray(stack, dims=[tname, "angle", yname, xname],
                        coords={tname: coords[tname].values,
                                "angle": ["theta_e", "theta_l", "hidden"],
                                yname: coords[yname].values, xname: coords[xname].values})


def _slopes_on_grid(read_terrain: Any, grid: Grid) -> tuple[np.ndarray, ...]:
    """dz/dx, dz/dy and the terrain-CRS coordinates x, y of the cube's pixel centres."""
    terrain: Terrain = read_terrain()
    dzdx, dzdy = terrain_slopes(terrain)
    src = Affine(*terrain.transform)
    xs, ys = np.meshgrid(grid.x_coords(), grid.y_coords())
    tcrs = pyproj.CRS.from_user_input(terrain.crs)
    if grid.crs != tcrs:
        xs, ys = pyproj.Transformer.from_crs(grid.crs, tcrs, always_xy=True).transform(xs, ys)
    aligned = _window(src, terrain.heights.shape, grid) if grid.crs == tcrs else None
    if aligned is not None:
        rows, cols = aligned
        return dzdx[rows, cols], dzdy[rows, cols], xs, ys
    warped = []
    for layer in (dzdx, dzdy):
        dst = np.full((grid.height, grid.width), np.nan)
        reproject(layer, dst, src_transform=src, src_crs=tcrs.to_wkt(),
                  dst_transform=grid.transform, dst_crs=grid.crs.to_wkt(),
                  resampling=Resampling.bilinear, src_nodata=np.nan, dst_nodata=np.nan)
        warped.append(dst)
    return warped[0], warped[1], xs, ys


def _window(src: Affine, shape: tuple[int, ...], grid: Grid) -> tuple[slice, slice] | None:
    """Rows and columns of the terrain grid that are the cube's grid, if it is a window."""
    t = grid.transform
    if not (np.isclose(t.a, src.a) and np.isclose(t.e, src.e) and t.b == 0 and t.d == 0):
        return None
    col0 = (t.c - src.c) / src.a
    row0 = (t.f - src.f) / src.e
    if not (np.isclose(col0, round(col0), atol=1e-6) and np.isclose(row0, round(row0),
                                                                     atol=1e-6)):
        return None
    c0, r0 = int(round(col0)), int(round(row0))
    if c0 < 0 or r0 < 0 or c0 + grid.width > shape[1] or r0 + grid.height > shape[0]:
        return None
    return slice(r0, r0 + grid.height), slice(c0, c0 + grid.width)


def _angle_layers(acq: Any, slopes: tuple[np.ndarray, ...]) -> np.ndarray:
    dzdx, dzdy, xs, ys = slopes
    theta_e = ellipsoid_incidence(acq, xs, ys)
    theta_l = local_incidence(acq, theta_e, dzdx, dzdy)
    hidden = layover_or_shadow(acq, theta_e, dzdx, dzdy)
    return np.stack([theta_e, theta_l, hidden]).astype(np.float32)
