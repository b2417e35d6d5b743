"""Stand-ins for the services an app is built with, where a test is not about them."""

from __future__ import annotations

from typing import Any

from terracube import errors


class EmptyCatalog:
    """A catalog without collections (for API tests that are not about data)."""

    def collection_ids(self) -> list[str]:
        return []

    def get(self, collection_id: str) -> Any:
        raise errors.CollectionNotFound(f"Collection '{collection_id}' does not exist.")

    def queryables(self, collection_id: str) -> dict[str, Any]:
        raise errors.CollectionNotFound(f"Collection '{collection_id}' does not exist.")
