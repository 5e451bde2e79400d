"""The monthly finance report: what a FinOps team sends around after month end.

`build_finance_report(ledger, month="2026-11", tz=..., policy=...)` computes, from the
ledger's aggregates (in the database):

- the executive summary: the month's total, the change against the previous month, the top
  three cost drivers (the team x agent pairs and models whose cost grew most; by cost when
  there is no previous month);
- per cost center: actual, the policy's monthly budget where one covers it, year to date;
- per team and agent: cost, tasks, cost per task, unpriced calls;
- the month's anomalies (alerts the scanner stored, with their drivers);
- next month's forecast: the mean daily cost of the month's last 14 days (days without a
  cost count as zero) times the days of next month, stated as such.

Money is `Decimal` throughout; `to_json` writes it as exact decimal text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import Ledger
from agent_finops.ledger._money import EXACT
from agent_finops.ledger._money import money_text as _money
from agent_finops.policy import Policy
from agent_finops.rollups import calendar_windows, rollup, zone

__all__ = [
    "FORECAST_DAYS",
    "CostCenterLine",
    "Driver",
    "FinanceReport",
    "Forecast",
    "TeamLine",
    "build_finance_report",
]

FORECAST_DAYS: Final = 14
"""Days at the end of the month whose mean daily cost projects next month."""
_ZERO: Final = Decimal(0)
_CENT: Final = Decimal("0.01")


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    return EXACT.divide(EXACT.multiply(part, Decimal(100)), whole).quantize(
        _CENT, ROUND_HALF_EVEN, EXACT
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Driver:
    """A cost driver: a team x agent pair or a model, and how its cost moved."""

    kind: str
    """`team/agent` or `model`."""
    name: str
    cost: Decimal
    previous: Decimal
    change: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class CostCenterLine:
    """One cost center: the month, its budget if a policy has one, the year to date."""

    cost_center: str | None
    actual: Decimal
    year_to_date: Decimal
    budget_rule: str | None = None
    budget: Decimal | None = None
    used_pct: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamLine:
    """One team (or one agent of a team)."""

    team: str | None
    agent: str | None
    cost: Decimal
    calls: int
    tasks: int
    unpriced: int
    cost_per_task: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Forecast:
    """Next month's projected cost."""

    month: str
    projected: Decimal
    daily_rate: Decimal
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinanceReport:
    """The month's report (see the module docs)."""

    month: str
    tz: str
    start: datetime
    end: datetime
    total: Decimal
    previous_total: Decimal
    change: Decimal
    change_pct: Decimal | None
    events: int
    unpriced: int
    by_bucket: dict[str, Decimal]
    drivers: list[Driver]
    cost_centers: list[CostCenterLine]
    teams: list[TeamLine]
    agents: list[TeamLine]
    daily: list[tuple[date, Decimal]]
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    forecast: Forecast | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (money as exact decimal text)."""
        data: dict[str, Any] = _jsonable(self)
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_range(month: str, tz: str) -> tuple[datetime, datetime]:
    """`2026-11` as `[start, end)` in the zone (years 1900-9998)."""
    found = _MONTH.fullmatch(month)
    try:
        if found is None:
            raise ValueError(month)
        year, number = int(found[1]), int(found[2])
        if not 1900 <= year <= 9998:
            raise ValueError(month)
        first = date(year, number, 1)
    except ValueError:
        raise ConfigurationError(
            "not a month", field="month", value=month, expected="YYYY-MM, e.g. 2026-11"
        ) from None
    after = date(year + (number == 12), number % 12 + 1, 1)
    zone_info = zone(tz)
    return datetime.combine(first, datetime.min.time(), zone_info), datetime.combine(
        after, datetime.min.time(), zone_info
    )


def build_finance_report(
    ledger: Ledger, *, month: str, tz: str = "UTC", policy: Policy | None = None
) -> FinanceReport:
    """The finance report of `month` (`YYYY-MM`, calendar month in `tz`)."""
    start, end = month_range(month, tz)  # validates `month` before anything derives from it
    if not 1971 <= start.year <= 8999:
        raise ConfigurationError(
            "month out of range", field="month", value=month, expected="a month of 1971-8999"
        )
    prev_start, _ = month_range(_shifted(month, -1), tz)
    year_start, _ = month_range(f"{start.year}-01", tz)
    pairs = rollup(ledger, start=start, end=end, by=["team", "agent"], period="all", tz=tz)
    models = rollup(ledger, start=start, end=end, by=[":model"], period="all", tz=tz)
    prev_pairs = rollup(
        ledger, start=prev_start, end=start, by=["team", "agent"], period="all", tz=tz
    )
    prev_models = rollup(ledger, start=prev_start, end=start, by=[":model"], period="all", tz=tz)
    # Every event is in exactly one team x agent group: the month's sums are those rows'.
    this, before = pairs.total, prev_pairs.total
    total, previous = this.cost, before.cost
    teams = rollup(ledger, start=start, end=end, by=["team"], period="all", tz=tz)
    centers = rollup(
        ledger, start=start, end=end, by=["cost_center"], period="month", tz=tz, policy=policy
    )
    ytd = rollup(ledger, start=year_start, end=end, by=["cost_center"], period="all", tz=tz)
    ytd_cost = {r.group["cost_center"]: r.totals.cost for r in ytd.rows}
    days = rollup(ledger, start=start, end=end, period="day", tz=tz)
    daily_cost = {r.start.date(): r.totals.cost for r in days.rows}
    daily = [
        (s.astimezone(zone(tz)).date(), daily_cost.get(s.astimezone(zone(tz)).date(), _ZERO))
        for s, _ in calendar_windows("day", start, end, zone(tz))
    ]
    return FinanceReport(
        month=month,
        tz=tz,
        start=start,
        end=end,
        total=total,
        previous_total=previous,
        change=EXACT.subtract(total, previous),
        change_pct=_pct(EXACT.subtract(total, previous), previous),
        events=this.events,
        unpriced=this.unpriced,
        by_bucket=dict(this.cost_by_bucket),
        drivers=_drivers(pairs.rows, prev_pairs.rows, models.rows, prev_models.rows),
        cost_centers=[
            CostCenterLine(
                cost_center=r.group["cost_center"],
                actual=r.totals.cost,
                year_to_date=ytd_cost.get(r.group["cost_center"], _ZERO),
                budget_rule=None if r.budget is None else r.budget.rule_id,
                budget=None if r.budget is None else r.budget.limit,
                used_pct=None if r.budget is None else r.budget.used_pct,
            )
            for r in sorted(centers.rows, key=lambda r: -r.totals.cost)
        ],
        teams=[_team_line(r.group.get("team"), None, r) for r in _by_cost(teams.rows)],
        agents=[_team_line(r.group["team"], r.group["agent"], r) for r in _by_cost(pairs.rows)],
        daily=daily,
        anomalies=_anomalies(ledger, start, end),
        forecast=_forecast(month, daily, tz),
    )


def _shifted(month: str, by: int) -> str:
    """The month `by` months from `month` (already checked by `month_range`)."""
    year, index = divmod(int(month[:4]) * 12 + int(month[5:7]) - 1 + by, 12)
    return f"{year:04d}-{index + 1:02d}"


def _by_cost(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda r: (-r.totals.cost, tuple(str(v) for v in r.group.values())))


def _team_line(team: str | None, agent: str | None, row: Any) -> TeamLine:
    return TeamLine(
        team=team,
        agent=agent,
        cost=row.totals.cost,
        calls=row.totals.events,
        tasks=row.totals.tasks,
        unpriced=row.totals.unpriced,
        cost_per_task=row.cost_per_task,
    )


def _drivers(
    pairs: list[Any], prev_pairs: list[Any], models: list[Any], prev_models: list[Any]
) -> list[Driver]:
    found: list[Driver] = []
    for kind, rows, prev in (("team/agent", pairs, prev_pairs), ("model", models, prev_models)):
        before = {tuple(r.group.values()): r.totals.cost for r in prev}
        for r in rows:
            key = tuple(r.group.values())
            old = before.get(key, _ZERO)
            name = "/".join("-" if v is None else str(v) for v in key)
            found.append(
                Driver(
                    kind=kind,
                    name=name,
                    cost=r.totals.cost,
                    previous=old,
                    change=EXACT.subtract(r.totals.cost, old),
                )
            )
    any_before = bool(prev_pairs or prev_models)
    found.sort(key=lambda d: (-(d.change if any_before else d.cost), d.kind, d.name))
    return found[:3]


def _anomalies(ledger: Ledger, start: datetime, end: datetime) -> list[dict[str, Any]]:
    alerts = ledger.list_alerts(since=start, limit=1000)
    return [
        {
            "kind": a.kind,
            "scope": a.scope,
            "window_start": a.window_start.isoformat(),
            "observed": _money(a.observed),
            "expected": _money(a.expected),
            "message": a.message,
            "drivers": a.drivers,
        }
        for a in sorted(alerts, key=lambda a: (a.window_start, a.alert_id))
        if a.window_start < end
    ]


def _forecast(month: str, daily: list[tuple[date, Decimal]], tz: str) -> Forecast:
    recent = daily[-FORECAST_DAYS:]
    rate = (
        EXACT.divide(sum((c for _, c in recent), _ZERO), Decimal(len(recent))) if recent else _ZERO
    )
    rate = rate.quantize(Decimal("0.000001"), ROUND_HALF_EVEN, EXACT)
    nxt = _shifted(month, 1)
    nstart, nend = month_range(nxt, tz)
    days = (nend.date() - nstart.date()).days
    return Forecast(
        month=nxt,
        projected=EXACT.multiply(rate, Decimal(days)).quantize(_CENT, ROUND_HALF_EVEN, EXACT),
        daily_rate=rate,
        method=f"mean daily cost of the last {len(recent)} days x {days} days",
    )
