"""Engine-level checks of bad input: arguments of load_collection/load_stac that are refused
before any read (load_request), and masks that mask nothing (no x/y overlap, no common date:
as on CDSE, with a warning saying why), while masks that overlap in part still work (checked
with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from terracube import errors
from terracube import process_errors as pe
from terracube.datacube.cube import SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine.processes.cubes import (
    _mask_dates_problem,
    _mask_overlap_problem,
    mask,
)
from terracube.engine.processes.io import load_request

T = np.array(["2022-06-01", "2022-06-06", "2022-06-11"], dtype="datetime64[ns]")
X = 678005.0 + 10.0 * np.arange(6)
Y = 5153515.0 - 10.0 * np.arange(4)


def cube(values: np.ndarray, *, t: np.ndarray = T, x: np.ndarray = X, y: np.ndarray = Y,
         epsg: int = 32632) -> RasterCube:
    data = xr.DataArray(values, dims=["t", "y", "x"], coords={"t": t, "y": y, "x": x})
    dims = (Dimension("t", TEMPORAL), Dimension("y", SPATIAL, "y", epsg),
            Dimension("x", SPATIAL, "x", epsg))
    return RasterCube(data.chunk(), dims, nodata=None)


def data_cube() -> RasterCube:
    return cube(np.arange(len(T) * len(Y) * len(X), dtype="float64")
                .reshape(len(T), len(Y), len(X)))


def ones(t: np.ndarray = T, **kw) -> RasterCube:
    x, y = kw.get("x", X), kw.get("y", Y)
    return cube(np.ones((len(t), len(y), len(x))), t=t, **kw)


# --- load_request -------------------------------------------------------------------------
@pytest.mark.parametrize(("bands", "temporal_extent", "properties", "argument", "words"), [
    ([1], None, None, "bands", "band names (strings)"),
    (["VV", None], None, None, "bands", "band names (strings)"),
    (None, [2022, 2023], None, "temporal_extent", "2022 is not a date"),
    (None, ["2022-13-45", "2022-07-01"], None, "temporal_extent", "'2022-13-45' is not a date"),
    (None, ["", "2022-07-01"], None, "temporal_extent", "'' is not a date"),
    (None, [{"year": 2022}, None], None, "temporal_extent", "is not a date"),
    (None, None, ["eo:cloud_cover"], "properties", "must be an object"),
    (None, None, "eo:cloud_cover < 20", "properties", "must be an object"),
])
def test_load_request_refuses_wrong_kinds(bands, temporal_extent, properties, argument,
                                          words) -> None:
    with pytest.raises(errors.ProcessParameterInvalid) as refused:
        load_request(None, temporal_extent, bands, properties)
    assert refused.value.argument == argument
    assert words in refused.value.message


def test_latitudes_out_of_range_are_refused() -> None:
    """UTM coordinates without their crs, or latitude and longitude mixed up."""
    utm = {"west": 678000, "south": 5150000, "east": 681000, "north": 5153000}
    with pytest.raises(errors.ProcessParameterInvalid) as refused:
        load_request(utm, None, None, None)
    assert refused.value.argument == "spatial_extent"
    assert "between -90 and 90" in refused.value.message
    # the same numbers with their CRS are fine, and so are longitudes beyond 180
    assert load_request({**utm, "crs": 32632}, None, None, None).bbox is not None
    assert load_request({"west": 170, "south": 10, "east": 190, "north": 20}, None, None,
                        None).bbox is not None


def test_load_request_keeps_what_the_spec_allows() -> None:
    request = load_request(None, ["2022", None], ["VV"], {})
    assert request.temporal_extent == ("2022", None) and request.bands == ("VV",)
    # the same date twice is that day (decision 0011)
    assert load_request(None, ["2022-06-01", "2022-06-01"], None, None).temporal_extent == \
        ("2022-06-01", "2022-06-02")
    with pytest.raises(pe.TemporalExtentEmpty):
        load_request(None, ["2022-06-01T10:00:00Z", "2022-06-01T10:00:00Z"], None, None)


# --- mask ----------------------------------------------------------------------------------
def test_a_mask_beside_the_data_masks_nothing_and_says_why() -> None:
    """As on CDSE, a mask that meets none of the data's pixels masks nothing (a program that
    ran there runs here); the warning the job log gets names both extents."""
    data, beside = data_cube(), ones(x=X + 1000.0)
    np.testing.assert_array_equal(mask(data, beside).data.values, data.data.values)
    problem = _mask_overlap_problem(beside, data)
    assert problem and "does not overlap" in problem and "32632" in problem
    assert _mask_overlap_problem(ones(), data) is None


def test_a_mask_in_another_crs_far_away_masks_nothing() -> None:
    far = ones(x=np.array([5.0, 5.001]), y=np.array([52.001, 52.0]), epsg=4326)
    data = data_cube()
    np.testing.assert_array_equal(mask(data, far).data.values, data.data.values)
    assert "does not overlap" in (_mask_overlap_problem(far, data) or "")


def test_a_mask_of_other_dates_masks_nothing_and_says_why() -> None:
    later = np.array(["2022-08-01", "2022-08-06"], dtype="datetime64[ns]")
    data = data_cube()
    np.testing.assert_array_equal(mask(data, ones(later)).data.values, data.data.values)
    message = _mask_dates_problem(ones(later), data, "t") or ""
    assert "no date of the data" in message and "2022-08-01" in message
    assert "2022-06-01 to 2022-06-11" in message
    assert _mask_dates_problem(ones(), data, "t") is None


def test_masks_that_overlap_in_part_still_mask_their_part() -> None:
    """Two columns of the mask over the data's last two, and one date in common: exactly
    those pixels of that date are replaced (numpy), as before the checks."""
    data = data_cube()
    part = ones(T[1:2], x=X[-2:] + 0.0)
    got = mask(data, part).data.values
    expected = data.data.values.copy()
    expected[1, :, -2:] = np.nan
    np.testing.assert_array_equal(got, expected)
    shifted = ones(x=X + 40.0)  # overlaps the data's last two columns
    got = mask(data, shifted).data.values
    expected = data.data.values.copy()
    expected[:, :, 4:] = np.nan
    np.testing.assert_array_equal(got, expected)


def test_period_labels_that_are_no_dates_are_joined_as_before() -> None:
    """Temporal labels that pandas cannot read as instants (week periods) are not checked for
    common dates: the mask is joined as before (its week the data lacks is ignored)."""
    weeks = np.array(["2022-W22", "2022-W23", "2022-W24"], dtype=object)
    data = cube(np.zeros((3, len(Y), len(X))), t=weeks)
    got = mask(data, ones(np.array(["2022-W23", "2022-W30"], dtype=object))).data.values
    assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2]]).any()
