"""Settings resolution: flags, QUORUM_* variables, dlt's config, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import PROJECT_ROOT, load_sync_config, resolve_database
from pipelines.errors import ConfigError
from pipelines.quorum.timestamps import parse_since


def test_relative_database_flag_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUORUM_DATABASE", raising=False)
    assert resolve_database("sub/w.duckdb") == tmp_path / "sub" / "w.duckdb"


def test_configured_database_is_relative_to_the_project(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUORUM_DATABASE", raising=False)
    monkeypatch.setenv("QUORUM_SMS__DATABASE", "data/elsewhere.duckdb")
    assert resolve_database(None) == PROJECT_ROOT / "data" / "elsewhere.duckdb"


def test_database_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_database(str(tmp_path))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-01-31", "2024-01-31T00:00:00+00:00"),
        ("2024-01-31T12:00:00Z", "2024-01-31T12:00:00+00:00"),
        ("2024-01-31T07:00:00-05:00", "2024-01-31T12:00:00+00:00"),
    ],
)
def test_since_accepts_dates_and_datetimes_in_utc(given, expected):
    assert parse_since(given) == expected


def test_flags_beat_environment_beat_dlt_config(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("SOURCES__QUORUM__BASE_URL", "https://dlt-env.example")
    monkeypatch.setenv("QUORUM_BASE_URL", "https://quorum-env.example")
    config = load_sync_config(database=str(tmp_path / "w.duckdb"))
    assert config.source.base_url == "https://quorum-env.example"
    config = load_sync_config(base_url="https://flag.example", database=str(tmp_path / "w.duckdb"))
    assert config.source.base_url == "https://flag.example"
    monkeypatch.delenv("QUORUM_BASE_URL")
    config = load_sync_config(database=str(tmp_path / "w.duckdb"))
    assert config.source.base_url == "https://dlt-env.example"


def test_non_numeric_setting_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "lots")
    with pytest.raises(ConfigError, match="page_size"):
        load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))


@pytest.mark.parametrize(
    ("value", "wanted"),
    [("lots", "auto or a size such as 256MB or 1GB"), ("0MB", "auto or a size of at least 8MB"),
     ("7MB", "auto or a size of at least 8MB")],
)
def test_a_memory_ceiling_duckdb_cannot_use_is_refused_before_the_run(
    monkeypatch, tmp_path, value, wanted
):
    """Before: `lots` failed at the first connection as a database `open in another process`,
    and `0MB` with a traceback."""
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ConfigError) as raised:
        load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    assert str(raised.value) == (
        f"The setting quorum_sms.duckdb_memory_limit must be {wanted}, not {value!r}; fix it "
        "in .dlt/config.toml or its environment variable (QUORUM_DUCKDB_MEMORY_LIMIT)."
    )


@pytest.mark.parametrize("value", ["auto", "Auto", "8MB", "256 MB", "1.5GiB"])
def test_memory_ceilings_duckdb_reads_are_taken(monkeypatch, tmp_path, value):
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("QUORUM_DUCKDB_MEMORY_LIMIT", value)
    config = load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    assert config.run.duckdb_memory_limit == value


def test_every_setting_answers_to_its_quorum_name_above_dlts_own(monkeypatch, tmp_path):
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "300")
    monkeypatch.setenv("QUORUM_PAGE_SIZE", "250")
    monkeypatch.setenv("QUORUM_LOCK_WAIT_SECONDS", "2.5")
    config = load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    assert config.source.page_size == 250
    assert config.run.lock_wait_seconds == 2.5
