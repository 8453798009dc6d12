"""The report as one self-contained HTML page: inline SVG charts, CSS and a little JS.

No network at all: no CDN, no web font, no image file. The charts are drawn here as SVG so
the page reads the same with JavaScript off; the script only sorts the campaign table and
switches the funnel between campaigns.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.warehouse.database import require_marts
from pipelines.warehouse.marts_reader import MartConnection, open_marts, target_name
from pipelines.warehouse.report import (
    REPORT_TABLES,
    Headline,
    format_count,
    format_rate,
    format_seconds,
    headline,
    window,
)

GREEN, RED, GREY, BLUE = "#2b8a3e", "#c92a2a", "#adb5bd", "#1c7ed6"
DELIVERY_BUCKETS: tuple[tuple[float, str], ...] = (
    (5, "< 5 s"), (10, "5-10 s"), (30, "10-30 s"), (60, "30-60 s"), (120, "1-2 min"),
    (300, "2-5 min"), (900, "5-15 min"), (3600, "15-60 min"), (math.inf, "≥ 1 h"),
)
FUNNEL_CAMPAIGNS = 25
TABLE_CAMPAIGNS = 200


def esc(value: object) -> str:
    """HTML-escape any value's text."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Bar:
    """One labelled horizontal bar."""

    label: str
    value: float
    text: str
    color: str = BLUE
    tooltip: str = ""


def hbar_chart(
    bars: Sequence[Bar], *, max_value: float | None = None, label_width: int = 150
) -> str:
    """A horizontal bar chart as inline SVG."""
    if not bars:
        return '<p class="empty">Nothing to show in this period.</p>'
    row, width = 26, 640
    top = max_value if max_value else max((b.value for b in bars), default=0) or 1
    plot = width - label_width - 190
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {row * len(bars) + 6}" role="img" '
        f'width="{width}" height="{row * len(bars) + 6}">'
    ]
    for i, bar in enumerate(bars):
        y = i * row + 3
        length = max(0.0, plot * bar.value / top)
        tip = esc(bar.tooltip or f"{bar.label}: {bar.text}")
        parts.append(
            f'<g><title>{tip}</title>'
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" class="lbl">'
            f"{esc(bar.label)}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'rx="2" fill="{bar.color}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 16}" class="val">{esc(bar.text)}'
            "</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def daily_chart(days: Sequence[tuple[date, int, int, int, float | None]]) -> str:
    """Stacked daily bars (delivered, failed, other) with the delivery rate as a line."""
    if not days:
        return '<p class="empty">No messages in this period.</p>'
    width, height, left, right, top, bottom = 900, 280, 56, 48, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(d + f + o for _, d, f, o, _ in days) or 1
    step = plot_w / len(days)
    bar_w = max(1.0, step * 0.75)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" width="{width}" '
        f'height="{height}">'
    ]
    for k in range(5):
        y = top + plot_h * (1 - k / 4)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{format_count(round(peak * k / 4))}</text>"
            f'<text x="{width - right + 6}" y="{y + 4:.1f}" class="axis">{k * 25}%</text>'
        )
    points: list[str] = []
    label_every = max(1, math.ceil(len(days) / 10))
    for i, (day, delivered, failed, other, rate) in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        base = float(top + plot_h)
        tip = (
            f"{day}: {delivered + failed + other:,} messages, {delivered:,} delivered, "
            f"{failed:,} failed, {other:,} in flight; delivery rate {format_rate(rate)}"
        )
        parts.append(f"<g><title>{esc(tip)}</title>")
        for value, color in ((delivered, GREEN), (failed, RED), (other, GREY)):
            h = plot_h * value / peak
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{color}"/>'
            )
        parts.append("</g>")
        if rate is not None:
            points.append(f"{left + i * step + step / 2:.1f},{top + plot_h * (1 - rate):.1f}")
        if i % label_every == 0:
            parts.append(
                f'<text x="{left + i * step + step / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle" class="axis">{day:%b %d}</text>'
            )
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" class="rate"/>')
    parts.append("</svg>")
    legend = (
        '<p class="legend"><i style="background:#2b8a3e"></i>delivered '
        '<i style="background:#c92a2a"></i>failed, undelivered, rejected '
        '<i style="background:#adb5bd"></i>queued or sent '
        '<i class="line"></i>delivery rate (right axis)</p>'
    )
    return "".join(parts) + legend


