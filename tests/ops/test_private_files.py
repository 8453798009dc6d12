"""Nothing personal lies around on disk: owner-only files, no loaded packages, no plaintext.

Every test runs under a permissive umask (0o022, what a shell or cron often has), syncs from
the simulator over HTTP into a real DuckDB file, then inspects every byte under the
database's folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.lock import lock_path_for
from pipelines.sync import pipelines_dir_for
from tests.e2e.truth import assert_warehouse_equals
from tests.ops.helpers import run
from tests.ops.test_privacy_e2e import personal_values

KEY = "private-files-hash-key-0123456789"
GROUPS = ("PHONES", "EMAILS", "NAMES", "MESSAGES", "RECIPIENTS")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def every_path(folder: Path) -> list[Path]:
    return [folder, *sorted(folder.rglob("*"))]


def needles_of(records: list[dict]) -> set[str]:
    """Phone numbers, e-mails, names and message texts the simulator served."""
    needles = personal_values(records)
    needles |= {r["message_content"] for r in records if len(r.get("message_content") or "") >= 12}
    return needles


def test_a_sync_leaves_only_owner_only_files_and_no_loaded_packages(
    sync_env, simulator_factory, capsys, permissive_umask
):
    sim = simulator_factory(n_records=400)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    dlt_folder = pipelines_dir_for(sync_env)
    for expected in (sync_env, lock_path_for(sync_env), dlt_folder):
        assert expected.exists(), expected
    for path in every_path(sync_env.parent):
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, f"{path} has mode {mode:o}, not {wanted:o}"
    leftovers = [p for p in dlt_folder.rglob("*") if p.is_file() and p.suffix == ".parquet"]
    assert not leftovers, f"loaded data still on disk: {leftovers[:3]}"
    loaded = dlt_folder / "quorum_sms" / "load" / "loaded"
    assert loaded.is_dir() and not any(loaded.iterdir())


def test_files_left_readable_by_an_older_version_are_made_owner_only(
    sync_env, simulator_factory, capsys, permissive_umask
):
    sim = simulator_factory(n_records=100)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    ours = every_path(sync_env.parent)[1:]  # the folder holding them may be shared: left as is
    for path in ours:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    opened = [p for p in every_path(sync_env.parent)[1:] if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not opened, opened


@pytest.mark.parametrize("choice", ["drop", "hash"])
def test_no_personal_value_survives_anywhere_on_disk(
    sync_env, simulator_factory, capsys, monkeypatch, permissive_umask, choice
):
    """The issue's steps: a night with everything kept, then every group switched, then
    `--full-refresh`: the old plaintext must not survive in dlt's folder."""
    sim = simulator_factory(n_records=600)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0, err
    for group in GROUPS:
        monkeypatch.setenv(f"QUORUM_PII_{group}", choice)
    monkeypatch.setenv("QUORUM_PII_HASH_KEY", KEY)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url, "--full-refresh")
    assert code == 0, err
    # a second night: packages of every run are removed, not only the first one's
    sim.world.advance(timedelta(days=1))
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    needles = needles_of(sim.world.ground_truth())
    assert len(needles) > 600
    files = [p for p in sync_env.parent.rglob("*") if p.is_file()]
    assert sync_env in files
    for path in files:  # the DuckDB file, its WAL if any, dlt's state, schemas and trace
        data = path.read_bytes()
        found = [n for n in needles if n.encode() in data]
        assert not found, f"{path} holds {found[:3]}"
        assert KEY.encode() not in data


def test_a_package_not_yet_loaded_is_kept_and_finished_by_the_next_run(
    sync_env, simulator_factory, capsys
):
    """The loader died last night: its package must survive the clean-up until it is loaded."""
    from pipelines.config import load_sync_config
    from pipelines.quorum import quorum_source
    from pipelines.sync import delete_loaded_packages, make_pipeline

    sim = simulator_factory(n_records=800)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    sim.world.advance(timedelta(days=1))
    config = load_sync_config(base_url=sim.base_url, database=str(sync_env))
    pipeline = make_pipeline(config)
    pipeline.extract(quorum_source(config.source), loader_file_format="parquet")
    pipeline.normalize()
    pending = pipeline.list_normalized_load_packages()
    assert pending
    assert delete_loaded_packages(pipeline) == 0
    assert pipeline.list_normalized_load_packages() == pending and pipeline.has_pending_data

    sim.world.advance(timedelta(days=1))
    code, out, err = run(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0, err
    assert "finished the load a previous run left pending" in out
    assert_warehouse_equals(sync_env, sim.world.ground_truth())
    working = pipelines_dir_for(sync_env) / "quorum_sms" / "load"
    assert not any((working / "loaded").iterdir())
    assert not any((working / "normalized").iterdir())
