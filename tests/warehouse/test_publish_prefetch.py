"""The published file copied in the background: used only when it is a copy of the file the
incremental publish starts from, and never left behind."""

from __future__ import annotations

from pathlib import Path

from pipelines.warehouse.engine import open_warehouse
from pipelines.warehouse.publish import publish_analytics, staging_prefix
from pipelines.warehouse.publish_prefetch import PublishedCopy
from pipelines.warehouse.runner import build_models
from tests.warehouse.conftest import hand_made_messages
from tests.warehouse.rawdata import write_first_load
from tests.warehouse.test_incremental import assert_same_tables


def change_records(warehouse: Path, load_id: str, below: int) -> None:
    """A night that reloaded (and changed) the records with an id below `below`."""
    with open_warehouse(str(warehouse)) as connection:
        connection.execute(
            f"update quorum_raw.sendsms set _dlt_load_id = '{load_id}', converted = not converted "
            f"where id < {below}"
        )


def built_and_published(tmp_path: Path) -> tuple[Path, Path]:
    warehouse = tmp_path / "quorum.duckdb"
    write_first_load("duckdb", str(warehouse), hand_made_messages(), [])
    assert build_models(warehouse).mode == "full"
    target = tmp_path / "published" / "quorum-analytics.duckdb"
    assert not publish_analytics(warehouse, target).incremental
    return warehouse, target


def full_publish_of(warehouse: Path, folder: Path) -> Path:
    expected = folder / "expected-analytics.duckdb"
    assert not publish_analytics(warehouse, expected, full=True).incremental
    return expected


def leftovers(target: Path) -> list[Path]:
    return list(target.parent.glob(staging_prefix(target) + "*"))


def test_the_copy_is_what_the_incremental_publish_starts_from(tmp_path: Path) -> None:
    warehouse, target = built_and_published(tmp_path)
    copy = PublishedCopy.start(target)
    assert copy is not None and leftovers(target) == [copy.path.parent]
    change_records(warehouse, "2", below=5)
    assert build_models(warehouse).mode == "incremental"

    result = publish_analytics(warehouse, target, prefetched=copy)
    copy.close()

    assert result.incremental and copy.used
    assert_same_tables(target, full_publish_of(warehouse, tmp_path))
    assert leftovers(target) == []


def test_a_copy_of_an_older_published_file_is_not_used(tmp_path: Path) -> None:
    warehouse, target = built_and_published(tmp_path)
    stale = PublishedCopy.start(target)  # the file of the first build
    assert stale is not None
    change_records(warehouse, "2", below=5)
    build_models(warehouse)
    assert publish_analytics(warehouse, target).incremental  # the second build's file
    change_records(warehouse, "3", below=3)
    build_models(warehouse)

    result = publish_analytics(warehouse, target, prefetched=stale)
    stale.close()

    assert result.incremental and not stale.used  # copied the second build's file itself
    assert_same_tables(target, full_publish_of(warehouse, tmp_path))
    assert leftovers(target) == []


def test_an_unused_copy_is_removed_and_no_file_means_no_copy(tmp_path: Path) -> None:
    _, target = built_and_published(tmp_path)
    copy = PublishedCopy.start(target)
    assert copy is not None and copy.path.parent.stat().st_mode & 0o077 == 0
    copy.close()  # say the sync failed: the publish never ran
    assert leftovers(target) == [] and not copy.used
    assert PublishedCopy.start(tmp_path / "published" / "nothing-yet.duckdb") is None
