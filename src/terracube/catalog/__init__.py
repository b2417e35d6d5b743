"""Collections: where the data comes from and how it is opened lazily."""

from terracube.catalog.catalog import Catalog

__all__ = ["Catalog"]
