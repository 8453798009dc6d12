"""The README's demo command, as a user runs it (from another directory, as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_prints_the_report(tmp_path):
    database = tmp_path / "demo.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "SOURCES__"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "demo",
            "--records",
            "2000",
            "--database",
            str(database),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "records fetched    2,000" in result.stdout
    assert "data checks passed" in result.stdout
    assert "last 30 days" in result.stdout
    page = tmp_path / "demo-report.html"
    assert page.exists() and "<svg" in page.read_text()
    with duckdb.connect(str(database), read_only=True) as connection:
        messages = connection.execute("select count(*) from analytics.fct_sms_message").fetchone()
    assert messages == (2000,)
