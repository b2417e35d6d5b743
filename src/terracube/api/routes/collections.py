"""EO data discovery: GET /collections and GET /collections/{collection_id} (STAC collections)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from terracube.api.deps import CatalogDep, link

router = APIRouter(tags=["EO Data Discovery"])

# Left out of the list to keep it small, as the spec recommends; the full metadata is at
# /collections/{collection_id}. cube:dimensions stays: the datacube extension is declared.
_FULL_ONLY = ("summaries",)

QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

# STAC license values that are not SPDX identifiers.
_NOT_SPDX = {"proprietary", "various", "other"}


@router.get("/collections", operation_id="list-collections")
def list_collections(request: Request, catalog: CatalogDep) -> dict[str, Any]:
    collections = []
    for collection_id in catalog.collection_ids():
        stac = collection_document(request, catalog.get(collection_id).stac())
        for key in _FULL_ONLY:
            stac.pop(key, None)
        collections.append(stac)
    return {
        "collections": collections,
        "links": [
            link(request, "self", "/collections", title="Collections"),
            link(request, "root", "/", title="Capabilities"),
            link(request, "parent", "/", title="Capabilities"),
        ],
    }


@router.get("/collections/{collection_id}", operation_id="describe-collection")
def describe_collection(request: Request, collection_id: str,
                        catalog: CatalogDep) -> dict[str, Any]:
    return collection_document(request, catalog.get(collection_id).stac())


@router.get("/collections/{collection_id}/queryables", operation_id="list-collection-queryables")
def list_collection_queryables(request: Request, collection_id: str,
                               catalog: CatalogDep) -> JSONResponse:
    """The item properties load_collection's `properties` can filter on (a JSON schema)."""
    schema = dict(catalog.queryables(collection_id))
    schema["$id"] = str(request.url)
    return JSONResponse(schema, media_type="application/schema+json")


def collection_document(request: Request, stac: dict[str, Any]) -> dict[str, Any]:
    """A copy of a source's STAC collection with the links that place it in this API."""
    doc = dict(stac)
    collection_id = doc["id"]
    given = [lk for lk in doc.get("links") or [] if isinstance(lk, dict)]
    rels = {lk.get("rel") for lk in given}
    added = [
        link(request, "self", f"/collections/{collection_id}", title=doc.get("title")),
        link(request, "root", "/", title="Capabilities"),
        link(request, "parent", "/", title="Capabilities"),
        link(request, QUERYABLES_REL, f"/collections/{collection_id}/queryables",
             type="application/schema+json", title="Queryables"),
    ]
    license_id = doc.get("license")
    if "license" not in rels and isinstance(license_id, str) and license_id \
            and license_id.lower() not in _NOT_SPDX:
        added.append({"rel": "license", "href": f"https://spdx.org/licenses/{license_id}.html",
                      "type": "text/html", "title": f"License: {license_id}"})
    doc["links"] = [lk for lk in added if lk["rel"] not in rels] + given
    return doc
