"""A small STAC API with the Filter extension (CQL2-JSON), for the tests of property filters.

Runs as its own process on loopback (stdlib only) over a static catalog (catalog.json ->
child collections -> items, as tests/support/real_data.py writes them) and appends one JSON line per
item search to a log file, so that tests can see what reached the server:

    python -m tests.support.filtering_stac_api CATALOG --port 8765 --log searches.jsonl \
        [--mode MODE]

Modes (what the landing page's conformsTo says, and what the server does with a filter):
  full        filter + cql2-json + basic, advanced comparison and array operators (default)
  basic       filter + cql2-json + basic CQL2 only
  no-filter   no filter extension (a filter in a request is ignored, like most simple APIs)
  ignore      advertises the filter extension but ignores filters (a lax API)

The evaluator follows CQL2 (OGC 21-065) with SQL's three-valued logic: a missing property
makes a comparison unknown, and unknown is not a match. Operators it does not know are
refused with 400, like a real API.

`FilteringStacApi` starts it from a test and reads the log.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.processes import HttpServerProcess

BASE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
FILTER = [
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
ADVANCED = [
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
]
MODES = {"full": BASE + FILTER + ADVANCED, "basic": BASE + FILTER, "no-filter": BASE,
         "ignore": BASE + FILTER + ADVANCED}


class FilterError(ValueError):
    """A filter the server does not understand (answered with 400)."""


# --- CQL2-JSON evaluation ---------------------------------------------------------------------
def matches(expr: Any, item: dict, mode: str) -> bool:
    return evaluate(expr, item, mode) is True


def evaluate(expr: Any, item: dict, mode: str) -> Any:
    """True, False or None (unknown) for a boolean expression; a value for an operand."""
    if not isinstance(expr, dict):
        return expr
    if "property" in expr:
        name = expr["property"]
        if name in ("id", "collection"):
            return item.get(name)
        return item["properties"].get(name)
    op = expr.get("op")
    args = expr.get("args")
    if not isinstance(op, str) or not isinstance(args, list):
        raise FilterError(f"not a CQL2-JSON expression: {json.dumps(expr)}")
    advanced = mode != "basic"
    if op in ("and", "or"):
        values = [evaluate(a, item, mode) for a in args]
        if op == "and":
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    if op == "not":
        v = evaluate(args[0], item, mode)
        return None if v is None else not v
    if op == "isNull":
        return evaluate(args[0], item, mode) is None
    if op in ("=", "<>", "<", "<=", ">", ">="):
        a, b = (evaluate(x, item, mode) for x in args)
        return compare(op, a, b)
    if op == "between" and advanced:
        v, low, high = (evaluate(x, item, mode) for x in args)
        lo, hi = compare(">=", v, low), compare("<=", v, high)
        return None if None in (lo, hi) else lo and hi
    if op == "in" and advanced:
        v, options = evaluate(args[0], item, mode), args[1]
        if v is None:
            return None
        return any(compare("=", v, o) for o in options)
    if op.startswith("a_") and advanced:
        a, b = (evaluate(x, item, mode) for x in args)
        if a is None or b is None:
            return None
        if not isinstance(a, list) or not isinstance(b, list):
            raise FilterError(f"{op} needs two arrays")
        if op == "a_contains":
            return all(x in a for x in b)
        if op == "a_containedBy":
            return all(x in b for x in a)
        if op == "a_overlaps":
            return any(x in b for x in a)
        if op == "a_equals":
            return a == b
    raise FilterError(f"operator '{op}' is not supported")


def compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numbers and type(a) is not type(b):
        raise FilterError(f"cannot compare {a!r} with {b!r}")
    if op == "=":
        return a == b
    if op == "<>":
        return a != b
    if isinstance(a, bool):
        raise FilterError(f"'{op}' on booleans")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# --- the catalog --------------------------------------------------------------------------------
def load_catalog(path: Path) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    catalog = json.loads(path.read_text())
    collections: dict[str, dict] = {}
    items: dict[str, list[dict]] = {}
    for link in catalog.get("links", []):
        if link["rel"] != "child":
            continue
        cpath = (path.parent / link["href"]).resolve()
        coll = json.loads(cpath.read_text())
        collections[coll["id"]] = coll
        items[coll["id"]] = sorted(
            (json.loads((cpath.parent / il["href"]).read_text())
             for il in coll.get("links", []) if il["rel"] == "item"),
            key=lambda it: it["properties"]["datetime"])
    return collections, items


def parse_time(text: str | None) -> datetime | None:
    if text in (None, "", ".."):
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class Api:
    def __init__(self, catalog: Path, root: str, mode: str, log: Path) -> None:
        self.collections, self.items = load_catalog(catalog)
        self.root = root
        self.mode = mode
        self.log = log

    def landing(self) -> dict:
        links = [{"rel": "self", "href": f"{self.root}/"}, {"rel": "root", "href": f"{self.root}/"},
                 {"rel": "conformance", "href": f"{self.root}/conformance"},
                 {"rel": "data", "href": f"{self.root}/collections"},
                 {"rel": "search", "href": f"{self.root}/search", "method": "GET",
                  "type": "application/geo+json"},
                 {"rel": "search", "href": f"{self.root}/search", "method": "POST",
                  "type": "application/geo+json"}]
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "filtering-api",
                "description": "STAC API with CQL2 filters (terracube tests)",
                "conformsTo": MODES[self.mode], "links": links}

    def collection(self, cid: str) -> dict:
        c = dict(self.collections[cid])
        base = f"{self.root}/collections/{cid}"
        c["links"] = [{"rel": "self", "href": base}, {"rel": "items", "href": f"{base}/items"},
                      {"rel": "root", "href": f"{self.root}/"},
                      {"rel": "parent", "href": f"{self.root}/"}]
        return c

    def item(self, it: dict) -> dict:
        it = dict(it)
        base = f"{self.root}/collections/{it['collection']}"
        it["links"] = [{"rel": "self", "href": f"{base}/items/{it['id']}"},
                       {"rel": "collection", "href": base},
                       {"rel": "root", "href": f"{self.root}/"}]
        return it

    def queryables(self, cid: str) -> dict:
        props: dict[str, dict] = {}
        for it in self.items[cid]:
            for k, v in it["properties"].items():
                kind = "number" if isinstance(v, (int, float)) else \
                    "array" if isinstance(v, list) else "string"
                props.setdefault(k, {"title": k, "type": kind})
        return {"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object",
                "title": f"Queryables of {cid}", "properties": props}

    def search(self, params: dict, method: str) -> dict:
        colls = params.get("collections") or list(self.collections)
        if isinstance(colls, str):
            colls = colls.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        t0 = t1 = None
        if params.get("datetime"):
            start, _, end = str(params["datetime"]).partition("/")
            t0, t1 = parse_time(start), parse_time(end or start)
        flt = params.get("filter")
        if isinstance(flt, str):
            flt = json.loads(flt)
        lang = params.get("filter-lang", "cql2-json")
        if flt is not None and self.mode != "no-filter" and lang != "cql2-json":
            raise FilterError(f"filter-lang {lang} is not supported")
        apply_filter = flt is not None and self.mode in ("full", "basic")
        hits = []
        for cid in colls:
            for it in self.items.get(cid, []):
                if bbox:
                    b = it["bbox"]
                    if b[0] > bbox[2] or b[2] < bbox[0] or b[1] > bbox[3] or b[3] < bbox[1]:
                        continue
                t = parse_time(it["properties"]["datetime"])
                if (t0 and t < t0) or (t1 and t > t1):
                    continue
                if apply_filter and not matches(flt, it, self.mode):
                    continue
                hits.append(it)
        limit = int(params.get("limit") or 10)
        token = int(params.get("token") or 0)
        page = hits[token:token + limit]
        links = []
        if token + limit < len(hits):
            body = {**params, "token": token + limit}
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.root}/search", "method": "POST",
                              "body": body, "merge": False})
            else:
                query = "&".join(f"{k}={v if not isinstance(v, list) else ','.join(map(str, v))}"
                                 for k, v in body.items() if not isinstance(v, dict))
                links.append({"rel": "next", "href": f"{self.root}/search?{query}"})
        with self.log.open("a") as f:
            f.write(json.dumps({"method": method, "params": params, "matched": len(hits),
                                "returned": [it["id"] for it in page]}) + "\n")
        return {"type": "FeatureCollection", "features": [self.item(i) for i in page],
                "numberMatched": len(hits), "numberReturned": len(page), "links": links}

    def route(self, method: str, path: str, params: dict) -> dict:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self.landing()
        if parts == ["conformance"]:
            return {"conformsTo": MODES[self.mode]}
        if parts == ["search"]:
            return self.search(params, method)
        if parts[0] == "collections":
            if len(parts) == 1:
                return {"collections": [self.collection(c) for c in self.collections],
                        "links": []}
            cid = parts[1]
            if cid not in self.collections:
                raise KeyError(cid)
            if len(parts) == 2:
                return self.collection(cid)
            if parts[2:] == ["queryables"]:
                return self.queryables(cid)
            if parts[2] == "items":
                if len(parts) == 3:
                    return self.search({**params, "collections": [cid]}, "GET")
                for it in self.items[cid]:
                    if it["id"] == parts[3]:
                        return self.item(it)
        raise KeyError(path)


def serve(catalog: Path, host: str, port: int, mode: str, log: Path) -> None:
    api = Api(catalog, f"http://{host}:{port}", mode, log)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send(self, obj: dict, code: int = 200) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            geo = obj.get("type") in ("Feature", "FeatureCollection")
            self.send_header("Content-Type", "application/geo+json" if geo
                             else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            u = urlparse(self.path)
            self.answer("GET", u.path, {k: v[0] for k, v in parse_qs(u.query).items()})

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self.answer("POST", urlparse(self.path).path, json.loads(self.rfile.read(n) or b"{}"))

        def answer(self, method: str, path: str, params: dict) -> None:
            try:
                self.send(api.route(method, path, params))
            except KeyError as exc:
                self.send({"code": "NotFound", "description": str(exc)}, 404)
            except (FilterError, ValueError, TypeError) as exc:
                self.send({"code": "InvalidParameterValue", "description": str(exc)}, 400)

    ThreadingHTTPServer((host, port), Handler).serve_forever()


# --- for tests -----------------------------------------------------------------------------------
class FilteringStacApi(HttpServerProcess):
    """This server as a child process on a free loopback port."""

    name = "filtering STAC API"

    def __init__(self, catalog: Path, log: Path, mode: str = "full") -> None:
        self.log_file = log
        super().__init__(["-m", "tests.support.filtering_stac_api", str(catalog),
                          "--log", str(log), "--mode", mode], ready_path="/conformance")

    def searches(self) -> list[dict]:
        """Every item search so far: method, params (incl. filter), matched, returned ids."""
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("catalog", type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--mode", choices=sorted(MODES), default="full")
    ap.add_argument("--log", type=Path, default=Path(os.devnull))
    a = ap.parse_args()
    serve(a.catalog.resolve(), a.host, a.port, a.mode, a.log)


if __name__ == "__main__":
    main()
