"""The spend dashboard's numbers (`agent-finops dashboard --json`), computed from ledger aggregates.

`build_dashboard` asks the ledger for totals (`Ledger.aggregate`: summed exactly in the
database) per calendar day of the dashboard's time zone, per value of each `by` tag, and
per budget period of the policy, and reads the stored alerts of the range. The result is a
`Dashboard` whose `to_dict()` is the JSON document (docs/dashboard.md) the HTML page is
rendered from, so both show the same figures. Money is `Decimal` throughout and a decimal
string in the JSON; derived amounts (cost per task, daily rate, forecast, pace) are
rounded half-even to `DERIVED_PLACES` and say so in the docs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent_finops.clock import Clock, utcnow
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import Aggregate, AlertRecord, EventTotals, Ledger, Window
from agent_finops.ledger._money import EXACT

if TYPE_CHECKING:  # the policy package imports the tracker, which imports the reports
    from agent_finops.policy import Budget, PeriodKind, Policy

__all__ = [
    "DASHBOARD_SCHEMA_VERSION",
    "DEFAULT_DAYS",
    "DEFAULT_DIMENSIONS",
    "DERIVED_PLACES",
    "MAX_DAYS",
    "RATE_DAYS",
    "Anomaly",
    "BudgetBurn",
    "BudgetLine",
    "Dashboard",
    "DaySpend",
    "GroupSpend",
    "SpendFigures",
    "build_dashboard",
]

DASHBOARD_SCHEMA_VERSION: Final = 1
"""Bumped on any incompatible change of `Dashboard.to_dict()`."""
DEFAULT_DAYS: Final = 30
"""Days shown when no first day is given (ending with the last day, default today)."""
MAX_DAYS: Final = 732
"""Longest range, in days (two years)."""
DEFAULT_DIMENSIONS: Final = ("team", "agent")
"""Tags the cost is broken down by when none are given."""
RATE_DAYS: Final = 7
"""The forecast's recent daily rate is the spend of this many days before `as_of`, / 7."""
DERIVED_PLACES: Final = 6
"""Decimal places of derived amounts (cost per task, rate, forecast, pace): a micro-dollar."""
MAX_ALERTS: Final = 1000
"""Alerts read for one dashboard (newest first; `anomalies_truncated` says when cut)."""
MAX_BUDGET_ROWS: Final = 50
"""Scopes shown per budget with a `"*"` selector (the most used first)."""

_DERIVED: Final = Decimal(1).scaleb(-DERIVED_PLACES)
_SHARE: Final = Decimal("0.0001")
_DAY_DAYS: Final = Decimal("0.0001")
_CHARTED_PERIODS: Final = ("daily", "weekly", "monthly")
_MICRO: Final = timedelta(microseconds=1)


def money_str(value: Decimal | None) -> str | None:
    """A JSON money string: exact, without trailing zeros (`"0.0125"`, `"3"`)."""
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _share(part: Decimal, whole: Decimal) -> str | None:
    if whole <= 0:
        return None
    return format(EXACT.divide(part, whole).quantize(_SHARE, rounding=ROUND_HALF_EVEN), "f")


