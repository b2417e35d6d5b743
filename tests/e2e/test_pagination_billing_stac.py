"""Issue 18 against a real server: paging /processes and /collections by `limit` through
first/prev/next links and the STAC extensions of collections (billing: test_billing.py)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _get(url: str) -> dict:
    r = httpx.get(url, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _rel(doc: dict, rel: str) -> str | None:
    return next((lk["href"] for lk in doc["links"] if lk["rel"] == rel), None)


@pytest.mark.parametrize(("path", "key", "limit"), [("processes", "processes", 7),
                                                     ("collections", "collections", 1)])
def test_pages_follow_next_and_prev_links_in_a_stable_order(server, path, key, limit):
    everything = _get(f"{server.api}{path}")
    assert _rel(everything, "next") is None  # without limit: all items, no paging
    ids = [x["id"] for x in everything[key]]
    assert ids == sorted(ids) and len(ids) > limit
    pages, url = [], f"{server.api}{path}?limit={limit}"
    while url:
        doc = _get(url)
        pages.append(doc)
        assert 0 < len(doc[key]) <= limit
        assert (_rel(doc, "prev") is None) == (len(pages) == 1)
        url = _rel(doc, "next")
    paged = [x["id"] for doc in pages for x in doc[key]]
    assert paged == ids  # every item once, in the same order as without limit
    # back from the last page through the prev links gives the same pages
    doc, back = pages[-1], [pages[-1]]
    while _rel(doc, "prev"):
        doc = _get(_rel(doc, "prev"))
        back.append(doc)
    assert [[x["id"] for x in d[key]] for d in reversed(back)] == \
        [[x["id"] for x in d[key]] for d in pages]
    # the same page in full: the paged documents are the unpaged ones
    assert pages[0][key] == everything[key][:limit]


def test_limit_must_be_a_positive_integer(server):
    for bad in ("0", "-3", "many"):
        r = httpx.get(f"{server.api}processes?limit={bad}", timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "BadRequest"


def _prefixes(node, known: dict[str, str]) -> set[str]:
    """The extension prefixes (proj of proj:epsg) used anywhere in a document but its links."""
    if isinstance(node, dict):
        found = {k.split(":")[0] for k in node if ":" in k and k.split(":")[0] in known}
        return found.union(*(_prefixes(v, known) for k, v in node.items() if k != "links"))
    if isinstance(node, list):
        return set().union(*(_prefixes(v, known) for v in node))
    return set()


def test_collections_list_every_stac_extension_they_use(server):
    # a prefix used anywhere in the document (summaries included) needs its extension
    schemas = {"proj": "/projection/", "eo": "/eo/", "raster": "/raster/", "cube": "/datacube/"}
    for c in _get(f"{server.api}collections")["collections"]:
        doc = _get(f"{server.api}collections/{c['id']}")
        used = _prefixes(doc, schemas)
        assert "proj" in used
        declared = " ".join(doc["stac_extensions"])
        assert all(schemas[p] in declared for p in used), (c["id"], used, declared)
