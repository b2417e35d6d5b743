"""EO data discovery: GET /collections and GET /collections/{collection_id} (STAC collections)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from terracube import errors
from terracube.api.deps import CatalogDep, api_url, link
from terracube.api.pagination import page_of
from terracube.api.responses import FileDownload
from terracube.api.routes.services import collection_xyz_link

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
    ids, pages = page_of(request, catalog.collection_ids(), "/collections")
    for collection_id in ids:
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
            *pages,
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


# STAC API's item search, which the client's `collection_items` calls; CDSE answers it with
# FeatureUnsupported (openeo-python-driver's default), and so do we, saying where to look
# instead. Not an openEO endpoint: left out of the schema and the capabilities.
@router.get("/collections/{collection_id}/items", include_in_schema=False)
def list_collection_items(collection_id: str, catalog: CatalogDep) -> None:
    catalog.get(collection_id)  # CollectionNotFound first, as for the other collection routes
    raise errors.FeatureUnsupported(
        f"Listing the items of collection '{collection_id}' is not supported. Its extent and "
        f"dates are in GET /collections/{collection_id} (`extent`, `cube:dimensions`), the "
        f"properties load_collection can filter on in GET /collections/{collection_id}/"
        "queryables; the dates of a load are given by dimension_labels(data, 't').")


# Not an openEO endpoint, so left out of the schema and of the capabilities' endpoints.
@router.api_route("/collections/{collection_id}/assets/{asset_name}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def get_collection_asset(collection_id: str, asset_name: str,
                         catalog: CatalogDep) -> FileResponse:
    """A file a collection offers as a STAC asset (e.g. the rain gauges of the synthetic radar
    sample); public like the collection metadata."""
    files = getattr(catalog.get(collection_id), "asset_files", {})
    if asset_name not in files:
        raise errors.NotFound(
            f"Collection '{collection_id}' has no asset '{asset_name}' to download"
            + (f"; it has: {', '.join(files)}." if files else "."))
    path, media_type = files[asset_name]
    return FileDownload(path, media_type=media_type, filename=path.name,
                        content_disposition_type="inline")


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
    dims = (doc.get("cube:dimensions") or {}).values()
    if {d.get("axis") for d in dims if d.get("type") == "spatial"} >= {"x", "y"}:
        added.append(collection_xyz_link(request, collection_id))  # a map preview (issue 13)
    license_id = doc.get("license")
    if "license" not in rels and isinstance(license_id, str) and license_id \
            and license_id.lower() not in _NOT_SPDX:
        added.append({"rel": "license", "href": f"https://spdx.org/licenses/{license_id}.html",
                      "type": "text/html", "title": f"License: {license_id}"})
    doc["links"] = [lk for lk in added if lk["rel"] not in rels] + given
    # Assets served by get_collection_asset carry their API path; clients need absolute URLs.
    served = f"/collections/{collection_id}/assets/"
    assets = doc.get("assets") or {}
    if any(str(a.get("href", "")).startswith(served) for a in assets.values()):
        doc["assets"] = {
            name: {**a, "href": api_url(request, a["href"])}
            if str(a.get("href", "")).startswith(served) else a
            for name, a in assets.items()
        }
    return doc
