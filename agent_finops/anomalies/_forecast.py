"""Period-end forecasts: where a budget's spend lands at the end of its period.

The estimator (a burn-rate projection)::

    projected = spent so far in the period + rate x time left in the period
    rate      = cost in the trailing `rate_window` (7 days) / the part of it with history

The rate is the *recent* one, not the period's average: a month that started quiet (a
holiday, a launch mid-month) is projected at today's pace, not diluted by the quiet days,
and a slow drift upwards raises the projection day after day until it crosses the limit,
typically long before the spend itself reaches the first threshold. Seven days hold every
weekday once, so a weekend lull or a Monday peak neither hides nor fakes a trend. The rate
window may reach back before the period (last month's last week is the best guess of this
month's first). When the scope has less history than the window, the rate is taken over the
part it has, and no projection is made from less than `min_history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._money import USD_QUANTUM, average

__all__ = [
    "DEFAULT_FORECAST_MIN_HISTORY",
    "DEFAULT_FORECAST_RATE_WINDOW",
    "ForecastRule",
    "Projection",
    "find_forecast_overrun",
    "project_spend",
]

DEFAULT_FORECAST_RATE_WINDOW: Final = timedelta(days=7)
DEFAULT_FORECAST_MIN_HISTORY: Final = timedelta(days=1)
DEFAULT_FORECAST_PERIODS: Final = ("daily", "weekly", "monthly")
DAY: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecastRule:
    """How budgets are projected to the end of their period."""

    rate_window: timedelta = DEFAULT_FORECAST_RATE_WINDOW
    """The trailing window the burn rate is measured over."""
    min_history: timedelta = DEFAULT_FORECAST_MIN_HISTORY
    """No projection from less history than this."""
    periods: tuple[str, ...] = DEFAULT_FORECAST_PERIODS
    """Which USD budgets are projected, by period (calendar periods only)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work."""
        if self.rate_window <= timedelta(0) or self.min_history > self.rate_window:
            raise ValueError("rate_window must be positive and at least min_history")
        unknown = set(self.periods) - {"hourly", "daily", "weekly", "monthly"}
        if unknown:
            raise ValueError(f"periods must be calendar periods, not {sorted(unknown)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Projection:
    """A budget's spend projected to the end of its period."""

    spent: Decimal
    """Known cost so far in the period (USD)."""
    rate_per_day: Decimal
    """The burn rate (USD per day)."""
    projected: Decimal
    """`spent + rate x time left`."""
    period_end: datetime
    crosses_at: datetime | None
    """When spend reaches `limit` at this rate (None: not before the period ends, or
    already reached)."""


def project_spend(
    *,
    spent: Decimal,
    recent_cost: Decimal,
    recent_span: timedelta,
    now: datetime,
    period_end: datetime,
    limit: Decimal,
) -> Projection:
    """The projection of a budget (see the module docstring); `recent_span` must be > 0."""
    if recent_span <= timedelta(0):
        raise ValueError("recent_span must be positive")
    days = Decimal(int(recent_span.total_seconds())) / 86_400
    rate = average(recent_cost, days)
    left = Decimal(int(max(period_end - now, timedelta(0)).total_seconds())) / 86_400
    projected = (spent + rate * left).quantize(USD_QUANTUM)
    crosses_at = None
    if spent < limit <= projected and rate > 0:
        crosses_at = now + timedelta(days=float((limit - spent) / rate))
    return Projection(
        spent=spent,
        rate_per_day=rate,
        projected=projected,
        period_end=period_end,
        crosses_at=crosses_at,
    )


def find_forecast_overrun(
    *,
    period: tuple[datetime, datetime],
    now: datetime,
    limit: Decimal,
    spent: Decimal,
    recent_cost: Decimal,
    history: timedelta,
    rule: ForecastRule | None = None,
) -> tuple[Anomaly, Projection] | None:
    """Whether a budget is projected past `limit` by the end of `period`.

    `history`: how much of the trailing `rule.rate_window` the scope has existed for (the
    span `recent_cost` was spent over). Only a budget not yet over its limit is forecast
    (once over, enforcement speaks). Returns the `forecast` anomaly (observed: the
    projection, expected: the limit) with the projection, or None.
    """
    rule = rule or ForecastRule()
    span = min(history, rule.rate_window)
    if span < rule.min_history or spent >= limit or now >= period[1]:
        return None
    projection = project_spend(
        spent=spent,
        recent_cost=recent_cost,
        recent_span=span,
        now=now,
        period_end=period[1],
        limit=limit,
    )
    if projection.projected <= limit:
        return None
    anomaly = Anomaly(
        kind="forecast",
        window_start=period[0],
        window_end=period[1],
        observed=projection.projected,
        expected=limit,
        score=float(projection.projected / limit),
        basis="burn rate",
    )
    return anomaly, projection
