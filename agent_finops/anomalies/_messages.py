"""The one-line message of each kind of alert, as people read it in a log or in Slack."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._forecast import Projection
from agent_finops.policy import Budget
from agent_finops.reports import money

__all__ = ["describe", "scope_text"]

_BASES = {
    "weekday_hour": "the same weekday and hour in past weeks",
    "hour_of_day": "the same hour on past days",
    "global": "all past hours",
}


def scope_text(scope: Mapping[str, str]) -> str:
    """`team=search, agent=planner`; `everything` for the empty scope."""
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "everything"


def describe(
    anomaly: Anomaly,
    scope: Mapping[str, str],
    tz: ZoneInfo,
    *,
    projection: Projection | None = None,
    budget: Budget | None = None,
) -> str:
    """The alert's message."""
    where = scope_text({k: v for k, v in scope.items() if k != "budget"} or {})
    when = _when(anomaly.window_start, tz)
    if anomaly.kind == "cost_spike":
        return (
            f"Cost spike for {where}: {money(anomaly.observed)} in the hour from {when}, "
            f"usually {money(anomaly.expected)} (robust z {anomaly.score:.1f} against "
            f"{_BASES.get(anomaly.basis, anomaly.basis)})"
        )
    if anomaly.kind == "cost_per_task":
        return (
            f"Cost per task for {where}: {money(anomaly.observed)} per task from {when}, "
            f"{anomaly.score:.1f}x the {anomaly.basis} of {money(anomaly.expected)}"
        )
    if anomaly.kind == "call_rate":
        return (
            f"Call rate jump for {where}: {anomaly.observed} calls/min from {when}, "
            f"{_times(anomaly.score)} the {anomaly.expected} calls/min of the hour before"
        )
    assert projection is not None and budget is not None
    pct = projection.spent / budget.limit * 100
    reached = [t for t in budget.thresholds if pct >= t]
    if not budget.thresholds:
        thresholds = ""
    elif not reached:
        thresholds = f", below its first threshold ({budget.thresholds[0]:f}%)"
    else:
        thresholds = f", past its {reached[-1]:f}% threshold"
    crossing = ""
    if projection.crosses_at is not None:
        crossing = (
            f"; at {money(projection.rate_per_day)}/day the limit is reached "
            f"{_when(projection.crosses_at, tz)}"
        )
    return (
        f"Budget {budget.id} ({where}) is projected to reach {money(projection.projected)} "
        f"by {_when(projection.period_end, tz)}, over its {budget.period} limit of "
        f"{money(budget.limit)} (spent {money(projection.spent)} so far, {pct:.0f}%"
        f"{thresholds}){crossing}"
    )


def _when(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _times(score: float) -> str:
    return "from nothing to" if score == float("inf") else f"{score:.1f}x"
