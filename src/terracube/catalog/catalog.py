"""The catalog: every collection the server offers, by id."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio

from terracube import errors
from terracube.catalog.base import CollectionSource
from terracube.catalog.other_backends import hint
from terracube.catalog.stac_items import BandInfo, StacItemsSource

log = logging.getLogger(__name__)


class Catalog:
    """Collections by id: the built-in sample collections (generated on first use), sources
    added in code, and the collections registered with `terracube collections add`, re-read
    whenever their records in <data_dir>/collections/ change (no restart needed)."""

    def __init__(self, settings_or_data_dir: Any) -> None:
        from terracube.catalog.registry import CollectionRegistry

        self.data_dir = Path(getattr(settings_or_data_dir, "data_dir", settings_or_data_dir))
        self._sources: dict[str, CollectionSource] = {}
        self._sample_loaded = False
        self.registry = CollectionRegistry(self.data_dir)
        self._registered: dict[str, tuple[tuple[int, int], CollectionSource | None]] = {}
        self._lock = threading.Lock()

    def _refresh_registered(self) -> None:
        """Rebuild the sources whose records were added, changed or removed."""
        from terracube.catalog.registry import source_from_record

        state = self.registry.state()
        with self._lock:
            for collection_id in list(self._registered):
                if collection_id not in state:
                    del self._registered[collection_id]
            for collection_id, stamp in state.items():
                known = self._registered.get(collection_id)
                if known is not None and known[0] == stamp:
                    continue
                try:
                    source = source_from_record(self.registry.get(collection_id))
                except Exception:  # noqa: BLE001 - one broken record must not hide the others
                    log.exception("registered collection %s cannot be loaded", collection_id)
                    source = None
                self._registered[collection_id] = (stamp, source)

    def _all_sources(self) -> dict[str, CollectionSource]:
        self._ensure_sample()
        self._refresh_registered()
        registered = {cid: src for cid, (_stamp, src) in self._registered.items()
                      if src is not None}
        return {**registered, **self._sources}

    def queryables(self, collection_id: str) -> dict[str, Any]:
        """JSON schema of the properties load_collection's `properties` can filter on."""
        return self.get(collection_id).queryables()

    def _ensure_sample(self) -> None:
        if self._sample_loaded:
            return
        from terracube.catalog.samples import (
            dem_landcover_synthetic,
            rainfall_synthetic,
            sentinel1_synthetic,
            sentinel2_synthetic,
        )

        folder = sentinel2_synthetic.ensure_sample_data(self.data_dir)
        source = sample_source(folder)
        self._sources[source.id] = source
        # The other samples: one that cannot be generated must not take the rest with it.
        others = (
            ("radar rainfall", lambda: [rainfall_synthetic.rainfall_source(
                rainfall_synthetic.ensure_rainfall_data(self.data_dir))]),
            ("DEM and land cover", lambda: dem_landcover_synthetic.static_map_sources(
                dem_landcover_synthetic.ensure_dem_landcover_data(self.data_dir))),
            ("Sentinel-1 GRD", lambda: [sentinel1_synthetic.sentinel1_source(
                sentinel1_synthetic.ensure_sentinel1_data(self.data_dir))]),
        )
        for name, make in others:
            try:
                made = make()
            except Exception:  # noqa: BLE001 - the other samples must stay usable
                log.exception("the synthetic %s sample cannot be generated", name)
            else:
                self._sources.update((m.id, m) for m in made)
        self._sample_loaded = True

    def add(self, source: CollectionSource) -> None:
        self._sources[source.id] = source

    def collection_ids(self) -> list[str]:
        return sorted(self._all_sources())

    def get(self, collection_id: str) -> CollectionSource:
        sources = self._all_sources()
        try:
            return sources[collection_id]
        except KeyError:
            instead = hint(collection_id, set(sources))
            raise errors.CollectionNotFound(
                f"Collection '{collection_id}' does not exist"
                + (f" here (another back-end's collection). For {instead}. " if instead
                   else "; ")
                + f"GET /collections lists the available ones ({', '.join(sorted(sources))})."
            ) from None


def sample_source(folder: Path) -> StacItemsSource:
    """The built-in synthetic SENTINEL2_L2A collection as STAC items over its COG files."""
    from terracube.catalog.samples import sentinel2_synthetic

    index = sentinel2_synthetic.sample_index(folder)
    meta = sentinel2_synthetic.sample_collection_metadata(folder)
    band_meta = meta["bands"]
    grids: dict[str, tuple[list[int], list[float]]] = {}
    items = []
    for entry in index["items"]:
        item = pystac.Item(
            id=entry["id"], geometry=None, bbox=None,
            datetime=datetime.fromisoformat(entry["datetime"].replace("Z", "+00:00")),
            properties={"eo:cloud_cover": entry.get("eo:cloud_cover")},
        )
        for band, rel in entry["assets"].items():
            href = str((folder / rel).resolve())
            if band not in grids:
                with rasterio.open(href) as ds:
                    grids[band] = ([ds.height, ds.width], list(ds.transform)[:6])
            shape, transform = grids[band]
            item.add_asset(band, pystac.Asset(
                href=href, media_type=pystac.MediaType.COG, roles=["data"],
                extra_fields={"proj:shape": shape, "proj:transform": transform,
                              "proj:epsg": 32632,
                              "raster:bands": [{"nodata": band_meta[band].get("nodata", 0)}]},
            ))
        item.properties["proj:epsg"] = 32632
        _set_footprint(item, "EPSG:32632")
        items.append(item)
    bands = [
        BandInfo(name=name, nodata=m.get("nodata"), resolution=float(m["gsd"]),
                 scale=m.get("scale", 1.0), offset=m.get("offset", 0.0),
                 data_type=m.get("data_type", "uint16"), common_name=m.get("common_name"),
                 center_wavelength=m.get("center_wavelength"))
        for name, m in band_meta.items()
    ]
    return StacItemsSource(
        index.get("collection", sentinel2_synthetic.SAMPLE_COLLECTION_ID), items, bands,
        crs=index.get("crs", "EPSG:32632"), description=meta["description"],
        title="Sentinel-2 L2A (synthetic sample)", license="CC0-1.0",
        providers=[{"name": "terracube (synthetic data generator)",
                    "roles": ["producer", "processor", "host"]}],
        keywords=["synthetic", "sample", "Sentinel-2", "L2A"],
    )


def _set_footprint(item: pystac.Item, crs: str) -> None:
    """Give an item the lon/lat footprint of its assets (odc-stac needs one to tile the load)."""
    from shapely.geometry import box, mapping

    from terracube.datacube.request import BBox

    west = south = float("inf")
    east = north = float("-inf")
    for asset in item.assets.values():
        (h, w), tr = asset.extra_fields["proj:shape"], asset.extra_fields["proj:transform"]
        xs = (tr[2], tr[2] + tr[0] * w)
        ys = (tr[5], tr[5] + tr[4] * h)
        west, east = min(west, *xs), max(east, *xs)
        south, north = min(south, *ys), max(north, *ys)
    ll = BBox(west, south, east, north, crs).to_crs(4326)
    item.bbox = [ll.west, ll.south, ll.east, ll.north]
    item.geometry = mapping(box(*item.bbox))
