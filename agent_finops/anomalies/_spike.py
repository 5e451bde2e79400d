"""Hourly cost spikes: an hour's cost far above its robust seasonal baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from agent_finops.anomalies._baseline import seasonal_baseline
from agent_finops.anomalies._finding import Anomaly

__all__ = [
    "DEFAULT_SPIKE_MIN_COST",
    "DEFAULT_SPIKE_WEEKS",
    "DEFAULT_SPIKE_Z",
    "CostSpikeRule",
    "find_cost_spike",
]

HOUR: Final = timedelta(hours=1)
DEFAULT_SPIKE_WEEKS: Final = 4
DEFAULT_SPIKE_Z: Final = 3.5
"""The usual cut-off of the modified (median/MAD) z-score (Iglewicz and Hoaglin)."""
DEFAULT_SPIKE_MIN_COST: Final = Decimal("1")
DEFAULT_SPIKE_MIN_RATIO: Final = Decimal("1.5")
DEFAULT_SPIKE_MIN_SAMPLES: Final = 3
DEFAULT_SPIKE_MIN_HISTORY: Final = 72
DEFAULT_SPIKE_SIGMA_FLOOR: Final = Decimal("0.1")


@dataclass(frozen=True, slots=True, kw_only=True)
class CostSpikeRule:
    """When an hour's cost is a spike (every condition must hold)."""

    weeks: int = DEFAULT_SPIKE_WEEKS
    """Weeks of history the baseline looks back over."""
    z_threshold: float = DEFAULT_SPIKE_Z
    """Robust z-score, (cost - median) / (1.4826 x MAD), at or above which an hour is out."""
    min_ratio: Decimal = DEFAULT_SPIKE_MIN_RATIO
    """The hour must also cost at least this many times its baseline median."""
    min_cost: Decimal = DEFAULT_SPIKE_MIN_COST
    """... and at least this much more than it, in USD, so pennies never alarm."""
    min_samples: int = DEFAULT_SPIKE_MIN_SAMPLES
    """Hours a baseline needs (same weekday and hour, else same hour, else any hour)."""
    min_history: int = DEFAULT_SPIKE_MIN_HISTORY
    """Hours of history a scope needs before any of its hours is judged (three days: every
    hour of the day then has three samples)."""
    sigma_floor: Decimal = DEFAULT_SPIKE_SIGMA_FLOOR
    """The spread is at least this fraction of the median (a flat history has MAD 0)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work."""
        if self.weeks < 1 or self.min_samples < 1 or self.min_history < 1:
            raise ValueError("weeks, min_samples and min_history must be at least 1")
        if not self.z_threshold > 0 or self.min_ratio < 1 or self.min_cost < 0:
            raise ValueError("z_threshold must be > 0, min_ratio >= 1 and min_cost >= 0")


def find_cost_spike(
    history: Sequence[tuple[datetime, Decimal]],
    hour: datetime,
    cost: Decimal,
    tz: ZoneInfo,
    rule: CostSpikeRule | None = None,
) -> Anomaly | None:
    """Whether the hour starting at `hour`, costing `cost`, is a spike against `history`.

    `history`: (hour start, cost) of every hour of the scope before `hour`, zero-cost hours
    included, starting when the scope was first seen (at most `rule.weeks` weeks back).
    Slots (weekday, hour) are local to `tz`. Returns the `cost_spike` anomaly, or None.
    """
    rule = rule or CostSpikeRule()
    if len(history) < rule.min_history:
        return None
    baseline = seasonal_baseline(history, hour, tz, min_samples=rule.min_samples)
    if baseline is None:
        return None
    expected = baseline.median
    if cost - expected < rule.min_cost or cost < expected * rule.min_ratio:
        return None
    sigma = max(baseline.sigma, expected * rule.sigma_floor)
    z = math.inf if sigma == 0 else float((cost - expected) / sigma)
    if z < rule.z_threshold:
        return None
    return Anomaly(
        kind="cost_spike",
        window_start=hour,
        window_end=hour + HOUR,
        observed=cost,
        expected=expected,
        score=z,
        basis=baseline.basis,
        samples=baseline.samples,
    )
