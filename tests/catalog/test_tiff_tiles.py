"""Our decoder of tiled GeoTIFF windows gives exactly what GDAL (rasterio) reads, for the
layouts it takes; every other layout is left to GDAL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terracube.catalog import direct_read
from terracube.catalog.tiff_tiles import open_tiled

RNG = np.random.default_rng(20261204)


def _write(path: Path, values: np.ndarray, *, tile: int = 256, nodata: float | None = None,
           sparse_window: tuple[int, int, int, int] | None = None, **creation) -> Path:
    """A single-band GeoTIFF as GDAL writes it. With `sparse_window` (row0, row1, col0,
    col1) only that part is written and the other tiles are left out of the file."""
    profile = dict(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
                   dtype=values.dtype.name, crs="EPSG:32632", nodata=nodata, tiled=True,
                   blockxsize=tile, blockysize=tile,
                   transform=rasterio.transform.from_origin(600000, 5200000, 10, 10),
                   **creation)
    with rasterio.open(path, "w", **profile) as ds:
        if sparse_window is None:
            ds.write(values, 1)
        else:
            r0, r1, c0, c1 = sparse_window
            ds.write(values[r0:r1, c0:c1], 1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return path


def _values(dtype: str, shape: tuple[int, int]) -> np.ndarray:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return RNG.normal(0.2, 0.3, shape).astype(dtype)
    # smooth rows with steps, and the type's extremes: the predictor's sums wrap around
    base = np.cumsum(RNG.integers(-300, 300, shape), axis=1) + 1000
    values = np.clip(base, info.min, info.max).astype(dtype)
    values[::7, ::5] = info.max
    values[3::11, 1::3] = info.min
    return values


def _windows(height: int, width: int, count: int = 25) -> list[tuple[int, int, int, int]]:
    found = [(0, height, 0, width), (0, 1, 0, 1), (height - 1, height, width - 1, width),
             (255, 257, 0, width), (0, height, 255, 513)]
    for _ in range(count):
        r0, c0 = int(RNG.integers(0, height)), int(RNG.integers(0, width))
        found.append((r0, int(RNG.integers(r0 + 1, height + 1)),
                      c0, int(RNG.integers(c0 + 1, width + 1))))
    return [(r0, min(r1, height), c0, min(c1, width)) for r0, r1, c0, c1 in found
            if r0 < min(r1, height) and c0 < min(c1, width)]


def _same_as_gdal(path: Path) -> int:
    tiled = open_tiled(str(path))
    assert tiled is not None, path
    with rasterio.open(path) as ds:
        assert (tiled.height, tiled.width) == ds.shape
        for r0, r1, c0, c1 in _windows(*ds.shape):
            ours = tiled.read(r0, r1, c0, c1)
            gdal = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
            assert ours.dtype == gdal.dtype and ours.shape == gdal.shape
            np.testing.assert_array_equal(ours, gdal, err_msg=f"{path.name} {r0, r1, c0, c1}")
    return len(_windows(*ds.shape))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32"])
@pytest.mark.parametrize("predictor", [1, 2])
def test_integer_tiles_deflate_with_and_without_predictor(tmp_path: Path, dtype: str,
                                                          predictor: int) -> None:
    # 700 x 530: the last tiles of each row and column reach beyond the image
    path = _write(tmp_path / "a.tif", _values(dtype, (530, 700)), compress="deflate",
                  predictor=predictor)
    assert _same_as_gdal(path) > 20


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_tiles_with_nan(tmp_path: Path, dtype: str) -> None:
    values = _values(dtype, (512, 600))
    values[100:140, 30:90] = np.nan
    path = _write(tmp_path / "f.tif", values, compress="deflate", nodata=float("nan"))
    assert _same_as_gdal(path) > 20


def test_uncompressed_and_large_tiles(tmp_path: Path) -> None:
    assert _same_as_gdal(_write(tmp_path / "raw.tif", _values("uint16", (600, 1100)),
                                compress="none", tile=512)) > 20
    assert _same_as_gdal(_write(tmp_path / "big.tif", _values("uint16", (1030, 1030)),
                                compress="deflate", predictor=2, tile=512)) > 20


@pytest.mark.parametrize("nodata", [None, 0, 65535])
def test_tiles_missing_from_the_file_read_as_gdal_fills_them(tmp_path: Path,
                                                            nodata: int | None) -> None:
    values = _values("uint16", (768, 768))
    path = _write(tmp_path / "sparse.tif", values, compress="deflate", predictor=2,
                  nodata=nodata, sparse_window=(256, 512, 0, 512), SPARSE_OK=True)
    tiled = open_tiled(str(path))
    assert tiled is not None and int((tiled.byte_counts == 0).sum()) >= 5
    assert _same_as_gdal(path) > 20
    corner = tiled.read(0, 10, 0, 10)
    assert (corner == (nodata or 0)).all()


@pytest.mark.parametrize("creation", [
    {"compress": "lzw"}, {"compress": "zstd"}, {"compress": "deflate", "predictor": 3},
    {"compress": "deflate", "tiled": False}, {"compress": "jpeg"}])
def test_other_layouts_are_left_to_gdal(tmp_path: Path, creation: dict) -> None:
    dtype = "float32" if creation.get("predictor") == 3 else "uint8"
    values = _values(dtype, (300, 300))
    path = tmp_path / "other.tif"
    profile = dict(driver="GTiff", width=300, height=300, count=1, dtype=dtype,
                   crs="EPSG:32632", transform=rasterio.transform.from_origin(0, 3000, 10, 10),
                   **({"tiled": True, "blockxsize": 256, "blockysize": 256} | creation))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values, 1)
    assert open_tiled(str(path)) is None
    # the loads still read it, through GDAL
    part, _target = direct_read._read_part(str(path), (10, 290), (5, 200), 1)
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(part, ds.read(1, window=Window(5, 10, 195, 280)))


def test_several_bands_per_pixel_and_non_tiffs_are_left_to_gdal(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       tiled=True, blockxsize=32, blockysize=32, compress="deflate") as ds:
        ds.write(RNG.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    assert open_tiled(str(path)) is None
    (tmp_path / "not.tif").write_bytes(b"not a tiff at all")
    assert open_tiled(str(tmp_path / "not.tif")) is None
    assert open_tiled(str(tmp_path / "missing.tif")) is None


def test_a_replaced_file_is_read_anew_and_gdal_can_be_chosen(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    path = tmp_path / "b.tif"
    first = _values("uint16", (256, 256))
    _write(path, first, compress="deflate", predictor=2)
    tiled = open_tiled(str(path))
    assert tiled is not None
    np.testing.assert_array_equal(tiled.read(0, 256, 0, 256), first)
    second = first[::-1].copy()
    time.sleep(0.01)
    _write(path, second, compress="deflate", predictor=2, tile=128)
    os.utime(path)  # a new modification time even on coarse clocks
    again = open_tiled(str(path))
    assert again is not None and again.tile_width == 128
    np.testing.assert_array_equal(again.read(0, 256, 0, 256), second)
    monkeypatch.setenv("TERRACUBE_TIFF_DECODER", "gdal")
    assert open_tiled(str(path)) is None


def test_the_built_in_samples_decode_as_gdal_reads_them(sample_data_dir: Path) -> None:
    files = sorted((sample_data_dir / "samples").rglob("*.tif"))
    decoded = [f for f in files if open_tiled(str(f)) is not None]
    assert len(decoded) >= 0.5 * len(files) and len(decoded) > 10
    for path in decoded[::max(1, len(decoded) // 12)]:
        _same_as_gdal(path)