def _funnel_svg(stages: Sequence[tuple[str, int, float | None, float | None]]) -> str:
    bars = [
        Bar(
            label=stage,
            value=count,
            text=f"{count:,} ({format_rate(pct)} of messages)",
            color=[BLUE, "#4dabf7", GREEN, "#f08c00", "#ae3ec9"][i % 5],
            tooltip=f"{stage}: {count:,}; {format_rate(prev)} of the stage before",
        )
        for i, (stage, count, pct, prev) in enumerate(stages)
    ]
    return hbar_chart(bars, label_width=110)


def _kpi(label: str, value: str, note: str) -> str:
    return (
        f'<div class="kpi"><div class="kl">{esc(label)}</div><div class="kv">{esc(value)}</div>'
        f'<div class="kn">{esc(note)}</div></div>'
    )


def _kpis(h: Headline) -> str:
    return '<div class="kpis">' + "".join(
        [
            _kpi("Messages", format_count(h.messages), f"{h.segments:,} segments"),
            _kpi("Delivery rate", format_rate(h.rate(h.delivered, h.messages)),
                 f"{h.delivered:,} delivered"),
            _kpi("Failure rate", format_rate(h.rate(h.failures, h.messages)),
                 f"{h.failures:,} failed, undelivered or rejected"),
            _kpi("Open rate", format_rate(h.rate(h.unique_opens, h.delivered)),
                 f"{h.unique_opens:,} opened of delivered"),
            _kpi("Conversion rate", format_rate(h.rate(h.conversions, h.delivered)),
                 f"{h.conversions:,} converted"),
            _kpi("Median time to deliver", format_seconds(h.median_seconds_to_deliver),
                 f"p90 {format_seconds(h.p90_seconds_to_deliver)}"),
            _kpi("Replies within 72 h", format_count(h.replies), f"{h.inbound:,} inbound texts"),
        ]
    ) + "</div>"


def render_html_report(database_path: str | os.PathLike[str], days: int = 30) -> str:
    """Render the report page for the last `days` days of sends.

    Raises:
        ConfigError: no database, marts never built, or days < 1.
    """
    path = target_name(database_path)
    connection = open_marts(database_path)
    try:
        require_marts(connection, path, [*REPORT_TABLES, "sms_campaign_funnel",
                                         "sms_daily_overview"])
        span = window(connection, days)
        if span is None:
            return _page(f"<p>No outbound messages in {esc(path)} yet.</p>", "{}")
        start, end = span
        body, data = _sections(connection, headline(connection, start, end), start, end)
        return _page(body, json.dumps(data))
    finally:
        connection.close()


def write_html_report(
    database_path: str | os.PathLike[str], out_path: str | os.PathLike[str], days: int = 30
) -> Path:
    """Write the report page to `out_path` (atomically) and return its path.

    Raises:
        ConfigError: as render_html_report, or the file cannot be written.
    """
    target = Path(out_path)
    page = render_html_report(database_path, days)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)
    except OSError as error:
        raise ConfigError(f"Cannot write the HTML report to {target}: {error}.") from error
    return target


