#!/usr/bin/env python
"""The cost of one UDF call in the sandbox (issue 12): a warm pool with a no-op UDF, called
on blocks of several sizes, the way run_udf calls it per block.

    PYTHONPATH=src .venv/bin/python bench/udf_overhead.py [--calls 200] [--json out.json]

Prints, per block size: wall milliseconds per call (median and 90th percentile), the CPU
milliseconds per call of the calling process and of the sandboxed worker, and MB/s in and out
(the pipes below 256 KiB, the shared-memory file above); plus the time to get a pool's first
worker (a cold one, and one from a spare started ahead) and its first call (a new worker's
first call also maps its shared file and fills xarray's caches).
The machine's load average is printed before and after: on a shared machine read the
spread, not only the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from run import tree_cpu_s  # bench/run.py, beside this script

from terracube.engine.udf_sandbox import UdfLimits, UdfPool, sandbox_problem

NOOP = """import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
"""

# (t, bands, y, x) of a block: tiny, a UDF block of the small test cubes, a W1 block
SHAPES = [(1, 1, 16, 16), (12, 2, 64, 64), (24, 2, 256, 256), (24, 2, 512, 512)]


def block(shape: tuple[int, ...]) -> xr.DataArray:
    t, b, y, x = shape
    return xr.DataArray(np.random.default_rng(0).random(shape, dtype=np.float32),
                        dims=["t", "bands", "y", "x"],
                        coords={"t": np.arange(t).astype("datetime64[D]"),
                                "bands": [f"B{i}" for i in range(b)],
                                "y": np.arange(y, dtype=float), "x": np.arange(x, dtype=float)})


def measure(pool: UdfPool, shape: tuple[int, ...], calls: int) -> dict:
    arr = block(shape)
    pool.call(arr, {})  # the first call of a size is not counted
    workers = [w.proc.pid for w in pool._all]  # noqa: SLF001 - the benchmark looks inside
    cpu_workers = sum(tree_cpu_s(p) for p in workers)
    cpu_self = time.process_time()
    walls = []
    for _ in range(calls):
        t0 = time.perf_counter()
        out, _logs = pool.call(arr, {})
        walls.append(time.perf_counter() - t0)
    assert out.shape == arr.shape
    cpu_self = time.process_time() - cpu_self
    cpu_workers = sum(tree_cpu_s(p) for p in workers) - cpu_workers
    mb = arr.nbytes / 1e6
    return {"shape": list(shape), "mb": round(mb, 3), "calls": calls,
            "median_ms": round(1000 * statistics.median(walls), 3),
            "p90_ms": round(1000 * sorted(walls)[int(0.9 * (calls - 1))], 3),
            "cpu_server_ms": round(1000 * cpu_self / calls, 3),
            "cpu_worker_ms": round(1000 * cpu_workers / calls, 3),
            "mb_per_s": round(2 * mb / statistics.median(walls), 1)}  # in and out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="calls per block size (fewer for "
                                                           "large blocks)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    problem = sandbox_problem()
    if problem:
        print(f"no sandbox: {problem}", file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    pool = UdfPool(NOOP, UdfLimits(), sandboxed=True)  # takes a spare (or starts one cold)
    first_pool_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool.call(block(SHAPES[-1]), {})
    first_call_s = time.perf_counter() - t0
    time.sleep(10)  # the spares refill (imports take seconds on a loaded machine)
    t0 = time.perf_counter()
    second = UdfPool(NOOP, UdfLimits(), sandboxed=True)
    warm_pool_s = time.perf_counter() - t0
    second.close()
    rows = []
    for shape in SHAPES:
        n = max(5, a.calls if np.prod(shape) < 1e6 else a.calls // 20)
        rows.append(measure(pool, shape, n))
        print(json.dumps(rows[-1]), flush=True)
    pool.close()
    result = {"first_pool_s": round(first_pool_s, 3), "pool_from_spare_s": round(warm_pool_s, 3),
              "first_call_50mb_s": round(first_call_s, 3),
              "blocks": rows, "load_before": [round(v, 2) for v in load_before],
              "load_after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()}
    print(json.dumps({k: v for k, v in result.items() if k != "blocks"}))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
