"""`Anomaly`: what a detector found in a series, before it becomes a stored `AlertRecord`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from agent_finops.ledger import AlertKind

__all__ = ["Anomaly"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One finding of a detector: a window whose measure is far from what was expected."""

    kind: AlertKind
    window_start: datetime
    window_end: datetime
    """The window judged, `[start, end)` (a forecast's: the budget period)."""
    observed: Decimal
    """What was measured: USD (an hour's cost, a cost per task, a projection) or calls per
    minute (`call_rate`)."""
    expected: Decimal
    """What it is compared with: the baseline median, the 7-day average, the trailing rate,
    or the budget limit."""
    score: float
    """How far out it is: the robust z-score of a spike, else observed / expected."""
    basis: str
    """What the expectation was computed from (`weekday_hour`, `hour_of_day`, `global`,
    `7-day average`, `trailing rate`, `burn rate`), for the message."""
    samples: tuple[datetime, ...] = ()
    """The starts of the baseline windows (a spike's same-slot hours), for its drivers."""
