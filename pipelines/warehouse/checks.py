"""Data checks run after every build, in the spirit of dbt's tests.

Each check is a query that returns the offending rows: no row means the check passes. Keys
are unique and not null, enumerations take accepted values, and the marts reconcile with the
raw tables and with each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.errors import DataCheckError

MAX_SHOWN_ROWS = 5
STATUS_CATEGORIES = ("in_flight", "delivered", "failed", "inbound")
DIRECTIONS = ("inbound", "outbound")
RATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "sms_campaign_performance": (
        "delivery_rate", "failure_rate", "open_rate", "conversion_rate",
    ),
    "sms_campaign_funnel": ("pct_of_messages", "pct_of_previous_stage"),
    "sms_daily_overview": ("delivery_rate", "failure_rate", "open_rate", "conversion_rate"),
    "sms_sender_number_health": (
        "delivery_rate", "failure_rate", "rejection_rate", "recent_failure_rate",
    ),
    "sms_delivery_errors": ("share_of_failures",),
}
KEYS: dict[str, tuple[str, ...]] = {
    "seeds.text_delivery_status": ("status_code",),
    "seeds.message_direction": ("direction_code",),
    "analytics.fct_sms_message": ("sendsms_id",),
    "analytics.sms_campaign_performance": ("bulk_sms_id",),
    "analytics.sms_campaign_funnel": ("bulk_sms_id", "stage_order"),
    "analytics.sms_daily_overview": ("send_date",),
    "analytics.sms_sender_number_health": ("associated_number",),
    "analytics.sms_supporter_engagement": ("supporter_id",),
}


@dataclass(frozen=True)
class Check:
    """A named query returning offending rows, and what to do when it finds some."""

    name: str
    relation: str
    sql: str
    hint: str = ""


@dataclass(frozen=True)
class CheckFailure:
    """A check that found offending rows: how many, and the first few of them."""

    check: Check
    row_count: int
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    def describe(self) -> str:
        """The check's name, its count of offending rows and a sample, on a few lines."""
        sample = "; ".join(
            ", ".join(f"{col}={val!r}" for col, val in zip(self.columns, row, strict=True))
            for row in self.rows
        )
        more = f" (first {len(self.rows)} shown)" if self.row_count > len(self.rows) else ""
        hint = f" {self.check.hint}" if self.check.hint else ""
        return f"check {self.check.name} failed on {self.row_count} row(s){more}: {sample}.{hint}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def unique(relation: str, columns: tuple[str, ...]) -> Check:
    """The columns, together, identify one row."""
    cols = ", ".join(columns)
    return Check(
        name=f"unique({relation}: {cols})",
        relation=relation,
        sql=f"select {cols}, count(*) as n from {relation} group by all having count(*) > 1",
    )


def not_null(relation: str, column: str, hint: str = "") -> Check:
    """The column is never NULL."""
    return Check(
        name=f"not_null({relation}.{column})",
        relation=relation,
        sql=f"select * from {relation} where {column} is null",
        hint=hint,
    )


def accepted_values(relation: str, column: str, values: tuple[str, ...], hint: str = "") -> Check:
    """The column, when not NULL, takes one of the values."""
    listed = ", ".join(_quote(v) for v in values)
    return Check(
        name=f"accepted_values({relation}.{column})",
        relation=relation,
        sql=f"select * from {relation} where {column} not in ({listed})",
        hint=hint,
    )


def between_0_and_1(relation: str, column: str) -> Check:
    """A rate is a fraction between 0 and 1 (or NULL)."""
    return Check(
        name=f"rate_between_0_and_1({relation}.{column})",
        relation=relation,
        sql=f"select * from {relation} where {column} < 0 or {column} > 1",
    )


SEED_HINT = (
    "Add the missing code to sql/seeds/{seed}.csv (Quorum's Quorum_API_Enumeration_Values.csv "
    "has the official values) and run `quorum-sms models` again."
)


