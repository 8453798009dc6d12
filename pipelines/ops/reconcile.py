"""`quorum-sms reconcile`: find records that vanished at the source and mark them deleted.

Reads the id of every live record (a full scan by `id__gt`, the pager's fallback path, which
nothing can make skip a record: ids never move), then, under the same warehouse lock as the
sync, sets `quorum_raw.sendsms.source_deleted_at` on the rows whose id the API no longer
serves. The staging view leaves such rows out, so no mart counts them. A record that the API
serves again is un-marked (and the next sync that loads it rewrites the column to NULL too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import SyncConfig
from pipelines.errors import ConfigError, ReconcileRefusedError
from pipelines.quorum import settings
from pipelines.quorum.client import QuorumClient
from pipelines.quorum.paging import Pager, PagingStats
from pipelines.warehouse.engine import open_warehouse

RAW_TABLE = f"{settings.RAW_DATASET}.{settings.SENDSMS_TABLE}"
#: Marking more than this share of the live warehouse at once is refused without --force:
#: an empty answer from a wrong account or base URL must not "delete" the warehouse.
DEFAULT_MAX_SHARE = 0.5


@dataclass
class ReconcileResult:
    """What reconcile found and did."""

    live_at_source: int = 0
    in_warehouse: int = 0
    newly_deleted: int = 0
    undeleted: int = 0
    already_deleted: int = 0
    deleted_ids_sample: tuple[int, ...] = ()
    pages: int = 0
    requests: int = 0
    retries: int = 0
    paging_note: str | None = None


def read_live_ids(
    config: SyncConfig, stats: PagingStats | None = None
) -> tuple[set[int], int, int]:
    """Every id the API serves now; also the requests and retries it took.

    Raises:
        QuorumSmsError: the API failed (nothing has been changed).
    """
    ids: set[int] = set()
    with QuorumClient(
        config.source.base_url,
        config.source.username or "",
        config.source.api_key or "",
        timeout=config.source.timeout,
        max_attempts=config.source.max_attempts,
        max_total_wait=config.source.max_total_wait,
        backoff_initial=config.source.backoff_initial,
        requests_per_second=config.source.rate_ceiling,
    ) as client:
        pager = Pager(client, None, page_size=config.source.page_size, force_full_scan=True)
        paging_logger = logging.getLogger("pipelines.quorum.paging")
        level = paging_logger.level
        # the pager warns when it falls back to a full scan; here that is the plan, not news
        paging_logger.setLevel(logging.ERROR)
        try:
            for page in pager:
                ids.update(int(record["id"]) for record in page)
        finally:
            paging_logger.setLevel(level)
        if stats is not None:
            stats.pages, stats.notes = pager.stats.pages, pager.stats.notes
        return ids, client.stats.requests, client.stats.retries


def apply_deletions(
    target: str | Path,
    live_ids: set[int],
    result: ReconcileResult,
    *,
    force: bool = False,
    max_share: float = DEFAULT_MAX_SHARE,
) -> ReconcileResult:
    """Mark rows missing from `live_ids` deleted (and un-mark rows that are back).

    The caller holds the warehouse lock. All in one transaction, on DuckDB or PostgreSQL.

    Args:
        target: the DuckDB file or a PostgreSQL credentials string (`pipelines.target`).

    Raises:
        ConfigError: the warehouse has no raw table yet.
        ReconcileRefusedError: more than `max_share` of the live rows would be marked.
    """
    now = datetime.now(UTC)
    # one array parameter: both engines unnest it, and no temporary table is needed
    live = sorted(live_ids)
    with open_warehouse(target) as warehouse:
        if settings.SENDSMS_TABLE not in warehouse.table_names(settings.RAW_DATASET):
            raise ConfigError(
                f"The warehouse {warehouse.label} has no {RAW_TABLE} table yet; run "
                "`quorum-sms sync` first, then reconcile."
            )
        with warehouse.transaction():
            counts = warehouse.query(
                "select count(*) filter (where source_deleted_at is null), "
                f"count(*) filter (where source_deleted_at is not null) from {RAW_TABLE}"
            ).rows
            present, already = (int(counts[0][0]), int(counts[0][1])) if counts else (0, 0)
            missing = [
                int(row[0])
                for row in warehouse.query(
                    f"select s.id from {RAW_TABLE} s left join "
                    "(select unnest(cast(? as bigint[])) as id) l on l.id = s.id "
                    "where l.id is null and s.source_deleted_at is null order by s.id",
                    [live],
                ).rows
            ]
            if present and len(missing) > max_share * present and not force:
                raise ReconcileRefusedError(
                    f"Reconcile would mark {len(missing):,} of the {present:,} records in the "
                    f"warehouse as deleted at the source (more than {max_share:.0%}), which "
                    "looks like the wrong account or base URL rather than real deletions, so "
                    "nothing was changed. Check the settings with `quorum-sms check`; if the "
                    "deletions are real, run `quorum-sms reconcile --force`."
                )
            if missing:
                warehouse.execute(
                    f"update {RAW_TABLE} set source_deleted_at = ? where source_deleted_at is "
                    "null and id in (select unnest(cast(? as bigint[])))",
                    [now, missing],
                )
            back = warehouse.query(
                f"update {RAW_TABLE} set source_deleted_at = null where source_deleted_at is "
                "not null and id in (select unnest(cast(? as bigint[]))) returning id",
                [live],
            ).rows
    result.in_warehouse = present + already
    result.newly_deleted = len(missing)
    result.undeleted = len(back)
    result.already_deleted = already - len(back)
    result.deleted_ids_sample = tuple(missing[:10])
    return result
