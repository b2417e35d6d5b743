"""GET /jobs/{job_id}/estimate: what a job will read, write and roughly take, from its graph.

The graph is evaluated lazily (a dry run: no pixel is read, and a guard aborts if anything
tries to compute), through a catalog that records every load. The loads give the data to
read (dates × bands × pixels × bytes per sample of the stored band); the outputs give the
size of the results (uncompressed, so an upper limit); the number of dask tasks and the bytes
give a rough duration. Without a currency on this server there are no costs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from dask.callbacks import Callback

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.engine.evaluate import Services
from terracube.processing.run import evaluate_outputs

# Rough throughput of one worker on a laptop (measured on the sample data, 2 cores).
START_SECONDS = 2.0  # job process, evaluation, writing metadata
READ_BYTES_PER_SECOND = 60e6
WRITE_BYTES_PER_SECOND = 80e6
SECONDS_PER_TASK = 0.002
JSON_BYTES_PER_VALUE = 12


class _NoCompute(RuntimeError):
    pass


class _ComputeGuard(Callback):
    """Aborts any dask computation during the dry run."""

    def _start(self, dsk: Any) -> None:
        raise _NoCompute("the dry run tried to compute values")


@dataclass
class _Load:
    collection: str
    shape: dict[str, int]
    bytes: int


@dataclass
class _RecordingCatalog:
    """The real catalog, but every load is recorded (the cubes stay lazy)."""

    catalog: Any
    loads: list[_Load] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)

    def get(self, collection_id: str) -> Any:
        return _RecordingSource(self.catalog.get(collection_id), self)


class _RecordingSource:
    def __init__(self, source: Any, recorder: _RecordingCatalog) -> None:
        self._source = source
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def load(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        cube = self._source.load(request, *args, **kwargs)
        if isinstance(cube, RasterCube):
            self._recorder.loads.append(_Load(getattr(self._source, "id", "?"),
                                              _sizes(cube.data), _stored_bytes(cube)))
        return cube


def _sizes(data: xr.DataArray) -> dict[str, int]:
    """Dimension name -> length (our cubes name their dimensions with strings)."""
    return {str(name): int(n) for name, n in data.sizes.items()}


def _stored_bytes(cube: RasterCube) -> int:
    """Bytes of the stored samples behind a loaded cube (e.g. uint16, not the float32 view)."""
    sizes = _sizes(cube.data)
    band_dim = cube.first_dim_of_type("bands")
    meta = cube.attrs.get("band_metadata") or {}
    per_sample = []
    if band_dim is not None and band_dim.name in cube.data.coords:
        for band in cube.data.coords[band_dim.name].values:
            info = meta.get(str(band))
            dtype = getattr(info, "data_type", None) or cube.data.dtype
            per_sample.append(np.dtype(dtype).itemsize)
        others = math.prod(n for d, n in sizes.items() if d != band_dim.name)
        return int(others * sum(per_sample))
    return int(math.prod(sizes.values()) * cube.data.dtype.itemsize)


def _output_bytes(data: Any, fmt: str) -> tuple[int, dict[str, int] | None]:
    if isinstance(data, RasterCube):
        n = math.prod(data.data.sizes.values())
        if fmt == "JSON":
            return n * JSON_BYTES_PER_VALUE, _sizes(data.data)
        itemsize = max(1, data.data.dtype.itemsize if data.data.dtype != bool else 1)
        return n * itemsize, _sizes(data.data)
    return 1024, None  # a number, an array or a small document


def _tasks(data: Any) -> int:
    if isinstance(data, RasterCube):
        graph = getattr(data.data.data, "dask", None)
        if graph is not None:
            try:
                return len(graph)
            except Exception:
                return 0
    return 0


def estimate_job(process: dict[str, Any], services: Services) -> dict[str, Any]:
    """The openEO estimate of a job's process (no costs: this server has no currency)."""
    recorder = _RecordingCatalog(services.catalog)
    # The same services, but loads go through the recording catalog.
    services = dataclasses.replace(services, catalog=recorder, saved=[])
    problems: list[str] = []
    outputs: list[Any] = []
    try:
        with _ComputeGuard():  # type: ignore[no-untyped-call]  # dask's Callback.__init__
            outputs = evaluate_outputs(process, services)
    except errors.OpenEOError as exc:
        problems.append(f"{exc.code}: {exc.message}")
    except _NoCompute:
        problems.append("The graph computes values while it is being built; only the data "
                        "it loads could be estimated.")
    read = sum(load.bytes for load in recorder.loads)
    written = 0
    tasks = 0
    described = []
    for output in outputs:
        size, shape = _output_bytes(output.data, output.format)
        written += size
        tasks += _tasks(output.data)
        entry: dict[str, Any] = {"format": output.format, "bytes": size}
        if shape:
            entry["shape"] = shape
        described.append(entry)
    seconds = (START_SECONDS + read / READ_BYTES_PER_SECOND + written / WRITE_BYTES_PER_SECOND
               + tasks * SECONDS_PER_TASK)
    result: dict[str, Any] = {
        "duration": iso_duration(seconds),
        "size": int(written),
        # downloads_included is left out: its default, null, means unlimited downloads.
        "terracube:bytes_to_read": int(read),
        "terracube:pixels_to_read": int(sum(math.prod(ld.shape.values())
                                            for ld in recorder.loads)),
        "terracube:loads": [{"collection": ld.collection, "shape": ld.shape, "bytes": ld.bytes}
                            for ld in recorder.loads],
        "terracube:outputs": described,
        "terracube:tasks": tasks,
    }
    if problems:
        result["terracube:problems"] = problems
    return result


def iso_duration(seconds: float) -> str:
    """An ISO 8601 duration, whole seconds rounded up: PT45S, PT3M20S, PT1H2M."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if secs or out == "PT":
        out += f"{secs}S"
    return out
