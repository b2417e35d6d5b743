"""engine/udf_metadata.py and the runner's side of apply_metadata (udf_runner.apply_metadata,
run here in-process on the real openeo CollectionMetadata): the cube as apply_metadata sees it,
its answer read into a MetadataChange, and an openEO error for what cannot be followed. The
whole path through a sandboxed runner and a server is tests/e2e/test_udf_metadata.py."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import xarray as xr

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine import udf_runner
from terracube.engine.udf_metadata import defines_apply_metadata, describe, read_change

pytest.importorskip("openeo")


def cube() -> RasterCube:
    data = xr.DataArray(
        np.zeros((2, 2, 4, 6), dtype="float32"), dims=("t", "bands", "y", "x"),
        coords={"t": np.array(["2022-06-02", "2022-06-07"], dtype="datetime64[ns]"),
                "bands": ["B04", "B08"], "y": 5151495.0 - 10 * np.arange(4),
                "x": 680005.0 + 10 * np.arange(6)})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632))
    return RasterCube(data, dims)


def answer(code: str, described: dict, context: dict | None = None) -> dict:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the test's own code
    return udf_runner.apply_metadata(namespace["apply_metadata"], described, context or {})


def test_apply_metadata_is_found_in_the_syntax_tree_only_at_top_level() -> None:
    assert defines_apply_metadata("import x\n\ndef apply_metadata(m, c):\n    return m\n")
    assert not defines_apply_metadata("def f():\n    def apply_metadata(m, c):\n        pass\n")
    assert not defines_apply_metadata("# apply_metadata is not defined here\nx = 1\n")
    assert not defines_apply_metadata("def apply_metadata(:\n")  # not Python: no


def test_the_cube_is_described_with_x_and_y_first() -> None:
    described = describe(cube())
    names = [d["name"] for d in described["dimensions"]]
    assert names == ["x", "y", "t", "bands"]
    x, y, t, bands = described["dimensions"]
    assert x == {"name": "x", "type": "spatial", "extent": [680000.0, 680060.0], "step": 10.0,
                 "reference_system": 32632}
    assert y["extent"] == [5151460.0, 5151500.0] and y["step"] == 10.0
    assert t["extent"] == ["2022-06-02T00:00:00Z", "2022-06-07T00:00:00Z"]
    assert bands["values"] == ["B04", "B08"]


def test_the_client_docs_example_halves_the_step() -> None:
    described = describe(cube())
    code = ("def apply_metadata(input_metadata, context):\n"
            "    res= [ d.step / 2.0 for d in input_metadata.spatial_dimensions]\n"
            "    return input_metadata.resample_spatial(resolution=res)\n")
    change = read_change(described, answer(code, described))
    assert change.scale == {"x": Fraction(2), "y": Fraction(2)} and change.labels == {}


def test_renamed_bands_and_a_coarser_resolution() -> None:
    described = describe(cube())
    code = ("def apply_metadata(metadata, context):\n"
            "    m = metadata.rename_labels(dimension='bands', target=['a', 'b', 'c'])\n"
            "    return m.resample_spatial(resolution=15)\n")
    change = read_change(described, answer(code, described))
    assert change.scale == {"x": Fraction(2, 3), "y": Fraction(2, 3)}
    assert change.labels == {"bands": ("a", "b", "c")}


def test_an_unchanged_answer_changes_nothing() -> None:
    described = describe(cube())
    change = read_change(described, answer("def apply_metadata(m, c):\n    return m\n",
                                           described))
    assert not change.changes_anything


@pytest.mark.parametrize(("code", "words"), [
    ("def apply_metadata(m, c):\n    return m.resample_spatial(resolution=10, projection=4326)\n",
     "reference system"),
    ("def apply_metadata(m, c):\n    return m.rename_dimension('t', 'time')\n",
     "not add or rename dimensions"),
    ("def apply_metadata(m, c):\n    return m.resample_spatial(resolution=3.3333)\n",
     "simple fraction"),
    ("def apply_metadata(m, c):\n    return m.rename_labels('bands', ['a', 'a'])\n",
     "distinct"),
])
def test_what_cannot_be_followed(code: str, words: str) -> None:
    described = describe(cube())
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        read_change(described, answer(code, described), node_id="runudf1")
    assert words in info.value.message and "apply_metadata" in info.value.message


def test_apply_metadata_must_return_metadata() -> None:
    with pytest.raises(udf_runner.UdfError, match="must return the metadata"):
        answer("def apply_metadata(m, c):\n    return None\n", describe(cube()))
