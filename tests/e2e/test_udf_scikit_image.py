"""A texture UDF that declares scikit-image as its dependency (PEP 723), as the community
example RandomForest-ForestFire's GLCM feature UDF does: the UDF runtime ships scikit-image,
so the declaration is met and the UDF runs in `apply_neighborhood` with overlapping chunks.
Values are checked against scikit-image run here on the sample's stored band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# 40 x 40 pixels of the 20 m grid, every pixel valid on DAY
BOX = {"west": 680400, "south": 5151120, "east": 681200, "north": 5151920, "crs": 32632}
DAY = ["2022-07-17", "2022-07-18"]
WINDOW = 5

TEXTURE_UDF = '''
# /// script
# dependencies = [
#   "scikit-image",
# ]
# ///
import numpy as np
import xarray
from openeo.metadata import CollectionMetadata


def apply_metadata(metadata: CollectionMetadata, context: dict) -> CollectionMetadata:
    return metadata.rename_labels(dimension="bands", target=["contrast", "variance"])


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    from skimage.feature import graycomatrix, graycoprops

    half = context["window"] // 2
    b12 = cube.sel(bands="B12").values
    grey = np.clip(np.nan_to_num(b12) / 64, 0, 63).astype(np.uint8)
    padded = np.pad(grey, half, mode="reflect")
    contrast = np.zeros(b12.shape)
    variance = np.zeros(b12.shape)
    for i in range(b12.shape[0]):
        for j in range(b12.shape[1]):
            w = padded[i:i + 2 * half + 1, j:j + 2 * half + 1]
            glcm = graycomatrix(w, distances=[1], angles=[0], levels=64, symmetric=True,
                                normed=True)
            contrast[i, j] = graycoprops(glcm, "contrast")[0, 0]
            variance[i, j] = np.var(w)
    return xarray.DataArray(np.stack([contrast, variance]), dims=["bands", "y", "x"],
                            coords={"bands": ["contrast", "variance"], "y": cube.coords["y"],
                                    "x": cube.coords["x"]})
'''


def texture(band: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """GLCM contrast and variance of each pixel's window, computed here with scikit-image."""
    from skimage.feature import graycomatrix, graycoprops

    half = window // 2
    grey = np.clip(band / 64, 0, 63).astype(np.uint8)
    contrast = np.full(band.shape, np.nan)
    variance = np.full(band.shape, np.nan)
    for i in range(half, band.shape[0] - half):
        for j in range(half, band.shape[1] - half):
            w = grey[i - half:i + half + 1, j - half:j + half + 1]
            glcm = graycomatrix(w, distances=[1], angles=[0], levels=64, symmetric=True,
                                normed=True)
            contrast[i, j] = graycoprops(glcm, "contrast")[0, 0]
            variance[i, j] = np.var(w)
    return contrast, variance


def test_runtime_lists_scikit_image(con) -> None:
    runtimes = con.list_udf_runtimes()["Python"]
    libraries = runtimes["versions"][runtimes["default"]]["libraries"]
    assert "scikit-image" in libraries


def test_glcm_texture_udf_with_declared_scikit_image(con, sample_data_dir: Path,
                                                     tmp_path: Path) -> None:
    (b12,) = sample_series(sample_data_dir, "B12", BOX, *DAY).values()
    assert b12.shape == (40, 40) and not np.isnan(b12).any()

    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                               bands=["B12"]).reduce_dimension(dimension="t", reducer="first")
    features = cube.apply_neighborhood(
        process=openeo.UDF(TEXTURE_UDF, runtime="Python", context={"window": WINDOW}),
        size=[{"dimension": "x", "value": 32, "unit": "px"},
              {"dimension": "y", "value": 32, "unit": "px"}],
        overlap=[{"dimension": "x", "value": 8, "unit": "px"},
                 {"dimension": "y", "value": 8, "unit": "px"}])
    features.download(tmp_path / "texture.nc")

    contrast, variance = texture(b12, WINDOW)
    inner = (slice(WINDOW // 2, -(WINDOW // 2)),) * 2  # away from the cube's own edges
    with xr.open_dataset(tmp_path / "texture.nc") as ds:
        assert {"contrast", "variance"} <= set(ds.data_vars)
        got_contrast = ds["contrast"].values
        got_variance = ds["variance"].values
    assert got_contrast.shape == (40, 40)
    np.testing.assert_allclose(got_contrast[inner], contrast[inner], rtol=1e-5)
    np.testing.assert_allclose(got_variance[inner], variance[inner], rtol=1e-5)
    assert np.nanstd(contrast) > 0  # a textured place, not a flat one
