"""The self-contained HTML spend dashboard (`agent-finops dashboard --html out.html`).

Rendered from `Dashboard.to_dict()` (the `--json` output, docs/dashboard.md), never from
ledger rows, with the run report's style sheet and figure helpers: every number is a
`<data class="fig" data-json=PATH value=RAW>` element whose value is the JSON's, and every
chart point carries the JSON value it is drawn from (`data-cost`, `data-value`, ...), so
the browser tests can read both back. No script, no network: charts are plain inline SVG
and a Content-Security-Policy forbids fetches. Tag values and alert messages are escaped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from agent_finops.reports._html import (
    _cost_cell,
    _document,
    _e,
    _fig,
    _int,
    _money,
    _write_page,
)

__all__ = ["render_dashboard_html", "write_dashboard_html"]

_W: Final = 1000
"""Width of every chart's coordinate space (stretched to its box)."""
_H: Final = 200
_H_SMALL: Final = 150
_HEADROOM: Final = Decimal("1.08")
_DASH_CSS: Final = (Path(__file__).parent / "_dashboard.css").read_text(encoding="utf-8")


def render_dashboard_html(dashboard: Any, *, title: str | None = None) -> str:
    """The dashboard as one self-contained HTML page.

    Args:
        dashboard: a `Dashboard`, or its `to_dict()` (the `--json` output) as a mapping.
        title: the page title (default: "Spend dashboard" and the range).
    """
    data: Mapping[str, Any] = dashboard.to_dict() if hasattr(dashboard, "to_dict") else dashboard
    r = data["range"]
    page_title = title or f"Spend dashboard {r['from']} to {r['to']} ({r['timezone']})"
    body = "".join(
        (
            _header(data),
            _summary(data),
            _unpriced(data),
            _spend_chart(data),
            *(_period_chart(data, i) for i in range(len(data["budgets"]["lines"]))),
            *(_group_table(data, dim) for dim in data["by"]),
            _cpt_chart(data),
            _burn(data),
            _anomalies(data),
            _day_table(data),
            _footer(data),
        )
    )
    return _document(
        page_title,
        body,
        schema_version=data["schema_version"],
        css=_DASH_CSS,
        main_class="dashboard",
    )


def write_dashboard_html(dashboard: Any, path: str | os.PathLike[str]) -> Path:
    """Write `render_dashboard_html(dashboard)` to `path` (UTF-8).

    A path that cannot be written is a `ConfigurationError` naming it.
    """
    return _write_page(render_dashboard_html(dashboard), path, "dashboard")


# -- pieces ---------------------------------------------------------------------------------


def _pct(path: str, value: Any) -> str:
    return _fig(path, value, "pct")


def _key(value: str | None, dim: str) -> str:
    return f'<span class="muted">(no {_e(dim)})</span>' if value is None else _e(value)


def _scope(scope: Mapping[str, str]) -> str:
    if not scope:
        return '<span class="muted">all calls</span>'
    return ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted(scope.items()))


def _y(value: Decimal, top: Decimal, height: int) -> float:
    return height - (float(value / top) * height if top > 0 else 0.0)


def _slot(n: int) -> float:
    return _W / max(n, 1)


def _cx(i: int, n: int) -> float:
    return (i + 0.5) * _slot(n)


