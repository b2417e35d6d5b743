#!/usr/bin/env python
"""Load test of batch jobs: N users × M jobs submitted at the same time to a real server.

    .venv/bin/python bench/batch_jobs_load.py                 # 20 users × 5 jobs, 2 workers
    .venv/bin/python bench/batch_jobs_load.py --users 5 --jobs 2 --workers 1
    .venv/bin/python bench/batch_jobs_load.py --clients 20 --out bench/results/jobs-load-mixed

A fresh `terracube serve` (its own data folder, the built-in sample data) gets N accounts;
one thread per user logs in, creates and starts its M jobs (M different NDVI graphs over the
sample, one per month), then polls them until they end — every API call is timed. Then:
- every job must be `finished`, with exactly one run (attempts 1, one "Started" log entry),
  and each user must see exactly its own M jobs;
- every result file is downloaded through its signed link and compared value by value with
  the synchronous POST /result of the same graph;
- the report gives the wall time, the throughput and the API latency (p50/p95/max) while the
  jobs ran, in bench/results/jobs-load/summary.md and summary.json.
With --clients K, K more users (interactive ones) meanwhile poll GET /jobs and GET /me and send
small synchronous requests (POST /result: NDVI of one date over the small area, as GTiff)
one after the other until the batch jobs are done; their latencies are reported too.
Not a timed unit test: it is run by hand (or `make bench-jobs` if the Makefile offers it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
MONTHS = [("2022-04-01", "2022-05-01"), ("2022-05-01", "2022-06-01"),
          ("2022-06-01", "2022-07-01"), ("2022-07-01", "2022-08-01"),
          ("2022-08-01", "2022-09-01"), ("2022-09-01", "2022-10-01")]


def graph(month: int) -> dict:
    start, end = MONTHS[month % len(MONTHS)]
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": BBOX, "temporal_extent": [start, end],
            "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {
            "data": {"from_node": "load"}, "nir": "B08", "red": "B04"}},
        "max": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "max"}, "format": "netCDF"}, "result": True}}}


class Timings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, float, float]] = []  # (endpoint, start, seconds)

    def record(self, endpoint: str, start: float, seconds: float) -> None:
        with self.lock:
            self.calls.append((endpoint, start, seconds))


def timed(client: httpx.Client, timings: Timings, method: str, url: str, endpoint: str,
          **kwargs) -> httpx.Response:
    start = time.monotonic()
    response = client.request(method, url, **kwargs)
    timings.record(endpoint, start, time.monotonic() - start)
    return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    env["TERRACUBE_WORKERS"] = str(workers)
    log = open(data_dir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "terracube.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    api = f"http://127.0.0.1:{port}/openeo/1.2"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: see {data_dir / 'server.log'}")
        try:
            if httpx.get(f"{api}/", timeout=2).status_code == 200:
                return proc, api
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not start")


def add_users(data_dir: Path, count: int) -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO / "src"))
    from terracube.auth.users import UserStore
    from terracube.db import open_database
    from terracube.settings import Settings

    db = open_database(Settings(data_dir=data_dir).database_url)
    store = UserStore(db)
    users = [(f"user{i:02d}", f"secret-{i:02d}") for i in range(count)]
    for name, password in users:
        if not store.exists(name):
            store.add(name, password)
    db.dispose()
    return users


def user_session(api: str, name: str, password: str, jobs: int, timings: Timings,
                 out: dict, barrier: threading.Barrier) -> None:
    with httpx.Client(timeout=120) as client:
        token = client.get(f"{api}/credentials/basic", auth=(name, password)).json()
        client.headers["Authorization"] = f"Bearer basic//{token['access_token']}"
        barrier.wait()  # everyone submits at the same moment
        ids = []
        for month in range(jobs):
            r = timed(client, timings, "POST", f"{api}/jobs", "POST /jobs",
                      json={"process": graph(month), "title": f"{name} month {month}"})
            r.raise_for_status()
            job_id = r.headers["OpenEO-Identifier"]
            ids.append((job_id, month))
            r = timed(client, timings, "POST", f"{api}/jobs/{job_id}/results",
                      "POST /jobs/{id}/results")
            assert r.status_code == 202, r.text
        pending = {job_id for job_id, _ in ids}
        states = {}
        while pending:
            time.sleep(0.5)
            for job_id in list(pending):
                r = timed(client, timings, "GET", f"{api}/jobs/{job_id}", "GET /jobs/{id}")
                r.raise_for_status()
                doc = r.json()
                if doc["status"] not in ("created", "queued", "running"):
                    pending.discard(job_id)
                    states[job_id] = doc
            timed(client, timings, "GET", f"{api}/jobs", "GET /jobs")
        listed = timed(client, timings, "GET", f"{api}/jobs", "GET /jobs").json()["jobs"]
        results = {}
        for job_id, month in ids:
            meta = client.get(f"{api}/jobs/{job_id}/results")
            logs = client.get(f"{api}/jobs/{job_id}/logs").json()["logs"]
            results[job_id] = {"month": month, "status": states[job_id]["status"],
                               "usage": states[job_id].get("usage"),
                               "results": meta.json() if meta.status_code == 200 else None,
                               "started": sum(e["message"].startswith("Started on worker")
                                              for e in logs)}
        out[name] = {"jobs": results, "listed": sorted(j["id"] for j in listed)}


def sync_graph(month: int) -> dict:
    """A small synchronous request: the NDVI of the first date of a month over the small
    area, as GTiff."""
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": BBOX,
            "temporal_extent": graph(month)["process_graph"]["load"]["arguments"][
                "temporal_extent"], "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {
            "data": {"from_node": "load"}, "nir": "B08", "red": "B04"}},
        "first": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "f": {"process_id": "first", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "first"}, "format": "GTiff"}, "result": True}}}


def interactive_session(api: str, name: str, password: str, timings: Timings,
                        done: threading.Event, errors: list[str]) -> None:
    """Polls and small sync requests until `done`; every call timed, failures collected."""
    with httpx.Client(timeout=300) as client:
        token = client.get(f"{api}/credentials/basic", auth=(name, password)).json()
        client.headers["Authorization"] = f"Bearer basic//{token['access_token']}"
        month = 0
        while not done.is_set():
            for method, path, endpoint, body in (
                    ("GET", "/jobs", "client: GET /jobs", None),
                    ("GET", "/me", "client: GET /me", None),
                    ("POST", "/result", "client: POST /result (small)",
                     {"process": sync_graph(month % 6)})):
                r = timed(client, timings, method, f"{api}{path}", endpoint, json=body)
                if r.status_code != 200:
                    errors.append(f"{name} {method} {path}: {r.status_code} {r.text[:200]}")
            month += 1
            time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per user (max 6)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=0,
                        help="interactive users polling and sending small sync requests")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "jobs-load")
    parser.add_argument("--keep", action="store_true",
                        help="keep the server's data folder (results, logs) afterwards")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="terracube-jobs-load-"))
    everyone = add_users(data_dir, args.users + args.clients)
    users, clients = everyone[:args.users], everyone[args.users:]
    proc, api = start_server(data_dir, args.workers)
    done = threading.Event()
    client_errors: list[str] = []
    timings = Timings()
    out: dict = {}
    try:
        barrier = threading.Barrier(len(users))
        threads = [threading.Thread(target=user_session, args=(api, name, pw, args.jobs, timings,
                                                               out, barrier))
                   for name, pw in users]
        interactive = [threading.Thread(target=interactive_session,
                                        args=(api, name, pw, timings, done, client_errors))
                       for name, pw in clients]
        started = time.monotonic()
        for t in threads + interactive:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        done.set()
        for t in interactive:
            t.join()
        problems = check(api, users, args.jobs, out, data_dir) + client_errors[:20]
    finally:
        proc.terminate()
        proc.wait(60)
        if not args.keep:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    total = sum(len(u["jobs"]) for u in out.values())
    latencies = [s for _, _, s in timings.calls]
    by_endpoint = {}
    for endpoint in sorted({e for e, _, _ in timings.calls}):
        values = [s for e, _, s in timings.calls if e == endpoint]
        by_endpoint[endpoint] = {"calls": len(values), "p50_ms": percentile(values, 50) * 1e3,
                                 "p95_ms": percentile(values, 95) * 1e3,
                                 "max_ms": max(values) * 1e3}
    durations = [j["usage"]["duration"]["value"] for u in out.values()
                 for j in u["jobs"].values() if j.get("usage")]
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "users": args.users, "jobs_per_user": args.jobs, "workers": args.workers,
        "interactive_clients": args.clients,
        "jobs": total, "wall_seconds": round(wall, 1),
        "throughput_jobs_per_minute": round(total / wall * 60, 1),
        "job_duration_seconds": {"mean": round(statistics.mean(durations), 2),
                                 "max": round(max(durations), 2)} if durations else None,
        "api_latency_ms": {"calls": len(latencies), "p50": percentile(latencies, 50) * 1e3,
                           "p95": percentile(latencies, 95) * 1e3,
                           "max": max(latencies) * 1e3},
        "by_endpoint": by_endpoint,
        "problems": problems,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "summary.md").write_text(render(summary))
    print(render(summary))
    return 1 if problems else 0


def check(api: str, users: list, jobs: int, out: dict, data_dir: Path) -> list[str]:
    problems = []
    expected = {}
    name, password = users[0]
    with httpx.Client(timeout=300) as client:
        token = client.get(f"{api}/credentials/basic", auth=(name, password)).json()
        client.headers["Authorization"] = f"Bearer basic//{token['access_token']}"
        for month in range(jobs):
            r = client.post(f"{api}/result", json={"process": graph(month)})
            r.raise_for_status()
            path = data_dir / f"expected-{month}.nc"
            path.write_bytes(r.content)
            expected[month] = xr.load_dataset(path)
        seen_ids = set()
        for user, (info) in out.items():
            own = sorted(info["jobs"])
            if info["listed"] != own:
                problems.append(f"{user} lists {len(info['listed'])} jobs, not its {len(own)}")
            for job_id, job in info["jobs"].items():
                if job_id in seen_ids:
                    problems.append(f"{job_id} duplicated")
                seen_ids.add(job_id)
                if job["status"] != "finished" or not job["results"]:
                    problems.append(f"{user}/{job_id}: {job['status']}")
                    continue
                if job["started"] != 1:
                    problems.append(f"{user}/{job_id}: started {job['started']} times")
                (asset,) = job["results"]["assets"].values()
                data = httpx.get(asset["href"], timeout=120)  # signed: no Authorization
                path = data_dir / f"{job_id}.nc"
                path.write_bytes(data.content)
                got, want = xr.load_dataset(path), expected[job["month"]]
                for var in want.data_vars:
                    if not np.array_equal(got[var].values, want[var].values, equal_nan=True):
                        problems.append(f"{user}/{job_id}: {var} differs from POST /result")
    if len(seen_ids) != len(users) * jobs:
        problems.append(f"{len(seen_ids)} jobs seen, {len(users) * jobs} submitted")
    return problems


def render(s: dict) -> str:
    lines = [
        "# Batch jobs under load", "",
        f"{s['date']}, {s['machine']['cpus']} CPUs, Python {s['machine']['python']}: "
        f"{s['users']} users × {s['jobs_per_user']} jobs submitted at once, "
        f"{s['workers']} workers, built-in sample data (NDVI max of one month, 96×84 px)"
        + (f"; meanwhile {s['interactive_clients']} more users each poll GET /jobs and GET /me "
           "and send a small POST /result (NDVI of one date, GTiff), one after the other, "
           "every 0.5 s" if s.get("interactive_clients") else "") + ".", "",
        f"- all {s['jobs']} jobs done in **{s['wall_seconds']} s**: "
        f"**{s['throughput_jobs_per_minute']} jobs/min**",
    ]
    if s["job_duration_seconds"]:
        lines.append(f"- job duration (in its job process): mean "
                     f"{s['job_duration_seconds']['mean']} s, max "
                     f"{s['job_duration_seconds']['max']} s")
    lat = s["api_latency_ms"]
    lines += [f"- API latency while the jobs ran ({lat['calls']} calls): p50 "
              f"{lat['p50']:.1f} ms, **p95 {lat['p95']:.1f} ms**, max {lat['max']:.1f} ms", "",
              "| endpoint | calls | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for endpoint, e in s["by_endpoint"].items():
        lines.append(f"| {endpoint} | {e['calls']} | {e['p50_ms']:.1f} | {e['p95_ms']:.1f} | "
                     f"{e['max_ms']:.1f} |")
    lines += ["", "Checks: every job finished, ran once, is listed only for its owner, and its "
              "file equals POST /result of the same graph: "
              + ("**all passed**" if not s["problems"] else "**FAILED**")]
    lines += [f"- {p}" for p in s["problems"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
