"""The UDF runner: the program that runs a user's Python UDF in its own (sandboxed) process.

It is started as a script (`python udf_runner.py`, see engine/udf_sandbox.py), never imported
by the server, and imports nothing of terracube: inside the sandbox only the Python runtime and
its libraries are visible. It applies the resource limits it is given, drops root if it runs as
root, loads the UDF once and then answers requests on a private pipe: one data block in, one
block (or an error with the UDF's own traceback) out. The wire format is JSON headers plus raw
array buffers of plain dtypes (never object), so the server never unpickles anything a UDF
could have produced. Large buffers do not go through the pipe: they lie in a shared-memory
file (a sealed memfd only the server and this process hold) at offsets the header gives; the
input is used in place and a result that is the input (or a piece of it) is not copied.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import resource
import select
import struct
import sys
import traceback
from typing import Any, BinaryIO

import numpy as np

MAX_HEADER = 64 * 1024 * 1024
_LOGGER_NAME = os.environ.get("OPENEO_UDF_USER_LOGGER", "openeo.udf.debug.user")


# --- wire format (shared with udf_sandbox.py, which has its own copy: no imports across) ----
def encode_array(arr: Any, buffers: list) -> dict:
    """A JSON description of a DataArray whose values and coordinates go to `buffers`."""

    def npy(values: Any) -> dict:
        values = np.asarray(values)
        if values.dtype == object:
            try:
                values = values.astype(float)
            except (TypeError, ValueError):
                values = values.astype(str)
        values = np.ascontiguousarray(values)
        buffers.append(memoryview(values.reshape(-1).view(np.uint8)))
        return {"i": len(buffers) - 1, "dtype": values.dtype.str, "shape": list(values.shape)}

    coords = {str(name): {"dims": [str(d) for d in c.dims], "data": npy(c.values)}
              for name, c in arr.coords.items()}
    return {"dims": [str(d) for d in arr.dims], "data": npy(arr.values), "coords": coords,
            "name": arr.name if isinstance(arr.name, str) else None}


def decode_array(desc: dict, buffers: list) -> Any:
    import xarray as xr

    def load(ref: Any) -> np.ndarray:
        dtype = np.dtype(str(ref["dtype"]))
        if dtype.hasobject or dtype.kind not in "biufcmMSU":  # plain values only
            raise ValueError(f"unsupported dtype {dtype}")
        shape = tuple(int(n) for n in ref["shape"])
        return np.frombuffer(buffers[int(ref["i"])], dtype=dtype).reshape(shape)

    coords = {name: (c["dims"], load(c["data"])) for name, c in desc.get("coords", {}).items()}
    return xr.DataArray(load(desc["data"]), dims=desc["dims"], coords=coords,
                        name=desc.get("name"))


def write_message(out: BinaryIO, header: dict, buffers: list,
                  shm: SharedBlocks | None = None) -> None:
    header = {**header, "buffers": [memoryview(b).nbytes for b in buffers]}
    at = shm.place(buffers) if shm is not None else None
    if at is not None:
        header["at"], buffers = at, []
    raw = json.dumps(header, default=str).encode()
    out.write(struct.pack("<Q", len(raw)) + raw)
    for b in buffers:
        out.write(b)
    out.flush()


def _address(buffer: Any) -> int:
    view = np.frombuffer(buffer, dtype=np.uint8)
    return int(view.__array_interface__["data"][0]) if view.size else 0


class SharedBlocks:
    """The shared-memory file of this runner. A request's header gives where its buffers lie
    in the file ("at", in one page-aligned region) and a region the reply may use ("out"):
    the reply's buffers are copied there, or stay where they are when they lie in the input
    already (a no-op or in-place UDF: no copy at all). The server owns the file's layout and
    size; the runner cannot shrink it (it is sealed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.mapped: mmap.mmap | None = None
        self.start = self.base = self.length = 0
        self.out = (0, 0)

    def receive(self, header: dict) -> list:
        """The request's buffers, in place in the shared file (writable: the UDF may change
        its input in place)."""
        self.release()
        sizes = [int(n) for n in header["buffers"]]
        at = [int(o) for o in header["at"]]
        start, length = (int(v) for v in header["out"])
        self.out = (start, length)
        self.start = min(at, default=0) // mmap.ALLOCATIONGRANULARITY \
            * mmap.ALLOCATIONGRANULARITY
        self.length = max((o + n for o, n in zip(at, sizes, strict=True)), default=0) \
            - self.start
        if self.length <= 0:
            return [bytearray(0) for _ in sizes]
        self.mapped = mmap.mmap(self.fd, self.length, offset=self.start)
        view = memoryview(self.mapped)
        self.base = _address(view)
        return [view[o - self.start:o - self.start + n] for o, n in zip(at, sizes, strict=True)]

    def place(self, buffers: list) -> list[int] | None:
        """Offsets of the reply's buffers in the shared file (copied into the "out" region
        unless they are in the input already), or None when they go through the pipe: they
        do not fit, or the request came through the pipe (a small one)."""
        if self.mapped is None:
            return None
        at: list[int] = []
        copies: list[tuple[int, Any]] = []
        out_start, out_length = self.out
        end = 0
        for b in buffers:
            n = memoryview(b).nbytes
            addr = _address(b) if n else 0
            if addr and self.base <= addr and addr + n <= self.base + self.length:
                at.append(self.start + addr - self.base)
                continue
            at.append(out_start + end)
            copies.append((end, b))
            end += -(-n // 64) * 64
        if end > out_length:
            return None
        if copies and end:
            with mmap.mmap(self.fd, end, offset=out_start) as out:
                for offset, b in copies:
                    data = memoryview(b).cast("B")
                    out[offset:offset + data.nbytes] = data
        return at

    def release(self) -> None:
        """Unmaps the last request (unless the UDF kept a reference to it: then later)."""
        if self.mapped is not None:
            try:
                self.mapped.close()
            except BufferError:  # the UDF still holds the array: unmapped when it lets go
                pass
            self.mapped, self.start, self.base, self.length = None, 0, 0, 0


def _read_exact(fd: int, n: int, idle: float | None) -> bytearray:
    buf = bytearray(n)  # writable: the UDF may change its input in place
    view, pos = memoryview(buf), 0
    while pos < n:
        if idle is not None and not select.select([fd], [], [], idle)[0]:
            raise EOFError("idle")
        got = os.readv(fd, [view[pos:pos + (1 << 20)]])
        if not got:
            raise EOFError("closed")
        pos += got
    return buf


def read_message(fd: int, idle: float | None = None,
                 shm: SharedBlocks | None = None) -> tuple[dict, list]:
    (size,) = struct.unpack("<Q", _read_exact(fd, 8, idle))
    if size > MAX_HEADER:
        raise ValueError("message header too large")
    header = json.loads(_read_exact(fd, size, None))
    if shm is not None and "at" in header:
        return header, shm.receive(header)
    if shm is not None:
        shm.release()
    return header, [_read_exact(fd, n, None) for n in header.get("buffers", [])]


# --- limits -----------------------------------------------------------------------------------
def apply_limits(limits: dict) -> None:
    """rlimits from the server's settings; then, when running as root, become a user without
    privileges (so the process limit applies and nothing owned by root is writable)."""
    for name, key in (("RLIMIT_CPU", "cpu_seconds"), ("RLIMIT_AS", "memory_bytes"),
                      ("RLIMIT_NPROC", "processes"), ("RLIMIT_FSIZE", "file_bytes")):
        value = limits.get(key)
        if value:
            resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    uid = limits.get("uid")
    if os.getuid() == 0 and uid:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
        try:  # must be impossible now
            os.setuid(0)
        except PermissionError:
            pass
        else:  # pragma: no cover - defensive
            raise SystemExit("could not drop root")


# --- running the UDF --------------------------------------------------------------------------
def _annotation_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", str(annotation))


class UdfError(Exception):
    """An error of the user's UDF, with the message the user gets."""


def load(code: str) -> tuple[str, Any, Any]:
    """(kind, entry function, its `apply_metadata` function or None) of the UDF module
    `code`."""
    import pandas
    import xarray as xr

    namespace: dict = {"__name__": "openeo_udf", "np": np, "numpy": np, "xarray": xr,
                       "pandas": pandas, "pd": pandas, "math": math}
    # the openeo client costs ~0.5 s of CPU to import: only for code that may use it
    if any(word in code for word in ("openeo", "DataCube", "UdfData", "StructuredData")):
        from openeo.udf import UdfData, XarrayDataCube
        from openeo.udf.structured_data import StructuredData

        namespace.update(UdfData=UdfData, XarrayDataCube=XarrayDataCube,
                         DataCube=XarrayDataCube, StructuredData=StructuredData)
    try:
        exec(compile(code, "<udf>", "exec", dont_inherit=True), namespace)  # noqa: S102
    except BaseException as exc:
        raise UdfError(f"The UDF code failed while loading: {type(exc).__name__}: {exc}"
                       f"{_udf_traceback(exc)}") from exc
    kind, func = _entry_point(namespace)
    meta = namespace.get("apply_metadata")
    return kind, func, meta if callable(meta) else None


def _entry_point(namespace: dict) -> tuple[str, Any]:
    import inspect as pyinspect

    for name in ("apply_datacube", "apply_hypercube"):
        func = namespace.get(name)
        if callable(func):
            named = pyinspect.signature(func).parameters
            ann = named["cube"].annotation if "cube" in named else None
            kind = "dataarray" if _annotation_name(ann).split(".")[-1] == "DataArray" \
                else "datacube"
            return kind, func
    if callable(namespace.get("apply_timeseries")):
        return "timeseries", namespace["apply_timeseries"]
    for name, func in namespace.items():
        if name.startswith("_") or not callable(func) or isinstance(func, type):
            continue
        if getattr(func, "__module__", None) != "openeo_udf":
            continue
        try:
            params = list(pyinspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            continue
        if len(params) == 1 and _annotation_name(
                params[0].annotation).split(".")[-1] == "UdfData":
            return "udfdata", func
    if callable(namespace.get("apply_vectorcube")):
        return "vectorcube", namespace["apply_vectorcube"]
    raise UdfError("The UDF defines no entry point: define apply_datacube(cube, context), "
                   "apply_timeseries(series, context), a function taking one UdfData or "
                   "apply_vectorcube(geometries, cube, context).")


def _udf_traceback(exc: BaseException) -> str:
    """The lines of the traceback that are in the user's code (never the runner's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<udf>"]
    if not frames:
        return ""
    lines = [f"  line {f.lineno}, in {f.name}" for f in frames[-5:]]
    return " (UDF traceback: " + "; ".join(lines) + ")"


def call_vector(func: Any, arr: Any, vector: dict, context: Any) -> tuple[Any, dict]:
    """`apply_vectorcube(geometries, cube, context)` on a vector cube: its geometries as a
    GeoDataFrame (GeoJSON features with their properties, in `vector["crs"]`) and its values;
    returns (values, the geometries it returned as a GeoJSON FeatureCollection with "crs")."""
    import geopandas
    import xarray as xr

    frame = geopandas.GeoDataFrame.from_features(vector["features"], crs=vector.get("crs"))
    result = func(frame, arr, context)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise UdfError(f"apply_vectorcube returned {type(result).__name__}; it must return "
                       f"(geometries, cube): a GeoDataFrame and an xarray.DataArray.")
    geometries, cube = result
    if not isinstance(geometries, geopandas.GeoDataFrame):
        raise UdfError(f"apply_vectorcube returned {type(geometries).__name__} as its "
                       f"geometries, not a geopandas.GeoDataFrame.")
    if callable(getattr(cube, "get_array", None)):
        cube = cube.get_array()
    if not isinstance(cube, xr.DataArray):
        raise UdfError(f"apply_vectorcube returned {type(cube).__name__} as its cube, not an "
                       f"xarray.DataArray.")
    crs = geometries.crs.to_epsg() if geometries.crs is not None else None
    collection = json.loads(geometries.to_json(na="null", drop_id=True))
    return cube, {"features": collection.get("features", []), "crs": crs}


def call(kind: str, func: Any, arr: Any, context: Any, proj: Any = None) -> Any:
    import xarray as xr

    if kind == "vectorcube":
        raise UdfError("apply_vectorcube runs on vector cubes (e.g. the result of "
                       "aggregate_spatial), not on raster data cubes: use apply_datacube.")
    if kind == "dataarray":
        out = func(cube=arr, context=context)
    elif kind == "timeseries":
        out = _per_timeseries(func, arr, context)
    else:
        from openeo.udf import UdfData, XarrayDataCube

        if kind == "datacube":
            out = func(cube=XarrayDataCube(arr), context=context)
        else:
            udf_data = UdfData(proj=proj, datacube_list=[XarrayDataCube(arr)],
                               user_context=context)
            func(udf_data)
            cubes = udf_data.get_datacube_list() or []
            if len(cubes) != 1:
                raise UdfError(f"The UDF left {len(cubes)} data cubes in its UdfData, not 1.")
            out = cubes[0]
    if not isinstance(out, xr.DataArray) and callable(getattr(out, "get_array", None)):
        out = out.get_array()  # an XarrayDataCube
    if not isinstance(out, xr.DataArray):
        raise UdfError(f"The UDF returned {type(out).__name__}, not a data cube.")
    return out


def _per_timeseries(func: Any, arr: Any, context: Any) -> Any:
    import pandas

    tdims = [d for d in arr.dims if d in ("t", "time")]
    if len(tdims) != 1:
        raise UdfError("apply_timeseries needs a temporal dimension called 't' or 'time'.")
    t = tdims[0]
    moved = arr.transpose(..., t)
    values = np.asarray(moved.values, dtype=float)
    flat = values.reshape(-1, values.shape[-1])
    index = pandas.Index(moved.coords[t].values) if t in moved.coords else None
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        result = func(series=pandas.Series(row, index=index), context=context)
        out[i] = np.asarray(result, dtype=float)
    return moved.copy(data=out.reshape(values.shape)).transpose(*arr.dims)


def apply_metadata(func: Any, described: dict, context: Any) -> dict:
    """The UDF's `apply_metadata(metadata, context)` applied to the cube described by the
    server (`{"dimensions": [{name, type, extent, step, reference_system | values}]}`, the
    STAC datacube fields), as an openeo CollectionMetadata; its answer described the same
    way (spatial: step and reference system; bands: names; others: name and type)."""
    if func is None:
        raise UdfError("The UDF defines no apply_metadata(metadata, context).")
    from openeo.metadata import CollectionMetadata

    dims = {str(d["name"]): {k: v for k, v in d.items() if k != "name"}
            for d in described.get("dimensions", [])}
    metadata = CollectionMetadata({"cube:dimensions": dims})
    result = func(metadata, context)
    dimensions = getattr(result, "_dimensions", None)
    if not isinstance(dimensions, list):
        raise UdfError(f"The UDF's apply_metadata returned {type(result).__name__}; it must "
                       f"return the metadata it was given, changed (e.g. "
                       f"metadata.rename_labels(...) or metadata.resample_spatial(...)).")
    out = []
    for d in dimensions:
        entry: dict[str, Any] = {"name": str(getattr(d, "name", "")),
                                 "type": str(getattr(d, "type", "other"))}
        if entry["type"] == "spatial":
            step = getattr(d, "step", None)
            entry["step"] = float(step) if isinstance(step, (int, float)) else None
            crs = getattr(d, "crs", None)
            entry["reference_system"] = crs if isinstance(crs, (int, str, dict)) else None
        elif entry["type"] == "bands":
            entry["values"] = [None if n is None else str(n)
                               for n in getattr(d, "band_names", [])]
        out.append(entry)
    return {"dimensions": out}


class _Collect(logging.Handler):
    """Keeps what the UDF logs with openeo.udf.inspect, sent back with the block."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        data: Any = getattr(record, "data", None)
        try:
            if hasattr(data, "get_array"):
                data = data.get_array()
            if hasattr(data, "dims") and hasattr(data, "values"):
                data = ({"dims": [str(d) for d in data.dims], "shape": list(data.shape),
                         "values": np.asarray(data.values).tolist()}
                        if data.size <= 10_000 else f"array of shape {tuple(data.shape)}")
            elif isinstance(data, np.ndarray):
                data = data.tolist() if data.size <= 10_000 else f"array {data.shape}"
            json.dumps(data, default=str)
        except Exception:
            data = repr(data)[:500]
        self.records.append({"level": record.levelname.lower(), "message": record.getMessage(),
                             "code": getattr(record, "code", None), "data": data})


def _lazy_dask_in_xarray() -> None:
    """Every DataArray xarray builds asks whether its data is a dask array, and the first such
    question imports dask.array (and scipy.fft with it): ~0.4 s of CPU in every runner, for
    UDFs that almost never use dask. Here xarray's answer is looked up only once the UDF has
    imported dask.array itself (no dask array can exist before); module and version still
    import on request. xarray internals: if they are not as expected, nothing changes."""
    import importlib.util
    import sys

    try:
        from xarray.namedarray import pycompat

        if "dask" in pycompat._cached_duck_array_modules:
            return
        base = pycompat.DuckArrayModule
    except (ImportError, AttributeError):
        return

    class _DaskArrayType(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            module = sys.modules.get("dask.array")
            return module is not None and isinstance(obj, module.Array)

    class DaskArray(metaclass=_DaskArrayType):
        pass

    class LazyDask(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:  # noqa: D107 - no import here
            self.type = (DaskArray,)
            self.available = importlib.util.find_spec("dask") is not None

        @property
        def module(self) -> Any:
            import dask

            return dask

        @property
        def version(self) -> Any:
            from packaging.version import Version

            return Version(self.module.__version__)

    pycompat._cached_duck_array_modules["dask"] = LazyDask()


def main() -> None:
    # The pipe to the server is kept on private descriptors; what the UDF prints goes to stderr.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    out = os.fdopen(wfd, "wb")
    try:  # imported before the code arrives: a spare runner waits warm (udf_sandbox._Spares)
        import pandas  # noqa: F401
        import xarray  # noqa: F401

        _lazy_dask_in_xarray()
    except ImportError:  # pragma: no cover - reported when the UDF loads
        pass
    header, _ = read_message(rfd)
    apply_limits(header.get("limits", {}))
    # packages the UDF declared (a read-only folder): after the runtime's, which always win
    sys.path.extend(str(p) for p in header.get("sys_path") or [])
    shm = SharedBlocks(int(header["shm_fd"])) if header.get("shm_fd") is not None else None
    idle = header.get("idle_seconds")
    collect = _Collect()
    user_logger = logging.getLogger(_LOGGER_NAME)
    user_logger.setLevel(logging.DEBUG)
    user_logger.addHandler(collect)
    user_logger.propagate = False
    try:
        kind, func, meta_func = load(header["code"])
    except UdfError as exc:
        write_message(out, {"ok": False, "error": str(exc)}, [])
        return
    except BaseException as exc:  # e.g. MemoryError while importing
        write_message(out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, [])
        return
    write_message(out, {"ok": True, "kind": kind, "apply_metadata": meta_func is not None}, [])
    while True:
        try:
            request, buffers = read_message(rfd, idle, shm)
        except EOFError:
            return
        collect.records = []
        if "metadata" in request:  # what the UDF's apply_metadata says of its result
            try:
                answer = apply_metadata(meta_func, request["metadata"],
                                        request.get("context") or {})
                write_message(out, {"ok": True, "metadata": answer, "logs": collect.records},
                              [])
            except UdfError as exc:
                write_message(out, {"ok": False, "error": str(exc), "logs": collect.records},
                              [])
            except BaseException as exc:
                write_message(out, {"ok": False, "error": f"The UDF's apply_metadata failed: "
                                    f"{type(exc).__name__}: {exc}{_udf_traceback(exc)}",
                                    "logs": collect.records}, [])
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    return
            continue
        try:
            arr = decode_array(request["array"], buffers)
            vector = None
            if kind == "vectorcube" and isinstance(request.get("vector"), dict):
                result, vector = call_vector(func, arr, request["vector"],
                                             request.get("context") or {})
            else:
                result = call(kind, func, arr, request.get("context") or {},
                              request.get("proj"))
            reply: list[bytes] = []
            desc = encode_array(result, reply)
            write_message(out, {"ok": True, "array": desc, "vector": vector,
                                "logs": collect.records}, reply, shm)
            del arr, result, reply, buffers
        except UdfError as exc:
            write_message(out, {"ok": False, "error": str(exc), "logs": collect.records}, [])
        except BaseException as exc:
            if isinstance(exc, MemoryError):
                message = "MemoryError: the UDF exceeded its memory limit"
            else:
                message = f"{type(exc).__name__}: {exc}"
            write_message(out, {"ok": False, "error": f"The UDF failed: {message}"
                                f"{_udf_traceback(exc)}", "logs": collect.records}, [])
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                return


if __name__ == "__main__":
    main()