def _derived(value: Decimal) -> Decimal:
    return value.quantize(_DERIVED, rounding=ROUND_HALF_EVEN, context=EXACT)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendFigures:
    """Spend of one day, group or range: known cost, counts, distinct runs and tasks."""

    cost: Decimal = Decimal(0)
    """Sum of known costs (USD); unpriced events are counted in `unpriced`, never as $0."""
    unpriced: int = 0
    events: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    runs: int = 0
    """Distinct runs with an event here."""
    tasks: int = 0
    """Distinct values of the `task` tag."""
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def of(cls, totals: EventTotals | None) -> SpendFigures:
        """The figures of one aggregate's totals (None: nothing was spent)."""
        if totals is None:
            return cls()
        return cls(
            cost=totals.cost,
            unpriced=totals.unpriced,
            events=totals.events,
            model_calls=totals.model_calls,
            tool_calls=totals.tool_calls,
            runs=totals.runs,
            tasks=totals.tasks,
            input_tokens=totals.uncached_input_tokens
            + totals.cache_read_tokens
            + totals.cache_write_tokens,
            output_tokens=totals.output_tokens,
        )

    @property
    def cost_per_task(self) -> Decimal | None:
        """Known cost / distinct tasks (rounded to `DERIVED_PLACES`); None without tasks."""
        if not self.tasks:
            return None
        return _derived(EXACT.divide(self.cost, Decimal(self.tasks)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; money as decimal strings."""
        return {
            "cost_usd": money_str(self.cost),
            "unpriced": self.unpriced,
            "events": self.events,
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
            "runs": self.runs,
            "tasks": self.tasks,
            "cost_per_task_usd": money_str(self.cost_per_task),
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DaySpend:
    """One calendar day of the dashboard's time zone."""

    day: date
    start: datetime
    end: datetime
    figures: SpendFigures
    cumulative_cost: Decimal
    """Known cost from the first day of the range to the end of this one."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "date": self.day.isoformat(),
            "start": _iso(self.start),
            "end": _iso(self.end),
            **self.figures.to_dict(),
            "cumulative_cost_usd": money_str(self.cumulative_cost),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpend:
    """The spend of one value of a `by` tag over the whole range."""

    key: str | None
    """The tag's value; None for events without the tag."""
    figures: SpendFigures
    share: str | None
    """Fraction of the range's known cost (4 places), None when that is 0."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"key": self.key, "share": self.share, **self.figures.to_dict()}


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetBurn:
    """How much of one USD budget's current period is spent, against how much has elapsed."""

    budget_id: str
    scope: dict[str, str]
    """The concrete scope (a `"*"` selector gives one row per tag value)."""
    period: str
    period_start: datetime
    period_end: datetime
    limit: Decimal
    spent: Decimal
    """Known cost in scope from the period's start to `as_of`."""
    unpriced: int
    elapsed_seconds: int
    period_seconds: int
    recent_cost: Decimal
    """Known cost in scope over the `RATE_DAYS` days before `as_of`."""
    action: str
    shadow: bool

    @property
    def used_share(self) -> str | None:
        """`spent / limit` (4 places; over 1 when overspent)."""
        return _share(self.spent, self.limit)

    @property
    def elapsed_share(self) -> str | None:
        """Part of the period elapsed at `as_of` (4 places)."""
        return _share(Decimal(self.elapsed_seconds), Decimal(self.period_seconds))

    @property
    def daily_rate(self) -> Decimal:
        """`recent_cost / RATE_DAYS`, rounded to `DERIVED_PLACES`."""
        return _derived(EXACT.divide(self.recent_cost, Decimal(RATE_DAYS)))

    @property
    def days_left(self) -> Decimal:
        """Days from `as_of` to the period's end (4 places)."""
        seconds = Decimal(self.period_seconds - self.elapsed_seconds)
        return (seconds / 86_400).quantize(_DAY_DAYS, rounding=ROUND_HALF_EVEN)

    @property
    def forecast(self) -> Decimal:
        """`spent + daily_rate x days_left` (the projection rounded to `DERIVED_PLACES`)."""
        return EXACT.add(self.spent, _derived(EXACT.multiply(self.daily_rate, self.days_left)))

    @property
    def status(self) -> str:
        """`over` (spent >= limit), `forecast_over`, `ahead` (used > elapsed) or `on_track`."""
        if self.spent >= self.limit:
            return "over"
        if self.forecast > self.limit:
            return "forecast_over"
        used, elapsed = self.used_share, self.elapsed_share
        if used is not None and elapsed is not None and Decimal(used) > Decimal(elapsed):
            return "ahead"
        return "on_track"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "budget_id": self.budget_id,
            "scope": dict(self.scope),
            "period": self.period,
            "period_start": _iso(self.period_start),
            "period_end": _iso(self.period_end),
            "limit_usd": money_str(self.limit),
            "spent_usd": money_str(self.spent),
            "unpriced": self.unpriced,
            "used_share": self.used_share,
            "elapsed_share": self.elapsed_share,
            "recent_cost_usd": money_str(self.recent_cost),
            "daily_rate_usd": money_str(self.daily_rate),
            "days_left": format(self.days_left, "f"),
            "forecast_usd": money_str(self.forecast),
            "forecast_share": _share(self.forecast, self.limit),
            "status": self.status,
            "action": self.action,
            "shadow": self.shadow,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLine:
    """A budget drawn on the spend charts (budgets whose scope is every call).

    A `daily` budget is a flat line over the daily bars. A `weekly` or `monthly` one is
    drawn as spend from its period's start to the end of each day (`to_date`, resetting
    when a period starts) against its pace (`limit x` the part of the period elapsed).
    """

    budget_id: str
    period: str
    limit: Decimal
    to_date: tuple[Decimal, ...] = ()
    """Per dashboard day: known cost from the period's start to the day's end."""
    pace: tuple[Decimal, ...] = ()
    """Per dashboard day: the limit times the part of the period elapsed at the day's end."""

    def to_dict(self, days: Sequence[DaySpend]) -> dict[str, Any]:
        """JSON-ready; `points` pairs each day with its to-date spend and pace (none: daily)."""
        return {
            "budget_id": self.budget_id,
            "period": self.period,
            "limit_usd": money_str(self.limit),
            "points": [
                {
                    "date": d.day.isoformat(),
                    "to_date_usd": money_str(spent),
                    "pace_usd": money_str(pace),
                }
                for d, spent, pace in zip(days, self.to_date, self.pace, strict=True)
            ]
            if self.to_date
            else [],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """A stored alert whose window starts in the range, on the day it starts."""

    alert: AlertRecord
    day: date

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `observed`/`expected` are USD except for `call_rate` (calls a minute)."""
        a = self.alert
        return {
            "alert_id": a.alert_id,
            "kind": a.kind,
            "severity": a.severity,
            "scope": dict(a.scope),
            "date": self.day.isoformat(),
            "window_start": _iso(a.window_start),
            "window_end": _iso(a.window_end),
            "created_at": _iso(a.created_at),
            "message": a.message,
            "unit": "calls_per_minute" if a.kind == "call_rate" else "usd",
            "observed": money_str(a.observed),
            "expected": money_str(a.expected),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    """Spend over a range of days: per day, per tag value, per budget, with the alerts."""

    timezone: str
    first_day: date
    last_day: date
    generated_at: datetime
    as_of: datetime
    """Budgets are measured up to here: now, or the range's end if that is earlier."""
    dimensions: tuple[str, ...]
    totals: SpendFigures
    days: tuple[DaySpend, ...]
    groups: dict[str, tuple[GroupSpend, ...]]
    budgets: tuple[BudgetBurn, ...] = ()
    budget_lines: tuple[BudgetLine, ...] = ()
    skipped_budgets: tuple[tuple[str, str], ...] = ()
    """(budget id, why it has no burn row): non-USD budgets and per-run/per-task caps."""
    policy_timezone: str | None = None
    anomalies: tuple[Anomaly, ...] = ()
    anomalies_truncated: bool = False
    budget_rows_truncated: tuple[str, ...] = ()
    """Budgets with more scopes than `MAX_BUDGET_ROWS` (the rest are not shown)."""

    @property
    def start(self) -> datetime:
        """The range's first instant (the first day's local midnight, in UTC)."""
        return self.days[0].start

    @property
    def end(self) -> datetime:
        """The range's end (exclusive)."""
        return self.days[-1].end

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (docs/dashboard.md); the HTML page is rendered from it."""
        return {
            "schema_version": DASHBOARD_SCHEMA_VERSION,
            "range": {
                "from": self.first_day.isoformat(),
                "to": self.last_day.isoformat(),
                "timezone": self.timezone,
                "start": _iso(self.start),
                "end": _iso(self.end),
                "days": len(self.days),
            },
            "generated_at": _iso(self.generated_at),
            "as_of": _iso(self.as_of),
            "by": list(self.dimensions),
            "totals": self.totals.to_dict(),
            "days": [d.to_dict() for d in self.days],
            "groups": {k: [g.to_dict() for g in v] for k, v in self.groups.items()},
            "budgets": {
                "policy_timezone": self.policy_timezone,
                "rate_days": RATE_DAYS,
                "estimator": (
                    f"forecast = spent so far in the period + (spend of the {RATE_DAYS} days "
                    f"before as_of / {RATE_DAYS}) x days left in the period"
                ),
                "burn": [b.to_dict() for b in self.budgets],
                "lines": [line.to_dict(self.days) for line in self.budget_lines],
                "skipped": [{"budget_id": i, "reason": r} for i, r in self.skipped_budgets],
                "truncated": list(self.budget_rows_truncated),
            },
            "anomalies": [a.to_dict() for a in self.anomalies],
            "anomalies_truncated": self.anomalies_truncated,
        }

    def render(self) -> str:
        """A short plain-text summary (the command's output without --json or --html)."""
        t = self.totals
        lines = [
            f"Spend {self.first_day} .. {self.last_day} ({self.timezone}): "
            f"${money_str(t.cost)} known, {t.unpriced} unpriced, {t.model_calls} model + "
            f"{t.tool_calls} tool calls, {t.tasks} tasks"
            + (f", ${money_str(t.cost_per_task)} per task" if t.cost_per_task is not None else "")
        ]
        for dim, rows in self.groups.items():
            lines.append(f"by {dim}:")
            lines += [
                f"  {g.key if g.key is not None else '(none)'}: ${money_str(g.figures.cost)}"
                + (f" (+{g.figures.unpriced} unpriced)" if g.figures.unpriced else "")
                for g in rows
            ]
        for b in self.budgets:
            scope = ",".join(f"{k}={v}" for k, v in sorted(b.scope.items())) or "all calls"
            lines.append(
                f"budget {b.budget_id} ({scope}, {b.period}): ${money_str(b.spent)} of "
                f"${money_str(b.limit)}, forecast ${money_str(b.forecast)} ({b.status})"
            )
        if self.anomalies:
            lines.append(f"{len(self.anomalies)} anomalies")
        return "\n".join(lines)


# -- building -------------------------------------------------------------------------------


def build_dashboard(
    ledger: Ledger,
    *,
    first_day: date | None = None,
    last_day: date | None = None,
    timezone: str = "UTC",
    by: Sequence[str] = DEFAULT_DIMENSIONS,
    policy: Policy | None = None,
    clock: Clock | None = None,
) -> Dashboard:
    """The dashboard of the days `first_day..last_day` (inclusive) in `timezone`.

    Args:
        ledger: where the cost events and alerts are (read only).
        first_day: default `DEFAULT_DAYS - 1` days before `last_day`.
        last_day: default today in `timezone` (by `clock`).
        timezone: IANA zone of the calendar days (default UTC).
        by: the tags to break the cost down by, each on its own (default team, agent).
        policy: its USD budgets get a burn row and, when they cover every call, a line.
        clock: the current time (default `utcnow`); budgets are measured up to it.

    Raises `ConfigurationError` for an unknown zone, a range that ends before it starts or
    is longer than `MAX_DAYS`, or a bad tag name.
    """
    tz = _zone(timezone)
    now = (clock or utcnow)()
    last = last_day or now.astimezone(tz).date()
    first = first_day or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ConfigurationError(
            "the range ends before it starts",
            field="--from",
            value=f"{first.isoformat()}..{last.isoformat()}",
            expected="a first day on or before the last day",
        )
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise ConfigurationError(
            "the range is too long",
            field="--from",
            value=f"{count} days",
            expected=f"at most {MAX_DAYS} days",
        )
    dims = tuple(dict.fromkeys(by))
    windows = [
        _window_for("daily", datetime.combine(first + timedelta(days=i), time(12), tzinfo=tz), tz)
        for i in range(count)
    ]
    whole = (windows[0][0], windows[-1][1])
    daily = _by_window(ledger.aggregate(windows=windows))
    days, running = [], Decimal(0)
    for i, (start, end) in enumerate(windows):
        figures = SpendFigures.of(daily.get(i))
        running = EXACT.add(running, figures.cost)
        days.append(
            DaySpend(
                day=first + timedelta(days=i),
                start=start,
                end=end,
                figures=figures,
                cumulative_cost=running,
            )
        )
    totals = SpendFigures.of(_by_window(ledger.aggregate(windows=[whole])).get(0))
    groups = {dim: _groups(ledger, dim, whole, totals.cost) for dim in dims}
    as_of = min(now, whole[1])
    board = Dashboard(
        timezone=tz.key,
        first_day=first,
        last_day=last,
        generated_at=now,
        as_of=as_of,
        dimensions=dims,
        totals=totals,
        days=tuple(days),
        groups=groups,
        **_anomalies(ledger, days),
    )
    if policy is None:
        return board
    return _with_budgets(board, ledger, policy)


def _window_for(
    period: PeriodKind, now: datetime, tz: ZoneInfo, *, window: timedelta | None = None
) -> Window:
    """`agent_finops.policy.periods.window_for`, imported when first called (see above)."""
    from agent_finops.policy.periods import window_for as policy_window

    return policy_window(period, now, tz, window=window)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            "unknown time zone",
            field="--tz",
            value=name,
            expected="an IANA time zone name such as 'Europe/Paris' or 'UTC'",
        ) from None


def _by_window(found: Sequence[Aggregate]) -> dict[int, EventTotals]:
    """Ungrouped aggregates by window index."""
    return {a.window: a.totals for a in found}


def _groups(ledger: Ledger, dim: str, whole: Window, total: Decimal) -> tuple[GroupSpend, ...]:
    rows = [
        GroupSpend(key=a.group[0], figures=SpendFigures.of(a.totals), share=None)
        for a in ledger.aggregate(by=[dim], windows=[whole])
    ]
    rows.sort(key=lambda g: (-g.figures.cost, g.key is None, g.key or ""))
    return tuple(
        GroupSpend(key=g.key, figures=g.figures, share=_share(g.figures.cost, total)) for g in rows
    )


def _anomalies(ledger: Ledger, days: Sequence[DaySpend]) -> dict[str, Any]:
    """Stored alerts whose window starts in the range (read since the range's start)."""
    start, end = days[0].start, days[-1].end
    alerts = ledger.list_alerts(since=start, limit=MAX_ALERTS)
    found = []
    for a in alerts:
        if not start <= a.window_start < end:
            continue
        day = next(d.day for d in days if d.start <= a.window_start < d.end)
        found.append(Anomaly(alert=a, day=day))
    found.sort(key=lambda x: (x.alert.window_start, x.alert.alert_id))
    return {"anomalies": tuple(found), "anomalies_truncated": len(alerts) >= MAX_ALERTS}


# -- budgets --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Burns:
    rows: list[BudgetBurn] = field(default_factory=list)
    lines: list[BudgetLine] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)


def _with_budgets(board: Dashboard, ledger: Ledger, policy: Policy) -> Dashboard:
    ptz = ZoneInfo(policy.timezone)
    # The period measured is the one holding `as_of` (the instant just before the range's
    # end when the range is over: its last period, not the one after it).
    at = board.as_of if board.as_of < board.end else board.end - _MICRO
    burns = _Burns()
    for budget in policy.budgets:
        if budget.unit != "usd":
            burns.skipped.append((budget.id, f"counts {budget.unit}, not USD"))
            continue
        if budget.period in ("run", "task"):
            burns.skipped.append((budget.id, f"a per-{budget.period} cost cap, not a period"))
            continue
        period = _window_for(budget.period, at, ptz, window=budget.window)
        rows = _burn_rows(ledger, budget, period, board.as_of)
        if len(rows) > MAX_BUDGET_ROWS:
            burns.truncated.append(budget.id)
        burns.rows += rows[:MAX_BUDGET_ROWS]
        if not budget.scope.root and budget.period in _CHARTED_PERIODS:
            burns.lines.append(_line(ledger, budget, board.days, ptz))
    return replace(
        board,
        budgets=tuple(burns.rows),
        budget_lines=tuple(burns.lines),
        skipped_budgets=tuple(burns.skipped),
        budget_rows_truncated=tuple(burns.truncated),
        policy_timezone=policy.timezone,
    )


def _seconds(span: timedelta) -> int:
    return max(0, span // timedelta(seconds=1))


def _burn_rows(ledger: Ledger, budget: Budget, period: Window, as_of: datetime) -> list[BudgetBurn]:
    """One row per concrete scope of the budget, the most used first."""
    start, end = period
    as_of = max(start, min(as_of, end))
    selector: Mapping[str, str] = budget.scope.root
    stars = tuple(sorted(k for k, v in selector.items() if v == "*"))
    where = {k: [v] for k, v in selector.items() if v != "*"}
    spent: dict[tuple[str | None, ...], EventTotals] = {}
    if start < as_of:
        spent = {
            a.group: a.totals
            for a in ledger.aggregate(by=stars, windows=[(start, as_of)], where=where)
            if all(a.group)  # a "*" selector leaves out calls without the tag (or empty)
        }
    # The rate window reaches back RATE_DAYS from as_of, across the period's start.
    recent = _recent(ledger, stars, where, as_of)
    scopes = list(dict.fromkeys([*spent, *recent])) or [tuple("*" for _ in stars)]
    rows = []
    for group in scopes:
        totals = spent.get(group)
        rows.append(
            BudgetBurn(
                budget_id=budget.id,
                scope={**dict(selector), **dict(zip(stars, (g or "" for g in group), strict=True))},
                period=budget.period,
                period_start=start,
                period_end=end,
                limit=budget.limit,
                spent=totals.cost if totals else Decimal(0),
                unpriced=totals.unpriced if totals else 0,
                elapsed_seconds=_seconds(as_of - start),
                period_seconds=_seconds(end - start),
                recent_cost=recent.get(group, Decimal(0)),
                action=budget.action,
                shadow=budget.shadow,
            )
        )
    rows.sort(key=lambda r: (-r.spent, sorted(r.scope.items())))
    return rows


def _recent(
    ledger: Ledger, stars: tuple[str, ...], where: Mapping[str, Sequence[str]], as_of: datetime
) -> dict[tuple[str | None, ...], Decimal]:
    """Known cost per scope over the `RATE_DAYS` days before `as_of`."""
    window = (as_of - timedelta(days=RATE_DAYS), as_of)
    return {
        a.group: a.totals.cost
        for a in ledger.aggregate(by=stars, windows=[window], where=where)
        if all(a.group)
    }


def _line(ledger: Ledger, budget: Budget, days: Sequence[DaySpend], ptz: ZoneInfo) -> BudgetLine:
    if budget.period == "daily":
        return BudgetLine(budget_id=budget.id, period=budget.period, limit=budget.limit)
    periods = [_window_for(budget.period, d.end - _MICRO, ptz) for d in days]
    windows = [(p[0], d.end) for p, d in zip(periods, days, strict=True)]
    spent = _by_window(ledger.aggregate(windows=windows))
    pace = tuple(
        _derived(
            EXACT.multiply(
                budget.limit,
                EXACT.divide(Decimal((d.end - p[0]) // _MICRO), Decimal((p[1] - p[0]) // _MICRO)),
            )
        )
        for p, d in zip(periods, days, strict=True)
    )
    to_date = tuple(spent[i].cost if i in spent else Decimal(0) for i in range(len(days)))
    return BudgetLine(
        budget_id=budget.id, period=budget.period, limit=budget.limit, to_date=to_date, pace=pace
    )
