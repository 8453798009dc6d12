"""The published analytics file in the nightly job: dashboards hold it open through two nights.

Readers are real processes (this project's DuckDB and DuckDB 1.1.3, the kind BI drivers
bundle) that open the published file read-only and query it in a loop while real syncs run
against the simulator. Every ordering is a handshake: a reader answers on its pipe before a
sync starts, and is asked again after the sync has returned.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.publish import default_publish_path
from tests.published_readers import MARTS, Reader, read_once


def nightly(capsys: pytest.CaptureFixture[str], base_url: str, *extra: str) -> tuple[int, str]:
    """`quorum-sms sync` with the models and publishing, in-process."""
    code = main(["sync", "--base-url", base_url, *extra])
    out, err = capsys.readouterr()
    return code, out + err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published_tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as connection:
        rows = connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    return {f"{schema}.{name}" for schema, name in rows}


def test_dashboards_hold_the_published_file_through_two_nights(
    sync_env: Path, simulator_factory, capsys, legacy_python: Path, readers: list[Reader]
) -> None:
    sim = simulator_factory(n_records=1500)
    published = default_publish_path(sync_env)
    code, output = nightly(capsys, sim.base_url)
    assert code == 0, output
    assert published.is_file() and str(published) in output
    assert published_tables(published) == {f"analytics.{name}" for name in MARTS}
    first = read_once(sys.executable, published)  # a tool connecting now

    # Two dashboards connect: one on this DuckDB, one on the old client BI drivers bundle.
    current = Reader(sys.executable, published)
    old = Reader(legacy_python, published)
    readers.extend([current, old])
    assert current.opened["build"] == old.opened["build"] == first["build"]
    assert str(old.opened["version"]).startswith("1.1.")

    for night in (1, 2):
        sim.world.advance(timedelta(days=1))
        code, output = nightly(capsys, sim.base_url)
        assert code == 0, f"night {night}: {output}"
        # While they held it, a whole new build replaced the file under them.
        for reader in (current, old):
            assert reader.send("check")["build"] == first["build"], f"night {night}"

    second = read_once(legacy_python, published)  # a new connection sees the last build
    assert second["build"] != first["build"]
    assert read_once(sys.executable, published)["build"] == second["build"]
    for reader in (current, old):
        done = reader.send("stop")
        assert done["problems"] == [], done
        assert int(str(done["loops"])) > 0


def test_report_and_export_read_the_published_file_while_the_warehouse_is_busy(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = simulator_factory(n_records=800)
    assert nightly(capsys, sim.base_url)[0] == 0
    # A writer holds the warehouse (as the nightly job does while it loads): the report and
    # the export must not need it.
    holder = duckdb.connect(str(sync_env))
    try:
        assert main(["report"]) == 0
        report = capsys.readouterr().out
        assert "Delivery" in report or "delivered" in report.lower(), report
        out = tmp_path / "parquet"
        assert main(["export", "--out", str(out)]) == 0
        capsys.readouterr()
        assert {p.stem for p in out.glob("*.parquet")} == MARTS
    finally:
        holder.close()


def test_a_failing_data_check_leaves_the_published_file_alone(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path
) -> None:
    sim = simulator_factory(n_records=800)
    assert nightly(capsys, sim.base_url)[0] == 0
    published = default_publish_path(sync_env)
    before = digest(published)
    broken = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, broken)
    check = broken / "checks" / "fct_direction_code_in_seed.sql"
    header = [line for line in check.read_text().splitlines() if line.startswith("--")]
    assert header[0] == "-- depends_on: analytics.fct_sms_message"
    # A check that always finds an offending row.
    check.write_text(
        "\n".join(header) + "\nselect sendsms_id from analytics.fct_sms_message limit 1\n"
    )
    code = main(["models", "--sql-dir", str(broken)])
    output = "".join(capsys.readouterr())
    assert code == 1, output
    assert "check" in output.lower()
    assert digest(published) == before


def test_publish_flag_and_setting_choose_the_file(
    sync_env: Path, simulator_factory, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulator_factory(n_records=500)
    flagged = tmp_path / "bi" / "flagged.duckdb"
    code, output = nightly(capsys, sim.base_url, "--publish-database", str(flagged))
    assert code == 0, output
    assert flagged.is_file() and not default_publish_path(sync_env).exists()
    configured = tmp_path / "bi" / "configured.duckdb"
    monkeypatch.setenv("QUORUM_PUBLISH_DATABASE", str(configured))
    assert main(["models"]) == 0
    capsys.readouterr()
    assert configured.is_file()
    # Pointing the published file at the warehouse itself is refused before anything runs.
    code = main(["models", "--publish-database", str(sync_env)])
    err = capsys.readouterr().err
    assert code == 2 and "warehouse itself" in err