def all_checks() -> list[Check]:
    """Every check on the shipped models, in the order they run."""
    checks: list[Check] = []
    for relation, key in KEYS.items():
        checks.extend(not_null(relation, column) for column in key)
        checks.append(unique(relation, key))
    checks.append(
        accepted_values("seeds.text_delivery_status", "status_category", STATUS_CATEGORIES,
                        hint="status_category must be one of " + ", ".join(STATUS_CATEGORIES))
    )
    checks.append(not_null("seeds.text_delivery_status", "status"))
    checks.append(not_null("seeds.message_direction", "direction"))
    checks.append(
        accepted_values("seeds.message_direction", "direction", DIRECTIONS,
                        hint="the marts know the directions inbound and outbound only")
    )
    for column, seed in (("status", "text_delivery_status"), ("direction", "message_direction")):
        checks.append(
            Check(
                name=f"accepted_values(analytics.fct_sms_message.{column}_code in seeds.{seed})",
                relation="analytics.fct_sms_message",
                sql=(
                    f"select sendsms_id, {column}_code from analytics.fct_sms_message "
                    f"where {column} is null"
                ),
                hint=SEED_HINT.format(seed=seed),
            )
        )
    checks.append(
        Check(
            name="reconcile(fct_sms_message rows = quorum_raw.sendsms rows not deleted)",
            relation="analytics.fct_sms_message",
            sql=(
                "select raw_rows, fct_rows from ("
                " select (select count(*) from quorum_raw.sendsms"
                "         where source_deleted_at is null) as raw_rows,"
                "        (select count(*) from analytics.fct_sms_message) as fct_rows"
                ") where raw_rows <> fct_rows"
            ),
        )
    )
    checks.append(
        Check(
            name="reconcile(campaign messages + individual messages = fct messages)",
            relation="analytics.sms_campaign_performance",
            sql=(
                "select campaign_messages, individual_messages, fct_messages from ("
                " select (select coalesce(sum(messages), 0)"
                "         from analytics.sms_campaign_performance) as campaign_messages,"
                "        (select count(*) from analytics.fct_sms_message"
                "         where is_message and bulk_sms_id is null) as individual_messages,"
                "        (select count(*) from analytics.fct_sms_message where is_message)"
                "          as fct_messages"
                ") where campaign_messages + individual_messages <> fct_messages"
            ),
        )
    )
    checks.append(
        Check(
            name="reconcile(daily messages and inbound = fct by send_date)",
            relation="analytics.sms_daily_overview",
            sql=(
                "select daily_messages, fct_messages, daily_inbound, fct_inbound from ("
                " select (select coalesce(sum(messages), 0) from analytics.sms_daily_overview)"
                "          as daily_messages,"
                "        (select count(*) from analytics.fct_sms_message"
                "         where is_message and send_date is not null) as fct_messages,"
                "        (select coalesce(sum(inbound), 0) from analytics.sms_daily_overview)"
                "          as daily_inbound,"
                "        (select count(*) from analytics.fct_sms_message"
                "         where direction = 'inbound' and not archived and send_date is not null)"
                "          as fct_inbound"
                ") where daily_messages <> fct_messages or daily_inbound <> fct_inbound"
            ),
        )
    )
    checks.append(
        Check(
            name="reconcile(delivery errors = failed messages)",
            relation="analytics.sms_delivery_errors",
            sql=(
                "select error_failures, fct_failures from ("
                " select (select coalesce(sum(failures), 0) from analytics.sms_delivery_errors)"
                "          as error_failures,"
                "        (select count(*) from analytics.fct_sms_message"
                "         where is_message and status_category = 'failed') as fct_failures"
                ") where error_failures <> fct_failures"
            ),
        )
    )
    checks.append(
        Check(
            name="funnel(stage count never above the previous stage)",
            relation="analytics.sms_campaign_funnel",
            sql=(
                "select * from (select bulk_sms_id, stage, \"count\","
                " lag(\"count\") over (partition by bulk_sms_id order by stage_order) as previous"
                " from analytics.sms_campaign_funnel) where \"count\" > previous"
            ),
        )
    )
    for table, columns in RATE_COLUMNS.items():
        checks.extend(between_0_and_1(f"analytics.{table}", column) for column in columns)
    return checks


def run_checks(
    connection: duckdb.DuckDBPyConnection, relations: set[str]
) -> tuple[int, list[CheckFailure]]:
    """Run every check whose relation was built; return (checks run, failures)."""
    failures: list[CheckFailure] = []
    ran = 0
    for check in all_checks():
        if check.relation not in relations:
            continue
        ran += 1
        try:
            count_row = connection.execute(f"select count(*) from ({check.sql})").fetchone()
        except duckdb.Error as error:
            first = str(error).split("\n", 1)[0]
            raise DataCheckError(
                f"The data check {check.name} could not run: {first}. A mart probably lost a "
                "column the check needs; the build was rolled back and the previous marts "
                "are still in place."
            ) from error
        row_count = int(count_row[0]) if count_row else 0
        if row_count == 0:
            continue
        cursor = connection.execute(f"select * from ({check.sql}) limit {MAX_SHOWN_ROWS}")
        columns = tuple(str(d[0]) for d in cursor.description or ())
        rows = tuple(tuple(row) for row in cursor.fetchall())
        failures.append(CheckFailure(check, row_count, columns, rows))
    return ran, failures
