"""load_stac: a cube from a STAC item, a static STAC collection/catalog or a STAC API collection."""

from __future__ import annotations

from typing import Any

from terracube import errors
from terracube.catalog.metadata import CollectionInputError
from terracube.engine.evaluate import ProcessContext
from terracube.engine.processes.io import _property_check, load_request
from terracube.engine.registry import process


@process("load_stac")
def load_stac(url: str, spatial_extent: Any = None, temporal_extent: Any = None,
              bands: list[str] | None = None, properties: dict | None = None, *,
              ctx: ProcessContext) -> Any:
    from terracube.catalog import stac

    if not isinstance(url, str) or not stac.is_url(url):
        # Paths on the server's disk are not for users to read; an administrator makes such
        # data a collection with `terracube collections add`.
        raise errors.ProcessParameterInvalid(
            f"url must be an http(s) URL of a STAC item, collection or catalog, or of a STAC "
            f"API collection; got {url!r}. Files on the server are offered as collections "
            "(load_collection).", argument="url")
    request = load_request(spatial_extent, temporal_extent, bands, properties)
    try:
        source = stac.source_from_href("load_stac", url)
    except CollectionInputError as exc:
        raise errors.ProcessParameterInvalid(str(exc), argument="url") from None
    return source.load(request, check_property=_property_check)
