"""Collections: where the data comes from and how it is opened lazily."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terracube.catalog.catalog import Catalog

__all__ = ["Catalog"]


def __getattr__(name: str) -> Any:
    # `Catalog` is imported when it is first asked for (PEP 562): it loads xarray, odc-stac and
    # rasterio, which importing a light module of the package (the collection records of
    # `terracube collections list`, cql2) does not need.
    if name == "Catalog":
        from terracube.catalog.catalog import Catalog

        return Catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
