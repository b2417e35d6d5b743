"""Vector data cube processes: load_geojson, load_url, vector_buffer, vector_reproject,
vector_to_regular_points, vector_to_random_points, filter_vector.

All of them work on `terracube.datacube.vector.VectorCube`. Distances are in metres: geometries
in a projected CRS with metre units are used as they are, geometries in a geographic CRS are
projected (one geometry at a time) to an azimuthal equidistant projection centred on the
geometry, and a projected CRS with other units is a `UnitMismatch`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyproj
import shapely
import xarray as xr
from shapely.geometry import MultiPoint, Point
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import GEOMETRY, OTHER, Dimension
from terracube.datacube.vector import GEOJSON_CRS, GEOMETRY_DIM, VectorCube, reproject_geometries
from terracube.engine.processes._vector_values import take_geometries
from terracube.engine.processes.rasterise import vector_input
from terracube.engine.registry import process
from terracube.process_errors import (
    CountMismatch,
    DimensionNotAvailable,
    FormatUnsuitable,
    UnitMismatch,
)
from terracube.url_policy import FetchPolicy, FetchRefused, check_fetch

PROPERTIES_DIM = "properties"
MAX_POINTS = 1_000_000  # sampled points per process call
URL_MAX_BYTES = 100 * 1024 * 1024
URL_TIMEOUT = 30.0  # seconds, per socket operation
# load_url refuses hosts that resolve to loopback, private or link-local addresses (the
# server's own network); tests that serve files on 127.0.0.1 switch this on.
ALLOW_PRIVATE_HOSTS = False
URL_FORMATS = {"geojson": "GeoJSON", "json": "GeoJSON", "parquet": "Parquet",
               "geoparquet": "Parquet"}


# --- helpers ----------------------------------------------------------------------------------
def _geometry_dim_name(cube: VectorCube) -> str:
    return next((d.name for d in cube.dimensions if d.type == GEOMETRY), GEOMETRY_DIM)


def _select(cube: VectorCube, index: Sequence[int],
            geometries: Sequence[BaseGeometry] | None = None) -> VectorCube:
    """The cube with the geometries at `index` (repeats allowed), optionally replaced."""
    return take_geometries(cube, index, geometries)


def _metric(crs: Any) -> bool:
    """True for a projected CRS in metres, False for a geographic one; else UnitMismatch."""
    crs = pyproj.CRS.from_user_input(crs)
    if crs.is_geographic:
        return False
    units = {(a.unit_name or "").lower() for a in crs.axis_info[:2]}
    if units <= {"metre", "meter", "m"}:
        return True
    raise UnitMismatch(
        f"The unit of the reference system is {', '.join(sorted(units))}, not metres; use "
        "vector_reproject to convert the geometries to a CRS in metres.", argument="data")


def _in_metres(geom: BaseGeometry, crs: Any, metric: bool
               ) -> tuple[BaseGeometry, Callable[[BaseGeometry], BaseGeometry]]:
    """The geometry in a CRS in metres and the function back to `crs`."""
    if metric or geom.is_empty:
        return geom, lambda g: g
    lonlat = reproject_geometries([geom], crs, GEOJSON_CRS)[0]
    centre = lonlat.centroid if not lonlat.centroid.is_empty else lonlat.representative_point()
    local = pyproj.CRS.from_proj4(
        f"+proj=aeqd +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m +no_defs")
    there = reproject_geometries([geom], crs, local)[0]
    return there, lambda g: reproject_geometries([g], local, crs)[0]


def _parts(geom: BaseGeometry) -> tuple[list, list, list]:
    """The polygons, lines and points a (multi-part) geometry consists of."""
    polys: list = []
    lines: list = []
    points: list = []
    stack = [geom]
    while stack:
        g = stack.pop(0)
        if g.is_empty:
            continue
        if hasattr(g, "geoms"):
            stack[:0] = list(g.geoms)
        elif g.geom_type == "Polygon":
            polys.append(g)
        elif g.geom_type in ("LineString", "LinearRing"):
            lines.append(g)
        else:
            points.append(g)
    return polys, lines, points


def _first_coordinate(geom: BaseGeometry) -> Point:
    return Point(shapely.get_coordinates(geom)[0])


def _check_count(n: int) -> None:
    if n > MAX_POINTS:
        raise errors.ProcessParameterInvalid(
            f"The sampling would create more than {MAX_POINTS} points; use a larger distance "
            "or fewer geometries.", argument="distance")


def _points_cube(cube: VectorCube, samples: list[list[Point]], group: bool) -> VectorCube:
    """One MultiPoint per geometry (group) or one Point per sample; empty geometries stay."""
    if group:
        return _select(cube, range(len(cube)), [MultiPoint(s) for s in samples])
    index, geoms = [], []
    for i, pts in enumerate(samples):
        if not pts:
            index.append(i)
            geoms.append(MultiPoint())
        for p in pts:
            index.append(i)
            geoms.append(p)
    return _select(cube, index, geoms)


# --- loading ----------------------------------------------------------------------------------
def _property_values(features_props: Sequence[dict], names: list[str]) -> tuple[list, np.ndarray]:
    """Labels and values (geometry × label) of the `properties` dimension."""
    if len(names) == 1:
        name = names[0]
        column = [p.get(name) for p in features_props]
        if any(isinstance(v, list) for v in column):
            width = max((len(v) for v in column if isinstance(v, list)), default=0)
            rows = [(list(v) if isinstance(v, list) else [v]) for v in column]
            rows = [r + [None] * (width - len(r)) for r in rows]
            return list(range(width)), _as_array(rows)
        return [name], _as_array([[v] for v in column])
    return list(names), _as_array([[p.get(n) for n in names] for p in features_props])


def _as_array(rows: list[list]) -> np.ndarray:
    flat = [v for r in rows for v in r]
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in flat):
        return np.array([[np.nan if v is None else float(v) for v in r] for r in rows],
                        dtype="float64").reshape(len(rows), -1)
    # a data cube holds values of one type: text if any value is not a number
    out = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            out[i, j] = None if v is None else v if isinstance(v, str) else json.dumps(v)
    return out


@process("load_geojson")
def load_geojson(data: dict, properties: list | None = None) -> VectorCube:
    cube = vector_input(data, "data")
    names = list(properties or [])
    if not names:
        return cube
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise errors.ProcessParameterInvalid("properties must be a list of distinct property "
                                             "names.", argument="properties")
    labels, values = _property_values(cube.properties, names)
    array = xr.DataArray(values, dims=(GEOMETRY_DIM, PROPERTIES_DIM),
                         coords={GEOMETRY_DIM: np.arange(len(cube)), PROPERTIES_DIM: labels})
    dims = (Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=cube.crs),
            Dimension(PROPERTIES_DIM, OTHER))
    return cube.with_values(array, dims)


def _check_url(url: Any, allowed: Sequence[str] | None = None) -> str:
    """The URL if it is http(s) to a public host (or one the administrator allows: `allowed`,
    TERRACUBE_FETCH_ALLOWED_HOSTS, when the server's settings are known); else
    ProcessParameterInvalid."""
    if not isinstance(url, str):
        raise errors.ProcessParameterInvalid("url must be a string.", argument="url")
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
        parts = urllib.parse.urlsplit("")
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise errors.ProcessParameterInvalid(
            "Only http:// and https:// URLs can be loaded.", argument="url")
    if allowed is not None and not ALLOW_PRIVATE_HOSTS:
        try:
            check_fetch(url, FetchPolicy(tuple(allowed)))
        except FetchRefused as exc:
            raise errors.ProcessParameterInvalid(str(exc), argument="url") from None
    elif not ALLOW_PRIVATE_HOSTS:
        try:
            infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
        except OSError:
            raise errors.ProcessParameterInvalid(f"The host {host!r} is unknown.",
                                                 argument="url") from None
        if any(not ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in infos):
            raise errors.ProcessParameterInvalid(
                f"The host {host!r} is not a public internet address.", argument="url")
    return url


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs that pass the same checks."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, limit: int = URL_MAX_BYTES, timeout: float = URL_TIMEOUT) -> bytes:
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": "terracube load_url"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise errors.ProcessParameterInvalid(
                    f"The file at the URL is larger than {limit} bytes.", argument="url")
            body = response.read(limit + 1)
    except errors.OpenEOError:
        raise
    except urllib.error.HTTPError as exc:
        raise errors.ProcessParameterInvalid(
            f"The URL could not be read: HTTP {exc.code} {exc.reason}.", argument="url") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.ProcessParameterInvalid(f"The URL could not be read: {reason}.",
                                             argument="url") from None
    if len(body) > limit:
        raise errors.ProcessParameterInvalid(
            f"The file at the URL is larger than {limit} bytes.", argument="url")
    return body


def _from_parquet(body: bytes) -> VectorCube:
    import geopandas as gpd

    frame = gpd.read_parquet(io.BytesIO(body))
    crs = GEOJSON_CRS
    if frame.crs is not None:
        epsg = frame.crs.to_epsg()
        crs = epsg if epsg is not None else frame.crs.to_wkt()
    columns = [c for c in frame.columns if c != frame.geometry.name]
    records = json.loads(frame[columns].to_json(orient="records", date_format="iso"))
    geoms = [g if g is not None else shapely.geometry.GeometryCollection()
             for g in frame.geometry]
    return VectorCube(tuple(geoms), crs, properties=tuple(records))


def vector_from_content(body: bytes, fmt: str) -> VectorCube:
    """A vector cube from the content of a GeoJSON or (Geo)Parquet file (`fmt`: GeoJSON or
    Parquet, as /file_formats names them)."""
    if fmt == "GeoJSON":
        return VectorCube.from_geojson(json.loads(body))
    return _from_parquet(body)


def allowed_hosts(ctx: Any) -> Sequence[str] | None:
    """The administrator's fetch allow-list of the evaluation's server (None: not known)."""
    settings = getattr(getattr(ctx, "services", None), "settings", None)
    return settings.fetch_allowed() if settings is not None else None


def vector_from_url(url: str, fmt: str, allowed: Sequence[str] | None) -> VectorCube:
    """A vector cube of the GeoJSON or (Geo)Parquet file at an http(s) URL."""
    _check_url(url, allowed)
    body = _download(url)
    try:
        return vector_from_content(body, fmt)
    except Exception as exc:  # noqa: BLE001 - unreadable content, said in the user's terms
        raise FormatUnsuitable(f"Data can't be loaded as {fmt}: {exc}", argument="url") from None


@process("load_url")
def load_url(url: str, format: str, options: dict | None = None, *,
             ctx: Any = None) -> VectorCube:
    allowed = allowed_hosts(ctx)
    _check_url(url, allowed)
    fmt = URL_FORMATS.get(str(format).lower())
    if fmt is None:
        raise FormatUnsuitable(
            f"load_url reads GeoJSON and GeoParquet only, not {format!r}.", argument="format")
    if options:
        raise errors.ProcessParameterInvalid(
            f"The input format {fmt} has no options (got {', '.join(sorted(options))}).",
            argument="options")
    return vector_from_url(url, fmt, allowed)


# --- geometry processes -----------------------------------------------------------------------
@process("vector_buffer")
def vector_buffer(geometries: Any, distance: float) -> VectorCube:
    cube = vector_input(geometries, "geometries")
    if isinstance(distance, bool) or not isinstance(distance, (int, float)) \
            or not math.isfinite(distance) or distance == 0:
        raise errors.ProcessParameterInvalid("distance must be a finite number other than 0.",
                                             argument="distance")
    metric = _metric(cube.crs)
    out = []
    for geom in cube.geometries:
        if geom.is_empty:
            out.append(geom)
            continue
        local, back = _in_metres(geom, cube.crs, metric)
        buffered = local.buffer(distance)
        out.append(buffered if buffered.is_empty else back(buffered))
    return replace(cube, geometries=tuple(out))


@process("vector_reproject")
def vector_reproject(data: Any, projection: Any, dimension: str | None = None) -> VectorCube:
    cube = vector_input(data, "data")
    name = _geometry_dim_name(cube)
    if dimension is not None and dimension != name:
        raise DimensionNotAvailable(
            f"Dimension '{dimension}' does not exist; the geometry dimension is '{name}'.",
            argument="dimension")
    if isinstance(projection, bool) or not isinstance(projection, (int, str)):
        raise errors.ProcessParameterInvalid("projection must be an EPSG code or WKT2.",
                                             argument="projection")
    try:
        target = pyproj.CRS.from_user_input(projection)
    except pyproj.exceptions.CRSError:
        raise errors.ProcessParameterInvalid(f"Unknown CRS {projection!r}.",
                                             argument="projection") from None
    crs = projection if isinstance(projection, int) else target.to_wkt()
    geoms = reproject_geometries(cube.geometries, cube.crs, target)
    dims = tuple(replace(d, reference_system=crs) if d.type == GEOMETRY else d
                 for d in cube.dimensions)
    return replace(cube, geometries=tuple(geoms), crs=crs, dimensions=dims)


def _regular_samples(geom: BaseGeometry, distance: float) -> list[Point]:
    polys, lines, points = _parts(geom)
    samples: list[Point] = []
    for poly in polys:
        minx, miny, maxx, maxy = poly.bounds
        nx = max(1, math.ceil((maxx - minx) / distance))
        ny = max(1, math.ceil((maxy - miny) / distance))
        _check_count(nx * ny)
        xs = minx + (np.arange(nx) + 0.5) * distance
        ys = maxy - (np.arange(ny) + 0.5) * distance
        gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))  # row by row from the upper left
        inside = shapely.contains_xy(poly, gx, gy)
        samples.extend(Point(x, y) for x, y in zip(gx[inside], gy[inside]))
    for line in lines:
        count = int(line.length // distance) + 1
        _check_count(count)
        samples.extend(line.interpolate(k * distance) for k in range(count))
    samples.extend(points)
    if not samples and polys:
        samples.append(_first_coordinate(geom))
    return samples


@process("vector_to_regular_points")
def vector_to_regular_points(data: Any, distance: float, group: bool = True) -> VectorCube:
    cube = vector_input(data, "data")
    if isinstance(distance, bool) or not isinstance(distance, (int, float)) \
            or not math.isfinite(distance) or distance <= 0:
        raise errors.ProcessParameterInvalid("distance must be a number > 0.",
                                             argument="distance")
    metric = _metric(cube.crs)
    samples, total = [], 0
    for geom in cube.geometries:
        if geom.is_empty:
            samples.append([])
            continue
        local, back = _in_metres(geom, cube.crs, metric)
        pts = _regular_samples(local, float(distance))
        total += len(pts)
        _check_count(total)
        samples.append(list(back(MultiPoint(pts)).geoms) if pts and not metric else pts)
    return _points_cube(cube, samples, bool(group))


def _random_samples(geom: BaseGeometry, n: int, rng: np.random.Generator) -> list[Point]:
    polys, lines, points = _parts(geom)
    if polys:
        area = shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]
        minx, miny, maxx, maxy = area.bounds
        found: list[Point] = []
        for _ in range(1000):
            xs = rng.uniform(minx, maxx, size=max(64, 2 * n))
            ys = rng.uniform(miny, maxy, size=max(64, 2 * n))
            inside = shapely.contains_xy(area, xs, ys)
            found.extend(Point(x, y) for x, y in zip(xs[inside], ys[inside]))
            if len(found) >= n:
                return found[:n]
        return found or [area.representative_point()]
    if lines:
        path = shapely.MultiLineString(lines) if len(lines) > 1 else lines[0]
        lengths = np.array([ln.length for ln in lines])
        if lengths.sum() == 0:
            return [_first_coordinate(path)]
        offsets = np.sort(rng.uniform(0, lengths.sum(), size=n))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out = []
        for off in offsets:
            i = min(int(np.searchsorted(starts, off, side="right")) - 1, len(lines) - 1)
            out.append(lines[i].interpolate(off - starts[i]))
        return out
    unique = list(dict.fromkeys((p.x, p.y) for p in points))  # each point only once
    chosen = rng.choice(len(unique), size=min(n, len(unique)), replace=False)
    return [Point(unique[i]) for i in sorted(chosen)]


def _capacity(geom: BaseGeometry) -> int:
    """How many distinct points can be sampled: unlimited unless the geometry is points only."""
    polys, lines, points = _parts(geom)
    if polys or lines:
        return MAX_POINTS + 1
    return len({(p.x, p.y) for p in points})


def _share(total: int, capacity: dict[int, int]) -> dict[int, int]:
    """`total` points shared out evenly (in order), no geometry above its capacity."""
    counts = dict.fromkeys(capacity, 0)
    active = [i for i, c in capacity.items() if c > 0]
    remaining = total
    while remaining > 0 and active:
        base, extra = divmod(remaining, len(active))
        for k, i in enumerate(active):
            add = min(base + (k < extra), capacity[i] - counts[i])
            counts[i] += add
            remaining -= add
        active = [i for i in active if counts[i] < capacity[i]]
    return counts


@process("vector_to_random_points")
def vector_to_random_points(data: Any, geometry_count: int | None = None,
                            total_count: int | None = None, group: bool = True,
                            seed: int | None = None) -> VectorCube:
    cube = vector_input(data, "data")
    for name, value in (("geometry_count", geometry_count), ("total_count", total_count)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise errors.ProcessParameterInvalid(f"{name} must be an integer >= 1 or null.",
                                                 argument=name)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise errors.ProcessParameterInvalid("seed must be an integer or null.",
                                             argument="seed")
    todo = [i for i, g in enumerate(cube.geometries) if not g.is_empty]
    if total_count is not None and total_count < len(todo):
        raise CountMismatch(
            f"total_count ({total_count}) is lower than the number of geometries "
            f"({len(todo)}); at least one point is sampled per geometry.",
            argument="total_count")
    capacity = {i: min(_capacity(cube.geometries[i]), geometry_count or MAX_POINTS + 1)
                for i in todo}
    if total_count is None:
        counts = {i: min(capacity[i], geometry_count or 1) for i in todo}
    else:
        counts = _share(total_count, capacity)
    _check_count(sum(counts.values()))
    rng = np.random.default_rng(seed)
    samples = [_random_samples(g, counts[i], rng) if i in counts else []
               for i, g in enumerate(cube.geometries)]
    return _points_cube(cube, samples, bool(group))


RELATIONS = ("intersects", "disjoint", "equals", "touches", "crosses", "overlaps", "contains",
             "within")


@process("filter_vector")
def filter_vector(data: Any, geometries: Any, relation: str = "intersects") -> VectorCube:
    """Keeps the candidates c of `data` for which `relation(base, c)` holds, base being the
    union of `geometries` (e.g. "contains": the base geometries contain the candidate)."""
    cube = vector_input(data, "data")
    base_cube = vector_input(geometries, "geometries")
    if relation not in RELATIONS:
        raise errors.ProcessParameterInvalid(
            f"relation must be one of {', '.join(RELATIONS)}, not {relation!r}.",
            argument="relation")
    base = shapely.union_all([g for g in base_cube.geometries_in(cube.crs) if not g.is_empty])
    candidates = np.array(cube.geometries, dtype=object)
    keep = getattr(shapely, relation)(base, candidates) & ~shapely.is_empty(candidates)
    return _select(cube, np.flatnonzero(keep))
