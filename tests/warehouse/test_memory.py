"""DuckDB's memory ceiling: fixed, or `auto` by the warehouse file's size."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.warehouse import database as database_module
from pipelines.warehouse import memory
from pipelines.warehouse.database import connect, set_connection_defaults
from pipelines.warehouse.memory import (
    FILE_SHARE,
    LARGE_LIMIT,
    MARKER_BYTES_PER_VECTOR,
    SMALL_LIMIT,
    load_limit,
    memory_limit_for,
    night_limit,
    raised_limit,
    size_bytes,
)


def test_a_fixed_setting_is_used_as_it_is(tmp_path: Path) -> None:
    assert memory_limit_for("300MB", tmp_path / "none.duckdb") == "300MB"


def _sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:  # sparse: no disk is used
        handle.truncate(size)
    return path


def test_auto_follows_the_size_of_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "first-sync.duckdb"
    assert memory_limit_for("auto", missing) == SMALL_LIMIT
    small = tmp_path / "small.duckdb"
    small.write_bytes(b"x" * 4096)
    assert memory_limit_for(" AUTO ", small) == SMALL_LIMIT
    # a 1M-record warehouse (0.28 GiB) stays at the floor, 3.5M (0.78 GiB) gets over 128MB
    assert memory_limit_for("auto", _sparse_file(tmp_path / "1M.duckdb", 300 << 20)) == "64MB"
    assert memory_limit_for("auto", _sparse_file(tmp_path / "3M.duckdb", 800 << 20)) == "139MB"
    share = _sparse_file(tmp_path / "share.duckdb", FILE_SHARE * 200_000_000)
    assert memory_limit_for("auto", share) == "200MB"
    # 10M records (3 GiB) and beyond stop at the cap
    assert memory_limit_for("auto", _sparse_file(tmp_path / "10M.duckdb", 3 << 30)) == LARGE_LIMIT
    assert memory_limit_for("auto", _sparse_file(tmp_path / "huge.duckdb", 1 << 40)) == LARGE_LIMIT


def test_a_light_connection_gets_the_floor_of_auto_and_a_fixed_setting_as_it_is(
    tmp_path: Path,
) -> None:
    large = _sparse_file(tmp_path / "10M.duckdb", 3 << 30)
    assert memory_limit_for("auto", large) == LARGE_LIMIT
    assert memory_limit_for("auto", large, light=True) == SMALL_LIMIT
    assert memory_limit_for("32MB", large, light=True) == "32MB"


def test_a_load_into_an_empty_warehouse_is_sized_by_its_window(tmp_path: Path) -> None:
    large = _sparse_file(tmp_path / "10M.duckdb", 3 << 30)
    # the usual window, and smaller ones, at the floor whatever the file's size
    assert load_limit("auto", large, fills_empty=True, window_records=250_000) == SMALL_LIMIT
    assert load_limit("auto", large, fills_empty=True, window_records=1_000) == SMALL_LIMIT
    # a fuller window gets room for its records (the 10M first sync's 490,631), up to the cap
    assert load_limit("auto", large, fills_empty=True, window_records=490_631) == "125MB"
    assert load_limit("auto", large, fills_empty=True, window_records=5_000_000) == LARGE_LIMIT
    # a warehouse with history: the file's share, for the deletes into it
    assert load_limit("auto", large, fills_empty=False, window_records=1_000) == LARGE_LIMIT
    # a fixed setting is the user's, filling or not
    assert load_limit("300MB", large, fills_empty=True, window_records=1_000) == "300MB"


def test_a_night_is_sized_by_the_vectors_its_deletes_reach(tmp_path: Path) -> None:
    large = _sparse_file(tmp_path / "10M.duckdb", 3 << 30)
    # nothing reached, and a night of only recent records: the floor
    assert night_limit("auto", large, 0) == SMALL_LIMIT
    assert night_limit("auto", large, 500) == "74MB"
    # 90 % from the last 3 days at 10M (3,066 vectors): under the 128MB that passed there
    assert night_limit("auto", large, 3_066) == "126MB"
    assert 3_066 * MARKER_BYTES_PER_VECTOR > 3_066 * 16_384  # above the markers themselves
    # a uniform night (10,937 vectors) gets the file's share, which the worst night needs
    assert night_limit("auto", large, 10_937) == LARGE_LIMIT
    # never more than the file's share: at 1M records that is the floor, however many
    small = _sparse_file(tmp_path / "1M.duckdb", 300 << 20)
    assert night_limit("auto", small, 10_000) == SMALL_LIMIT
    # a fixed setting is the user's
    assert night_limit("300MB", large, 0) == "300MB"


def test_a_retry_gets_twice_the_ceiling_and_at_least_the_large_one() -> None:
    assert raised_limit("8MB") == LARGE_LIMIT
    assert raised_limit(SMALL_LIMIT) == LARGE_LIMIT
    assert raised_limit(LARGE_LIMIT) == "512MB"
    assert raised_limit("1.5GiB") == "3GiB"


@pytest.mark.parametrize("text", ["128MB", "122MiB", "1GB", "1GiB", "1.5GB", "500KB"])
def test_sizes_are_read_as_duckdb_reads_them(text: str) -> None:
    with duckdb.connect(config={"memory_limit": text}) as connection:
        connection.execute(f"set memory_limit = '{text}'")
        shown = connection.execute("select current_setting('memory_limit')").fetchone()
    with duckdb.connect(config={"memory_limit": f"{size_bytes(text)}B"}) as connection:
        same = connection.execute("select current_setting('memory_limit')").fetchone()
    assert shown == same


def test_connections_of_the_process_open_with_the_auto_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(database)).close()
    # the process's defaults as they were come back after the test, whatever they were
    monkeypatch.setattr(database_module, "_connection_defaults", {})
    set_connection_defaults(memory_limit="auto", threads=None)
    with connect(database, read_only=True) as connection:
        small = connection.execute("select current_setting('memory_limit')").fetchone()
    monkeypatch.setattr(memory, "FILE_SHARE", 0.000001)  # any file is then past the cap
    with connect(database, read_only=True) as connection:
        large = connection.execute("select current_setting('memory_limit')").fetchone()
    assert small == ("61.0 MiB",)  # 64MB, read as DuckDB's decimal megabytes
    assert large == ("244.1 MiB",)
