"""`quorum-sms models|report|export` through the warehouse CLI, and the report's figures."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.commands import warehouse as cli
from pipelines.errors import ConfigError, QuorumSmsError
from pipelines.warehouse.database import DEFAULT_SQL_DIR
from pipelines.warehouse.html_report import render_html_report
from pipelines.warehouse.models import discover_models
from pipelines.warehouse.report import render_terminal_report


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quorum-sms")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_models_command_builds_and_prints_a_summary(
    fresh_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["models", "--database", str(fresh_db)]) == 0
    out = capsys.readouterr().out
    assert "built 2 seeds, 2 staging views, 6 intermediate and 8 mart tables" in out
    assert "data checks passed" in out
    assert "analytics.fct_sms_message" in out and "18 rows" in out


def test_database_from_the_environment(
    fresh_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUORUM_DATABASE", str(fresh_db))
    assert run(["models"]) == 0
    assert "data checks passed" in capsys.readouterr().out


def test_terminal_report_headline_figures(fresh_db: Path) -> None:
    run(["models", "--database", str(fresh_db)])
    text = render_terminal_report(fresh_db, days=30)
    # the window ends at the newest send (2026-03-03) and holds all 11 messages
    assert "last 30 days: 2026-02-02 to 2026-03-03" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert "11" in lines["Messages"].split() and "segments 12" in lines["Messages"]
    assert lines["Delivered"].split()[1:4] == ["4", "36.4", "%"]
    assert "5" in lines["Failed"].split() and "45.5 %" in lines["Failed"]
    assert "25.0 % of delivered" in lines["Opened"]
    assert "Replies (72 h)            2" in text and "inbound texts in the window: 1" in text
    assert "median 10 s" in text  # delivered with both times: 10 s, 30 s, 7 s -> median 10 s
    assert "Spring rally" in text and "30007" in text and "+15550000002" in text


def test_report_window_of_one_day(fresh_db: Path) -> None:
    run(["models", "--database", str(fresh_db)])
    text = render_terminal_report(fresh_db, days=1)
    assert "last 1 days: 2026-03-03 to 2026-03-03" in text
    assert "Messages                  3" in text


def test_report_needs_built_marts_and_valid_days(fresh_db: Path) -> None:
    with pytest.raises(ConfigError, match="quorum-sms models"):
        render_terminal_report(fresh_db)
    run(["models", "--database", str(fresh_db)])
    with pytest.raises(ConfigError, match="--days"):
        render_terminal_report(fresh_db, days=0)


def test_report_command_prints_or_writes_html(
    fresh_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["models", "--database", str(fresh_db)])
    capsys.readouterr()
    assert run(["report", "--database", str(fresh_db), "--days", "7"]) == 0
    assert "last 7 days" in capsys.readouterr().out
    page = tmp_path / "out" / "report.html"
    assert run(["report", "--database", str(fresh_db), "--html", str(page)]) == 0
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    for forbidden in ("http://", "https://", "<link", "src="):
        assert forbidden not in html


def test_html_report_contents(fresh_db: Path) -> None:
    run(["models", "--database", str(fresh_db)])
    html = render_html_report(fresh_db)
    for section in ("daily", "funnel", "latency", "errors", "numbers", "campaign-table"):
        assert f'id="{section}"' in html
    assert "Spring rally" in html and "30007 · rejected" in html and "+15550000001" in html


def test_export_writes_each_mart_as_parquet(
    fresh_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["models", "--database", str(fresh_db)])
    out = tmp_path / "export"
    assert run(["export", "--database", str(fresh_db), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    marts = {m.name for m in discover_models(DEFAULT_SQL_DIR) if m.layer == "marts"}
    assert names == {f"{name}.parquet" for name in marts}
    assert {"fct_sms_message.parquet", "sms_supporter_engagement.parquet"} <= names
    fct = pq.read_table(out / "fct_sms_message.parquet")
    assert fct.num_rows == 18 and fct.column("sendsms_id").to_pylist()[:3] == [1, 2, 3]
    funnel = pq.read_table(out / "sms_campaign_funnel.parquet")
    assert funnel.num_rows == 15 and "count" in funnel.column_names
    assert f"wrote {len(marts)} Parquet file(s)" in capsys.readouterr().out


def test_errors_are_typed_not_printed(tmp_path: Path) -> None:
    with pytest.raises(QuorumSmsError):
        run(["export", "--database", str(tmp_path / "none.duckdb"), "--out", str(tmp_path)])
