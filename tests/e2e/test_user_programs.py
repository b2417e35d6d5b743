"""Real user programs (openEO community examples, CDSE notebooks) run unchanged through the
official client against one real server; values checked with numpy on the sample files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
SPAN = ["2022-06-01", "2022-07-15"]


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def samples(sample_data_dir: Path, band: str) -> dict[str, np.ndarray]:
    """The band per date of SPAN on BOX, as stored (no-data NaN)."""
    return sample_series(sample_data_dir, band, BOX, *SPAN)


def test_rank_composite_month_windows(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """community-examples RankComposites: apply_neighborhood with a window of
    {"dimension": "t", "value": "month"} (a period name, read as P1M), array_apply comparing
    each date with the window's maximum."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=SPAN,
                               bands=["B04"])

    def max_selection(values):
        top = values.max()
        return values.array_apply(lambda x: x != top)

    rank = cube.apply_neighborhood(
        max_selection,
        size=[{"dimension": "x", "unit": "px", "value": 1},
              {"dimension": "y", "unit": "px", "value": 1},
              {"dimension": "t", "value": "month"}],
        overlap=[])
    rank.download(tmp_path / "rank.nc")
    got = xr.open_dataset(tmp_path / "rank.nc")["B04"]
    days = samples(sample_data_dir, "B04")
    labels = [str(t)[:10] for t in got.t.values]
    assert labels == sorted(days)
    for month in ("2022-06", "2022-07"):
        dates = sorted(d for d in days if d.startswith(month))
        stack = np.stack([days[d] for d in dates])
        top = np.nanmax(stack, axis=0)
        for d, values in zip(dates, stack, strict=True):
            expected = (values != top).astype("float32")
            actual = got.isel(t=labels.index(d)).values
            valid = ~np.isnan(values)
            np.testing.assert_array_equal(actual[valid], expected[valid])
