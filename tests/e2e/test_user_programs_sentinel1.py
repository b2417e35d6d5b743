"""Users' Sentinel-1 programs on the synthetic SENTINEL1_GRD sample: CDSE's Radar_ARD notebook,
the openEO community examples RVI, Sentinel1_Stats, SurfaceSoilMoisture, DynamicLandCoverMapping
and RandomForest-ForestFire (their Sentinel-1 parts), the openEO Platform Basics notebook and
the openeo client's documentation (property filters, ard_normalized_radar_backscatter). Run
through the official client against the shared server, unchanged but for URL, login and
extent; values checked with numpy on the sample's files, the angles computed here from the
geometry the collection publishes (`terracube:synthetic`) and the terrain file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

WEST, NORTH, PIXEL = 678000.0, 5153520.0, 10.0  # the sample's 10 m grid (EPSG:32632)
# Inside the sample, in longitude/latitude as the notebooks give extents (Sentinel1_Stats's own
# extent lies in the valley already).
LONLAT_BOX = {"west": 11.3409, "east": 11.353779, "south": 46.48772, "north": 46.493924,
              "crs": 4326}


@pytest.fixture(scope="module")
def connection(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


# --- the oracle: the sample's files and the published geometry -------------------------------


class Sample:
    """The sample as stored, and the angles of its documented viewing geometry."""

    def __init__(self, data_dir: Path, metadata: dict) -> None:
        self.folder = data_dir / "samples" / "sentinel1_grd"
        self.items = json.loads((self.folder / "items.json").read_text())["items"]
        self.meta = metadata["terracube:synthetic"]
        with rasterio.open(self.folder / "terrain.tif") as ds:
            heights = ds.read(1).astype(np.float64)
        d_row, d_col = np.gradient(heights)
        self.dzdx, self.dzdy = d_col / PIXEL, -d_row / PIXEL
        centres = WEST + PIXEL * (np.arange(heights.shape[1]) + 0.5)
        self.x, self.y = np.meshgrid(centres, NORTH - PIXEL * (np.arange(heights.shape[0]) + 0.5))

    def item(self, date: str) -> dict:
        (item,) = [i for i in self.items if i["datetime"].startswith(date)]
        return item

    def dates(self, start: str, end: str, orbit_state: str | None = None) -> list[str]:
        return [i["datetime"] for i in self.items if start <= i["datetime"] < end
                and orbit_state in (None, i["properties"]["sat:orbit_state"])]

    def stored(self, date: str, band: str) -> np.ndarray:
        with rasterio.open(self.folder / self.item(date)["assets"][band]) as ds:
            return ds.read(1).astype(np.float64)

    def angles(self, date: str) -> tuple[np.ndarray, np.ndarray]:
        """Ellipsoid and local incidence angles (radians) over the whole sample."""
        state = self.item(date)["properties"]["sat:orbit_state"]
        (orbit,) = [o for o in self.meta["orbits"] if o["sat:orbit_state"] == state]
        phi = np.radians(orbit["look_azimuth"])
        centre = self.meta["scene_centre"]
        along = (self.x - centre["x"]) * np.sin(phi) + (self.y - centre["y"]) * np.cos(phi)
        theta_e = np.radians(orbit["incidence_angle_at_centre"]
                             + self.meta["incidence_angle_gradient_per_m"] * along)
        to_sat = np.stack([-np.sin(phi) * np.sin(theta_e), -np.cos(phi) * np.sin(theta_e),
                           np.cos(theta_e)])
        normal = np.stack([-self.dzdx, -self.dzdy, np.ones_like(self.dzdx)])
        normal /= np.linalg.norm(normal, axis=0)
        return theta_e, np.arccos(np.clip((normal * to_sat).sum(axis=0), -1, 1))

    def coefficient(self, date: str, band: str, coefficient: str) -> np.ndarray:
        theta_e, theta_l = self.angles(date)
        beta0 = self.stored(date, band) / np.tan(theta_e)
        if coefficient == "sigma0-ellipsoid":
            return beta0 * np.sin(theta_e)
        assert coefficient == "gamma0-terrain"
        return np.where(theta_l < np.pi / 2, beta0 * np.tan(theta_l), np.nan)


def window(full: np.ndarray, ds: xr.Dataset) -> np.ndarray:
    """`full` (the sample's 10 m grid) at the pixels of a result's x/y labels."""
    cols = np.rint((ds.x.values - WEST) / PIXEL - 0.5).astype(int)
    rows = np.rint((NORTH - ds.y.values) / PIXEL - 0.5).astype(int)
    return full[np.ix_(rows, cols)]


@pytest.fixture(scope="module")
def sample(connection, sample_data_dir: Path) -> Sample:
    return Sample(sample_data_dir, connection.describe_collection("SENTINEL1_GRD"))


def dates_of(ds: xr.Dataset) -> list[str]:
    return [str(t)[:19] + "Z" for t in ds.t.values.astype("datetime64[s]")]


# --- the collection --------------------------------------------------------------------------


def test_collection_metadata_as_cdse_publishes_it(connection) -> None:
    """Band names, summaries and properties the programs rely on."""
    assert "SENTINEL1_GRD" in connection.list_collection_ids()
    meta = connection.describe_collection("SENTINEL1_GRD")
    # CDSE lists HV and HH too; only VV and VH exist here (and over Europe), and the listing
    # says what a load without `bands` returns
    assert meta["cube:dimensions"]["bands"]["values"] == ["VV", "VH"]
    assert [b["name"] for b in meta["summaries"]["eo:bands"]] == ["VV", "VH"]
    summaries = meta["summaries"]
    assert summaries["sat:orbit_state"] == ["ascending", "descending"]
    assert summaries["sar:instrument_mode"] == ["IW"] and summaries["polarization"] == ["DV"]
    queryables = connection.get("/collections/SENTINEL1_GRD/queryables").json()
    assert {"sat:orbit_state", "sat:relative_orbit", "polarization"} <= set(
        queryables["properties"])
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        connection.load_collection("SENTINEL1_GRD", bands=["HH"], fetch_metadata=False
                                   ).download(format="netCDF")
    assert info.value.code == "ProcessParameterInvalid" and "VV+VH" in info.value.message


# --- CDSE notebook-samples: openeo/Radar_ARD.ipynb --------------------------------------------


def test_radar_ard(connection, sample: Sample, tmp_path: Path) -> None:
    """Radar_ARD.ipynb: ascending passes only (Sentinel Hub's "ASCENDING"), sigma0 on the
    ellipsoid with COPERNICUS_30, to dB with log(base=10); its own extent (Bolzano) holds the
    whole sample, the dates are 2022's."""
    spatial_extent = {
        "west": 11.293602,
        "east": 11.382866,
        "south": 46.460163,
        "north": 46.514768,
        "crs": "EPSG:4326",
    }

    s1 = connection.load_collection(
        "SENTINEL1_GRD",
        spatial_extent=spatial_extent,
        bands=["VV", "VH"],
        temporal_extent=["2022-06-01", "2022-06-08"],
        properties={"sat:orbit_state": lambda od: od == "ASCENDING"},
    )
    s1_scatter = s1.sar_backscatter(
        coefficient="sigma0-ellipsoid", elevation_model="COPERNICUS_30"
    )
    s1bs = s1_scatter.apply(lambda x: 10 * x.log(base=10))
    s1bs.download(tmp_path / "sar_bs.nc")

    S1_ard = xr.open_dataset(tmp_path / "sar_bs.nc")
    (date,) = sample.dates("2022-06-01", "2022-06-08", "ascending")
    assert dates_of(S1_ard) == [date]
    assert S1_ard.VV.shape == (1, 384, 384)
    for band in ("VV", "VH"):
        expected = 10 * np.log10(window(sample.coefficient(date, band, "sigma0-ellipsoid"),
                                        S1_ard))
        np.testing.assert_allclose(S1_ard[band][0].values, expected, atol=2e-4)
    # Water is dark, the town bright (the Sentinel-2 sample's river and town).
    assert -30 < float(np.nanmedian(S1_ard.VV[0].values)) < 0


def test_sar_backscatter_refuses_what_it_cannot_compute(connection) -> None:
    """Optical data, contributing_area, another DEM: openEO errors naming what to do."""
    s2 = connection.load_collection("SENTINEL2_L2A", spatial_extent=LONLAT_BOX, bands=["B04"],
                                    temporal_extent=["2022-07-02", "2022-07-03"])
    s1 = connection.load_collection("SENTINEL1_GRD", spatial_extent=LONLAT_BOX,
                                    temporal_extent=["2022-06-01", "2022-06-03"])
    cases = [
        (s2.sar_backscatter(coefficient="sigma0-ellipsoid"), "ProcessParameterInvalid",
         "SENTINEL1_GRD"),
        (s1.sar_backscatter(contributing_area=True), "ProcessParameterInvalid",
         "contributing_area"),
        (s1.sar_backscatter(elevation_model="SRTM"), "DigitalElevationModelInvalid",
         "COPERNICUS_30"),
        (s1.process("sar_backscatter", data=s1, coefficient="sigma0"), "ProcessParameterInvalid",
         "gamma0-terrain"),
    ]
    for cube, code, hint in cases:
        with pytest.raises(openeo.rest.OpenEoApiError) as info:
            cube.download(format="netCDF")
        assert info.value.code == code and hint in info.value.message, info.value.message
        assert info.value.http_status_code == 400


# --- openeo-community-examples -----------------------------------------------------------------


def test_rvi(connection, sample: Sample, tmp_path: Path) -> None:
    """python/RVI/RVI.ipynb: RVI = 4 VH / (VV + VH) of sigma0 over three months (both
    orbits), downloaded as netCDF and read as the notebook reads it (variable "var")."""
    s1 = connection.load_collection(
        "SENTINEL1_GRD",
        temporal_extent=["2022-05-03", "2022-08-03"],
        spatial_extent=LONLAT_BOX,
        bands=["VV", "VH"],
    )
    s1 = s1.sar_backscatter(coefficient="sigma0-ellipsoid")
    rvi = (4 * s1.band("VH")) / (s1.band("VV") + s1.band("VH"))
    rvi.download(tmp_path / "RVI.nc")

    ds = xr.load_dataset(tmp_path / "RVI.nc")
    data = ds[["var"]].to_array(dim="bands")
    dates = sample.dates("2022-05-03", "2022-08-03")
    assert dates_of(ds) == dates and len(dates) == 15
    for k in (0, 7, 14):
        vv = sample.coefficient(dates[k], "VV", "sigma0-ellipsoid")
        vh = sample.coefficient(dates[k], "VH", "sigma0-ellipsoid")
        np.testing.assert_allclose(data[0, k].values, window(4 * vh / (vv + vh), ds),
                                   rtol=1e-5)
    series = data.mean(dim=("x", "y"))[0]
    assert series.shape == (15,) and bool(((series > 0) & (series < 1)).all())


def test_sentinel1_stats(connection, sample: Sample, tmp_path: Path) -> None:
    """python/Sentinel1_Stats: the raw cube downloaded, then min/max/mean/sd/quantiles over
    time with apply_dimension(target_dimension="bands") and rename_labels from the client's
    band names, as a batch job; its own extent (Bolzano), 2022's dates."""
    from openeo.processes import ProcessBuilder, array_concat, array_create

    spatial_extent = {
        "west": 11.3409,
        "east": 11.353779,
        "south": 46.48772,
        "north": 46.493924,
        "crs": 4326,
    }
    temporal_extent = ["2022-05-01", "2022-07-01"]
    s1_raw = connection.load_collection(
        collection_id="SENTINEL1_GRD",
        temporal_extent=temporal_extent,
        spatial_extent=spatial_extent,
        bands=["VH", "VV"],
    )
    s1_raw.download(tmp_path / "s1sar-raw.nc")
    ds = xarray_load(tmp_path / "s1sar-raw.nc")
    dates = sample.dates("2022-05-01", "2022-07-01")
    assert dates_of(ds) == dates
    np.testing.assert_allclose(ds["VH"].isel(t=0).values,
                               window(sample.stored(dates[0], "VH"), ds), rtol=1e-6)

    def get_stats(data: ProcessBuilder) -> ProcessBuilder:
        scalar_stats = array_create([data.min(), data.max(), data.mean(), data.sd()])
        quantile_stats = data.quantiles([0.1, 0.5, 0.9])
        return array_concat(array1=scalar_stats, array2=quantile_stats)

    s1_stats = s1_raw.apply_dimension(process=get_stats, dimension="t",
                                      target_dimension="bands")
    s1_stats = s1_stats.rename_labels(
        "bands",
        [f"{b}_{s}" for b in s1_raw.metadata.band_names
         for s in ["min", "max", "mean", "sd", "q10", "q50", "q90"]],
    )
    job = s1_stats.execute_batch(title="Sentinel1_GRD_Statistics",
                                 outputfile=tmp_path / "S1grd-stats.nc", max_poll_interval=0.2)
    assert job.get_results().get_assets()[0].href
    stats = xarray_load(tmp_path / "S1grd-stats.nc")
    for band in ("VH", "VV"):
        series = np.stack([window(sample.stored(d, band), stats) for d in dates])
        expected = {"min": series.min(0), "max": series.max(0), "mean": series.mean(0),
                    "sd": series.std(0, ddof=1), "q10": np.quantile(series, 0.1, axis=0),
                    "q50": np.quantile(series, 0.5, axis=0),
                    "q90": np.quantile(series, 0.9, axis=0)}
        for name, values in expected.items():
            np.testing.assert_allclose(stats[f"{band}_{name}"].values.squeeze(), values,
                                       rtol=1e-4, err_msg=f"{band}_{name}")


def xarray_load(path: Path) -> xr.Dataset:
    ds = xr.load_dataset(path)
    return ds.drop_vars([v for v in ("crs", "spatial_ref") if v in ds.variables])


def test_surface_soil_moisture(connection, sample: Sample, tmp_path: Path) -> None:
    """python/SurfaceSoilMoisture: change detection of sigma0 VV between the driest and the
    wettest pass of a reference period, masked where the mean backscatter is very bright or
    dark, as a batch job; the reference is the season, the current date September's."""
    import openeo.processes

    spatial_extent = LONLAT_BOX
    s1_ref = connection.load_collection(
        "SENTINEL1_GRD",
        temporal_extent=["2022-04-01", "2022-09-01"],
        spatial_extent=spatial_extent,
        bands=["VV"],
    )
    s1_ref = s1_ref.sar_backscatter(coefficient="sigma0-ellipsoid")
    s1_cur = connection.load_collection(
        "SENTINEL1_GRD",
        temporal_extent=["2022-09-01", "2022-09-28"],
        spatial_extent=spatial_extent,
        bands=["VV"],
    )
    s1_cur = s1_cur.sar_backscatter(coefficient="sigma0-ellipsoid")
    s1_cur = s1_cur.reduce_dimension(dimension="t", reducer="last")
    dry_ref = s1_ref.reduce_dimension(dimension="t", reducer="min")
    wet_ref = s1_ref.reduce_dimension(dimension="t", reducer="max")
    SSM = (s1_cur - dry_ref) / (wet_ref - dry_ref)
    average_ref = s1_ref.reduce_dimension(dimension="t", reducer="mean")
    average_ref = average_ref.apply(process=lambda data: 10 * openeo.processes.log(data, base=10))
    VV = average_ref.band("VV")
    mask = (VV > -6) | (VV < -17)
    SSM = SSM.mask(mask)
    SSM.execute_batch(title="Surface Soil Moisture Australia",
                      outputfile=tmp_path / "SoilMoisture.nc", max_poll_interval=0.2)

    ds = xr.load_dataset(tmp_path / "SoilMoisture.nc")
    data = ds[["VV"]].to_array(dim="bands")
    ref = np.stack([sample.coefficient(d, "VV", "sigma0-ellipsoid")
                    for d in sample.dates("2022-04-01", "2022-09-01")])
    cur = sample.coefficient(sample.dates("2022-09-01", "2022-09-28")[-1], "VV",
                             "sigma0-ellipsoid")
    ssm = (cur - ref.min(0)) / (ref.max(0) - ref.min(0))
    mean_db = 10 * np.log10(ref.mean(0))
    ssm[(mean_db > -6) | (mean_db < -17)] = np.nan
    np.testing.assert_allclose(data[0].values.squeeze(), window(ssm, ds), rtol=1e-4,
                               atol=1e-6)
    assert np.isfinite(data[0].values).mean() > 0.5


def test_dynamic_land_cover_sentinel1_composite(connection, sample: Sample,
                                                tmp_path: Path) -> None:
    """python/DynamicLandCoverMapping's sentinel1_composite (the same steps as
    RandomForest-ForestFire's s1_features): ascending passes by collection_property, sigma0,
    a VH/VV ratio and both bands in dB shifted by 30 with apply_dimension(bands) and
    array_create, labels renamed from the client's metadata, scaled to 0..30000, dekad
    medians gap-filled with array_interpolate_linear."""
    from openeo.processes import array_create

    s1 = connection.load_collection(
        "SENTINEL1_GRD", temporal_extent=["2022-05-01", "2022-06-30"], bands=["VH", "VV"],
        spatial_extent=LONLAT_BOX,
        properties=[openeo.collection_property("sat:orbit_state") == "ascending"])
    s1 = s1.sar_backscatter(coefficient="sigma0-ellipsoid")
    s1 = s1.apply_dimension(
        dimension="bands",
        process=lambda x: array_create([
            30.0 * x[0] / x[1],
            30.0 + 10.0 * x[0].log(base=10),
            30.0 + 10.0 * x[1].log(base=10),
        ]),
    )
    s1 = s1.rename_labels("bands", ["ratio"] + s1.metadata.band_names)
    s1 = s1.linear_scale_range(0, 30, 0, 30000)
    s1_dekad = s1.aggregate_temporal_period(period="dekad", reducer="median")
    s1_dekad = s1_dekad.apply_dimension(dimension="t", process="array_interpolate_linear")
    s1_dekad.download(tmp_path / "s1_dekad.nc")

    ds = xarray_load(tmp_path / "s1_dekad.nc")
    assert [str(t)[:10] for t in ds.t.values] == [
        "2022-05-01", "2022-05-11", "2022-05-21", "2022-06-01", "2022-06-11", "2022-06-21"]
    dates = sample.dates("2022-05-01", "2022-07-01", "ascending")
    assert [d[:10] for d in dates] == ["2022-05-08", "2022-05-20", "2022-06-01", "2022-06-13",
                                       "2022-06-25"]

    def expected(date: str) -> dict[str, np.ndarray]:
        vh = window(sample.coefficient(date, "VH", "sigma0-ellipsoid"), ds)
        vv = window(sample.coefficient(date, "VV", "sigma0-ellipsoid"), ds)
        features = {"ratio": 30.0 * vh / vv, "VH": 30.0 + 10.0 * np.log10(vh),
                    "VV": 30.0 + 10.0 * np.log10(vv)}
        return {k: np.clip(v, 0, 30) * 1000 for k, v in features.items()}

    first, second, third = (expected(d) for d in dates[:3])
    for band in ("ratio", "VH", "VV"):
        np.testing.assert_allclose(ds[band][0].values, first[band], rtol=1e-4)
        np.testing.assert_allclose(ds[band][1].values, second[band], rtol=1e-4)
        # the empty dekad of 21-31 May lies halfway between its neighbours
        np.testing.assert_allclose(ds[band][2].values, (second[band] + third[band]) / 2,
                                   rtol=1e-4)


def test_platform_basics_min_time(connection, sample: Sample, tmp_path: Path) -> None:
    """openEO Platform Basics: the minimum over a month of VV and VH (raw, gamma0 on the
    ellipsoid); the valley instead of Vienna, April 2022 instead of March 2017."""
    datacube = connection.load_collection(
        "SENTINEL1_GRD",
        spatial_extent=LONLAT_BOX,
        temporal_extent=["2022-04-01", "2022-05-01"],
        bands=["VV", "VH"],
    )
    datacube = datacube.min_time()
    datacube.download(tmp_path / "min.nc")
    ds = xarray_load(tmp_path / "min.nc")
    for band in ("VV", "VH"):
        series = np.stack([window(sample.stored(d, band), ds)
                           for d in sample.dates("2022-04-01", "2022-05-01")])
        np.testing.assert_allclose(ds[band].values.squeeze(), series.min(0), rtol=1e-6)


# --- openeo-python-client documentation -----------------------------------------------------


def test_property_filters_of_the_client_docs(connection, sample: Sample, tmp_path: Path) -> None:
    """data_access.rst filters SAR data on the relative orbit with `properties` (adapted: this
    sample's descending orbit is 168); flood_sar_udf filters polarization "DV"."""
    cube = connection.load_collection(
        "SENTINEL1_GRD", spatial_extent=LONLAT_BOX, temporal_extent=["2022-06-01", "2022-07-01"],
        bands=["VV"],
        properties={
            "sat:relative_orbit": lambda x: x == 168,
        },
    )
    cube.download(tmp_path / "orbit.nc")
    with xr.open_dataset(tmp_path / "orbit.nc") as ds:
        assert dates_of(ds) == sample.dates("2022-06-01", "2022-07-01", "descending")
    dv = connection.load_collection(
        "SENTINEL1_GRD", spatial_extent=LONLAT_BOX, temporal_extent=["2022-06-01", "2022-06-10"],
        bands=["VV"], properties={"polarization": lambda p: p == "DV"})
    dv.download(tmp_path / "dv.nc")
    with xr.open_dataset(tmp_path / "dv.nc") as ds:
        assert dates_of(ds) == sample.dates("2022-06-01", "2022-06-10")


def test_ard_normalized_radar_backscatter(connection, sample: Sample, tmp_path: Path) -> None:
    """cookbook/ard.rst: CARD4L backscatter as a batch job, the assets downloaded: gamma0 on
    the terrain with the data mask and the local incidence angle."""
    s1grd = (connection.load_collection("SENTINEL1_GRD", bands=["VH", "VV"])
             .filter_bbox(west=11.3409, east=11.353779, north=46.493924, south=46.48772)
             .filter_temporal(extent=["2022-06-01", "2022-06-02"]))
    job = s1grd.ard_normalized_radar_backscatter().execute_batch(max_poll_interval=0.2)
    paths = [asset.download(tmp_path / asset.name) for asset in job.get_results().get_assets()]
    (nc,) = [p for p in paths if str(p).endswith((".nc", ".tif", ".tiff"))]
    (date,) = sample.dates("2022-06-01", "2022-06-02")
    theta_e, theta_l = sample.angles(date)
    with rasterio.open(nc) as src:
        names = list(src.descriptions)
        values = {name: src.read(k + 1) for k, name in enumerate(names)}
        xs = src.transform.c + PIXEL * (np.arange(src.width) + 0.5)
        ys = src.transform.f - PIXEL * (np.arange(src.height) + 0.5)
    assert names == ["VH", "VV", "mask", "local_incidence_angle"]
    grid = xr.Dataset(coords={"x": xs, "y": ys})
    for band in ("VH", "VV"):
        np.testing.assert_allclose(values[band], window(sample.coefficient(date, band,
                                                                           "gamma0-terrain"),
                                                        grid), rtol=2e-4, equal_nan=True)
    np.testing.assert_allclose(values["local_incidence_angle"],
                               window(np.degrees(theta_l), grid), atol=1e-3)
    assert set(np.unique(values["mask"])) <= {0.0, 1.0}


def test_sentinel1_stats_as_a_public_udp(connection, sample: Sample, tmp_path: Path) -> None:
    """python/Sentinel1_Stats, second part: the statistics of sigma0 as a public
    user-defined process with temporal and spatial extent parameters (defaults: the valley,
    2022), run by its URL with datacube_from_process (the notebook's `public_url`: the
    process's canonical link)."""
    from openeo.api.process import Parameter
    from openeo.processes import array_concat, array_create

    temporal_extent = Parameter(
        name="temporal_extent",
        description="The time window to calculate the stats for.",
        schema={"type": "array", "subtype": "temporal-interval"},
        default=["2022-05-01", "2022-07-30"],
    )
    spatial_extent = Parameter(
        name="spatial_extent",
        description="The spatial extent to calculate the stats for.",
        schema={"type": "object", "subtype": "bounding-box"},
        default={"west": 11.34, "south": 46.487, "east": 11.35, "north": 46.492},
    )
    s1_raw = connection.load_collection(
        collection_id="SENTINEL1_GRD",
        temporal_extent=temporal_extent,
        spatial_extent=spatial_extent,
        bands=["VH", "VV"],
    )
    s1_raw = s1_raw.sar_backscatter(coefficient="sigma0-ellipsoid")
    s1_stats = s1_raw.apply_dimension(
        process=lambda data: array_concat(
            array1=array_create([data.min(), data.max(), data.mean(), data.sd()]),
            array2=data.quantiles([0.1, 0.5, 0.9]),
        ),
        dimension="t",
        target_dimension="bands",
    )
    s1_stats = s1_stats.rename_labels(
        "bands",
        [f"{b}_{s}" for b in s1_stats.metadata.band_names
         for s in ["min", "max", "mean", "sd", "q10", "q50", "q90"]],
    )
    udp_sar = connection.save_user_defined_process(
        user_defined_process_id="s1_stats",
        process_graph=s1_stats,
        parameters=[temporal_extent, spatial_extent],
        summary="S1 SAR stats",
        description="Calculate S1 SAR stats (min, max, mean, sd, q10, q50, q90).",
        public=True,
    )
    (public_url,) = [link["href"] for link in udp_sar.describe()["links"]
                     if link["rel"] == "canonical"]
    sar = connection.datacube_from_process(
        "s1_stats",
        namespace=public_url,
        temporal_extent=["2022-05-01", "2022-07-30"],
        spatial_extent={"west": 11.34, "south": 46.487, "east": 11.35, "north": 46.492},
    )
    sar.download(tmp_path / "sar_udp.nc")
    ds = xarray_load(tmp_path / "sar_udp.nc")
    series = np.stack([window(sample.coefficient(d, "VV", "sigma0-ellipsoid"), ds)
                       for d in sample.dates("2022-05-01", "2022-07-30")])
    np.testing.assert_allclose(ds["VV_mean"].values.squeeze(), series.mean(0), rtol=1e-4)
    np.testing.assert_allclose(ds["VV_q90"].values.squeeze(), np.quantile(series, 0.9, axis=0),
                               rtol=1e-4)


def test_rvi_with_compute_indices(connection, sample: Sample, tmp_path: Path) -> None:
    """python/RVI/RVI.ipynb, second part: the client's spectral indices (DpRVIVV) of the
    sigma0 cube."""
    from openeo.extra.spectral_indices import compute_indices

    s1 = connection.load_collection(
        "SENTINEL1_GRD",
        temporal_extent=["2022-05-03", "2022-08-03"],
        spatial_extent=LONLAT_BOX,
        bands=["VV", "VH"],
    )
    s1 = s1.sar_backscatter(coefficient="sigma0-ellipsoid")
    indices = compute_indices(
        s1,
        indices=["DpRVIVV"],
    )
    indices.download(tmp_path / "RVI_direct.nc")
    ds_indices = xr.load_dataset(tmp_path / "RVI_direct.nc")
    data = ds_indices[["DpRVIVV"]].to_array(dim="bands")
    date = sample.dates("2022-05-03", "2022-08-03")[3]
    vv = window(sample.coefficient(date, "VV", "sigma0-ellipsoid"), ds_indices)
    vh = window(sample.coefficient(date, "VH", "sigma0-ellipsoid"), ds_indices)
    # the client's awesome-spectral-indices: DpRVIVV = 4 VH / (VV + VH), the notebook's RVI
    np.testing.assert_allclose(data[0, 3].values, 4 * vh / (vv + vh), rtol=1e-5)


def test_oil_spill_mapping(connection, sample: Sample, tmp_path: Path) -> None:
    """python/OilSpill: sigma0 VV in dB darker than its 601 x 601 pixel mean minus 3.5 dB
    (apply_kernel), as a batch job; the area of interest is a polygon around the valley,
    the date a pass of August 2022. The kernel is larger than the valley, so its zero border
    weighs in everywhere (the notebook crops 600 pixels off each edge of a larger scene); the
    calm water of the lake and the river is flagged all the same."""
    import openeo.processes

    aoi = {
        "type": "Polygon",
        "coordinates": [
            [
                [11.31, 46.52],
                [11.31, 46.47],
                [11.38, 46.47],
                [11.38, 46.52],
                [11.31, 46.52],
            ]
        ],
    }
    s1_image = connection.load_collection(
        "SENTINEL1_GRD",
        temporal_extent=["2022-08-09", "2022-08-13"],
        spatial_extent=aoi,
        bands=["VV"],
    )
    s1_image = s1_image.sar_backscatter(coefficient="sigma0-ellipsoid")
    s1_image = s1_image.apply(process=lambda data: 10 * openeo.processes.log(data, base=10))
    filter_window = np.ones([601, 601])
    factor = 1 / np.prod(filter_window.shape)
    thresholds = s1_image.apply_kernel(kernel=filter_window, factor=factor)
    threshold_shift = 3.5
    thresholds = thresholds - threshold_shift
    thresholds = thresholds.rename_labels(dimension="bands", target=["threshold"])
    s1_image = s1_image.rename_labels(dimension="bands", target=["amplitude"])
    s1_image = s1_image.merge_cubes(thresholds)
    oil_spill = s1_image.band("amplitude") < s1_image.band("threshold")
    oil_spill.execute_batch(title="Oil Spill Data", outputfile=tmp_path / "OilSpill.nc",
                            max_poll_interval=0.2)

    oilspill = xr.load_dataset(tmp_path / "OilSpill.nc")
    data = oilspill[["var"]].to_array(dim="bands")
    (date,) = sample.dates("2022-08-09", "2022-08-13")
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(sample.coefficient(date, "VV", "sigma0-ellipsoid"))
    import scipy.ndimage

    valid = np.where(np.isfinite(db), db, 0.0)
    mean = scipy.ndimage.uniform_filter1d(valid, 601, axis=0, mode="constant")
    mean = scipy.ndimage.uniform_filter1d(mean, 601, axis=1, mode="constant")
    expected = window(db < mean - threshold_shift, oilspill)
    got = data.squeeze().values
    assert got.shape == expected.shape == (384, 384)
    assert (got.astype(bool) == expected).mean() > 0.999
    water = sample_landscape_water(oilspill)
    assert got[water].mean() > 0.95 and got[water].mean() > got[~water].mean()


def sample_landscape_water(ds: xr.Dataset) -> np.ndarray:
    from terracube.catalog.samples.sentinel2_synthetic import _WATER, _build_landscape

    return window(_build_landscape().cover == _WATER, ds)


def test_basic_sentinel_merge(connection, sample: Sample, tmp_path: Path) -> None:
    """python/BasicSentinelMerge: Sentinel-2 (SCL dilation mask) and Sentinel-1 (sigma0, as
    SENTINEL1_GRD_SIGMA0 is not there) as dekad medians gap-filled by linear interpolation,
    merged, scaled by a UDF in apply_neighborhood, cut to a box and run as a batch job; the
    box in the valley, the notebook's dates."""
    c = connection

    scl = c.load_collection(
        "SENTINEL2_L2A",
        temporal_extent=["2022-06-04", "2022-08-04"],
        bands=["SCL"],
        max_cloud_cover=95,
    )
    cloud_mask = scl.process(
        "to_scl_dilation_mask",
        data=scl,
        kernel1_size=17, kernel2_size=77,
        mask1_values=[2, 4, 5, 6, 7],
        mask2_values=[3, 8, 9, 10, 11],
        erosion_kernel_size=3)
    sentinel2 = c.load_collection(
        "SENTINEL2_L2A",
        temporal_extent=["2022-06-04", "2022-08-04"],
        bands=["B02", "B03", "B04"],
        max_cloud_cover=95,
    )
    sentinel2 = sentinel2.mask(cloud_mask)
    sentinel2 = sentinel2.aggregate_temporal_period(
        "dekad", reducer="median"
    ).apply_dimension(dimension="t", process="array_interpolate_linear")

    S1_collection = "SENTINEL1_GRD"
    if "SENTINEL1_GRD_SIGMA0" in c.list_collection_ids():
        S1_collection = "SENTINEL1_GRD_SIGMA0"
    sentinel1 = c.load_collection(
        S1_collection, temporal_extent=["2022-06-04", "2022-08-04"], bands=["VV", "VH"]
    )
    if S1_collection == "SENTINEL1_GRD":
        sentinel1 = sentinel1.sar_backscatter(
            coefficient="sigma0-ellipsoid",
            local_incidence_angle=False,
            elevation_model="COPERNICUS_30",
        )
    sentinel1 = sentinel1.aggregate_temporal_period(
        "dekad", reducer="median"
    ).apply_dimension(dimension="t", process="array_interpolate_linear")

    merged = sentinel2.merge_cubes(sentinel1)
    my_udf = openeo.UDF(
        """
from openeo.udf import XarrayDataCube
from openeo.udf.debug import inspect

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    inspect(array,level="ERROR",message="inspecting input cube")
    array.values = 0.0001 * array.values
    return cube
"""
    )
    fused = merged.apply_neighborhood(
        my_udf,
        size=[
            {"dimension": "x", "value": 112, "unit": "px"},
            {"dimension": "y", "value": 112, "unit": "px"},
        ],
        overlap=[
            {"dimension": "x", "value": 8, "unit": "px"},
            {"dimension": "y", "value": 8, "unit": "px"},
        ],
    )
    spatial_extent = LONLAT_BOX
    job = fused.filter_bbox(spatial_extent).execute_batch(
        tmp_path / "result.nc", title="Sentinel composite", filename_prefix="merged_cube",
        max_poll_interval=0.2,
    )
    assert job.status() == "finished"

    ds = xarray_load(tmp_path / "result.nc")
    assert [v for v in ds.data_vars] == ["B02", "B03", "B04", "VV", "VH"]
    labels = [str(t)[:10] for t in ds.t.values]
    assert labels == ["2022-06-01", "2022-06-11", "2022-06-21", "2022-07-01", "2022-07-11",
                      "2022-07-21", "2022-08-01"]
    # Sentinel-1: one pass or more per dekad; the dekad median of sigma0, times 0.0001.
    for k, (start, end) in enumerate([("2022-06-04", "2022-06-11"), ("2022-06-11", "2022-06-21")]):
        series = np.stack([window(sample.coefficient(d, "VV", "sigma0-ellipsoid"), ds)
                           for d in sample.dates(start, end)])
        np.testing.assert_allclose(ds["VV"][k].values, 0.0001 * np.median(series, axis=0),
                                   rtol=1e-4)
    # (the dilated cloud mask leaves some dekads without a clear view at either end)
    assert np.isfinite(ds["B04"].values).mean() > 0.5
    assert 0 < float(np.nanmedian(ds["B04"].values)) < 0.3  # reflectance after the UDF


def test_openeo_org_ard_page(connection, sample: Sample, tmp_path: Path) -> None:
    """openeo.org's ARD documentation: ard_normalized_radar_backscatter of one day
    (temporal extent from a date to the same date), batch job, results downloaded."""
    s1grd = connection.load_collection(
        'SENTINEL1_GRD',
        spatial_extent={'west': 11.3409, 'east': 11.353779, 'south': 46.48772,
                        'north': 46.493924},
        temporal_extent=['2022-06-05', '2022-06-05'],
        bands=['VH', 'VV']
    )
    normalized = s1grd.ard_normalized_radar_backscatter()
    job = normalized.execute_batch(max_poll_interval=0.2)
    job.get_results().download_files(tmp_path / "output")
    (tif,) = [p for p in (tmp_path / "output").iterdir() if p.suffix in (".tif", ".tiff")]
    (date,) = sample.dates("2022-06-05", "2022-06-06")
    with rasterio.open(tif) as src:
        assert list(src.descriptions) == ["VH", "VV", "mask", "local_incidence_angle"]
        vv = src.read(2)
        grid = xr.Dataset(coords={"x": src.transform.c + PIXEL * (np.arange(src.width) + 0.5),
                                  "y": src.transform.f - PIXEL * (np.arange(src.height) + 0.5)})
    np.testing.assert_allclose(vv, window(sample.coefficient(date, "VV", "gamma0-terrain"),
                                          grid), rtol=2e-4, equal_nan=True)


def test_forest_fire_s1_features(connection, sample: Sample, tmp_path: Path) -> None:
    """python/RandomForest-ForestFire's eo_extractor.s1_features as written (sigma0, ratio and
    dB bands, scaled, the median over time); a box in the valley for the training AOI."""
    from openeo.processes import array_create

    def s1_features(connection, date, aoi, reducer):
        s1_cube = connection.load_collection(
            "SENTINEL1_GRD",
            temporal_extent=date,
            spatial_extent=aoi,
            bands=["VH", "VV"]
        )
        s1_cube = s1_cube.sar_backscatter(coefficient="sigma0-ellipsoid")
        s1_cube = s1_cube.apply_dimension(
            dimension="bands",
            process=lambda x: array_create(
                [
                    30.0 * x[0] / x[1],  # Ratio of VH to VV
                    30.0 + 10.0 * x[0].log(base=10),  # Log-transformed VH
                    30.0 + 10.0 * x[1].log(base=10),  # Log-transformed VV
                ]
            ),
        )
        s1_cube = s1_cube.rename_labels("bands", ["ratio"] + s1_cube.metadata.band_names)
        s1_cube = s1_cube.linear_scale_range(0, 30, 0, 30000)
        return s1_cube.reduce_dimension(reducer=reducer, dimension="t")

    training_date = ["2022-08-15", "2022-09-30"]
    s1_feature_cube = s1_features(connection, training_date, LONLAT_BOX, "median")
    s1_feature_cube.download(tmp_path / "s1_features.nc")
    ds = xarray_load(tmp_path / "s1_features.nc")
    dates = sample.dates("2022-08-15", "2022-09-30")
    vh = np.stack([window(sample.coefficient(d, "VH", "sigma0-ellipsoid"), ds) for d in dates])
    vv = np.stack([window(sample.coefficient(d, "VV", "sigma0-ellipsoid"), ds) for d in dates])
    scaled = {"ratio": 30.0 * vh / vv, "VH": 30.0 + 10.0 * np.log10(vh),
              "VV": 30.0 + 10.0 * np.log10(vv)}
    for band, values in scaled.items():
        expected = np.median(np.clip(values, 0, 30) * 1000, axis=0)
        np.testing.assert_allclose(ds[band].values.squeeze(), expected, rtol=1e-4)


def test_flood_sar(connection, sample: Sample, tmp_path: Path) -> None:
    """python/FloodNDWI/flood_SAR.ipynb: descending passes before and after an event, sigma0
    medians over time, their ratio (merge_cubes with a divide overlap resolver, made by the
    client's `/`), flooded where it drops below -3 dB, as a batch job whose results are
    downloaded; the valley and 2022 dates (late August, late September)."""
    import openeo.processes

    spatial_extent = LONLAT_BOX
    before_cube = connection.load_collection(
                            "SENTINEL1_GRD",
                            spatial_extent=spatial_extent,
                            temporal_extent=["2022-08-25", "2022-09-09"],
                            bands=["VV"],
                            properties={"sat:orbit_state": lambda x: x == "descending"})
    before_cube = before_cube.sar_backscatter(coefficient="sigma0-ellipsoid")
    before_median = before_cube.median_time()
    after_cube = connection.load_collection(
                            "SENTINEL1_GRD",
                            spatial_extent=spatial_extent,
                            temporal_extent=["2022-09-11", "2022-09-25"],
                            bands=["VV"],
                            properties={"sat:orbit_state": lambda x: x == "descending"})
    after_cube = after_cube.sar_backscatter(coefficient="sigma0-ellipsoid")
    after_median = after_cube.median_time()
    ratio = after_median / before_median
    threshold = -3
    flooded = ratio.apply(
        lambda x: openeo.processes.if_(
            10 * openeo.processes.log(x, base=10) < threshold,
            1,  # Flooded
            0   # Not flooded
        )
    )
    openeo_job = flooded.create_job(title="Flood Detection with Sentinel-1")
    openeo_job.start_and_wait(max_poll_interval=0.2)
    results = openeo_job.get_results()
    paths = results.download_files(tmp_path / "flooded_region")

    (tif,) = [p for p in paths if p.suffix in (".tif", ".tiff")]
    before = np.stack([sample.coefficient(d, "VV", "sigma0-ellipsoid")
                       for d in sample.dates("2022-08-25", "2022-09-09", "descending")])
    after = np.stack([sample.coefficient(d, "VV", "sigma0-ellipsoid")
                      for d in sample.dates("2022-09-11", "2022-09-25", "descending")])
    with np.errstate(divide="ignore", invalid="ignore"):
        change_db = 10 * np.log10(np.median(after, 0) / np.median(before, 0))
    with rasterio.open(tif) as src:
        got = src.read(1)
        grid = xr.Dataset(coords={"x": src.transform.c + PIXEL * (np.arange(src.width) + 0.5),
                                  "y": src.transform.f - PIXEL * (np.arange(src.height) + 0.5)})
    expected = window(change_db, grid)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[finite], (expected[finite] < threshold).astype(got.dtype))
    assert 0 < got[finite].mean() < 0.5  # speckle alone: some pixels, not most


def test_openeo_org_full_example(connection, sample: Sample, tmp_path: Path) -> None:
    """openeo.org "Getting started with Python", Full Example: a monthly RGB composite of
    Sentinel-1 VV (Google Earth Engine's COPERNICUS/S1_GRD there, SENTINEL1_GRD here; its GEE
    format GTIFF-THUMB is GTiff here), three months of 2022 over the valley."""
    datacube = connection.load_collection("SENTINEL1_GRD",
                                          spatial_extent=LONLAT_BOX,
                                          temporal_extent=["2022-04-01", "2022-07-01"],
                                          bands=["VV"])
    march = datacube.filter_temporal("2022-04-01", "2022-05-01")
    april = datacube.filter_temporal("2022-05-01", "2022-06-01")
    may = datacube.filter_temporal("2022-06-01", "2022-07-01")
    mean_march = march.mean_time()
    mean_april = april.mean_time()
    mean_may = may.mean_time()
    R_band = mean_march.rename_labels(dimension="bands", target=["R"])  # noqa: N806
    G_band = mean_april.rename_labels(dimension="bands", target=["G"])  # noqa: N806
    B_band = mean_may.rename_labels(dimension="bands", target=["B"])  # noqa: N806
    RG = R_band.merge_cubes(G_band)  # noqa: N806
    RGB = RG.merge_cubes(B_band)  # noqa: N806
    RGB = RGB.save_result(format="GTiff")  # noqa: N806
    job = RGB.create_job()
    job.start_and_wait(max_poll_interval=0.2).download_results(tmp_path / "rgb.tif")

    with rasterio.open(tmp_path / "rgb.tif") as src:
        assert src.descriptions == ("R", "G", "B")
        grid = xr.Dataset(coords={"x": src.transform.c + PIXEL * (np.arange(src.width) + 0.5),
                                  "y": src.transform.f - PIXEL * (np.arange(src.height) + 0.5)})
        for k, (start, end) in enumerate([("2022-04-01", "2022-05-01"),
                                          ("2022-05-01", "2022-06-01"),
                                          ("2022-06-01", "2022-07-01")]):
            stack = np.stack([window(sample.stored(d, "VV"), grid)
                              for d in sample.dates(start, end)])
            np.testing.assert_allclose(src.read(k + 1), stack.mean(0), rtol=1e-5)
