"""Longer schemathesis run (issue 16) against a running terracube server: our own OpenAPI
document and the official openapi.yaml, --examples random requests per operation; prints the
status counts and every problem (5xx, schema violation, hang). Exit code 1 if any.

    PYTHONPATH=src .venv/bin/python bench/fuzz.py http://127.0.0.1:8000 --examples 200
(the server needs the user demo/demo: `make run` creates it.)"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.fuzz import fuzz, load, official_quirk  # noqa: E402
from tests.support.paths import SHARED  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args()
    root = args.root.rstrip("/")
    api = f"{root}/openeo/1.2"
    token = httpx.get(f"{api}/credentials/basic", auth=("demo", "demo"), timeout=60).json()
    auth = {"Authorization": f"Bearer basic//{token['access_token']}"}
    failed = 0
    documents = (("ours", f"{api}/openapi.json", root),
                 ("official", str(SHARED / "openeo-api" / "openapi.yaml"), api))
    for (name, source, base), negative in itertools.product(documents, (False, True)):
        started = time.monotonic()
        report = fuzz(load(source), base, auth, args.examples, derandomize=False,
                      negative=negative)
        name = f"{name} ({'negative' if negative else 'positive'})"
        problems = [p for p in report.problems if not official_quirk(p)]
        print(f"{name}: {report.requests} requests in {time.monotonic() - started:.0f} s, "
              f"statuses {dict(sorted(report.statuses.items()))}, {len(problems)} problems")
        for problem in problems:
            print("  ", problem)
        if report.skipped:
            print(f"   {len(report.skipped)} operations without generated requests: "
                  + "; ".join(report.skipped))
        failed += len(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
