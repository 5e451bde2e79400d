"""Cost per task: a window's average cost per task against its trailing (7-day) average."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._money import average

__all__ = ["DEFAULT_TASK_FACTOR", "CostPerTaskRule", "find_cost_per_task_jump"]

DEFAULT_TASK_FACTOR: Final = Decimal(3)
DEFAULT_TASK_BASELINE: Final = timedelta(days=7)
DEFAULT_TASK_WINDOW: Final = timedelta(hours=1)
DEFAULT_TASK_TYPE_TAG: Final = "task_type"


@dataclass(frozen=True, slots=True, kw_only=True)
class CostPerTaskRule:
    """When a window's cost per task is too high against its rolling average."""

    factor: Decimal = DEFAULT_TASK_FACTOR
    """Alert at or above this many times the rolling average."""
    window: timedelta = DEFAULT_TASK_WINDOW
    """The window judged (each complete one in the scan)."""
    baseline: timedelta = DEFAULT_TASK_BASELINE
    """The rolling average's span, ending where the scan's first window starts."""
    task_type_tag: str | None = DEFAULT_TASK_TYPE_TAG
    """A tag naming the kind of task: averages are kept per value of it (events without it
    are judged per scope alone). None: per scope only. Tasks are counted by the `task` tag."""
    min_tasks: int = 3
    """Tasks the window needs (fewer are too noisy to judge)."""
    min_baseline_tasks: int = 5
    """Tasks the rolling average needs."""
    min_cost: Decimal = Decimal("1")
    """The window's cost must also be at least this (USD)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work."""
        if self.factor <= 1 or self.min_tasks < 1 or self.min_baseline_tasks < 1:
            raise ValueError("factor must be > 1, min_tasks and min_baseline_tasks >= 1")
        if self.window <= timedelta(0) or self.baseline <= self.window:
            raise ValueError("window must be positive and shorter than baseline")


def find_cost_per_task_jump(
    *,
    window: tuple[datetime, datetime],
    cost: Decimal,
    tasks: int,
    baseline_cost: Decimal,
    baseline_tasks: int,
    rule: CostPerTaskRule | None = None,
) -> Anomaly | None:
    """Whether `cost / tasks` in `window` is `rule.factor` times `baseline_cost / baseline_tasks`.

    The rolling average is a ratio of sums (all the baseline's cost over all its tasks), so
    a busy day weighs as much as its tasks. Returns the `cost_per_task` anomaly, or None.
    """
    rule = rule or CostPerTaskRule()
    if tasks < rule.min_tasks or baseline_tasks < rule.min_baseline_tasks:
        return None
    if cost < rule.min_cost or baseline_cost <= 0:
        return None
    per_task = average(cost, tasks)
    usual = average(baseline_cost, baseline_tasks)
    if per_task < usual * rule.factor:
        return None
    return Anomaly(
        kind="cost_per_task",
        window_start=window[0],
        window_end=window[1],
        observed=per_task,
        expected=usual,
        score=float(per_task / usual),
        basis=f"{_days(rule.baseline)} average",
    )


def _days(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days}-day"
    return f"{span.total_seconds() / 3600:g}-hour"
