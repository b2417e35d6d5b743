#!/usr/bin/env python
"""Benchmark a real `terracube serve` on the standard workloads of ../shared/bench.

    make bench                 # SIZE=small
    make bench SIZE=medium
    .venv/bin/python bench/run.py --size small [--workloads w1,w2] [--repeat 3]

What it does (the scripts of ../shared/bench are called from there, never copied):
1. generates the synthetic data with make_data.py into ~/.cache/terracube-bench/<size>
   (once; `--cache` or $TERRACUBE_BENCH_CACHE to move it);
2. registers its static STAC collection as the collection BENCH_S2 of a terracube data folder
   (`terracube collections add`), and renders the workload graphs with `load_collection` of it
   instead of `load_stac` of the file (a server does not read local files through load_stac);
3. for every workload and repetition starts a fresh server, runs run_http.py against it and
   records the wall time of the request and the peak RSS (VmHWM) of the server and its
   child processes (and of the dask workers, with --dask-scheduler and --dask-workers);
4. runs the numpy reference run_numpy_limit.py and, when its separate environment can be
   installed (~/.cache/terracube-bench/opd-venv), openeo-processes-dask (run_baseline_dask.py,
   as shipped and with the float32 cast), 3 fresh processes each;
5. compares every output with the numpy one (compare.py; W5: agreement with the true land
   cover) and writes summary.md, summary.json and results.jsonl to bench/results/<size>/ with
   the machine and the commit. Outputs and logs stay in a folder of their own per run,
   out-<size>-<time>-* in the cache folder (remove old ones yourself).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("TERRACUBE_SHARED", REPO.parent / "shared")) / "bench"
CACHE = Path(os.environ.get("TERRACUBE_BENCH_CACHE", Path.home() / ".cache" / "terracube-bench"))
COLLECTION = "BENCH_S2"
WORKLOADS = ("w1", "w2", "w3", "w4", "w5")
GRAPH_FILES = {"w1": "w1_ndvi_max.json", "w2": "w2_monthly_median.json",
               "w3": "w3_zonal_ndvi.json", "w4": "w4_kernel_smooth.json",
               "w5": "w5_random_forest.json"}
NUMPY_WORKLOADS = ("w1", "w2", "w3", "w4")
OPD_VERSION = "openeo-processes-dask==2026.9.1"
VARIANTS = ("terracube", "numpy", "opd", "opd-f32")
W1_WINDOW = "w1win"  # W1 on a 256 x 256 window of one date (the interactive case)
W1_UDF = "w1udf"  # W1 with a no-op Python UDF applied to the loaded cube (issue 12)
REFERENCE = {W1_UDF: "w1"}  # workloads whose output is compared with another's reference
NOOP_UDF = """import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
"""


def log(msg: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# --- data and graphs ---------------------------------------------------------------------------
def warm_page_cache(data: Path) -> None:
    """Read every file of the data set once, so that no run reads from the disk what the
    runs after it (and the variants after it: terracube runs first) find in the page cache.
    The large set (4.2 GB) fits in the page cache of a 24 GB machine."""
    started, total = time.monotonic(), 0
    for path in sorted(data.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(16 << 20):
                    total += len(chunk)
    log(f"read {total / 1e9:.1f} GB of {data} into the page cache in "
        f"{time.monotonic() - started:.1f} s")


def ensure_data(size: str, cache: Path) -> Path:
    data = cache / size
    if (data / "manifest.json").exists():
        return data
    log(f"generating the {size} data set into {data} (once)")
    # make_data writes absolute paths (file:// hrefs, manifest): generate in place
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([sys.executable, str(SHARED_BENCH / "make_data.py"), "--size", size,
                    "--no-zarr", "--out", str(data)], check=True)
    return data


def collection_graphs(out: Path, manifest: dict) -> dict[str, Path]:
    """The workload graphs with load_collection(BENCH_S2) in place of load_stac(file)."""
    folder = out / "graphs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for w, name in GRAPH_FILES.items():
        graph = json.loads((SHARED_BENCH / "graphs" / name).read_text())
        for node in graph["process_graph"].values():
            if node["process_id"] == "load_stac":
                args = {k: v for k, v in node["arguments"].items() if k != "url"}
                node["process_id"] = "load_collection"
                node["arguments"] = {"id": COLLECTION, **args}
        paths[w] = folder / name
        paths[w].write_text(json.dumps(graph, indent=1))
    # W1 on a 256 x 256 window of the first date
    graph = json.loads(paths["w1"].read_text())
    load = graph["process_graph"]["load"]["arguments"]
    x0, y0, res = manifest["x0"], manifest["y0"], manifest["res"]
    load["spatial_extent"] = {"west": x0, "north": y0, "east": x0 + 256 * res,
                              "south": y0 - 256 * res, "crs": f"EPSG:{manifest['epsg']}"}
    first = dt.date.fromisoformat(manifest["dates"][0])
    load["temporal_extent"] = [first.isoformat(), (first + dt.timedelta(days=1)).isoformat()]
    paths[W1_WINDOW] = folder / "w1_window.json"
    paths[W1_WINDOW].write_text(json.dumps(graph, indent=1))
    # W1 with apply(run_udf(no-op)) between load and the NDVI: what the UDF sandbox costs
    graph = json.loads(paths["w1"].read_text())
    nodes = graph["process_graph"]
    nodes["udf"] = {"process_id": "apply", "arguments": {
        "data": {"from_node": "load"}, "process": {"process_graph": {"run": {
            "process_id": "run_udf", "result": True, "arguments": {
                "data": {"from_parameter": "x"}, "udf": NOOP_UDF, "runtime": "Python"}}}}}}
    nodes["ndvi"]["arguments"]["data"] = {"from_node": "udf"}
    paths[W1_UDF] = folder / "w1_noop_udf.json"
    paths[W1_UDF].write_text(json.dumps(graph, indent=1))
    return paths


# --- a terracube server --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A fresh `terracube serve` process (no batch-job workers) on a free loopback port."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/openeo/1.2"
        self.log_file = open(log_path, "w")
        full_env = {**os.environ, "TERRACUBE_DEV_DEFAULT_USER": "true", "TERRACUBE_WORKERS": "0",
                    **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "terracube.cli", "serve", "--host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(data_dir)],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.monotonic() + 600  # the first start generates the sample data
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited, see {log_path}")
            try:
                with urllib.request.urlopen(self.api + "/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server did not start, see {log_path}") from None
                time.sleep(0.3)
        try:
            self.warm_up()
        except BaseException:
            self.stop()
            raise

    def warm_up(self) -> None:
        """One small request outside the timing, as a server in use has had: loads the
        catalog, imports the engine's libraries and initialises GDAL (the numpy runner's
        time excludes its imports too)."""
        with urllib.request.urlopen(f"{self.api}/collections/{COLLECTION}", timeout=120) as r:
            extent = json.loads(r.read())["extent"]["spatial"]["bbox"][0]
        basic = base64.b64encode(b"demo:demo").decode()
        req = urllib.request.Request(f"{self.api}/credentials/basic",
                                     headers={"Authorization": f"Basic {basic}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            token = json.loads(r.read())["access_token"]
        # a 0.001° box at the centre (a corner of the lon/lat box may lie outside the data)
        west, south = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
        graph = {"load": {"process_id": "load_collection", "arguments": {
            "id": COLLECTION, "bands": ["B04"],
            "spatial_extent": {"west": west, "south": south, "east": west + 0.001,
                               "north": south + 0.001}}},
            "max": {"process_id": "reduce_dimension", "arguments": {
                "data": {"from_node": "load"}, "dimension": "t", "reducer": {
                    "process_graph": {"m": {"process_id": "max", "arguments": {
                        "data": {"from_parameter": "data"}}, "result": True}}}}},
            "save": {"process_id": "save_result", "arguments": {
                "data": {"from_node": "max"}, "format": "GTiff"}, "result": True}}
        req = urllib.request.Request(
            f"{self.api}/result", data=json.dumps({"process": {"process_graph": graph}}).encode(),
            headers={"Authorization": f"Bearer basic//{token}",
                     "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()

    def peak_rss_mb(self) -> float:
        return tree_peak_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (user + system)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants (living or waited for)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _cpu_s(p)
        todo += _children(p)
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of the peak resident set sizes of a process and its living descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _vm_hwm_kb(p)
        todo += _children(p)
    return round(total / 1024, 1)


# --- runners -------------------------------------------------------------------------------------
def bench_result(stdout: str) -> dict | None:
    rec = None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            rec = json.loads(line[len("BENCH_RESULT "):])
    return rec


def run_terracube(workload: str, graph: Path, data: Path, server_dir: Path, raw: Path,
                  rep: int, env: dict[str, str], timeout: float,
                  extra_pids: list[int]) -> dict:
    out = raw / f"terracube-{workload}"
    out.mkdir(parents=True, exist_ok=True)
    server = Server(server_dir, raw / f"server-{workload}-{rep}.log", env)
    cpu_before = tree_cpu_s(server.proc.pid)  # after start and warm-up
    try:
        proc = subprocess.run(
            [sys.executable, str(SHARED_BENCH / "run_http.py"), str(graph), "--url", server.api,
             "--data", str(data), "--out", str(out), "--user", "demo", "--password", "demo",
             "--timeout", str(timeout)], capture_output=True, text=True, timeout=timeout + 60)
        rss = server.peak_rss_mb()
        cpu = round(tree_cpu_s(server.proc.pid) - cpu_before, 2)
        workers_mb = round(sum(_vm_hwm_kb(p) for p in extra_pids) / 1024, 1)
    finally:
        server.stop()
    rec = bench_result(proc.stdout) or {"status": f"crash: {proc.stderr[-400:]}"}
    run = (rec.get("runs") or [{}])[0]
    status = "ok" if run.get("status") == 200 else \
        f"HTTP {run.get('status')}: {str(run.get('error'))[:300]}"
    return {"variant": "terracube", "workload": workload, "rep": rep, "status": status,
            "wall_s": run.get("total_s"), "ttfb_s": run.get("ttfb_s"), "cpu_s": cpu,
            "peak_rss_mb": round(rss + workers_mb, 1), "server_rss_mb": rss,
            "workers_rss_mb": workers_mb, "output": run.get("output")}


def run_script(variant: str, workload: str, data: Path, raw: Path, rep: int, python: str,
               timeout: float) -> dict:
    out = raw / f"{variant}-{workload}"
    if variant == "numpy":
        cmd = [python, str(SHARED_BENCH / "run_numpy_limit.py"), workload]
    else:
        cmd = [python, str(SHARED_BENCH / "run_baseline_dask.py"), workload]
        if variant == "opd-f32":
            cmd += ["--cast", "float32"]
    cmd += ["--data", str(data), "--out", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rec = bench_result(proc.stdout) or {"status": f"crash rc={proc.returncode}: "
                                                      f"{proc.stderr[-400:]}"}
    except subprocess.TimeoutExpired:
        rec = {"status": f"timeout > {timeout} s"}
    outputs = rec.get("outputs") or []
    return {"variant": variant, "workload": workload, "rep": rep,
            "status": rec.get("status", "error"), "wall_s": rec.get("wall_s"),
            "peak_rss_mb": rec.get("peak_rss_mb"), "output": outputs[0] if outputs else None}


def opd_python(cache: Path, install: bool) -> str | None:
    """The Python of a separate environment with openeo-processes-dask, or None."""
    venv = cache / "opd-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import openeo_processes_dask, odc.stac, xvec"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    if not install:
        return None
    log(f"installing openeo-processes-dask into {venv} (once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-r", str(SHARED_BENCH / "requirements-lock.txt")], check=True)
        subprocess.run([*pip, "--no-deps", OPD_VERSION], check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"openeo-processes-dask could not be installed ({exc}); skipping it")
        return None
    return str(python) if subprocess.run(probe, capture_output=True).returncode == 0 else None


# --- comparison ----------------------------------------------------------------------------------
def comparable(path: str) -> str:
    """A JSON vector result as compare.py reads it: {"values": [[geometry][t]]}.

    terracube returns aggregate_spatial results as GeoJSON with one property per date
    (`<date>_value`); the numpy reference writes the bare value table."""
    if not path.endswith(".json"):
        return path
    doc = json.loads(Path(path).read_text())
    if doc.get("type") != "FeatureCollection":
        return path
    rows = []
    for feature in doc["features"]:
        props = feature.get("properties") or {}
        keys = sorted(k for k in props if k.endswith("_value"))
        rows.append([props[k] for k in keys])
    converted = Path(path).with_name("values.json")
    converted.write_text(json.dumps({"values": rows}))
    return str(converted)


def compare_outputs(got: str, ref: str) -> dict:
    sys.path.insert(0, str(SHARED_BENCH))
    from compare import compare  # noqa: PLC0415 - the shared script, not a package

    c = compare(comparable(got), comparable(ref))
    return {"equal": c["equal"], "max_abs_diff": c["max_abs_diff"],
            "n_nan_mismatch": c["n_nan_mismatch"], "frac_diff": c["frac_diff_gt_tol"]}


def landcover_agreement(got: str, data: Path) -> dict:
    import numpy as np
    import rasterio

    with rasterio.open(got) as a, rasterio.open(data / "truth" / "landcover.tif") as b:
        pred, truth = a.read(1), b.read(1)
    if pred.shape != truth.shape:
        return {"equal": False, "agreement": None}
    valid = truth > 0
    agreement = float((np.rint(pred[valid]) == truth[valid]).mean())
    return {"equal": agreement >= 0.9, "agreement": round(agreement, 4)}


# --- summary -------------------------------------------------------------------------------------
def summarize(records: list[dict], data: Path) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["workload"], r["variant"]), []).append(r)
    rows = []
    for (w, v), recs in sorted(groups.items(), key=lambda kv: (
            kv[0][0], VARIANTS.index(kv[0][1]) if kv[0][1] in VARIANTS else 9)):
        ok = [r for r in recs if r["status"] == "ok" and r["wall_s"] is not None]
        row = {"workload": w, "variant": v, "n_ok": len(ok), "n": len(recs),
               "status": "ok" if len(ok) == len(recs) else recs[-1]["status"],
               "median_wall_s": round(statistics.median(r["wall_s"] for r in ok), 3)
               if ok else None,
               "peak_rss_mb": max(r["peak_rss_mb"] for r in ok) if ok else None}
        ttfbs = [r["ttfb_s"] for r in ok if r.get("ttfb_s") is not None]
        if ttfbs:  # the response starts when the result file is written: the rest is download
            row["median_ttfb_s"] = round(statistics.median(ttfbs), 3)
            row["ttfb_s_all"] = ttfbs
        cpus = [r["cpu_s"] for r in ok if r.get("cpu_s") is not None]
        if cpus:
            row["median_cpu_s"] = round(statistics.median(cpus), 2)
            row["wall_s_all"] = [r["wall_s"] for r in ok]
            row["cpu_s_all"] = cpus
        if ok and ok[-1].get("output"):
            row["output"] = ok[-1]["output"]
        rows.append(row)
    ref = {r["workload"]: r for r in rows if r["variant"] == "numpy" and r.get("output")}
    for row in rows:
        if row["variant"] == "numpy" or not row.get("output"):
            continue
        try:
            if row["workload"] == "w5":
                row.update(landcover_agreement(row["output"], data))
            elif REFERENCE.get(row["workload"], row["workload"]) in ref:
                reference = ref[REFERENCE.get(row["workload"], row["workload"])]
                row.update(compare_outputs(row["output"], reference["output"]))
        except Exception as exc:  # noqa: BLE001 - an unreadable output is a result too
            row.update(equal=False, compare_error=f"{type(exc).__name__}: {exc}")
    return rows


def table(rows: list[dict]) -> str:
    ref = {r["workload"]: r for r in rows if r["variant"] == "numpy"}
    ref.update({w: ref[base] for w, base in REFERENCE.items() if base in ref})
    lines = ["| workload | variant | median wall s | until response s | server CPU s | "
             "peak RSS MB | × numpy time | × numpy RSS | equal to numpy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = ref.get(r["workload"], {})

        def ratio(key: str, r: dict = r, base: dict = base) -> str:
            return f"{r[key] / base[key]:.2f}" if r.get(key) and base.get(key) else "–"

        if r["variant"] == "numpy":
            equal = "reference"
        elif "agreement" in r:
            equal = f"{'yes' if r['equal'] else 'NO'} ({100 * (r['agreement'] or 0):.1f} % " \
                    "agree with the true land cover)"
        elif "equal" in r:
            equal = "yes" if r["equal"] else \
                f"NO (max diff {r.get('max_abs_diff', 0):.3g}, {r.get('n_nan_mismatch', '?')} " \
                f"null mismatches{', ' + r['compare_error'] if 'compare_error' in r else ''})"
        else:
            equal = "–"
        status = "" if r["status"] == "ok" else f" — failed: {r['status'][:120]}"
        wall = r["median_wall_s"] if r["median_wall_s"] is not None else "–"
        rss = r["peak_rss_mb"] if r["peak_rss_mb"] is not None else "–"
        cpu = r.get("median_cpu_s", "–")
        ttfb = r.get("median_ttfb_s", "–")
        lines.append(f"| {r['workload']} | {r['variant']}{status} | {wall} | {ttfb} | {cpu} | "
                     f"{rss} | "
                     f"{ratio('median_wall_s')} | {ratio('peak_rss_mb')} | {equal} |")
    return "\n".join(lines)


def machine() -> dict:
    import dask
    import numpy
    import rasterio

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text()
                          .splitlines() if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        mem_kb = 0

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"cpu": cpu, "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "memory_gb": round(mem_kb / 1024**2, 1), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "dask": dask.__version__, "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__, "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write_summary(out: Path, size: str, data: Path, rows: list[dict], info: dict,
                  settings: dict) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    (out / "summary.json").write_text(json.dumps(
        {"size": size, "machine": info, "settings": settings, "rows": rows}, indent=1))
    changes = " (with uncommitted changes)" if info["uncommitted_changes"] else ""
    text = [
        f"# terracube benchmark — {size}",
        "",
        f"Data: {manifest['n_dates']} dates × {manifest['px']}² px, bands "
        f"{', '.join(manifest['bands'])} ({manifest['bytes_on_disk'] / 1e6:.0f} MB of COGs), "
        f"seed {manifest['seed']}.  ",
        f"Commit {info['commit']}{changes}, {info['date']}.  ",
        f"Machine: {info['cpu']}, {info['usable_cpus']} usable CPUs, {info['memory_gb']} GB, "
        f"{info['platform']}, Python {info['python']}, numpy {info['numpy']}, dask "
        f"{info['dask']}, rasterio {info['rasterio']} (GDAL {info['gdal']}).  ",
        f"Load average (1, 5, 15 min) before {info.get('load_average_before')}, after "
        f"{info.get('load_average_after')} — other work on the machine makes times noisy.  ",
        f"Server settings: {json.dumps(settings) if settings else 'defaults'}.",
        "",
        table(rows),
        "",
        "median wall s: terracube = the whole `POST /result` request as run_http.py measures "
        "it (graph, compute, write, download), a fresh server per run that has answered one "
        "small warm-up request; until response s: terracube's time to the response's first "
        "byte (graph, compute and writing the file; the rest of the wall time is the download "
        "of the file, which the others do not have); numpy and "
        "openeo-processes-dask = parse + execute + write in a fresh process (imports "
        "excluded). Peak RSS: terracube = the server process and its children (and the dask "
        "workers if given), the largest of the runs; others: the runner process. opd = "
        "openeo-processes-dask as shipped; opd-f32 = the same with the float32 + nodata→NaN "
        f"cast. {W1_WINDOW}: W1 on a 256 × 256 window of one date (no reference).",
        "",
    ]
    (out / "summary.md").write_text("\n".join(text))


# --- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=["small", "medium", "large"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workloads", default=",".join([*WORKLOADS, W1_WINDOW]),
                    help=f"also: {W1_UDF} (W1 with a no-op Python UDF)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--out", type=Path, help="default: bench/results/<size>")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--memory-limit", help="TERRACUBE_MEMORY_LIMIT of the server, e.g. 2GB")
    ap.add_argument("--dask-scheduler", help="TERRACUBE_DASK_SCHEDULER of the server")
    ap.add_argument("--dask-worker-pids", default="",
                    help="comma-separated pids of the dask workers, added to the peak RSS")
    ap.add_argument("--no-install", action="store_true",
                    help="do not install openeo-processes-dask when it is missing")
    a = ap.parse_args(argv)
    cache = a.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    out = a.out or REPO / "bench" / "results" / a.size
    out.mkdir(parents=True, exist_ok=True)
    # one folder per run (outputs, logs and the server's data folder): concurrent runs on a
    # shared machine overwrote each other's outputs and collection registration in out-<size>
    raw = Path(tempfile.mkdtemp(prefix=f"out-{a.size}-{dt.datetime.now():%Y%m%dT%H%M%S}-",
                                dir=cache))
    log(f"outputs and logs in {raw}")
    load_before = [round(v, 2) for v in os.getloadavg()]
    workloads = [w for w in a.workloads.split(",") if w]
    variants = [v for v in a.variants.split(",") if v]

    data = ensure_data(a.size, cache)
    manifest = json.loads((data / "manifest.json").read_text())
    graphs = collection_graphs(raw, manifest)
    server_dir = raw / "server"
    # The limits a class server puts on synchronous requests (docs/administration/limits.md)
    # would refuse the large size (W1 reads 4.8 GB): the benchmark measures the engine against
    # the floor, so it lifts them; peak RSS is recorded anyway.
    env: dict[str, str] = {"TERRACUBE_SYNC_MAX_BYTES": str(256 * 1024**3),
                           "TERRACUBE_SYNC_MAX_PIXELS": str(10**11),
                           "TERRACUBE_SYNC_MAX_SECONDS": "3600",
                           "TERRACUBE_SYNC_MAX_MEMORY": str(20 * 1024**3)}
    if a.memory_limit:
        env["TERRACUBE_MEMORY_LIMIT"] = a.memory_limit
    if a.dask_scheduler:
        env["TERRACUBE_DASK_SCHEDULER"] = a.dask_scheduler
    worker_pids = [int(p) for p in a.dask_worker_pids.split(",") if p]
    if "terracube" in variants:
        log(f"registering {data / 'stac'} as {COLLECTION}")
        subprocess.run([sys.executable, "-m", "terracube.cli", "collections", "add", COLLECTION,
                        "--from", manifest["stac_collection"], "--data-dir", str(server_dir),
                        "--replace"], check=True, capture_output=True, text=True)
        # the server's own sample collection, made here: a server whose first start made
        # it would have that in its peak RSS
        subprocess.run([sys.executable, "-c", "import sys; from terracube.catalog.samples."
                        "sentinel2_synthetic import ensure_sample_data as e; e(sys.argv[1])",
                        str(server_dir)], check=True, capture_output=True, text=True)
    opd = None
    if any(v.startswith("opd") for v in variants):
        opd = opd_python(cache, install=not a.no_install)
        if opd is None:
            variants = [v for v in variants if not v.startswith("opd")]

    records: list[dict] = []
    jsonl = open(out / "results.jsonl", "w")
    warm_page_cache(data)
    for w in workloads:
        for v in variants:
            if v == "numpy" and w not in NUMPY_WORKLOADS:
                continue
            if v.startswith("opd") and (w in ("w5", W1_WINDOW, W1_UDF)):
                continue  # not implemented in openeo-processes-dask / no such graph there
            for rep in range(a.repeat):
                if v == "terracube":
                    # spare UDF runners (~120 MB each) only where a UDF runs: the
                    # other workloads are measured as a server that serves no UDFs
                    wenv = env if w == W1_UDF else {**env,
                                                    "TERRACUBE_UDF_SPARES_AT_START": "false"}
                    rec = run_terracube(w, graphs[w], data, server_dir, raw, rep, wenv,
                                        a.timeout, worker_pids)
                else:
                    python = sys.executable if v == "numpy" else opd
                    rec = run_script(v, w, data, raw, rep, python, a.timeout)
                records.append(rec)
                jsonl.write(json.dumps(rec) + "\n")
                jsonl.flush()
                log(f"{w} {v} #{rep + 1}: {rec['status'][:100]} wall={rec['wall_s']} s "
                    f"rss={rec['peak_rss_mb']} MB")
                if rec["status"] != "ok":
                    break
    jsonl.close()
    shutil.rmtree(server_dir, ignore_errors=True)  # the outputs and logs stay in raw
    rows = summarize(records, data)
    info = machine()
    info["load_average_before"] = load_before
    info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    write_summary(out, a.size, data, rows, info, env)
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
