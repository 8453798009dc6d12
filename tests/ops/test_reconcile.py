"""`quorum-sms reconcile`: records that vanish at the source are marked, and the marts drop them."""

from __future__ import annotations

from datetime import timedelta

from tests.ops.helpers import history, query, run


def marts_ids(database) -> set[int]:
    return {r[0] for r in query(database, "select sendsms_id from analytics.fct_sms_message")}


def test_reconcile_marks_exactly_the_vanished_records_and_the_marts_drop_them(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=1200)
    assert run(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    ids = sorted(r["id"] for r in sim.world.ground_truth())
    campaign_ids = [r["id"] for r in sim.world.ground_truth() if r["bulk_sms"]]
    gone = set(ids[5:12]) | set(campaign_ids[-3:])
    sim.world.delete(sorted(gone))
    sim.world.advance(timedelta(hours=3))  # new records arrive meanwhile: they are not "deleted"
    campaign_messages = "select sum(messages) from analytics.sms_campaign_performance"
    messages_before = query(sync_env, campaign_messages)
    code, out, err = run(capsys, "reconcile", "--base-url", sim.base_url)
    assert code == 0, err
    assert f"newly marked deleted         {len(gone)}" in out
    marked = {r[0] for r in query(sync_env, "select id from quorum_raw.sendsms "
                                            "where source_deleted_at is not null")}
    assert marked == gone
    assert not marts_ids(sync_env) & gone
    assert marts_ids(sync_env) == set(ids) - gone
    assert query(sync_env, campaign_messages) != messages_before
    assert query(sync_env, "select deleted_at_source_records from analytics.sync_freshness") == [
        (len(gone),)
    ]
    assert [(r["command"], r["status"], r["records_deleted"]) for r in history(sync_env)] == [
        ("sync", "succeeded", None),
        ("reconcile", "succeeded", len(gone)),
    ]
    # a second reconcile finds nothing new; a sync keeps the marks (the records are not served)
    code, out, _ = run(capsys, "reconcile", "--base-url", sim.base_url, "--no-models")
    assert code == 0 and "newly marked deleted         0" in out
    assert run(capsys, "sync", "--base-url", sim.base_url)[0] == 0
    assert not marts_ids(sync_env) & gone
    assert len(query(sync_env, "select id from quorum_raw.sendsms "
                               "where source_deleted_at is not null")) == len(gone)


def test_an_implausible_mass_deletion_is_refused_and_changes_nothing(
    sync_env, simulator_factory, capsys
):
    sim = simulator_factory(n_records=300)
    assert run(capsys, "sync", "--base-url", sim.base_url, "--no-models")[0] == 0
    ids = [r["id"] for r in sim.world.ground_truth()]
    sim.world.delete(ids[:200])
    code, _, err = run(capsys, "reconcile", "--base-url", sim.base_url, "--no-models")
    assert code == 1 and "nothing was changed" in err and "--force" in err
    assert query(sync_env, "select count(*) from quorum_raw.sendsms "
                           "where source_deleted_at is not null") == [(0,)]
    assert history(sync_env)[-1]["status"] == "failed"
    code, _, _ = run(capsys, "reconcile", "--base-url", sim.base_url, "--no-models", "--force")
    assert code == 0
    assert query(sync_env, "select count(*) from quorum_raw.sendsms "
                           "where source_deleted_at is not null") == [(200,)]


def test_reconcile_before_any_sync_says_what_to_do(sync_env, simulator_factory, capsys):
    sim = simulator_factory(n_records=50)
    code, _, err = run(capsys, "reconcile", "--base-url", sim.base_url)
    assert code == 2 and "run `quorum-sms sync` first" in err
