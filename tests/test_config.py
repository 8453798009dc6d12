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


def test_every_setting_answers_to_its_quorum_name_above_dlts_own(monkeypatch, tmp_path):
    monkeypatch.setenv("QUORUM_USERNAME", "u")
    monkeypatch.setenv("QUORUM_API_KEY", "k" * 12)
    monkeypatch.setenv("SOURCES__QUORUM__PAGE_SIZE", "300")
    monkeypatch.setenv("QUORUM_PAGE_SIZE", "250")
    monkeypatch.setenv("QUORUM_LOCK_WAIT_SECONDS", "2.5")
    config = load_sync_config(base_url="https://x.example", database=str(tmp_path / "w.duckdb"))
    assert config.source.page_size == 250
    assert config.run.lock_wait_seconds == 2.5
