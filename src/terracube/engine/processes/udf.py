"""openEO processes for user code and debugging: `run_udf` (Python UDFs) and `inspect`.

SECURITY: a UDF is Python source code; this module never executes it. It compiles it (to report
syntax errors) and hands it to engine/udf_sandbox.py, which runs it in separate runner
processes sandboxed by bubblewrap (no network, no server files or environment, rlimits, a
wall-clock limit). Without a working sandbox UDFs are refused except for the users of the
setting udf_trusted_users; udf_enabled=false refuses them for everyone. UDFs given as URLs or
paths are refused: the code must be inline, and nothing is fetched or read.

The UDF follows the conventions of the openEO Python UDF API (`openeo.udf`, as the official
`openeo` client writes them):

- `apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube` (or with
  `xarray.DataArray` annotations: the DataArray itself is passed and returned);
  `apply_hypercube` is the legacy name;
- `apply_timeseries(series: pandas.Series, context: dict) -> pandas.Series`, called per pixel
  along the temporal dimension (`t` or `time`);
- `apply_udf_data(data: UdfData)`, a function taking one `UdfData` argument that edits it.

On a data cube (or on `x` inside `apply`) the UDF runs lazily block by block: the cube is cut
into spatial chunks, every non-spatial dimension whole, and the UDF must return a block with the
same dimensions and sizes. Inside a callback over a dimension (`reduce_dimension`,
`apply_dimension`), `data` is an array and the UDF gets the whole array, as the spec says.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import threading
import uuid
import weakref
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import pyproj
import shapely.geometry
import xarray as xr

from terracube import errors, executor
from terracube import process_errors as pe
from terracube.datacube.cube import OTHER, SPATIAL, Dimension, RasterCube
from terracube.datacube.dryrun import is_dry_run
from terracube.datacube.grid import with_scaled_grid
from terracube.datacube.values import LIST_DIM, ArrayValue, to_python
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube
from terracube.engine.processes.cubes import nodata_as_nan
from terracube.engine.registry import process
from terracube.engine.udf_envs import EnvPolicy, environment_for
from terracube.engine.udf_metadata import (
    SPATIAL_NAMES,
    MetadataChange,
    defines_apply_metadata,
    defines_function,
    describe,
    read_change,
)
from terracube.engine.udf_sandbox import UdfLimits, UdfPool, UdfRefused, sandbox_problem

log = logging.getLogger(__name__)

RUNTIME = "Python"
_SPATIAL_NAMES = SPATIAL_NAMES
RUNTIME_VERSIONS = ("3",)  # the interpreter's major version; "3.x" of the server matches too



_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
           "debug": logging.DEBUG}


_LIBRARIES = ("numpy", "scipy", "pandas", "xarray", "dask", "statsmodels", "sklearn", "skimage",
              "shapely", "geopandas", "rasterio", "pyproj", "openeo")


def _library_versions() -> dict[str, str]:
    """The libraries a UDF can import (the sandbox binds this interpreter's environment)."""
    from importlib import metadata

    names = {"sklearn": "scikit-learn", "skimage": "scikit-image"}
    out = {}
    for lib in _LIBRARIES:
        try:
            out[names.get(lib, lib)] = metadata.version(names.get(lib, lib))
        except metadata.PackageNotFoundError:
            continue
    return out


def udf_runtimes(settings: Any = None) -> dict[str, Any]:
    """The `GET /udf_runtimes` description of the Python runtime (API schema
    `udf_programming_language`), saying whether UDFs run sandboxed, are off or refused."""
    import sys

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    problem = sandbox_problem(UdfLimits.from_settings(settings).bwrap)
    if settings is not None and not settings.udf_enabled:
        status = "UDFs are switched off on this server: run_udf is refused."
    elif problem is None:
        limits = UdfLimits.from_settings(settings)
        status = (f"Each UDF runs in its own sandbox (bubblewrap): no network, no server files, "
                  f"a private /tmp of {limits.tmp_bytes // 1024**2} MiB, "
                  f"{limits.memory_bytes // 1024**2} MiB of memory, "
                  f"{limits.timeout_seconds:g} s per block.")
    else:
        status = (f"No sandbox is available ({problem}): UDFs are refused except for users an "
                  f"administrator marked as trusted.")
    return {
        RUNTIME: {
            "title": f"Python {version}",
            "description": "Python UDFs following the openEO Python UDF API (openeo.udf: "
                           "apply_datacube, apply_timeseries, UdfData). " + status + " "
                           + EnvPolicy.from_settings(settings).describe(),
            "type": "language",
            "default": version,
            "versions": {version: {"libraries": {k: {"version": str(v)}
                                                  for k, v in _library_versions().items()}}},
            "links": [{"href": "https://open-eo.github.io/openeo-python-client/udf.html",
                       "rel": "about", "title": "openEO Python UDF guide"}],
        }
    }


# --- inspect ----------------------------------------------------------------------------------
_MAX_LOGGED_VALUES = 10_000  # larger data is logged as its summary


def log_data(data: Any, *, compute: bool = True) -> Any:
    """`data` as JSON for a log entry: numbers, strings, lists and objects as they are (NaN as
    null), arrays of up to _MAX_LOGGED_VALUES values as nested lists with their dimensions, the
    summary otherwise. `compute=False`: a lazy (dask) array is summarised, never computed."""
    original = data
    if isinstance(data, (RasterCube, ArrayValue)):
        data = data.data
    if hasattr(data, "get_array") and callable(data.get_array):  # openeo.udf.XarrayDataCube
        data = data.get_array()
    if isinstance(data, xr.DataArray):
        lazy = data.chunks is not None
        if data.size > _MAX_LOGGED_VALUES or (lazy and not compute):
            return _summary(original)
        out = {"dims": list(data.dims), "shape": list(data.shape),
               "values": _json_safe(np.asarray(data.values).tolist())}
        coords = {str(d): _json_safe([to_python(v) for v in np.asarray(data[d].values)])
                  for d in data.dims if d in data.coords and data.sizes[d] <= 100}
        if coords:
            out["coords"] = coords
        return out
    if isinstance(data, np.ndarray):
        if data.size > _MAX_LOGGED_VALUES:
            return f"array of shape {data.shape}, dtype {data.dtype}"
        return _json_safe(data.tolist())
    if isinstance(data, np.generic):
        return _json_safe(data.item())
    if data is None or isinstance(data, (bool, int, float, str, list, tuple, dict)):
        return _json_safe(data)
    return _summary(data)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


# `openeo.udf.inspect(...)` in a UDF logs to the openeo.udf.debug.user logger of its sandboxed
# process; the runner sends the records back with the block and they are forwarded to the log of
# the job whose run_udf node runs the UDF. The job log is found through a token, so no logging
# function is put into the dask graph; where the token is unknown (e.g. on a remote dask
# worker) the records are dropped.
_udf_sinks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _udf_log_token(ctx: Any) -> tuple[str, str] | None:
    """(token, node id) under which the UDF's inspect records reach the job log, or None."""
    services_log = getattr(getattr(ctx, "services", None), "log", None)
    if services_log is None:
        return None
    token = uuid.uuid4().hex
    _udf_sinks[token] = services_log
    return token, ctx.node_id


def _summary(data: Any) -> str:
    """A short description of `data` that never computes cube values."""
    if isinstance(data, RasterCube):
        dims = ", ".join(f"{d.name} ({d.type}, {data.data.sizes[d.name]})"
                         for d in data.dimensions)
        return f"raster data cube, dtype {data.data.dtype}, dimensions: {dims or 'none'}"
    if isinstance(data, ArrayValue):
        if data.is_list and data.size <= 20:
            return f"array {[to_python(v) for v in np.asarray(data.data.values).tolist()]!r}"
        sizes = ", ".join(f"{k} ({v})" for k, v in data.data.sizes.items())
        return f"array along '{data.dim}', dimensions: {sizes}"
    if isinstance(data, xr.DataArray):
        sizes = ", ".join(f"{k} ({v})" for k, v in data.sizes.items())
        return f"array, dtype {data.dtype}, dimensions: {sizes or 'none'}"
    text = repr(data)
    return text if len(text) <= 500 else text[:500] + "…"


@process("inspect")
def inspect_(data: Any, message: str = "", code: str = "User", level: str = "info",
             ctx: Any = None) -> Any:
    """Log `message` and a summary of `data` at `level`; return `data` unchanged."""
    if level not in _LEVELS:
        raise errors.ProcessParameterInvalid(
            f"level must be one of {', '.join(_LEVELS)}, not {level!r}.", argument="level")
    text = f"[{code}] {message}: {_summary(data)}" if message else f"[{code}] {_summary(data)}"
    services_log = getattr(getattr(ctx, "services", None), "log", None)
    if services_log:
        # the job log gets the data itself where it is small and already known (never computed)
        services_log(level, text, ctx.node_id, code=code, data=log_data(data, compute=False))
    else:
        node = getattr(ctx, "node_id", "?")
        log.log(_LEVELS[level], "[%s] %s", node, text)
    return data


# --- run_udf ----------------------------------------------------------------------------------
# Runtime names of other back-ends for the same Python UDFs: CDSE's "Python-Jep" (Python
# embedded in the JVM) runs the same code; the openeo client's documentation uses it.
_RUNTIME_ALIASES = ("python-jep",)


def _check_runtime(runtime: str, version: str | None) -> None:
    if not isinstance(runtime, str) or (runtime.lower() != RUNTIME.lower()
                                        and runtime.lower() not in _RUNTIME_ALIASES):
        raise pe.InvalidRuntime(
            f"The UDF runtime {runtime!r} is not supported; GET /udf_runtimes lists "
            f"'{RUNTIME}'.", argument="runtime")
    if version is None:
        return
    import sys

    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    if str(version) not in (*RUNTIME_VERSIONS, ours, "latest"):
        raise pe.InvalidVersion(
            f"The Python runtime version {version!r} is not supported; use {ours} or null.",
            argument="version")


def _check_code(code: Any) -> str:
    """The UDF's source code, checked without running it (compile only)."""
    if not isinstance(code, str) or not code.strip():
        raise errors.ProcessParameterInvalid("udf must be the UDF's Python source code.",
                                             argument="udf")
    if "\n" not in code and "\r" not in code:
        raise errors.ProcessParameterInvalid(
            "UDFs given as a URL or a file path are not supported (nothing is downloaded or "
            "read): put the Python source code itself in 'udf'.", argument="udf")
    try:
        compile(code, "<udf>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise errors.ProcessParameterInvalid(
            f"The UDF code is not valid Python: {exc.msg} (line {exc.lineno}).",
            argument="udf") from exc
    return code


def _trusted(settings: Any, user: Any) -> bool:
    if settings is None or user is None:
        return False
    names = {u.strip() for u in str(settings.udf_trusted_users).split(",") if u.strip()}
    return str(getattr(user, "user_id", "")) in names


def _pool(code: str, ctx: Any, proj: dict | None = None) -> UdfPool:
    """The warm UDF processes of this node: sandboxed, or for trusted users plain processes
    where the sandbox is missing; UdfRefused when UDFs are off or cannot be sandboxed."""
    services = getattr(ctx, "services", None)
    settings = getattr(services, "settings", None)
    if settings is not None and not settings.udf_enabled:
        raise UdfRefused("Python UDFs are switched off on this server (run_udf is not "
                         "available).")
    limits = UdfLimits.from_settings(settings)
    problem = sandbox_problem(limits.bwrap)
    sandboxed = problem is None
    if not sandboxed and not _trusted(settings, getattr(services, "user", None)):
        raise UdfRefused(f"Python UDFs cannot run on this server: they need a sandbox and "
                     f"{problem}; only users an administrator marked as trusted may run them.")
    if not sandboxed:
        log.warning("UDF runs without a sandbox for a trusted user: %s", problem)
    # declared packages the runtime lacks: installed (or found cached) before anything runs
    env = environment_for(code, EnvPolicy.from_settings(settings))
    return _shared_pool(services, code, limits, sandboxed, env, proj)


# The pools of one evaluation (its Services: one request or job), by UDF: a process that calls
# run_udf once per piece (apply_neighborhood) reuses the same warm processes for every piece.
_EVALUATION_POOLS: dict[int, dict[tuple, UdfPool]] = {}
_pools_lock = threading.Lock()


def _shared_pool(services: Any, code: str, limits: UdfLimits, sandboxed: bool,
                 env: Path | None, proj: dict | None = None) -> UdfPool:
    load_now = not is_dry_run()  # a dry run never calls the UDF: start no process for it
    if services is None:
        return UdfPool(code, limits, sandboxed, env=env, load_now=load_now, proj=proj)
    key = (code, limits, sandboxed, json.dumps(proj))
    with _pools_lock:
        pools = _EVALUATION_POOLS.get(id(services))
        if pools is None:
            pools = _EVALUATION_POOLS[id(services)] = {}
            weakref.finalize(services, _EVALUATION_POOLS.pop, id(services), None)
        pool = pools.get(key)
    if pool is None:
        pool = UdfPool(code, limits, sandboxed, env=env, load_now=load_now, proj=proj)
        with _pools_lock:
            pool = pools.setdefault(key, pool)
    return pool


def _forward_logs(records: Any, target: tuple[str, str] | None) -> None:
    """What the UDF logged with openeo.udf.inspect, into the job log of its node."""
    sink = _udf_sinks.get(target[0]) if target else None
    if sink is None or not isinstance(records, list):
        return
    for r in records[:1000]:
        if not isinstance(r, dict):
            continue
        level = str(r.get("level", "info"))
        try:
            sink(level if level in _LEVELS else "info", str(r.get("message", ""))[:10_000],
                 target[1], code=r.get("code") if isinstance(r.get("code"), str) else None,
                 data=_json_safe(r.get("data")))
        except Exception:  # a log entry must never fail the user's computation
            log.exception("UDF log entry lost")


@contextlib.contextmanager
def _reported(target: tuple[str, str] | None, node_id: str | None) -> Iterator[None]:
    """Whatever goes wrong in the user's code is ProcessParameterInvalid on `udf` of node
    `node_id` (with the lines of the UDF's own traceback); what it logged before reaches
    `target` all the same."""
    try:
        yield
    except errors.ProcessParameterInvalid as exc:
        _forward_logs(getattr(exc, "udf_logs", None), target)
        raise exc.at(node_id, "udf") from None


def _call_udf(pool: UdfPool, arr: xr.DataArray, context: Any,
              target: tuple[str, str] | None = None, node_id: str | None = None) -> xr.DataArray:
    """The UDF applied to one DataArray in a worker of `pool`; what it logs reaches `target`
    (_udf_log_token)."""
    with _reported(target, node_id):
        out, logs = pool.call(arr, context)
    _forward_logs(logs, target)
    return out


# Pieces that must reach the UDF in one call (a neighbourhood with its overlap, a polygon):
# apply_neighborhood and apply_polygon evaluate their callback inside `udf_whole_pieces()`.
# "same": one lazy call that keeps the sizes; "reshape": computed at once, and the UDF may
# change the number of labels of non-spatial dimensions.
_WHOLE_PIECES: contextvars.ContextVar[str | None] = contextvars.ContextVar("udf_whole_pieces",
                                                                           default=None)


@contextlib.contextmanager
def udf_whole_pieces(may_reshape: bool = False) -> Iterator[None]:
    """Within this block, run_udf calls the UDF once per cube it is given (never split);
    `may_reshape`: the UDF may return another number of bands (or other non-spatial labels),
    which the caller then handles."""
    token = _WHOLE_PIECES.set("reshape" if may_reshape else "same")
    try:
        yield
    finally:
        _WHOLE_PIECES.reset(token)


def size_change(before: xr.DataArray, after: xr.DataArray, spatial: set[str]
                ) -> tuple[dict[str, Fraction], dict[Any, tuple[str, ...] | None]]:
    """How a UDF or callback changed a piece `before` into `after` (the same dimensions): the
    factor of the pixels along each spatial dimension whose size changed, and the labels
    `after` has along each other dimension whose size changed (None where it has no
    coordinate). apply_neighborhood's results and the first neighbourhood of a UDF without
    apply_metadata are read this way."""
    scale: dict[str, Fraction] = {}
    labels: dict[Any, tuple[str, ...] | None] = {}
    for d in before.dims:
        n, m = before.sizes[d], after.sizes[d]
        if n == m:
            continue
        if d in spatial and n:
            scale[str(d)] = Fraction(m, n)
        else:
            labels[d] = tuple(str(v) for v in after.coords[d].values) \
                if d in after.coords else None
    return scale, labels


def _block_chunks(data: xr.DataArray, spatial: set, limits: UdfLimits) -> dict[Any, int]:
    """Chunks for the UDF's calls: every non-spatial dimension whole, spatial blocks of at most
    `limits.block_size` pixels a side and about an eighth of the UDF's memory (input, output
    and the UDF's own copies must fit); a single block for whole pieces."""
    if _WHOLE_PIECES.get() or not spatial:
        return {d: -1 for d in data.dims}
    depth = 8 * math.prod(int(n) for d, n in data.sizes.items() if d not in spatial)
    side = int(math.sqrt(max(limits.memory_bytes // 8, 1) / max(depth, 1)))
    side = max(min(side, limits.block_size), 16)
    return {d: (min(side, data.sizes[d]) or 1) if d in spatial else -1 for d in data.dims}


def _pixelwise_chunks(data: xr.DataArray, spatial: set, limits: UdfLimits) -> dict[Any, Any]:
    """Chunks for a UDF inside `apply` (pixel by pixel, so any block will do): the chunks the
    cube has, e.g. one date and band each, rather than regrouping it (which reads every date
    of a block before the first call, costs copies and holds the cube in memory); spatially
    smaller only where a chunk would exceed an eighth of the UDF's memory."""
    if data.chunks is None or not spatial:
        return _block_chunks(data, spatial, limits)
    chunks = dict(zip(data.dims, data.chunks, strict=True))
    depth = 8 * math.prod(max(chunks[d]) for d in data.dims if d not in spatial)
    side = max(int(math.sqrt(max(limits.memory_bytes // 8, 1) / max(depth, 1))), 16)
    return {d: (side if d in spatial and max(c) > side else c) for d, c in chunks.items()}


def _block_coords(arr: xr.DataArray, location: list | None) -> dict[Any, Any]:
    """The labels of one block of `arr` (its dimension coordinates, cut to the block)."""
    coords: dict[Any, Any] = {}
    for axis, d in enumerate(arr.dims):
        if d in arr.coords and arr.coords[d].dims == (d,):
            values = arr.coords[d].values
            if location is not None:
                values = values[location[axis][0]:location[axis][1]]
            coords[d] = values
    return coords


def _blockwise(pool: UdfPool, data: xr.DataArray, spatial: set, context: Any,
               dtype: np.dtype, target: tuple[str, str] | None = None,
               node_id: str | None = None, pixelwise: bool = False) -> xr.DataArray:
    """The UDF applied lazily per spatial block (other dimensions whole; `pixelwise`: the
    blocks the cube has, see _pixelwise_chunks); it must keep the dimensions and their
    sizes."""
    chunks = (_pixelwise_chunks if pixelwise else _block_chunks)(data, spatial, pool.limits)
    data = data.chunk(chunks)
    template = data.astype(dtype)

    def run(block: xr.DataArray) -> xr.DataArray:
        out = _with_dims_of(_call_udf(pool, block, context, target, node_id), block, node_id)
        if out.shape != block.shape:
            raise errors.ProcessParameterInvalid(
                f"The UDF returned a block of shape {out.shape} for a block of shape "
                f"{block.shape}; on a data cube it must keep the sizes (a UDF that changes "
                f"the resolution or the bands declares it in apply_metadata(metadata, "
                f"context)).", node_id=node_id, argument="udf")
        return xr.DataArray(np.asarray(out.values).astype(dtype, copy=False), dims=block.dims,
                            coords=block.coords, name=block.name)

    return xr.map_blocks(run, data, template=template)


def _with_dims_of(out: xr.DataArray, block: xr.DataArray, node_id: str | None) -> xr.DataArray:
    """The UDF's result in the dimension order of its input `block`; a dimension of length one
    that the UDF dropped (the client documentation's upsampling example returns
    `cube[0]` for one date) is put back."""
    missing = [d for d in block.dims if d not in out.dims]
    if set(out.dims) - set(block.dims) or any(block.sizes[d] != 1 for d in missing):
        raise errors.ProcessParameterInvalid(
            f"The UDF returned a cube with the dimensions {tuple(map(str, out.dims))}; on a "
            f"data cube it must keep the dimensions {tuple(map(str, block.dims))}.",
            node_id=node_id, argument="udf")
    for d in missing:
        out = out.expand_dims(d)
    return out.transpose(*block.dims)


def _on_vector_cube(pool: UdfPool, cube: VectorCube, context: Any,
                    target: tuple[str, str] | None, node_id: str | None) -> VectorCube:
    """apply_vectorcube on a vector cube: its geometries (GeoJSON features with their
    properties) and its values (computed now: a vector cube is small) in one call; the
    geometries and values it returns make the new vector cube."""
    if cube.values is None:
        values = xr.DataArray(np.full(len(cube), np.nan), dims=[GEOMETRY_DIM])
    else:
        (computed,) = executor.current().compute(cube.values.data, progress=lambda _: None)
        values = xr.DataArray(np.asarray(computed), dims=cube.values.dims,
                              coords=_block_coords(cube.values, None), name=cube.values.name)
    values = values.assign_coords({GEOMETRY_DIM: np.arange(len(cube))})
    crs = cube.crs
    vector = {"crs": crs if isinstance(crs, (int, str)) else pyproj.CRS.from_user_input(
        crs).to_string(),
        "features": [{"type": "Feature", "geometry": shapely.geometry.mapping(g),
                      "properties": p} for g, p in zip(cube.geometries, cube.properties,
                                                       strict=True)]}
    with _reported(target, node_id):
        out, geometries, logs = pool.call_vector(values, vector, context)
    _forward_logs(logs, target)
    features = geometries.get("features") or []
    shapes = tuple(shapely.geometry.shape(f["geometry"]) if f.get("geometry")
                   else shapely.geometry.GeometryCollection() for f in features)
    if GEOMETRY_DIM not in out.dims or out.sizes[GEOMETRY_DIM] != len(shapes):
        raise errors.ProcessParameterInvalid(
            f"apply_vectorcube returned {len(shapes)} geometries and a cube with "
            f"{dict(out.sizes)}: the cube needs a '{GEOMETRY_DIM}' dimension with one value "
            f"per geometry.", node_id=node_id, argument="udf")
    out = out.assign_coords({GEOMETRY_DIM: np.arange(len(shapes))})
    out = out.transpose(GEOMETRY_DIM, ...)
    by_name = {d.name: d for d in cube.dimensions}
    dims = tuple(by_name.get(str(d)) or Dimension(str(d), OTHER) for d in out.dims)
    return VectorCube(shapes, geometries.get("crs") or cube.crs,
                      values=xr.DataArray(dsa.from_array(np.asarray(out.values)),
                                          dims=out.dims, coords=out.coords, name=out.name),
                      dimensions=dims, properties=tuple(dict(f.get("properties") or {})
                                                        for f in features))


def _declared_change(pool: UdfPool, code: str, data: RasterCube | xr.DataArray, context: Any,
                     target: tuple[str, str] | None,
                     node_id: str | None) -> MetadataChange | None:
    """What the UDF's apply_metadata declares for `data` (None when it defines none, declares
    no change, or in a dry run, which starts no UDF process)."""
    if is_dry_run() or not defines_apply_metadata(code):
        return None
    described = describe(data)
    with _reported(target, node_id):
        answer, logs = pool.metadata(described, context)
    _forward_logs(logs, target)
    change = read_change(described, answer, node_id)
    return change if change.changes_anything else None


def _inferred_change(pool: UdfPool, cube: RasterCube, context: Any,
                     target: tuple[str, str] | None,
                     node_id: str | None) -> tuple[MetadataChange | None, RasterCube | None]:
    """For a UDF without apply_metadata in apply_neighborhood: what it changes, learnt from its
    result for the node's first neighbourhood (computed now, as CDSE learns it from the tiles
    the UDF returns): another number of pixels (a resolution changed by a simple factor) or
    of bands (named as the UDF names them). Returns (the change or None, the first
    neighbourhood's result cube) for the first call of a node, (change, None) afterwards."""
    key = (node_id, tuple(cube.data.dims))
    if key in pool.inferred:
        return pool.inferred[key], None
    arr = cube.data
    (values,) = executor.current().compute(arr.data, progress=lambda _: None)
    piece = xr.DataArray(np.asarray(values), dims=arr.dims, coords=_block_coords(arr, None),
                         name=arr.name)
    out = _with_dims_of(_call_udf(pool, piece, context, target, node_id), piece, node_id)
    spatial = {d.name for d in cube.dimensions if d.type == SPATIAL}
    scale, relabelled = size_change(piece, out, spatial)
    labels = {str(d): names if names is not None else tuple(map(str, range(out.sizes[d])))
              for d, names in relabelled.items()}
    change = MetadataChange(scale, labels) if scale or labels else None
    pool.inferred[key] = change
    dtype = _result_dtype(arr.dtype)
    result = xr.DataArray(dsa.from_array(np.asarray(out.values).astype(dtype, copy=False)),
                          dims=arr.dims, name=arr.name, attrs=dict(arr.attrs))
    if change is None:
        return None, cube.with_data(result.assign_coords(_block_coords(arr, None)))
    coords = {d: (np.asarray(labels[str(d)]) if str(d) in labels else arr.coords[d].values)
              for d in arr.dims if str(d) in labels or (d in arr.coords and str(d) not in scale)}
    result = result.assign_coords(coords)
    if scale:
        return change, with_scaled_grid(cube, result, dict(scale))
    return change, cube.with_data(result, cube.dimensions)


def _blockwise_declared(pool: UdfPool, cube: RasterCube, change: MetadataChange, context: Any,
                        target: tuple[str, str] | None, node_id: str | None) -> RasterCube:
    """The UDF applied lazily per spatial block (as _blockwise) where its apply_metadata
    declares another resolution or other band labels: each block of the result is the
    input's block times the declared factor (e.g. 2 x 2 as many pixels for a resolution
    halved), with the declared labels; the grid keeps its origin and extent."""
    arr = cube.data
    dims = list(arr.dims)
    spatial = {d.name for d in cube.dimensions if d.type == SPATIAL}
    scale = {d: change.scale.get(str(d), Fraction(1)) for d in dims}
    chunks = _block_chunks(arr, spatial, pool.limits)
    for d in spatial:  # block sides that scale to whole pixels
        den = scale[d].denominator
        if chunks[d] != -1 and den > 1:
            chunks[d] = max(den, chunks[d] // den * den)
    lazy = arr.chunk(chunks)
    in_chunks = dict(zip(dims, lazy.data.chunks, strict=True))
    for d in change.scale:
        if any((c * scale[d]).denominator != 1 for c in in_chunks[d]):
            raise errors.ProcessParameterInvalid(
                f"The UDF's apply_metadata gives '{d}' {scale[d]} times as many pixels, but "
                f"the cube has {arr.sizes[d]} pixels there (blocks of {in_chunks[d]}): the "
                f"result would not have whole pixels.", node_id=node_id, argument="udf")
    labels = {d: change.labels[str(d)] for d in dims if str(d) in change.labels}
    out_chunks = tuple((len(labels[d]),) if d in labels
                       else tuple(int(c * scale[d]) for c in in_chunks[d]) for d in dims)
    dtype = _result_dtype(arr.dtype)

    def run(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        location = block_info[0]["array-location"] if block_info else None
        piece = xr.DataArray(block, dims=dims, coords=_block_coords(arr, location),
                             name=arr.name)
        out = _with_dims_of(_call_udf(pool, piece, context, target, node_id), piece, node_id)
        expected = tuple(len(labels[d]) if d in labels else int(piece.sizes[d] * scale[d])
                         for d in dims)
        if out.shape != expected:
            raise errors.ProcessParameterInvalid(
                f"The UDF returned {dict(out.sizes)} for a block of {dict(piece.sizes)}; its "
                f"apply_metadata declares {dict(zip(map(str, dims), expected, strict=True))}.",
                node_id=node_id, argument="udf")
        return np.asarray(out.values).astype(dtype, copy=False)

    result = dsa.map_blocks(run, lazy.data, chunks=out_chunks, dtype=dtype,
                            meta=np.array((), dtype=dtype))
    coords = {d: (np.asarray(labels[d]) if d in labels else arr.coords[d].values)
              for d in dims if d in labels or (d in arr.coords and d not in change.scale)}
    out = xr.DataArray(result, dims=dims, coords=coords, name=arr.name, attrs=dict(arr.attrs))
    if change.scale:
        return with_scaled_grid(cube, out, dict(change.scale))
    return cube.with_data(out, cube.dimensions)


def _along_dimension(pool: UdfPool, value: ArrayValue, context: Any,
                     target: tuple[str, str] | None, node_id: str | None,
                     declared: tuple[str, ...] | None = None) -> Any:
    """`run_udf` as the callback of reduce_dimension / apply_dimension: the UDF gets the
    dimension `value.dim` whole (and every other non-spatial dimension), one call per spatial
    block, lazily. It may drop that dimension (a reduction) or change its length (the new
    length must be the same for every block); every other dimension keeps its size.

    The first block is computed at once to learn the shape of the result; its result is
    kept for the graph, so no block is computed twice."""
    arr = value.data
    if arr.dtype == object:
        arr = arr.astype(float)
    dims = list(arr.dims)
    dim = value.dim
    spatial = {d for d in dims if d in _SPATIAL_NAMES}
    lazy = arr.chunk(_block_chunks(arr, spatial, pool.limits))
    chunks = dict(zip(dims, lazy.data.chunks, strict=True))
    first = arr.isel({d: slice(0, chunks[d][0]) for d in dims})
    (values,) = executor.current().compute(first.data, progress=lambda _: None)
    first = xr.DataArray(np.asarray(values), dims=dims, coords=_block_coords(first, None),
                         name=arr.name)
    probe = _call_udf(pool, first, context, target, node_id)

    unexpected = [str(d) for d in probe.dims if d not in dims]
    if unexpected:
        raise errors.ProcessParameterInvalid(
            f"The UDF returned the new dimension(s) {', '.join(unexpected)}; over the "
            f"dimension '{dim}' it may only change or drop '{dim}' (its input had "
            f"{', '.join(map(str, dims))}).", node_id=node_id, argument="udf")
    for d in dims:
        if d != dim and probe.sizes.get(d) != first.sizes[d]:
            got = "dropped it" if d not in probe.dims else f"returned {probe.sizes[d]}"
            raise errors.ProcessParameterInvalid(
                f"The UDF {got} along '{d}' for a block with {first.sizes[d]} values there; "
                f"over '{dim}' it must keep every other dimension.", node_id=node_id,
                argument="udf")
    keep = dim in probe.dims
    n = probe.sizes[dim] if keep else 1
    if declared is not None and keep and len(declared) != n:
        raise errors.ProcessParameterInvalid(
            f"The UDF returned {n} values along '{dim}' but its apply_metadata names "
            f"{len(declared)} labels ({', '.join(declared)}).", node_id=node_id,
            argument="udf")
    out_dtype = probe.dtype if probe.dtype.kind in "biuf" else np.dtype(np.float64)
    axis = dims.index(dim)
    first_result = {"values": _as_block(probe, dims, dim, keep, out_dtype)}

    def run(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        location = block_info[0]["array-location"] if block_info else None
        if location is not None and all(a == 0 for a, _ in location) \
                and "values" in first_result:
            return first_result.pop("values")
        piece = xr.DataArray(block, dims=dims, coords=_block_coords(arr, location),
                             name=arr.name)
        out = _call_udf(pool, piece, context, target, node_id)
        expected = {d: (n if d == dim else piece.sizes[d]) for d in dims}
        if (set(out.dims) != set(d for d in dims if keep or d != dim)
                or any(out.sizes[d] != expected[d] for d in out.dims)):
            raise errors.ProcessParameterInvalid(
                f"The UDF returned {dict(out.sizes)} for a block where the first block gave "
                f"{dict(probe.sizes)}: every block must give the same number of values along "
                f"'{dim}'.", node_id=node_id, argument="udf")
        return _as_block(out, dims, dim, keep, out_dtype)

    out_chunks = tuple((n,) if d == dim else chunks[d] for d in dims)
    result = dsa.map_blocks(run, lazy.data, chunks=out_chunks, dtype=out_dtype,
                            meta=np.array((), dtype=out_dtype))
    coords = {d: c for d, c in _block_coords(arr, None).items() if d != dim}
    if keep:
        labels = probe.coords[dim].values if dim in probe.coords else None
        if n == arr.sizes[dim] and dim in arr.coords:
            labels = arr.coords[dim].values
        if declared is not None:
            labels = np.asarray(declared)
        if labels is not None and len(labels) == n:
            coords[dim] = labels
        return ArrayValue(xr.DataArray(result, dims=dims, coords=coords, name=arr.name),
                          dim, value.labeled, declared)
    reduced = result[tuple(0 if a == axis else slice(None) for a in range(len(dims)))]
    return xr.DataArray(reduced, dims=[d for d in dims if d != dim], coords=coords,
                        name=arr.name)


def _whole_piece(pool: UdfPool, cube: RasterCube, context: Any,
                 target: tuple[str, str] | None, node_id: str | None) -> RasterCube:
    """The UDF applied to a whole piece (a polygon's pixels, a neighbourhood): one call. The
    piece is computed now, so the UDF's result may change the number of labels of the
    non-spatial dimensions (e.g. another number of bands in apply_polygon): the caller
    checks what its process allows. Labels of a changed dimension: the UDF's, else 0, 1, …"""
    arr = cube.data
    (values,) = executor.current().compute(arr.data, progress=lambda _: None)
    piece = xr.DataArray(np.asarray(values), dims=arr.dims, coords=_block_coords(arr, None),
                         name=arr.name)
    out = _call_udf(pool, piece, context, target, node_id)
    if set(out.dims) != set(arr.dims):
        raise errors.ProcessParameterInvalid(
            f"The UDF returned a cube with the dimensions {tuple(map(str, out.dims))}; it "
            f"must keep the dimensions {tuple(map(str, arr.dims))}.", node_id=node_id,
            argument="udf")
    out = out.transpose(*arr.dims)
    coords: dict[Any, Any] = {}
    for d in arr.dims:
        if out.sizes[d] == arr.sizes[d]:
            if d in arr.coords:
                coords[d] = arr.coords[d].values
        elif d in {dim.name for dim in cube.dimensions if dim.type == SPATIAL}:
            raise errors.ProcessParameterInvalid(
                f"The UDF returned {out.sizes[d]} values along '{d}' for a piece with "
                f"{arr.sizes[d]}; it must keep the spatial dimensions.", node_id=node_id,
                argument="udf")
        else:
            labels = out.coords[d].values if d in out.coords else np.arange(out.sizes[d])
            coords[d] = labels
    dtype = _result_dtype(out.dtype) if out.dtype.kind not in "biuf" else out.dtype
    result = xr.DataArray(dsa.from_array(np.asarray(out.values).astype(dtype, copy=False)),
                          dims=arr.dims, coords=coords, name=arr.name)
    dims = tuple(dim if out.sizes[dim.name] == arr.sizes[dim.name]
                 else Dimension(dim.name, dim.type, dim.axis, None) for dim in cube.dimensions)
    return RasterCube(result, dims, None, dict(cube.attrs))


def _as_block(out: xr.DataArray, dims: list, dim: Any, keep: bool,
              dtype: np.dtype) -> np.ndarray:
    """The UDF's result as a numpy block in the input's axis order (a dropped dimension as an
    axis of length one)."""
    if not keep:
        out = out.expand_dims(dim)
    return np.asarray(out.transpose(*dims).values).astype(dtype, copy=False)


def _result_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _udf_proj(data: Any) -> dict | None:
    """UdfData.proj of a raster cube as CDSE gives it: {"EPSG": code} of its spatial
    dimensions' reference system (None without one, or one without an EPSG code)."""
    if not isinstance(data, RasterCube):
        return None
    crs = data.crs
    if crs is None:
        return None
    try:
        epsg = pyproj.CRS.from_user_input(crs).to_epsg()
    except pyproj.exceptions.CRSError:
        return None
    return None if epsg is None else {"EPSG": epsg}


@process()
def run_udf(data: Any, udf: str, runtime: str, version: str | None = None,
            context: Any = None, ctx: Any = None) -> Any:
    """Run a Python UDF on `data` (see the module docstring: trusted users only); what it
    logs with openeo.udf.inspect reaches the job's log, with this node's id."""
    _check_runtime(runtime, version)
    code = _check_code(udf)
    pool = _pool(code, ctx, _udf_proj(data))
    target = _udf_log_token(ctx)
    context = {} if context is None else context
    node_id = getattr(ctx, "node_id", None)
    if isinstance(data, RasterCube) and _WHOLE_PIECES.get() == "reshape":
        return _whole_piece(pool, nodata_as_nan(data), context, target, node_id)
    if isinstance(data, RasterCube):
        cube = nodata_as_nan(data)
        change = _declared_change(pool, code, cube, context, target, node_id)
        if change is None and _WHOLE_PIECES.get() == "same" and not is_dry_run() \
                and not defines_apply_metadata(code):
            change, first = _inferred_change(pool, cube, context, target, node_id)
            if first is not None:
                return first
        if change is not None:
            return _blockwise_declared(pool, cube, change, context, target, node_id)
        spatial = {d.name for d in cube.dimensions if d.type == SPATIAL}
        out = _blockwise(pool, cube.data, spatial, context,
                         _result_dtype(cube.data.dtype), target, node_id)
        return cube.with_data(out, cube.dimensions)
    if isinstance(data, xr.DataArray):  # `x` inside apply: the whole cube, elementwise
        spatial = {d for d in data.dims if d in _SPATIAL_NAMES}
        return _blockwise(pool, data, spatial, context, _result_dtype(data.dtype),
                          target, node_id, pixelwise=not _WHOLE_PIECES.get())
    if isinstance(data, ArrayValue) and not data.is_list:
        change = _declared_change(pool, code, data.data, context, target, node_id)
        labels = change.labels.get(str(data.dim)) if change is not None else None
        return _along_dimension(pool, data, context, target, node_id, labels)
    if isinstance(data, ArrayValue):
        arr = data.data
        if arr.dtype == object:
            arr = arr.copy(data=np.array([np.nan if v is None else v for v in arr.values],
                                         dtype=float))
        out = _call_udf(pool, arr, context, target, node_id)
        if out.ndim == 0:
            return to_python(out.values)
        return [to_python(v) for v in np.asarray(out.values).ravel().tolist()]
    if isinstance(data, (list, tuple)):
        arr = xr.DataArray(np.array([np.nan if v is None else v for v in data], dtype=float),
                           dims=[LIST_DIM])
        out = _call_udf(pool, arr, context, target, node_id)
        return [to_python(v) for v in np.asarray(out.values).ravel().tolist()]
    if data is None or isinstance(data, (int, float)):
        arr = xr.DataArray(np.nan if data is None else float(data))
        out = _call_udf(pool, arr, context, target, node_id)
        return to_python(out.values)
    if isinstance(data, VectorCube):
        if not defines_function(code, "apply_vectorcube"):
            raise errors.ProcessParameterInvalid(
                "On a vector cube (e.g. the result of aggregate_spatial) a UDF must define "
                "apply_vectorcube(geometries, cube, context); UdfData feature collections and "
                "structured data are not supported.", argument="udf")
        return data if is_dry_run() else _on_vector_cube(pool, data, context, target, node_id)
    raise errors.ProcessParameterInvalid(
        f"run_udf cannot pass data of type {type(data).__name__} to a Python UDF: it takes "
        f"raster data cubes, arrays and numbers.", argument="data")