def _sections(
    connection: MartConnection, h: Headline, start: date, end: date
) -> tuple[str, dict[str, object]]:
    daily = connection.execute(
        "select send_date, delivered, failures, messages - delivered - failures, delivery_rate "
        "from analytics.sms_daily_overview where send_date between ? and ? order by send_date",
        [start, end],
    ).fetchall()
    buckets = connection.execute(
        "select seconds_to_deliver from analytics.fct_sms_message where is_message "
        "and status = 'delivered' and seconds_to_deliver is not null "
        "and send_date between ? and ?",
        [start, end],
    ).fetchnumpy()["seconds_to_deliver"]
    counts = [0] * len(DELIVERY_BUCKETS)
    bounds = [b for b, _ in DELIVERY_BUCKETS]
    import numpy as np

    index = np.searchsorted(np.array(bounds[:-1]), np.asarray(buckets, dtype=float), side="right")
    for i, n in zip(*np.unique(index, return_counts=True), strict=True):
        counts[int(i)] = int(n)
    total_delivered = sum(counts)
    deliver_bars = [
        Bar(label, n, f"{n:,} ({format_rate(n / total_delivered if total_delivered else None)})",
            GREEN)
        for (_, label), n in zip(DELIVERY_BUCKETS, counts, strict=True)
    ]
    errors = connection.execute(
        "select coalesce(error_code, 'no code') as code, status, count(*) as n, "
        "count(distinct bulk_sms_id) as campaigns from analytics.fct_sms_message "
        "where is_message and status_category = 'failed' and send_date between ? and ? "
        "group by coalesce(error_code, 'no code'), status order by n desc, code, status limit 12",
        [start, end],
    ).fetchall()
    error_bars = [
        Bar(
            f"{code} · {status}",
            n,
            f"{n:,} ({format_rate(n / h.failures if h.failures else None)})",
            RED,
            f"error {code}, {status}: {n:,} messages in {campaigns:,} campaign(s)",
        )
        for code, status, n, campaigns in errors
    ]
    numbers = connection.execute(
        "select associated_number, messages, failure_rate, rejection_rate, recent_failure_rate, "
        "top_error_code from analytics.sms_sender_number_health where messages > 0 "
        "order by messages desc, associated_number limit 15"
    ).fetchall()
    number_bars = [
        Bar(number, rate or 0.0, f"{format_rate(rate)} of {messages:,}",
            RED if (recent or 0) > 0.1 else "#f08c00" if (rate or 0) > 0.05 else GREEN,
            f"{number}: failure rate {format_rate(rate)}, rejection rate {format_rate(rej)}, "
            f"last 7 days {format_rate(recent)}; most frequent error {top or 'none'}")
        for number, messages, rate, rej, recent, top in numbers
    ]
    campaigns = connection.execute(
        "select bulk_sms_id, coalesce(campaign_description, 'campaign ' || bulk_sms_id), "
        "first_send_time, messages, delivery_rate, failure_rate, open_rate, conversion_rate, "
        "median_seconds_to_deliver, replies from analytics.sms_campaign_performance "
        "where messages > 0 and cast(timezone('UTC', last_send_time) as date) >= ? "
        "and cast(timezone('UTC', first_send_time) as date) <= ? "
        "order by first_send_time desc, bulk_sms_id limit ?",
        [start, end, TABLE_CAMPAIGNS],
    ).fetchall()
    funnel_ids = [row[0] for row in sorted(campaigns, key=lambda r: (-r[3], r[0]))][
        :FUNNEL_CAMPAIGNS
    ]
    funnel_rows = connection.execute(
        "select bulk_sms_id, stage, \"count\", pct_of_messages, pct_of_previous_stage "
        "from analytics.sms_campaign_funnel where list_contains(?, bulk_sms_id) "
        "order by bulk_sms_id, stage_order",
        [funnel_ids],
    ).fetchall()
    funnels: dict[int, list[tuple[str, int, float | None, float | None]]] = {}
    for bulk_id, stage, count, pct, prev in funnel_rows:
        funnels.setdefault(int(bulk_id), []).append((stage, int(count), pct, prev))
    names = {row[0]: row[1] for row in campaigns}
    funnel_options = "".join(
        f'<option value="{bid}">{esc(names[bid])} ({bid})</option>' for bid in funnel_ids
    )
    funnel_panels = "".join(
        f'<div class="funnel" data-campaign="{bid}"{"" if i == 0 else " hidden"}>'
        f"{_funnel_svg(funnels.get(bid, []))}</div>"
        for i, bid in enumerate(funnel_ids)
    )
    table_rows = "".join(
        "<tr>"
        f'<td data-v="{bid}">{bid}</td><td>{esc(name)}</td>'
        f'<td data-v="{first.timestamp() if first else 0}">{first:%Y-%m-%d %H:%M}</td>'
        f'<td data-v="{messages}">{messages:,}</td>'
        + "".join(
            f'<td data-v="{-1 if v is None else v}">{format_rate(v)}</td>'
            for v in (delivery, failure, opened, converted)
        )
        + f'<td data-v="{-1 if median is None else median}">{format_seconds(median)}</td>'
        f'<td data-v="{replies}">{replies:,}</td></tr>'
        for bid, name, first, messages, delivery, failure, opened, converted, median, replies
        in campaigns
    )
    headers = ["id", "campaign", "first send (UTC)", "messages", "delivered", "failed",
               "open rate", "conversion", "median delivery", "replies"]
    table = (
        '<div class="scroll"><table id="campaigns"><thead><tr>'
        + "".join(f'<th data-col="{i}" title="sort">{esc(h)}</th>' for i, h in enumerate(headers))
        + f"</tr></thead><tbody>{table_rows}</tbody></table></div>"
    )
    body = (
        f'<h1>Quorum SMS</h1><p class="sub">Last {h.days} days: {h.start} to {h.end} '
        "(UTC send dates, ending at the newest send in the data). Rates are fractions of "
        "messages (outbound, not archived); open and conversion rates are of delivered "
        "messages.</p>"
        + _kpis(h)
        + '<section id="daily"><h2>Daily volume and delivery rate</h2>'
        + daily_chart([(d, int(a), int(b), max(0, int(c)), r) for d, a, b, c, r in daily])
        + "</section>"
        + '<section id="funnel"><h2>Campaign funnel</h2>'
        + (
            f'<label>Campaign <select id="funnel-select">{funnel_options}</select></label>'
            f"{funnel_panels}"
            if funnel_ids
            else '<p class="empty">No campaign messages in this period.</p>'
        )
        + "</section>"
        + '<div class="two"><section id="latency"><h2>Time to deliver</h2>'
        + hbar_chart(deliver_bars, label_width=90)
        + '</section><section id="errors"><h2>Errors by code</h2>'
        + hbar_chart(error_bars, label_width=160)
        + "</section></div>"
        + '<section id="numbers"><h2>Sender number health</h2><p class="sub">Failure rate '
        "over all time of the 15 busiest numbers; red: more than 10 % failed in the last 7 "
        "days of data, orange: more than 5 % overall.</p>"
        + hbar_chart(number_bars, max_value=max([b.value for b in number_bars] + [0.05]),
                     label_width=130)
        + '</section><section id="campaign-table"><h2>Campaigns</h2>'
        + (table if campaigns else '<p class="empty">No campaigns in this period.</p>')
        + "</section>"
    )
    return body, {"campaigns": len(campaigns), "funnels": len(funnel_ids)}


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;
margin:0;padding:24px 32px;background:#f8f9fa}
h1{margin:0 0 4px;font-size:24px}h2{font-size:16px;margin:0 0 10px}
.sub{color:#6c757d;margin:0 0 14px}
section{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:16px;margin:0 0 18px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:18px}.two section{margin:0 0 18px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;
margin:0 0 18px}
.kpi{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:10px 12px}
.kl{color:#6c757d;font-size:12px}.kv{font-size:22px;font-weight:600}.kn{color:#6c757d;font-size:12px}
svg.chart{max-width:100%;height:auto;display:block}
.lbl,.val,.axis{font-size:12px;fill:#212529}.axis{fill:#6c757d}.grid{stroke:#e9ecef}
.rate{fill:none;stroke:#1c7ed6;stroke-width:2}
.legend{color:#6c757d;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;
margin:0 4px 0 12px}.legend i.line{height:2px;background:#1c7ed6;vertical-align:middle}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e9ecef;text-align:right}
th:nth-child(2),td:nth-child(2){text-align:left}
th{cursor:pointer;user-select:none;background:#f1f3f5;position:sticky;top:0}
th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
select{margin:0 0 10px 6px}.scroll{max-height:420px;overflow:auto}.empty{color:#6c757d}
@media (max-width:900px){.two{grid-template-columns:1fr}}
"""

SCRIPT = """
(function () {
  "use strict";
  var select = document.getElementById("funnel-select");
  if (select) {
    select.addEventListener("change", function () {
      document.querySelectorAll(".funnel").forEach(function (panel) {
        panel.hidden = panel.getAttribute("data-campaign") !== select.value;
      });
    });
  }
  var table = document.getElementById("campaigns");
  if (table) {
    table.querySelectorAll("th").forEach(function (th) {
      th.addEventListener("click", function () {
        var col = Number(th.getAttribute("data-col"));
        var asc = !th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (o) { o.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var vx = x.hasAttribute("data-v") ? Number(x.getAttribute("data-v")) : x.textContent;
          var vy = y.hasAttribute("data-v") ? Number(y.getAttribute("data-v")) : y.textContent;
          var c = vx < vy ? -1 : vx > vy ? 1 : 0;
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  document.body.setAttribute("data-ready", "1");
})();
"""


def _page(body: str, data: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Quorum SMS report</title>"
        # the page may not load anything: this policy makes a stray external URL fail loudly
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<style>{STYLE}</style></head><body>{body}"
        f'<script type="application/json" id="report-data">{esc(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>"
    )
