"""Headline figures of the last N days, for people: the terminal report.

The window ends at the newest send in the data, not at today's date: a warehouse that has
not synced for a while (or the simulator, whose clock runs in 2026) still gets a report of
its latest activity, and the same data always gives the same report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pipelines.errors import ConfigError
from pipelines.warehouse.database import require_marts
from pipelines.warehouse.marts_reader import MartConnection, open_marts, target_name

REPORT_TABLES = [
    "fct_sms_message",
    "sms_campaign_performance",
    "sms_delivery_errors",
    "sms_sender_number_health",
    "sms_supporter_engagement",
]
STREAK_THRESHOLD = 3

#: The whole-number figures of `Headline`: the field each fills and the aggregate over
#: analytics.fct_sms_message that computes it.
_HEADLINE_COUNTS: tuple[tuple[str, str], ...] = (
    ("messages", "count(*) filter (where is_message)"),
    ("segments", "coalesce(sum(segments) filter (where is_message), 0)"),
    ("delivered", "count(*) filter (where is_message and status = 'delivered')"),
    ("failures", "count(*) filter (where is_message and status_category = 'failed')"),
    ("failed", "count(*) filter (where is_message and status = 'failed')"),
    ("undelivered", "count(*) filter (where is_message and status = 'undelivered')"),
    ("rejected", "count(*) filter (where is_message and status = 'rejected')"),
    ("in_flight", "count(*) filter (where is_message and status_category = 'in_flight')"),
    ("unique_opens", "count(*) filter (where is_message and is_opened)"),
    ("total_opens", "coalesce(sum(opens) filter (where is_message), 0)"),
    ("conversions", "count(*) filter (where is_message and converted)"),
    ("replies", "coalesce(sum(replies) filter (where is_message), 0)"),
    ("inbound", "count(*) filter (where direction = 'inbound' and not archived)"),
)


@dataclass(frozen=True)
class Headline:
    """The figures of one window of send dates (UTC), inclusive."""

    start: date
    end: date
    days: int
    messages: int
    segments: int
    delivered: int
    failures: int
    failed: int
    undelivered: int
    rejected: int
    in_flight: int
    unique_opens: int
    total_opens: int
    conversions: int
    replies: int
    inbound: int
    median_seconds_to_deliver: float | None
    p90_seconds_to_deliver: float | None

    def rate(self, numerator: int, denominator: int) -> float | None:
        """numerator / denominator, None when the denominator is 0 (as in the marts)."""
        return numerator / denominator if denominator else None


def window(connection: MartConnection, days: int) -> tuple[date, date] | None:
    """The last `days` send dates up to the newest send of a message; None with no message."""
    if days < 1:
        raise ConfigError(f"--days must be at least 1, not {days}.")
    row = connection.execute(
        "select max(send_date) from analytics.fct_sms_message where is_message"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    end: date = row[0]
    return end - timedelta(days=days - 1), end


def headline(connection: MartConnection, start: date, end: date) -> Headline:
    """Compute the headline figures over messages sent from `start` to `end` (UTC dates)."""
    counts_sql = ",\n            ".join(formula for _, formula in _HEADLINE_COUNTS)
    row = connection.execute(
        f"""
        select
            {counts_sql},
            quantile_cont(seconds_to_deliver, 0.5)
                filter (where is_message and status = 'delivered'),
            quantile_cont(seconds_to_deliver, 0.9)
                filter (where is_message and status = 'delivered')
        from analytics.fct_sms_message
        where send_date between ? and ?
        """,
        [start, end],
    ).fetchone()
    assert row is not None  # an aggregate without group by always returns one row
    counts = {field: int(value) for (field, _), value in zip(_HEADLINE_COUNTS, row, strict=False)}
    median, p90 = row[len(_HEADLINE_COUNTS) :]
    return Headline(
        start=start,
        end=end,
        days=(end - start).days + 1,
        median_seconds_to_deliver=None if median is None else float(median),
        p90_seconds_to_deliver=None if p90 is None else float(p90),
        **counts,
    )


def format_count(value: int) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}"


def format_rate(value: float | None) -> str:
    """0.9123 -> '91.2 %'; None -> 'n/a'."""
    return "n/a" if value is None else f"{value * 100:.1f} %"


def format_seconds(value: float | None) -> str:
    """A duration for people: '12 s', '3.5 min', '2.1 h'; None -> 'n/a'."""
    if value is None:
        return "n/a"
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def render_terminal_report(database_path: str | os.PathLike[str], days: int = 30) -> str:
    """The headline figures of the last `days` days of sends, as plain text.

    Args:
        database_path: the DuckDB file with the built marts, or a PostgreSQL credentials
            string.
        days: the window's length in days, ending at the newest send in the data.

    Returns:
        The report, lines separated by newlines, no trailing newline.

    Raises:
        ConfigError: no database, the marts were never built, or days < 1.
    """
    path = target_name(database_path)
    connection = open_marts(database_path)
    try:
        require_marts(connection, path, REPORT_TABLES)
        span = window(connection, days)
        if span is None:
            return f"Quorum SMS report ({path}): no outbound messages in the warehouse yet."
        start, end = span
        figures = headline(connection, start, end)
        return "\n".join(
            _headline_lines(figures)
            + _campaign_lines(connection, start, end)
            + _error_lines(connection, start, end)
            + _number_lines(connection, start, end)
            + _hygiene_lines(connection)
        )
    finally:
        connection.close()


def _headline_lines(h: Headline) -> list[str]:
    def line(label: str, count: int, note: str) -> str:
        return f"  {label:<16} {format_count(count):>10}   {note}"

    median = format_seconds(h.median_seconds_to_deliver)
    p90 = format_seconds(h.p90_seconds_to_deliver)
    return [
        f"Quorum SMS, last {h.days} days: {h.start} to {h.end} (UTC send dates, ending at the "
        "newest send in the data)",
        "",
        line("Messages", h.messages, f"segments {format_count(h.segments)}"),
        line(
            "Delivered", h.delivered, f"{format_rate(h.rate(h.delivered, h.messages))} of messages"
        ),
        line(
            "Failed",
            h.failures,
            f"{format_rate(h.rate(h.failures, h.messages))} of messages (failed {h.failed:,}, "
            f"undelivered {h.undelivered:,}, rejected {h.rejected:,})",
        ),
        line("Still in flight", h.in_flight, "queued or sent, no outcome yet"),
        line(
            "Opened",
            h.unique_opens,
            f"{format_rate(h.rate(h.unique_opens, h.delivered))} of delivered "
            f"({h.total_opens:,} opens)",
        ),
        line(
            "Converted",
            h.conversions,
            f"{format_rate(h.rate(h.conversions, h.delivered))} of delivered",
        ),
        line("Replies (72 h)", h.replies, f"inbound texts in the window: {h.inbound:,}"),
        f"  Time to deliver  median {median}, 90th percentile {p90}",
    ]


def _campaign_lines(connection: MartConnection, start: date, end: date) -> list[str]:
    rows = _rows_in_window(
        connection,
        """
        select
            -- one description per campaign; min() is portable (any_value is not in PostgreSQL 15)
            coalesce(min(campaign_description), 'campaign ' || bulk_sms_id) as name,
            count(*) as messages,
            count(*) filter (where status = 'delivered') / count(*) as delivery_rate,
            cast(count(*) filter (where converted) as double)
                / nullif(count(*) filter (where status = 'delivered'), 0) as conversion_rate
        from analytics.fct_sms_message
        where is_message and bulk_sms_id is not null and send_date between ? and ?
        group by bulk_sms_id
        order by messages desc, bulk_sms_id
        limit 5
        """,
        start,
        end,
    )
    if not rows:
        return ["", "  No campaign messages in the window."]
    lines = ["", "  Largest campaigns                          messages  delivered  converted"]
    for name, messages, delivery, conversion in rows:
        lines.append(
            f"    {_cut(str(name), 40):<40} {messages:>8,}  {format_rate(delivery):>9}  "
            f"{format_rate(conversion):>9}"
        )
    return lines


def _error_lines(connection: MartConnection, start: date, end: date) -> list[str]:
    rows = _rows_in_window(
        connection,
        """
        select coalesce(error_code, 'no code') as code, status, count(*) as failures
        from analytics.fct_sms_message
        where is_message and status_category = 'failed' and send_date between ? and ?
        group by coalesce(error_code, 'no code'), status
        order by failures desc, code, status
        limit 5
        """,
        start,
        end,
    )
    if not rows:
        return ["", "  No failed deliveries in the window."]
    lines = ["", "  Top error codes"]
    lines += [f"    {code:<12} {status:<12} {failures:>8,}" for code, status, failures in rows]
    return lines


def _number_lines(connection: MartConnection, start: date, end: date) -> list[str]:
    rows = _rows_in_window(
        connection,
        """
        select
            associated_number,
            count(*) as messages,
            count(*) filter (where status_category = 'failed') / count(*) as failure_rate
        from analytics.fct_sms_message
        where is_message and associated_number is not null and send_date between ? and ?
        group by associated_number
        order by failure_rate desc, messages desc, associated_number
        limit 5
        """,
        start,
        end,
    )
    if not rows:
        return []
    lines = ["", "  Sender numbers with the highest failure rate   messages   failed"]
    lines += [
        f"    {number:<42} {messages:>8,}  {format_rate(rate):>7}"
        for number, messages, rate in rows
    ]
    return lines


def _rows_in_window(
    connection: MartConnection, sql: str, start: date, end: date
) -> list[tuple[Any, ...]]:
    # every section's query takes the window's first and last send date, in that order
    rows: list[tuple[Any, ...]] = connection.execute(sql, [start, end]).fetchall()
    return rows


def _hygiene_lines(connection: MartConnection) -> list[str]:
    row = connection.execute(
        "select count(*) from analytics.sms_supporter_engagement "
        "where consecutive_failed_deliveries >= ?",
        [STREAK_THRESHOLD],
    ).fetchone()
    streaks = int(row[0]) if row else 0
    return [
        "",
        f"  List hygiene: {streaks:,} supporter(s) with {STREAK_THRESHOLD} or more failed "
        "deliveries in a row (analytics.sms_supporter_engagement)",
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
