"""Decode workers: the same warehouse as in-process decoding, no key, no leaked process.

Simulator over real HTTP on loopback -> real DuckDB files. Pages are small (20 records) so a
world of a few thousand records is a sliced read of well over `MIN_PAGES_FOR_DECODER` pages,
the size at which workers are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.quorum.client import QuorumClient
from pipelines.quorum.slicing import MIN_PAGES_FOR_DECODER
from pipelines.simulator import Faults
from tests.conftest import API_KEY, API_USER
from tests.e2e.test_quarantine import pick_ids, run

PAGE_SIZE = 20
RECORDS = 3000
#: Columns that record when or in which run a row was written, not what it holds.
RUN_COLUMNS = frozenset({"first_seen_at", "last_seen_at", "run_id"})


def raw_rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every raw table, sorted, without dlt's and the run's own bookkeeping."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with duckdb.connect(str(database), read_only=True) as connection:
        for table in ("sendsms", "sendsms_events", "sendsms_rejects"):
            columns = [
                name
                for (name,) in connection.execute(
                    "select column_name from information_schema.columns where "
                    "table_schema = 'quorum_raw' and table_name = ? order by column_name",
                    [table],
                ).fetchall()
                if not name.startswith("_dlt") and name not in RUN_COLUMNS
            ]
            selected = ", ".join(f'"{name}"' for name in columns)
            rows[table] = connection.execute(
                f"select {selected} from quorum_raw.{table} order by all"
            ).fetchall()
            rows[f"{table} columns"] = [tuple(columns)]
    return rows


def workers_alive(before: set[int]) -> list[psutil.Process]:
    """Child processes of this test process started since `before`, bar multiprocessing's
    resource tracker (one per interpreter for its whole life, started by any spawn)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            if "resource_tracker" in " ".join(child.cmdline()):
                continue
        except psutil.Error:
            continue  # it exited while we looked
        alive.append(child)
    return alive


def test_workers_load_the_same_rows_as_in_process(sync_env, simulator_factory, tmp_path):
    assert RECORDS >= 2 * MIN_PAGES_FOR_DECODER * PAGE_SIZE
    sim = simulator_factory(n_records=RECORDS)
    bad = pick_ids(sim.world.ground_truth(), 3)
    sim.faults = Faults(malformed_ids=bad)
    settings = {"page_size": PAGE_SIZE, "concurrency": 4, "max_reject_fraction": 0.5}

    in_process = tmp_path / "in_process.duckdb"
    plain = run(in_process, sim.base_url, decode_workers=0, **settings)
    in_workers = tmp_path / "workers.duckdb"
    pooled = run(in_workers, sim.base_url, decode_workers=2, **settings)

    assert plain.worker_pages == 0
    assert pooled.worker_pages > MIN_PAGES_FOR_DECODER  # the pool really decoded the pages
    assert pooled.rejects.new == plain.rejects.new == len(bad)
    assert pooled.records == plain.records == RECORDS
    expected, actual = raw_rows(in_process), raw_rows(in_workers)
    assert len(expected["sendsms"]) == RECORDS - len(bad)
    assert len(expected["sendsms_rejects"]) == len(bad)
    for table in expected:
        assert actual[table] == expected[table], table


def test_no_worker_survives_a_failed_run(sync_env, simulator_factory, tmp_path):
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    # a bad record with no tolerance fails the run at the end of extraction, after the
    # workers decoded every page
    sim = simulator_factory(n_records=RECORDS)
    sim.faults = Faults(malformed_ids=pick_ids(sim.world.ground_truth(), 1))
    database = tmp_path / "failed.duckdb"
    with pytest.raises(PipelineStepFailed):
        run(
            database,
            sim.base_url,
            decode_workers=2,
            page_size=PAGE_SIZE,
            concurrency=4,
            max_reject_fraction=0.0,
        )
    assert sim.stats.pages_served > MIN_PAGES_FOR_DECODER
    assert workers_alive(before) == []


def test_workers_never_get_the_api_key(simulator_factory):
    sim = simulator_factory(n_records=100)
    with QuorumClient(sim.base_url, API_USER, API_KEY) as client:
        body = client.get_decoded(
            "/api/sendsms/", [("limit", 10), ("order_by", "id")], lambda content: content
        )
        assert body is not None and API_KEY.encode() in body  # tastypie's meta.next has it
        scrubbed = client.without_key(body)
    assert scrubbed is not None
    assert API_KEY.encode() not in scrubbed
    # only the meta block changed: the records are byte for byte as served
    objects = body[body.index(b'"objects":') :]
    assert objects in scrubbed
