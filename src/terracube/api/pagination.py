"""Pagination of the API's lists by `limit` with first/prev/next links (cursor by id)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from urllib.parse import urlencode

from fastapi import Request

from terracube.api.deps import api_url, int_query


def page_of(request: Request, ids: Sequence[str], path: str) -> tuple[list[str], list[dict]]:
    """The ids of the requested page and its pagination links.

    Without `limit` every id and no links (the API: all items then). With `limit`, at most
    that many, after the id given as `after` (or before the one given as `before`); the
    links carry the id cursor rather than an offset, so a page stays where it was when items
    are added or removed meanwhile. Ids are served in sorted order, which is what makes the
    cursor stable.
    """
    ordered = sorted(ids)
    limit = int_query(request, "limit", minimum=1)
    if limit is None:
        return ordered, []
    after, before = request.query_params.get("after"), request.query_params.get("before")
    if after is not None:
        start = bisect_right(ordered, after)
        end = min(start + limit, len(ordered))
    elif before is not None:
        end = bisect_left(ordered, before)
        start = max(end - limit, 0)
    else:
        start, end = 0, min(limit, len(ordered))
    page = ordered[start:end]

    def href(**cursor: str) -> str:
        return f"{api_url(request, path)}?{urlencode({'limit': limit, **cursor})}"

    links = [{"rel": "first", "href": href(), "type": "application/json"}]
    if start > 0 and page:
        links.append({"rel": "prev", "href": href(before=page[0]), "type": "application/json"})
    if end < len(ordered) and page:
        links.append({"rel": "next", "href": href(after=page[-1]), "type": "application/json"})
    return page, links
