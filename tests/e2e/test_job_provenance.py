"""Issue 11, defect 15: provenance in job results as CDSE writes it — `providers` with
`processing:expression` (the job's process graph), `processing:software` (versions) and
`derived_from` links to the inputs (collections and load_stac URLs)."""

from __future__ import annotations

import importlib.metadata

import pytest
import requests

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DATES = ["2022-06-01", "2022-06-10"]


@pytest.fixture(scope="module")
def first(con):
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=DATES,
                             bands=["B04", "B08"])
    job = s2.ndvi(nir="B08", red="B04", target_band="NDVI").create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    return job


def test_providers_carry_the_process_graph_and_versions(con, first) -> None:
    metadata = first.get_results().get_metadata()
    assert metadata["type"] == "Collection"  # providers at its top level, as CDSE writes
    providers = metadata["providers"]
    expression = providers[0]["processing:expression"]  # as course material reads it
    assert expression["format"] == "openeo"
    # the flat graph, as CDSE writes it (the MOOC reads expression["loadcollection1"])
    assert expression["expression"] == first.describe()["process"]["process_graph"]
    assert "processor" in providers[0]["roles"]
    software = providers[0]["processing:software"]
    assert software["terracube"] == importlib.metadata.version("terracube")
    assert software["xarray"] == importlib.metadata.version("xarray")
    assert any("processing" in ext for ext in metadata["stac_extensions"])
    # The one-Item form (Accept: application/geo+json) has them in its properties.
    item = con.get(f"/jobs/{first.job_id}/results",
                   headers={"Accept": "application/geo+json"}).json()
    assert item["type"] == "Feature" and item["properties"]["providers"] == providers


def test_derived_from_links_name_the_inputs(con, first) -> None:
    links = first.get_results().get_metadata()["links"]
    derived = [link["href"] for link in links if link["rel"] == "derived_from"]
    assert derived == [con.build_url("/collections/SENTINEL2_L2A")]
    assert requests.get(derived[0], timeout=30).json()["id"] == "SENTINEL2_L2A"

    (url,) = [link["href"] for link in links if link["rel"] == "canonical"]
    second = con.load_stac(url, bands=["NDVI"]).reduce_dimension(dimension="t",
                                                                 reducer="max")
    job = second.create_job(out_format="GTiff")
    job.start_and_wait(max_poll_interval=0.2)
    links = job.get_results().get_metadata()["links"]
    assert [link["href"] for link in links if link["rel"] == "derived_from"] == [url]