def _ticks(days: Sequence[Mapping[str, Any]]) -> str:
    """First, middle and last dates under a chart (HTML, so text is not stretched)."""
    n = len(days)
    picks = sorted({0, n // 2, n - 1})
    return (
        '<div class="ticks" aria-hidden="true">'
        + "".join(
            f'<span class="tick" style="left:{_cx(i, n) / _W * 100:.3f}%">'
            f"{_e(days[i]['date'])}</span>"
            for i in picks
        )
        + "</div>"
    )


def _svg(
    chart_id: str, title: str, height: int, content: Iterable[str], small: bool = False
) -> str:
    return (
        f'<svg id="{chart_id}" class="chart{" small" if small else ""}" role="img" '
        f'aria-labelledby="{chart_id}-t" viewBox="0 0 {_W} {height}" preserveAspectRatio="none">'
        f'<title id="{chart_id}-t">{_e(title)}</title>{"".join(content)}</svg>'
    )


def _legend(items: Iterable[str]) -> str:
    return f'<ul class="legend">{"".join(f"<li>{i}</li>" for i in items)}</ul>'


def _polyline(css: str, points: Sequence[tuple[float, float]], **attrs: str) -> str:
    extra = "".join(f' data-{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    coords = " ".join(f"{x:.3f},{y:.3f}" for x, y in points)
    return f'<polyline class="{css}" points="{coords}"{extra}/>'


# -- sections -------------------------------------------------------------------------------


def _header(data: Mapping[str, Any]) -> str:
    r = data["range"]
    return (
        f"<header><h1>Spend dashboard</h1>"
        f'<p class="meta"><time datetime="{_e(r["from"])}">{_e(r["from"])}</time> to '
        f'<time datetime="{_e(r["to"])}">{_e(r["to"])}</time> · {_int("range.days", r["days"])}'
        f" days in {_e(r['timezone'])} · generated "
        f'<time datetime="{_e(data["generated_at"])}">{_e(data["generated_at"][:19])}</time> UTC'
        "</p>"
        + (
            '<ul class="tags" aria-label="broken down by">'
            + "".join(f'<li class="tag"><span class="k">by</span> {_e(d)}</li>' for d in data["by"])
            + "</ul>"
            if data["by"]
            else ""
        )
        + "</header>"
    )


def _summary(data: Mapping[str, Any]) -> str:
    t = data["totals"]
    cards = (
        ("Total cost", _money("totals.cost_usd", t["cost_usd"]), "known costs only", False),
        (
            "Cost per task",
            _money("totals.cost_per_task_usd", t["cost_per_task_usd"]),
            f"{_int('totals.tasks', t['tasks'])} tasks",
            False,
        ),
        ("Runs", _int("totals.runs", t["runs"]), "", False),
        ("Model calls", _int("totals.model_calls", t["model_calls"]), "", False),
        ("Tool calls", _int("totals.tool_calls", t["tool_calls"]), "", False),
        ("Unpriced calls", _int("totals.unpriced", t["unpriced"]), "not in the total", True),
    )
    items = "".join(
        f'<div class="card{" warn" if warn and t["unpriced"] else ""}"><dt>{label}</dt>'
        f'<dd class="big">{value}</dd>' + (f'<dd class="sub">{sub}</dd>' if sub else "") + "</div>"
        for label, value, sub, warn in cards
    )
    return (
        '<section aria-labelledby="h-sum"><h2 id="h-sum">Summary</h2>'
        f'<dl class="cards">{items}</dl></section>'
    )


def _unpriced(data: Mapping[str, Any]) -> str:
    t = data["totals"]
    if not t["unpriced"]:
        return ""
    items = [
        f"{_e(dim)} {_key(g['key'], dim)}: "
        f"{_int(f'groups.{dim}.{i}.unpriced', g['unpriced'])} unpriced"
        for dim in data["by"]
        for i, g in enumerate(data["groups"][dim])
        if g["unpriced"]
    ]
    days = [
        f'<time datetime="{_e(d["date"])}">{_e(d["date"])}</time> '
        f"({_int(f'days.{i}.unpriced', d['unpriced'])})"
        for i, d in enumerate(data["days"])
        if d["unpriced"]
    ]
    return (
        '<section class="callout" role="alert" aria-labelledby="h-unp"><h2 id="h-unp">'
        f"{_int('totals.unpriced', t['unpriced'])} call(s) could not be priced</h2>"
        "<p>Their cost is unknown, not zero: every cost and cost per task on this page "
        "excludes them. Add a price for their model (PricingConfig) or check the reported "
        "usage.</p>"
        + (f"<ul>{''.join(f'<li>{i}</li>' for i in items)}</ul>" if items else "")
        + (f"<p>Days: {', '.join(days)}</p>" if days else "")
        + "</section>"
    )


def _spend_chart(data: Mapping[str, Any]) -> str:
    days: Sequence[Mapping[str, Any]] = data["days"]
    n = len(days)
    lines = data["budgets"]["lines"]
    flat = [(i, b) for i, b in enumerate(lines) if b["period"] == "daily"]
    costs = [Decimal(d["cost_usd"]) for d in days]
    peak = max(range(n), key=lambda i: costs[i])
    top = max([costs[peak], *(Decimal(b["limit_usd"]) for _, b in flat)]) * _HEADROOM
    slot = _slot(n)
    shapes = []
    for i, d in enumerate(days):
        y = _y(costs[i], top, _H)
        shapes.append(
            f'<rect class="day{"" if costs[i] else " empty"}" x="{i * slot + slot * 0.1:.3f}" '
            f'y="{y:.3f}" width="{slot * 0.8:.3f}" height="{_H - y:.3f}" data-json="days.{i}" '
            f'data-date="{_e(d["date"])}" data-cost="{_e(d["cost_usd"])}" '
            f'data-unpriced="{d["unpriced"]}"><title>{_e(d["date"])}: ${_e(d["cost_usd"])}'
            + (f", {d['unpriced']} unpriced" if d["unpriced"] else "")
            + "</title></rect>"
        )
        if d["unpriced"]:
            x = _cx(i, n)
            shapes.append(
                f'<line class="unpday" x1="{x:.3f}" x2="{x:.3f}" y1="{_H}" y2="{_H - 6}" '
                f'data-date="{_e(d["date"])}" data-unpriced="{d["unpriced"]}"/>'
            )
    for i, b in flat:
        y = _y(Decimal(b["limit_usd"]), top, _H)
        shapes.append(
            f'<line class="limit" x1="0" x2="{_W}" y1="{y:.3f}" y2="{y:.3f}" '
            f'data-json="budgets.lines.{i}" data-budget="{_e(b["budget_id"])}" '
            f'data-limit="{_e(b["limit_usd"])}"><title>{_e(b["budget_id"])}: '
            f"${_e(b['limit_usd'])} a day</title></line>"
        )
    marks = _alert_marks(data, _H)
    legend = [
        '<span class="sw day" aria-hidden="true"></span>known cost of the day',
        *(
            f'<span class="ln" aria-hidden="true"></span>daily budget {_e(b["budget_id"])} '
            f"{_money(f'budgets.lines.{i}.limit_usd', b['limit_usd'])}"
            for i, b in flat
        ),
    ]
    if any(d["unpriced"] for d in days):
        legend.append('<span class="sw unpday" aria-hidden="true"></span>day with unpriced calls')
    if marks:
        legend.append('<span class="ln alert" aria-hidden="true"></span>anomaly (listed below)')
    tz_note = _tz_note(data) if flat else ""
    return (
        '<section aria-labelledby="h-spend"><h2 id="h-spend">Spend over time</h2>'
        f'<p class="scale">Daily known cost; tallest bar '
        f"{_money(f'days.{peak}.cost_usd', days[peak]['cost_usd'])} on {_e(days[peak]['date'])}."
        f'</p><div class="chartbox">'
        + _svg("spend-chart", f"Known cost per day over {n} days", _H, [*shapes, *marks])
        + _ticks(days)
        + "</div>"
        + _legend(legend)
        + tz_note
        + "</section>"
    )


def _tz_note(data: Mapping[str, Any]) -> str:
    zone = data["budgets"]["policy_timezone"]
    if zone is None or zone == data["range"]["timezone"]:
        return ""
    return (
        f'<p class="note">The policy counts its days in {_e(zone)}, this dashboard in '
        f"{_e(data['range']['timezone'])}: a daily bar is not exactly the budget's day.</p>"
    )


def _alert_marks(data: Mapping[str, Any], height: int) -> list[str]:
    days = data["days"]
    index = {d["date"]: i for i, d in enumerate(days)}
    marks = []
    for j, a in enumerate(data["anomalies"]):
        x = _cx(index[a["date"]], len(days))
        marks.append(
            f'<line class="alert {_e(a["severity"])}" x1="{x:.3f}" x2="{x:.3f}" y1="0" '
            f'y2="{height}" data-json="anomalies.{j}" data-alert-id="{_e(a["alert_id"])}" '
            f'data-date="{_e(a["date"])}" data-window-start="{_e(a["window_start"])}">'
            f"<title>{_e(a['kind'])} {_e(a['date'])}: {_e(a['message'])}</title></line>"
        )
    return marks


def _period_chart(data: Mapping[str, Any], index: int) -> str:
    """A weekly or monthly budget: spend since its period's start against its pace."""
    line = data["budgets"]["lines"][index]
    points = line["points"]
    if not points:
        return ""
    n = len(points)
    limit = Decimal(line["limit_usd"])
    to_date = [Decimal(p["to_date_usd"]) for p in points]
    top = max([limit, *to_date]) * _HEADROOM
    spent_xy = [(_cx(i, n), _y(v, top, _H_SMALL)) for i, v in enumerate(to_date)]
    pace_xy = [(_cx(i, n), _y(Decimal(p["pace_usd"]), top, _H_SMALL)) for i, p in enumerate(points)]
    y = _y(limit, top, _H_SMALL)
    path = f"budgets.lines.{index}"
    dots = "".join(
        f'<line class="dot" x1="{x:.3f}" x2="{x:.3f}" y1="{yy:.3f}" y2="{yy:.3f}" '
        f'data-json="{path}.points.{i}" data-date="{_e(p["date"])}" '
        f'data-to-date="{_e(p["to_date_usd"])}" data-pace="{_e(p["pace_usd"])}">'
        f"<title>{_e(p['date'])}: ${_e(p['to_date_usd'])} so far, pace "
        f"${_e(p['pace_usd'])}</title></line>"
        for i, ((x, yy), p) in enumerate(zip(spent_xy, points, strict=True))
    )
    shapes = [
        f'<line class="limit" x1="0" x2="{_W}" y1="{y:.3f}" y2="{y:.3f}" data-json="{path}" '
        f'data-budget="{_e(line["budget_id"])}" data-limit="{_e(line["limit_usd"])}"/>',
        _polyline("pace", pace_xy, budget=line["budget_id"]),
        _polyline("todate", spent_xy, budget=line["budget_id"]),
        dots,
    ]
    chart_id = f"period-chart-{index}"
    return (
        f'<section aria-labelledby="h-{chart_id}"><h2 id="h-{chart_id}">Budget '
        f"{_e(line['budget_id'])}: {_e(line['period'])} spend to date</h2>"
        f'<p class="scale">Known cost from the start of each {_e(line["period"][:-2])} to the end '
        f"of each day (it starts again with every period), against the budget "
        f"{_money(f'{path}.limit_usd', line['limit_usd'])} and the pace that spends it evenly."
        f'</p><div class="chartbox">'
        + _svg(
            chart_id,
            f"{line['budget_id']}: spend to date against the budget",
            _H_SMALL,
            shapes,
            small=True,
        )
        + _ticks(points)
        + "</div>"
        + _legend(
            (
                '<span class="ln todate" aria-hidden="true"></span>spent since the period began',
                '<span class="ln pace" aria-hidden="true"></span>even pace',
                '<span class="ln" aria-hidden="true"></span>budget limit',
            )
        )
        + _tz_note(data)
        + "</section>"
    )


_GROUP_COLUMNS: Final = ("calls", "runs", "tasks", "cost", "cost per task", "share")


def _group_table(data: Mapping[str, Any], dim: str) -> str:
    rows_data: Sequence[Mapping[str, Any]] = data["groups"][dim]
    heading = f"Cost by {_e(dim)}"
    if not rows_data:
        return (
            f'<section aria-labelledby="h-by-{_e(dim)}"><h2 id="h-by-{_e(dim)}">{heading}</h2>'
            '<p class="muted">No spend in this range.</p></section>'
        )
    top = max(Decimal(g["cost_usd"]) for g in rows_data)
    rows = []
    for i, g in enumerate(rows_data):
        p = f"groups.{dim}.{i}"
        cost = Decimal(g["cost_usd"])
        width = float(cost / top * 100) if top > 0 else 0.0
        bar = (
            '<svg class="rbar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="{"unpriced" if g["unpriced"] and not cost else "c4"}" x="0" y="0" '
            f'width="{width:.4f}" height="10" data-json="{p}" data-key="{_e(g["key"])}" '
            f'data-none="{str(g["key"] is None).lower()}" data-cost="{_e(g["cost_usd"])}"/></svg>'
        )
        cells = (
            f"{_int(f'{p}.model_calls', g['model_calls'])} + "
            f"{_int(f'{p}.tool_calls', g['tool_calls'])}",
            _int(f"{p}.runs", g["runs"]),
            _int(f"{p}.tasks", g["tasks"]),
            _cost_cell(p, g),
            _money(f"{p}.cost_per_task_usd", g["cost_per_task_usd"]),
            _pct(f"{p}.share", g["share"]),
        )
        rows.append(
            f'<tr data-json="{p}"><th scope="row">{_key(g["key"], dim)}</th>'
            f'<td class="barcell">{bar}</td>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    head = "".join(f'<th scope="col">{c}</th>' for c in _GROUP_COLUMNS)
    return (
        f'<section aria-labelledby="h-by-{_e(dim)}"><h2 id="h-by-{_e(dim)}">{heading}</h2>'
        f'<div class="scroll"><table class="rollup group" id="by-{_e(dim)}"><caption>Known cost '
        "per value of the tag (calls: model + tool; cost per task: known cost / distinct "
        "task tags)</caption>"
        f'<thead><tr><th scope="col">{_e(dim)}</th><th scope="col"><span class="vh">bar</span>'
        f"</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _cpt_chart(data: Mapping[str, Any]) -> str:
    days: Sequence[Mapping[str, Any]] = data["days"]
    n = len(days)
    values = {
        i: Decimal(d["cost_per_task_usd"])
        for i, d in enumerate(days)
        if d["cost_per_task_usd"] is not None
    }
    head = '<section aria-labelledby="h-cpt"><h2 id="h-cpt">Cost per task, by day</h2>'
    if not values:
        return head + '<p class="muted">No call in this range has a task tag.</p></section>'
    peak = max(values, key=lambda i: values[i])
    top = values[peak] * _HEADROOM
    runs: list[list[tuple[float, float]]] = []
    for i in range(n):  # a day without tasks breaks the line
        if i in values:
            point = (_cx(i, n), _y(values[i], top, _H_SMALL))
            if runs and i - 1 in values:
                runs[-1].append(point)
            else:
                runs.append([point])
    shapes = [_polyline("cpt", r) for r in runs if len(r) > 1]
    shapes += [
        f'<line class="dot" x1="{_cx(i, n):.3f}" x2="{_cx(i, n):.3f}" '
        f'y1="{_y(v, top, _H_SMALL):.3f}" y2="{_y(v, top, _H_SMALL):.3f}" '
        f'data-json="days.{i}" data-date="{_e(days[i]["date"])}" '
        f'data-value="{_e(days[i]["cost_per_task_usd"])}" data-tasks="{days[i]["tasks"]}">'
        f"<title>{_e(days[i]['date'])}: ${_e(days[i]['cost_per_task_usd'])} per task "
        f"({days[i]['tasks']} tasks)</title></line>"
        for i, v in values.items()
    ]
    return (
        head + '<p class="scale">Known cost of the day / distinct tasks of the day; highest '
        f"{_money(f'days.{peak}.cost_per_task_usd', days[peak]['cost_per_task_usd'])} on "
        f"{_e(days[peak]['date'])}. Days without tasks leave a gap.</p>"
        '<div class="chartbox">'
        + _svg("cpt-chart", "Cost per task per day", _H_SMALL, shapes, small=True)
        + _ticks(days)
        + "</div></section>"
    )


_BURN_COLUMNS: Final = (
    "budget",
    "scope",
    "period",
    "limit",
    "spent",
    "used vs elapsed",
    "used",
    "elapsed",
    "daily rate",
    "days left",
    "forecast",
    "of limit",
    "status",
)


def _burn(data: Mapping[str, Any]) -> str:
    b = data["budgets"]
    head = '<section aria-labelledby="h-burn"><h2 id="h-burn">Budget burn</h2>'
    if b["policy_timezone"] is None:
        return head + '<p class="muted">No policy given (--policy FILE).</p></section>'
    rows = []
    for i, r in enumerate(b["burn"]):
        p = f"budgets.burn.{i}"
        used = Decimal(r["used_share"] or 0)
        elapsed = Decimal(r["elapsed_share"] or 0)
        x = float(min(elapsed, Decimal(1)) * 100)
        bar = (
            '<svg class="burnbar" viewBox="0 0 100 10" preserveAspectRatio="none" '
            'aria-hidden="true"><rect class="track" x="0" y="0" width="100" height="10"/>'
            f'<rect class="used{" over" if used >= 1 else ""}" x="0" y="1" '
            f'width="{float(min(used, Decimal(1)) * 100):.4f}" height="8" data-json="{p}" '
            f'data-used="{_e(r["used_share"])}"/><line class="elapsed" x1="{x:.4f}" '
            f'x2="{x:.4f}" y1="0" y2="10" data-elapsed="{_e(r["elapsed_share"])}"/></svg>'
        )
        cells = (
            f'<td class="t">{_scope(r["scope"])}</td>',
            f'<td class="t">{_e(r["period"])}<br>{_period(r, b["policy_timezone"])}</td>',
            f"<td>{_money(f'{p}.limit_usd', r['limit_usd'])}</td>",
            f"<td>{_money(f'{p}.spent_usd', r['spent_usd'])}"
            + (
                f' <span class="unp">+{_int(f"{p}.unpriced", r["unpriced"])} unpriced</span>'
                if r["unpriced"]
                else ""
            )
            + "</td>",
            f'<td class="burncell">{bar}</td>',
            f"<td>{_pct(f'{p}.used_share', r['used_share'])}</td>",
            f"<td>{_pct(f'{p}.elapsed_share', r['elapsed_share'])}</td>",
            f"<td>{_money(f'{p}.daily_rate_usd', r['daily_rate_usd'])}</td>",
            f"<td>{_fig(f'{p}.days_left', r['days_left'], 'num')}</td>",
            f"<td>{_money(f'{p}.forecast_usd', r['forecast_usd'])}</td>",
            f"<td>{_pct(f'{p}.forecast_share', r['forecast_share'])}</td>",
            f'<td><span class="st st-{_e(r["status"])}">{_e(r["status"].replace("_", " "))}'
            f"</span>{' (shadow)' if r['shadow'] else ''}</td>",
        )
        rows.append(
            f'<tr data-json="{p}"><th scope="row">{_e(r["budget_id"])}</th>{"".join(cells)}</tr>'
        )
    table = (
        '<div class="scroll"><table id="burn"><caption>The current period of each USD budget, '
        f"measured up to {_e(data['as_of'][:16].replace('T', ' '))} UTC (bar: used; line: "
        "elapsed)</caption><thead><tr>"
        + "".join(f'<th scope="col">{c}</th>' for c in _BURN_COLUMNS)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        if rows
        else '<p class="muted">The policy has no USD budget over a period.</p>'
    )
    skipped = "".join(f"<li>{_e(s['budget_id'])}: {_e(s['reason'])}</li>" for s in b["skipped"])
    truncated = ", ".join(_e(t) for t in b["truncated"])
    return (
        head
        + table
        + f'<p class="note">Estimator: {_e(b["estimator"])}, rounded to a millionth of a '
        f"dollar. Periods are the policy's, in {_e(b['policy_timezone'])}.</p>"
        + (f'<p class="note">Not shown (no period burn):</p><ul>{skipped}</ul>' if skipped else "")
        + (f'<p class="note">Only the most used scopes of: {truncated}.</p>' if truncated else "")
        + "</section>"
    )


def _period(r: Mapping[str, Any], zone: str) -> str:
    """The period in the policy's zone: its days (last one included), or its times."""
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(r["period_start"]).astimezone(tz)
    end = datetime.fromisoformat(r["period_end"]).astimezone(tz)
    if r["period"] in ("daily", "weekly", "monthly"):
        last = (end - timedelta(microseconds=1)).date()
        text = f"{start:%Y-%m-%d}" + (f" – {last:%Y-%m-%d}" if last != start.date() else "")
    else:
        text = f"{start:%Y-%m-%d %H:%M} – {end:%H:%M}"
    return f'<span class="muted nowrap">{_e(text)}</span>'


def _observed(path: str, a: Mapping[str, Any], key: str) -> str:
    if a["unit"] == "usd":
        return _money(f"{path}.{key}", a[key])
    if a[key] is None:
        return _fig(f"{path}.{key}", None, "num")
    return f"{_fig(f'{path}.{key}', a[key], 'num')} calls/min"


def _anomalies(data: Mapping[str, Any]) -> str:
    head = '<section aria-labelledby="h-anom"><h2 id="h-anom">Anomalies</h2>'
    alerts: Sequence[Mapping[str, Any]] = data["anomalies"]
    if not alerts:
        return head + '<p class="muted">No stored alert starts in this range.</p></section>'
    rows = "".join(
        f'<tr data-json="anomalies.{i}" id="a{i}">'
        f'<td><time datetime="{_e(a["window_start"])}">'
        f"{_e(a['window_start'][:16].replace('T', ' '))}</time></td>"
        f'<td class="t">{_e(a["kind"])}</td>'
        f'<td><span class="st sev-{_e(a["severity"])}">{_e(a["severity"])}</span></td>'
        f'<td class="t">{_scope(a["scope"])}</td>'
        f"<td>{_observed(f'anomalies.{i}', a, 'observed')}</td>"
        f"<td>{_observed(f'anomalies.{i}', a, 'expected')}</td>"
        f'<td class="t msg">{_e(a["message"])}</td></tr>'
        for i, a in enumerate(alerts)
    )
    head_row = "".join(
        f'<th scope="col">{c}</th>'
        for c in (
            "window start (UTC)",
            "kind",
            "severity",
            "scope",
            "observed",
            "expected",
            "message",
        )
    )
    more = (
        '<p class="note">Only the newest alerts were read; older ones are not shown.</p>'
        if data["anomalies_truncated"]
        else ""
    )
    return (
        head + '<p class="muted">Stored alerts (anomaly scans, forecasts) whose window starts in '
        "the range, marked on the spend chart on their day.</p>"
        f'<div class="scroll"><table id="anomalies"><thead><tr>{head_row}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{more}</section>"
    )


_DAY_COLUMNS: Final = ("date", "cost", "unpriced", "calls", "runs", "tasks", "per task", "to date")


def _day_table(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr data-json="days.{i}"><th scope="row">{_e(d["date"])}</th>'
        f"<td>{_money(f'days.{i}.cost_usd', d['cost_usd'])}</td>"
        f"<td>{_int(f'days.{i}.unpriced', d['unpriced'])}</td>"
        f"<td>{_int(f'days.{i}.model_calls', d['model_calls'])} + "
        f"{_int(f'days.{i}.tool_calls', d['tool_calls'])}</td>"
        f"<td>{_int(f'days.{i}.runs', d['runs'])}</td>"
        f"<td>{_int(f'days.{i}.tasks', d['tasks'])}</td>"
        f"<td>{_money(f'days.{i}.cost_per_task_usd', d['cost_per_task_usd'])}</td>"
        f"<td>{_money(f'days.{i}.cumulative_cost_usd', d['cumulative_cost_usd'])}</td></tr>"
        for i, d in enumerate(data["days"])
    )
    head = "".join(f'<th scope="col">{c}</th>' for c in _DAY_COLUMNS)
    return (
        '<section aria-labelledby="h-days"><h2 id="h-days">Daily figures</h2>'
        "<details><summary>Every day of the charts as a table</summary>"
        '<div class="scroll"><table id="days"><caption>Known cost, unpriced calls, model + tool '
        "calls, distinct runs and tasks, cost per task and known cost since the first day"
        f"</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        "</details></section>"
    )


def _footer(data: Mapping[str, Any]) -> str:
    return (
        '<footer><p class="muted">Dashboard schema '
        f"{_e(data['schema_version'])}; money in USD, exact sums of the ledger's known costs "
        "(cost per task, daily rate, forecast and pace rounded to a millionth of a dollar). "
        "The same figures: <code>agent-finops dashboard --json</code>.</p></footer>"
    )
