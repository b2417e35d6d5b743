"""STAC metadata of job results: one asset per written file; the job as a STAC Collection
with one Item per file, or as one STAC Item.

`describe_asset` runs in the job process right after a file is written (it reads only the
cube's coordinates, never its values). From the stored asset descriptions and freshly signed
links, `results_collection` builds GET /jobs/{job_id}/results (a Collection whose `item` links
lead to one Item per file: `results_item` with that file; all files are collection-level assets
too, as the API requires), and `results_item` the Item a client gets by asking for
`application/geo+json` (openEO API 1.0 style: every file in one Item).
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from terracube.datacube.cube import TEMPORAL, RasterCube, datetime_labels_to_strings
from terracube.datacube.request import BBox
from terracube.engine.mlmodel import ML_MODEL_EXTENSION, MlModel
from terracube.jobs.logs import rfc3339

STAC_VERSION = "1.0.0"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
}


def describe_asset(path: Path, media_type: str, data: Any, title: str | None = None) -> dict:
    """What the results document says about one written file.

    Keys: name, type, size, and optionally proj (projection fields in the native CRS), bbox
    (lon/lat), start/end (RFC 3339), bands (names).
    """
    info: dict[str, Any] = {"name": path.name, "type": media_type,
                            "size": path.stat().st_size}
    if title:
        info["title"] = title
    if isinstance(data, RasterCube):
        info.update(_cube_extent(data))
    if isinstance(data, MlModel):
        info.update(_model_asset(path))
    return info


def _model_asset(path: Path) -> dict[str, Any]:
    """A file of a model that save_ml_model published: the estimator becomes the results'
    ml-model checkpoint asset (with its signature and the model's properties, so that the
    results item itself loads as the model), its STAC Item a metadata asset."""
    if path.suffix != ".joblib":
        return {"roles": ["metadata"], "title": "STAC Item of the model (ml-model extension)"}
    item = json.loads(path.with_suffix(".json").read_text())
    (asset,) = item["assets"].values()
    extra = {k: v for k, v in asset.items() if k not in ("href", "type", "file:size")}
    return {"roles": extra.pop("roles"), "asset_fields": extra,
            "model": item["properties"], "title": extra.pop("title", None)}


def _cube_extent(cube: RasterCube) -> dict[str, Any]:
    out: dict[str, Any] = {}
    xd, yd = cube.x_dim, cube.y_dim
    coords = cube.data.coords
    if xd is not None and yd is not None and xd.name in coords and yd.name in coords:
        xs = np.asarray(coords[xd.name].values, dtype=float)
        ys = np.asarray(coords[yd.name].values, dtype=float)
        if xs.size and ys.size:
            rx = _step(xs, coords[xd.name].attrs)
            ry = _step(ys, coords[yd.name].attrs, negative=True)
            west, east = sorted((xs[0] - rx / 2, xs[-1] + rx / 2))
            south, north = sorted((ys[0] - ry / 2, ys[-1] + ry / 2))
            proj: dict[str, Any] = {
                "proj:shape": [int(ys.size), int(xs.size)],
                "proj:bbox": [float(west), float(south), float(east), float(north)],
                "proj:transform": [rx, 0.0, float(xs[0] - rx / 2), 0.0, ry,
                                   float(ys[0] - ry / 2)],
            }
            epsg = _epsg(cube.crs)
            proj["proj:epsg"] = epsg
            if epsg is None and cube.crs is not None:
                proj["proj:wkt2"] = _wkt2(cube.crs)
            out["proj"] = proj
            if cube.crs is not None:
                out["bbox"] = _lonlat_bbox(west, south, east, north, cube.crs)
    for d in cube.dimensions:
        if d.type == TEMPORAL and d.name in coords and coords[d.name].size:
            labels = np.asarray(coords[d.name].values)
            if labels.dtype.kind == "M":
                labels = labels[~np.isnat(labels)]
                if labels.size:
                    first, last = datetime_labels_to_strings(np.array([labels.min(),
                                                                       labels.max()]))
                    out["start"], out["end"] = first, last
            break
    band = cube.first_dim_of_type("bands")
    if band is not None and band.name in coords:
        out["bands"] = [str(v) for v in coords[band.name].values]
    return out


def _step(values: np.ndarray, attrs: dict, negative: bool = False) -> float:
    if values.size > 1:
        return float(values[1] - values[0])
    res = attrs.get("resolution")
    if res:
        return -abs(float(res)) if negative else abs(float(res))
    return -1.0 if negative else 1.0


def _epsg(crs: Any) -> int | None:
    if crs is None:
        return None
    if isinstance(crs, int):
        return crs
    try:
        from pyproj import CRS

        return CRS.from_user_input(crs).to_epsg()
    except Exception:
        return None


def _wkt2(crs: Any) -> str | None:
    try:
        from pyproj import CRS

        return CRS.from_user_input(crs).to_wkt()
    except Exception:
        return None


def _lonlat_bbox(west: float, south: float, east: float, north: float,
                 crs: Any) -> list[float] | None:
    try:
        ll = BBox(west, south, east, north, crs).to_crs(4326)
    except Exception:
        return None
    return [round(ll.west, 7), round(ll.south, 7), round(ll.east, 7), round(ll.north, 7)]


# --- the results document ---------------------------------------------------------------------
def stac_asset(info: dict, href: str) -> dict[str, Any]:
    """The STAC asset of a stored asset description."""
    asset: dict[str, Any] = {"href": href, "type": info["type"],
                             "roles": info.get("roles") or ["data"], "file:size": info["size"]}
    asset.update(info.get("asset_fields") or {})
    if info.get("title"):
        asset["title"] = info["title"]
    asset.update(info.get("proj", {}))
    if info.get("start"):
        if info["start"] == info["end"]:
            asset["datetime"] = info["start"]
        else:
            asset["start_datetime"], asset["end_datetime"] = info["start"], info["end"]
    if info.get("bands"):
        asset["eo:bands"] = [{"name": name} for name in info["bands"]]
    return asset


def item_files(job: Any) -> list[dict]:
    """The stored descriptions of the files that get an Item of their own in the results
    Collection: all but pure metadata files (a model's STAC Item, say)."""
    return [i for i in job.assets or [] if (i.get("roles") or ["data"]) != ["metadata"]]


def _bbox(infos: list[dict]) -> list[float] | None:
    boxes = [i["bbox"] for i in infos if i.get("bbox")]
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _interval(job: Any, infos: list[dict]) -> tuple[str | None, str | None]:
    """The time the files cover, else the time the graph asked for."""
    starts = [i["start"] for i in infos if i.get("start")]
    ends = [i["end"] for i in infos if i.get("end")]
    if starts:
        return min(starts), max(ends)
    return requested_interval(job.process)


def _extensions(infos: list[dict], epsg: bool = False) -> list[str]:
    used = ["file"]
    if epsg or any(i.get("proj") for i in infos):
        used.insert(0, "proj")
    if any(i.get("bands") for i in infos):
        used.append("eo")
    used.append("processing")  # providers[0]: processing:expression, processing:software
    out = [EXTENSIONS[name] for name in used]
    if len([i for i in infos if i.get("model")]) == 1:
        out.append(ML_MODEL_EXTENSION)
    return out


def results_collection(job: Any, assets: dict[str, dict], links: list[dict], *,
                       status: str, expires: datetime | None) -> dict[str, Any]:
    """GET /jobs/{job_id}/results as a STAC Collection: every file as a collection-level asset
    (the API requires them for clients of openEO API 1.0) and `links` with the `item` links.
    Never a null value: the official suite's OpenAPI 3.1 validator rejects them."""
    infos = list(job.assets or [])
    start, end = _interval(job, infos)
    fallback = rfc3339(job.ended or job.updated)
    out: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(infos),
        "id": job.job_id,
    }
    if job.title:
        out["title"] = job.title
    out.update({
        "description": job.description or f"Results of the batch job {job.job_id}",
        # STAC's value for data under terms of its own: the results are the user's, derived
        # from inputs whose licences are linked (derived_from).
        "license": "proprietary",
        "providers": providers(job.process),
        "extent": {"spatial": {"bbox": [_bbox(infos) or [-180.0, -90.0, 180.0, 90.0]]},
                   "temporal": {"interval": [[start or end or fallback,
                                              end or start or fallback]]}},
        "created": rfc3339(job.created), "updated": rfc3339(job.updated),
        "openeo:status": status,
    })
    if expires is not None:
        out["expires"] = rfc3339(expires)
    models = [i["model"] for i in infos if i.get("model")]
    if len(models) == 1:  # what the model is, as CDSE summarises it
        out["summaries"] = {k: [v] for k, v in models[0].items()
                            if k.startswith("ml-model:") and isinstance(v, str)}
    out.update({"assets": assets, "links": links})
    return out


