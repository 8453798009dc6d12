"""Which rows of a page are versions the warehouse already holds (`quorum.versions`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa

from pipelines.quorum.isotime import TIMESTAMP
from pipelines.quorum.rejects import SplitPage
from pipelines.quorum.versions import StoredVersions, epoch_microseconds

T0 = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def page(rows: list[tuple[int | None, datetime | None]], events_per_record: int = 2) -> SplitPage:
    """A normalized page: `sendsms` rows and `events_per_record` event rows for each."""
    sendsms = pa.table({
        "id": pa.array([i for i, _ in rows], pa.int64()),
        "updated": pa.array([u for _, u in rows], TIMESTAMP),
        "opens": pa.array(range(len(rows)), pa.int64()),
    })
    event_rows = [(i, u, kind) for i, u in rows for kind in ("queued", "sent")[:events_per_record]]
    events = pa.table({
        "sendsms_id": pa.array([i for i, _, _ in event_rows], pa.int64()),
        "event_type": pa.array([k for _, _, k in event_rows], pa.string()),
        "updated": pa.array([u for _, u, _ in event_rows], TIMESTAMP),
    })
    return SplitPage(sendsms, events, bad=[({"id": 99}, "bad updated")])


def test_epoch_microseconds_is_exact_and_reads_naive_as_utc():
    assert epoch_microseconds(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1
    assert epoch_microseconds(T0.replace(tzinfo=None)) == epoch_microseconds(T0)
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert epoch_microseconds(plus_two) == epoch_microseconds(T0)
    # the Arrow column's own integer, the one the filter compares with
    as_arrow = pa.array([T0], TIMESTAMP).cast(pa.int64())[0].as_py()
    assert epoch_microseconds(T0) == as_arrow


def test_only_rows_with_the_stored_id_and_updated_go_with_their_events():
    stored = StoredVersions.from_rows([(5, at(0)), (3, at(10)), (8, at(20)), (4, None)])
    split = page([
        (3, at(10)),  # stored as is: unchanged
        (5, at(1)),  # changed since
        (7, at(0)),  # never stored
        (8, at(20)),  # unchanged
        (4, at(30)),  # stored without `updated`: nothing equals it
        (None, at(0)),  # no id
        (9, None),  # no `updated`
    ])
    kept, dropped = stored.drop_unchanged(split)
    assert dropped == 2
    assert kept.sendsms is not None and kept.events is not None
    assert kept.sendsms["id"].to_pylist() == [5, 7, 4, None, 9]
    assert kept.sendsms["opens"].to_pylist() == [1, 2, 4, 5, 6]  # whole rows, in order
    assert kept.events["sendsms_id"].to_pylist() == [5, 5, 7, 7, 4, 4, None, None, 9, 9]
    assert kept.bad == split.bad  # rejects are not the filter's business


def test_an_event_row_of_another_version_of_a_skipped_id_stays():
    # two versions of record 3 on one page: the stored one goes, the newer one and its
    # events stay (dlt keeps the newest of the two anyway)
    stored = StoredVersions.from_rows([(3, at(10))])
    kept, dropped = stored.drop_unchanged(page([(3, at(10)), (3, at(11))]))
    assert dropped == 1
    assert kept.sendsms is not None and kept.events is not None
    assert kept.sendsms["updated"].to_pylist() == [at(11)]
    assert kept.events["updated"].to_pylist() == [at(11), at(11)]


def test_pages_without_matches_and_empty_versions_pass_through_untouched():
    split = page([(1, at(0)), (2, at(1))])
    assert StoredVersions.from_rows([]).drop_unchanged(split) == (split, 0)
    assert StoredVersions.from_rows([(1, at(5)), (10, at(0))]).drop_unchanged(split) == (split, 0)
    empty = SplitPage(None, None, bad=[])
    assert StoredVersions.from_rows([(1, at(0))]).drop_unchanged(empty) == (empty, 0)


def test_a_page_made_of_chunks_is_matched_like_one_array():
    stored = StoredVersions.from_rows([(2, at(1)), (3, at(2))])
    chunked = pa.Table.from_batches([
        page([(1, at(0)), (2, at(1))]).sendsms.to_batches()[0],  # type: ignore[union-attr]
        page([(3, at(2)), (4, at(3))]).sendsms.to_batches()[0],  # type: ignore[union-attr]
    ])
    assert chunked["id"].num_chunks == 2
    assert stored.unchanged(chunked["id"], chunked["updated"]).tolist() == [
        False, True, True, False,
    ]
    assert len(stored) == 2
