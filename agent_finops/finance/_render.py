"""The finance report as text (the terminal) and as one self-contained HTML page.

The page is rendered from `FinanceReport.to_json()`, so it shows the JSON's figures: each is
a `<data data-json="path" value="...">` element, like the run report's. Inline CSS (the run
report's style sheet), no script, no network; user data escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from decimal import Decimal
from importlib.resources import files
from typing import Any, Final

from agent_finops.finance._report import FinanceReport
from agent_finops.reports import money_text

__all__ = ["render_finance_html", "render_finance_text"]

_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


def _dollars(value: str | None) -> str:
    return "–" if value is None else money_text(value)


def render_finance_text(report: FinanceReport) -> str:
    """A plain-text report for the terminal."""
    data = report.to_json()
    out = [f"Finance report {data['month']} ({data['tz']})", ""]
    change = data["change_pct"]
    out.append(
        f"Total {_dollars(data['total'])}  (previous month {_dollars(data['previous_total'])}, "
        f"change {_dollars(data['change'])}{'' if change is None else f', {change}%'})"
    )
    out.append(f"Calls {data['events']:,}, unpriced {data['unpriced']:,}")
    out.append("Top cost drivers:")
    for d in data["drivers"]:
        out.append(f"  {d['kind']} {d['name']}: {_dollars(d['cost'])} ({_dollars(d['change'])})")
    out.append("")
    out.append("Cost centers (actual / budget / year to date):")
    for c in data["cost_centers"]:
        budget = (
            "no budget" if c["budget"] is None else f"{_dollars(c['budget'])} ({c['used_pct']}%)"
        )
        out.append(
            f"  {c['cost_center'] or '(none)'}: {_dollars(c['actual'])} / {budget} / "
            f"{_dollars(c['year_to_date'])}"
        )
    out.append("")
    out.append("Teams (cost, tasks, cost per task):")
    for t in data["teams"]:
        out.append(
            f"  {t['team'] or '(none)'}: {_dollars(t['cost'])}, {t['tasks']:,} tasks, "
            f"{_dollars(t['cost_per_task'])}/task"
        )
    out.append("")
    out.append(f"Anomalies: {len(data['anomalies'])}")
    for a in data["anomalies"]:
        out.append(f"  {a['window_start']} {a['kind']} {a['scope']}: {a['message']}")
    f = data["forecast"]
    if f is not None:
        out.append("")
        out.append(f"Forecast {f['month']}: {_dollars(f['projected'])} ({f['method']})")
    return "\n".join(out)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fig(path: str, value: Any, kind: str = "money") -> str:
    if value is None:
        return '<span class="na">–</span>'
    text = (
        money_text(str(value))
        if kind == "money"
        else f"{value:,}"
        if kind == "int"
        else (f"{value}%")
    )
    return f'<data class="fig {kind}" data-json="{_e(path)}" value="{_e(value)}">{text}</data>'


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _daily_chart(daily: Sequence[Sequence[str]]) -> str:
    """Bars of the daily cost (plain SVG, one `<rect>` per day with its figure)."""
    values = [Decimal(v) for _, v in daily]
    top = max(values, default=Decimal(0)) or Decimal(1)
    width, height = 10 * max(len(daily), 1), 100
    bars = []
    for i, (day, value) in enumerate(daily):
        h = float(Decimal(value) / top) * (height - 4)
        bars.append(
            f'<rect class="bar" x="{i * 10 + 1}" y="{height - h:.2f}" width="8" height="{h:.2f}" '
            f'data-json="daily.{i}" data-day="{_e(day)}" data-value="{_e(value)}">'
            f"<title>{_e(day)}: {_e(money_text(value))}</title></rect>"
        )
    return (
        f'<svg class="daily" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="daily cost">{"".join(bars)}</svg>'
    )


def render_finance_html(report: FinanceReport) -> str:
    """The report as one self-contained HTML page."""
    data: Mapping[str, Any] = report.to_json()
    css = files("agent_finops.reports").joinpath("_html.css").read_text(encoding="utf-8")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>Finance report {_e(data['month'])}</title>",
        f"<style>{css}.daily{{width:100%;height:8rem}}.bar{{fill:var(--accent)}}</style>",
        "</head><body><main>",
        f"<h1>Finance report {_e(data['month'])}</h1>",
        f'<p class="meta">Calendar month in {_e(data["tz"])}: {_e(data["start"])} to '
        f"{_e(data['end'])}</p>",
        "<h2>Executive summary</h2><dl class=cards>",
        f"<div><dt>Total</dt><dd>{_fig('total', data['total'])}</dd></div>",
        "<div><dt>Previous month</dt>"
        f"<dd>{_fig('previous_total', data['previous_total'])}</dd></div>",
        f"<div><dt>Change</dt><dd>{_fig('change', data['change'])} "
        f"({_fig('change_pct', data['change_pct'], 'pct')})</dd></div>",
        f"<div><dt>Calls</dt><dd>{_fig('events', data['events'], 'int')}</dd></div>",
        f"<div><dt>Unpriced calls</dt><dd>{_fig('unpriced', data['unpriced'], 'int')}</dd></div>",
        "</dl>",
        "<h3>Top cost drivers</h3>",
        _table(
            ["driver", "name", "cost", "previous month", "change"],
            [
                [
                    _e(d["kind"]),
                    _e(d["name"]),
                    _fig(f"drivers.{i}.cost", d["cost"]),
                    _fig(f"drivers.{i}.previous", d["previous"]),
                    _fig(f"drivers.{i}.change", d["change"]),
                ]
                for i, d in enumerate(data["drivers"])
            ],
        ),
        "<h3>By bucket</h3>",
        _table(
            ["bucket", "cost"],
            [[_e(b), _fig(f"by_bucket.{b}", v)] for b, v in data["by_bucket"].items()],
        ),
        "<h2>Daily cost</h2>",
        _daily_chart(data["daily"]),
        "<h2>Cost centers: budget vs actual, year to date</h2>",
        _table(
            ["cost center", "actual", "budget", "used", "year to date"],
            [
                [
                    _e(c["cost_center"] or "(none)"),
                    _fig(f"cost_centers.{i}.actual", c["actual"]),
                    _fig(f"cost_centers.{i}.budget", c["budget"]),
                    _fig(f"cost_centers.{i}.used_pct", c["used_pct"], "pct"),
                    _fig(f"cost_centers.{i}.year_to_date", c["year_to_date"]),
                ]
                for i, c in enumerate(data["cost_centers"])
            ],
        ),
        "<h2>Teams and agents</h2>",
        _table(
            ["team", "agent", "cost", "calls", "tasks", "cost per task", "unpriced"],
            [
                [
                    _e(t["team"] or "(none)"),
                    _e(t["agent"] or "all"),
                    _fig(f"{key}.{i}.cost", t["cost"]),
                    _fig(f"{key}.{i}.calls", t["calls"], "int"),
                    _fig(f"{key}.{i}.tasks", t["tasks"], "int"),
                    _fig(f"{key}.{i}.cost_per_task", t["cost_per_task"]),
                    _fig(f"{key}.{i}.unpriced", t["unpriced"], "int"),
                ]
                for key in ("teams", "agents")
                for i, t in enumerate(data[key])
            ],
        ),
        "<h2>Anomalies</h2>",
        _table(
            ["window", "kind", "scope", "observed", "expected", "what"],
            [
                [
                    _e(a["window_start"]),
                    _e(a["kind"]),
                    _e(a["scope"]),
                    _fig(f"anomalies.{i}.observed", a["observed"]),
                    _fig(f"anomalies.{i}.expected", a["expected"]),
                    _e(a["message"]),
                ]
                for i, a in enumerate(data["anomalies"])
            ],
        )
        if data["anomalies"]
        else "<p class=muted>No anomalies were raised this month.</p>",
    ]
    f = data["forecast"]
    if f is not None:
        parts.append(
            f"<h2>Forecast {_e(f['month'])}</h2><p>{_fig('forecast.projected', f['projected'])} "
            f"<span class=muted>({_e(f['method'])})</span></p>"
        )
    parts.append("</main></body></html>\n")
    return "".join(parts)
