"""sar_backscatter and ard_normalized_radar_backscatter on the SENTINEL1_GRD sample, through
the evaluator with the real registry and catalog: every coefficient, noise removal, the
angles on another grid, and the arguments it refuses. Values checked with numpy against the
files and the documented geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from terracube.catalog.samples.sentinel1_synthetic import (
    NESZ_DB,
    ORBITS,
    SCENE_CENTRE,
    ensure_sentinel1_data,
    sentinel1_source,
)
from terracube.datacube.request import BBox, LoadRequest
from terracube.engine.evaluate import Evaluator, Services
from terracube.errors import OpenEOError

DATE = "2022-06-01"  # an ascending pass


@pytest.fixture(scope="module")
def source(sample_data_dir: Path):
    return sentinel1_source(ensure_sentinel1_data(sample_data_dir))


def run(registry, cube, process_id: str = "sar_backscatter", **arguments):
    graph = {"s": {"process_id": process_id,
                   "arguments": {"data": {"from_parameter": "cube"}, **arguments},
                   "result": True}}
    return Evaluator(Services(registry=registry)).run(graph, {"cube": cube})


def load(source, **request):
    return source.load(LoadRequest(bands=("VV", "VH"),
                                   temporal_extent=(DATE, "2022-06-02"), **request))


def stored_and_theta_e(source, band: str) -> tuple[np.ndarray, np.ndarray]:
    item = source.items[[i.datetime.date().isoformat() for i in source.items].index(DATE)]
    with rasterio.open(item.assets[band].href) as ds:
        values = ds.read(1).astype(np.float64)
    x = 678005.0 + 10 * np.arange(384)
    y = 5153515.0 - 10 * np.arange(384)
    xx, yy = np.meshgrid(x, y)
    phi = np.radians(ORBITS[0].heading + 90)
    along = (xx - SCENE_CENTRE[0]) * np.sin(phi) + (yy - SCENE_CENTRE[1]) * np.cos(phi)
    return values, np.radians(ORBITS[0].incidence_centre + 0.0665e-3 * along)


@pytest.mark.parametrize("coefficient", ["beta0", "sigma0-ellipsoid", "gamma0-ellipsoid"])
def test_ellipsoid_coefficients(registry, source, coefficient: str) -> None:
    out = run(registry, load(source), coefficient=coefficient, ellipsoid_incidence_angle=True)
    assert list(out.data.bands.values) == ["VV", "VH", "ellipsoid_incidence_angle"]
    stored, theta_e = stored_and_theta_e(source, "VH")
    beta0 = stored / np.tan(theta_e)
    expected = {"beta0": beta0, "sigma0-ellipsoid": beta0 * np.sin(theta_e),
                "gamma0-ellipsoid": stored}[coefficient]
    values = out.data.sel(bands="VH").values[0]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    np.testing.assert_allclose(out.data.sel(bands="ellipsoid_incidence_angle").values[0],
                               np.degrees(theta_e), atol=1e-4)


def test_noise_removal_false_adds_the_noise_floor(registry, source) -> None:
    out = run(registry, load(source), coefficient="sigma0-ellipsoid", noise_removal=False)
    stored, theta_e = stored_and_theta_e(source, "VV")
    expected = stored * np.cos(theta_e) + 10 ** (NESZ_DB / 10)
    np.testing.assert_allclose(out.data.sel(bands="VV").values[0], expected, rtol=1e-5)


def test_ard_on_a_lonlat_grid_resamples_the_angles(registry, source) -> None:
    box = BBox(11.33, 46.48, 11.36, 46.50, "EPSG:4326")
    cube = load(source, bbox=box, crs="EPSG:4326", resolution=0.0002)
    out = run(registry, cube, "ard_normalized_radar_backscatter")
    assert list(out.data.bands.values) == ["VV", "VH", "mask", "local_incidence_angle"]
    values = out.data.values[0]
    theta_l = values[3]
    assert np.isfinite(theta_l).all() and 0 < theta_l.min() and theta_l.max() < 120
    assert set(np.unique(values[2])) <= {0.0, 1.0}
    # On the flat valley floor the local angle is the ellipsoid one.
    assert abs(float(np.median(theta_l)) - ORBITS[0].incidence_centre) < 3


@pytest.mark.parametrize(("arguments", "argument", "code"), [
    ({"options": {"speckle": True}}, "options", "ProcessParameterInvalid"),
    ({"mask": "yes"}, "mask", "ProcessParameterInvalid"),
    ({"coefficient": None}, "coefficient", "ProcessParameterInvalid"),
    ({"contributing_area": True}, "contributing_area", "ProcessParameterInvalid"),
    ({"elevation_model": "COPERNICUS_90"}, "elevation_model", "DigitalElevationModelInvalid"),
])
def test_refused_arguments_are_openeo_errors(registry, source, arguments, argument,
                                             code) -> None:
    with pytest.raises(OpenEOError) as info:
        run(registry, load(source), **arguments)
    assert (info.value.code, info.value.status) == (code, 400)
    assert (info.value.node_id, info.value.argument) == ("s", argument)
