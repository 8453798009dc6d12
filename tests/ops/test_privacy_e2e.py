"""Hashing personal data end to end: nothing personal reaches the DuckDB file; metrics unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import orjson

from tests.ops.helpers import query, run

KEY = "e2e-hash-key-0123456789abcdef"
GROUPS = ("PHONES", "EMAILS", "NAMES", "MESSAGES", "RECIPIENTS")
PHONE_KEYS = ("phone", "phone_number")


def personal_values(records: list[dict]) -> set[str]:
    """Phone numbers, e-mails and full names the simulator served (not the org's numbers)."""
    values: set[str] = set()
    for record in records:
        for field in ("supporter_email", "supporter_name"):
            if record.get(field):
                values.add(record[field])
        rcpt = record.get("rcpt_dict") or {}
        for key in (*PHONE_KEYS, "email", "name"):
            if rcpt.get(key):
                values.add(str(rcpt[key]))
        for key in PHONE_KEYS:
            if rcpt.get(key):
                values.add(re.sub(r"\D", "", str(rcpt[key])))  # the digits alone, too
    return {v for v in values if len(v) >= 6}


def dump_every_table(database: Path) -> str:
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
        return "\n".join(
            repr(connection.execute(f'select * from "{schema}"."{table}"').fetchall())
            for schema, table in tables
        )


def campaign_metrics(database: Path) -> list[tuple]:
    return query(database, "select * from analytics.sms_campaign_performance order by bulk_sms_id")


def test_hashing_leaves_no_personal_data_and_the_same_metrics(
    sync_env, simulator_factory, capsys, monkeypatch, tmp_path
):
    sim = simulator_factory(n_records=700)
    assert run(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    kept_metrics = campaign_metrics(sync_env)
    records = sim.world.ground_truth()
    needles = personal_values(records)
    assert len(needles) > 500
    kept_dump = dump_every_table(sync_env)
    assert sum(n in kept_dump for n in needles) > len(needles) * 0.9  # the search works

    hashed_db = tmp_path / "hashed" / "quorum.duckdb"
    monkeypatch.setenv("QUORUM_DATABASE", str(hashed_db))
    for group in GROUPS:
        monkeypatch.setenv(f"QUORUM_PII_{group}", "hash")
    monkeypatch.setenv("QUORUM_PII_HASH_KEY", KEY)
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 0, err
    assert campaign_metrics(hashed_db) == kept_metrics and kept_metrics

    dump = dump_every_table(hashed_db)
    leaks = sorted(n for n in needles if n in dump)
    assert not leaks, f"personal data in the hashed warehouse: {leaks[:5]}"
    written = [p for p in hashed_db.parent.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written)
    for path in written:
        data = path.read_bytes()
        found = [n for n in needles if n.encode() in data]
        assert not found, f"{path} holds {found[:3]}"
    assert KEY not in dump and all(KEY.encode() not in p.read_bytes() for p in written)
    # joins still work: one supporter's e-mail hashes the same on every record
    per_supporter = query(hashed_db, "select supporter_id, count(distinct supporter_email) "
                                     "from quorum_raw.sendsms group by all having count(*) > 1")
    assert per_supporter and all(n <= 1 for _, n in per_supporter)
    assert sum(n == 1 for _, n in per_supporter) > len(per_supporter) // 2
    (rcpt,) = query(hashed_db, "select rcpt_dict from quorum_raw.sendsms limit 1")[0]
    assert re.fullmatch(r"[0-9a-f]{64}", rcpt)
    # the organisation's own numbers are not personal data: kept
    assert query(hashed_db, "select count(*) from quorum_raw.sendsms "
                            "where associated_number like '+1%'")[0][0] == len(records)


def test_recipient_details_kept_with_phones_dropped(sync_env, simulator_factory, capsys,
                                                    monkeypatch):
    sim = simulator_factory(n_records=200)
    monkeypatch.setenv("QUORUM_PII_PHONES", "drop")
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url, "--no-models")
    assert code == 0, err
    rows = [orjson.loads(r[0]) for r in query(sync_env, "select rcpt_dict from quorum_raw.sendsms")]
    assert any("zip" in r or "first_name" in r for r in rows)
    assert all(r.get(k) is None for r in rows for k in PHONE_KEYS)


def test_hash_without_a_key_refuses_to_run_and_writes_nothing(
    sync_env, simulator_factory, capsys, monkeypatch
):
    sim = simulator_factory(n_records=50)
    sim.stats.reset()
    monkeypatch.setenv("QUORUM_PII_NAMES", "hash")
    code, _, err = run(capsys, "sync", "--base-url", sim.base_url)
    assert code == 2 and "pii_hash_key" in err
    assert sim.stats.requests == 0 and not sync_env.exists()