def results_item(job: Any, assets: dict[str, dict], links: list[dict], *,
                 status: str, expires: datetime | None, infos: list[dict] | None = None,
                 item_id: str | None = None) -> dict[str, Any]:
    """GET /jobs/{job_id}/results as a STAC Item (a `Feature`) with all files as assets; with
    `infos` and `item_id`, the Item of these files in the results Collection."""
    infos = list(job.assets or []) if infos is None else infos
    bbox = _bbox(infos)
    geometry = None
    if bbox is not None:
        w, s, e, n = bbox
        geometry = {"type": "Polygon",
                    "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    props: dict[str, Any] = {}
    start, end = _interval(job, infos)
    if start and end and start != end:
        props.update({"datetime": None, "start_datetime": start, "end_datetime": end})
    else:
        props["datetime"] = start or end or rfc3339(job.ended or job.updated)
    if job.title:
        props["title"] = job.title
    if job.description:
        props["description"] = job.description
    props.update({"created": rfc3339(job.created), "updated": rfc3339(job.updated),
                  "openeo:status": status})
    if expires is not None:
        props["expires"] = rfc3339(expires)
    epsgs = {i["proj"].get("proj:epsg") for i in infos if i.get("proj")}
    if len(epsgs) == 1 and None not in epsgs:
        props["proj:epsg"] = epsgs.pop()
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(infos, epsg="proj:epsg" in props),
        "id": item_id or job.job_id,
        "geometry": geometry,
    }
    if bbox is not None:
        item["bbox"] = bbox
    props["providers"] = providers(job.process)
    models = [i["model"] for i in infos if i.get("model")]
    if len(models) == 1:  # the results item is then the model's item (load_ml_model(url))
        props.update({k: v for k, v in models[0].items()
                      if k.startswith(("ml-model:", "terracube:"))})
    if item_id is not None:
        item["collection"] = job.job_id
    item.update({"properties": props, "assets": assets, "links": links})
    return item


