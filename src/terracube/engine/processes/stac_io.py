"""load_stac: a cube from a STAC item, a static STAC collection/catalog or a STAC API collection."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from terracube import errors
from terracube.engine.evaluate import ProcessContext
from terracube.engine.processes.io import _property_check, load_request
from terracube.engine.registry import process


@process("load_stac")
def load_stac(url: str, spatial_extent: Any = None, temporal_extent: Any = None,
              bands: list[str] | None = None, properties: dict | None = None, *,
              ctx: ProcessContext) -> Any:
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        # Paths on the server's disk are not for users to read; an administrator makes such
        # data a collection with `terracube collections add`.
        raise errors.ProcessParameterInvalid(
            f"url must be an http(s) URL of a STAC item, collection or catalog, or of a STAC "
            f"API collection; got {url!r}. Files on the server are offered as collections "
            "(load_collection).", argument="url")
    reader = ctx.services.stac
    if reader is None:
        raise errors.ProcessUnsupported("load_stac needs a STAC reader, which this evaluation "
                                        "was not given.")
    request = load_request(spatial_extent, temporal_extent, bands, properties)
    try:
        source = reader.open(url)
    except ValueError as exc:  # the document at the URL is not STAC; the message says why
        raise errors.ProcessParameterInvalid(str(exc), argument="url") from None
    return source.load(request, check_property=_property_check)