def providers(process: dict | None) -> list[dict[str, Any]]:
    """Provenance as CDSE writes it (STAC processing extension): terracube as the processor,
    with the job's process graph (`processing:expression`) and the software versions."""
    return [{"name": "terracube", "roles": ["processor"],
             "description": "openEO back-end terracube",
             "processing:facility": "terracube",
             "processing:software": software_versions(),
             "processing:expression": {"format": "openeo",
                                       "expression": _flat_graph(process)}}]


def _flat_graph(process: dict | None) -> dict[str, Any]:
    """The job's flat process graph (node id -> node), as CDSE writes the expression: course
    code reads `expression["loadcollection1"]["arguments"]` (Cubes & Clouds MOOC)."""
    graph = (process or {}).get("process_graph")
    return graph if isinstance(graph, dict) else (process or {})


def software_versions() -> dict[str, str]:
    """The versions of terracube and the libraries that computed the results."""
    out = {}
    for name in ("terracube", "xarray", "dask", "numpy", "rasterio", "odc-geo"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def inputs(process: dict | None) -> list[tuple[str, str]]:
    """What the graph reads, in order and without repeats: ("collection", id) of every
    load_collection, ("url", href) of every load_stac and ("job", id) of every load_result
    (("url", href) when given a URL), callbacks included."""
    found: list[tuple[str, str]] = []

    def walk(graph: Any) -> None:
        if not isinstance(graph, dict):
            return
        for node in graph.values():
            if not isinstance(node, dict):
                continue
            arguments = node.get("arguments") or {}
            pid = node.get("process_id")
            if pid == "load_collection" and isinstance(arguments.get("id"), str):
                found.append(("collection", arguments["id"]))
            elif pid == "load_stac" and isinstance(arguments.get("url"), str):
                found.append(("url", arguments["url"]))
            elif pid == "load_result" and isinstance(arguments.get("id"), str):
                ref = arguments["id"]
                found.append(("url" if ref.startswith(("http://", "https://")) else "job", ref))
            for value in arguments.values():
                if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
                    walk(value["process_graph"])

    walk((process or {}).get("process_graph"))
    return list(dict.fromkeys(found))


def requested_interval(process: dict | None) -> tuple[str | None, str | None]:
    """The time range the graph's load_collection nodes ask for (literal extents only)."""
    graph = (process or {}).get("process_graph") or {}
    starts, ends = [], []
    for node in graph.values():
        if not isinstance(node, dict) or node.get("process_id") != "load_collection":
            continue
        extent = (node.get("arguments") or {}).get("temporal_extent")
        if isinstance(extent, list) and len(extent) == 2:
            if isinstance(extent[0], str):
                starts.append(_as_datetime(extent[0]))
            if isinstance(extent[1], str):
                ends.append(_as_datetime(extent[1]))
    return (min(starts) if starts else None, max(ends) if ends else None)


def _as_datetime(text: str) -> str:
    return f"{text}T00:00:00Z" if len(text) == 10 else text
